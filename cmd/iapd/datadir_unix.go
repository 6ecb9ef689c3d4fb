//go:build linux || darwin || freebsd || netbsd || openbsd

package main

import (
	"errors"
	"os"
	"syscall"
)

// dirLocked reports whether another open file description holds an
// exclusive or shared flock(2) on dir, as Badger takes it; the lock taken
// to find out is released before returning. An absent dir is not locked.
func dirLocked(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	defer f.Close()
	fd := int(f.Fd())
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return true, nil
		}
		return false, err
	}
	return false, syscall.Flock(fd, syscall.LOCK_UN)
}
