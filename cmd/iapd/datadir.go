package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// badgerLockFile is the file in which Badger, holding the data directory's
// lock, writes its process id.
const badgerLockFile = "LOCK"

// errDataDirInUse is the error of a data directory another process has
// open (Badger's lock on it is taken).
type errDataDirInUse struct {
	dir string
	pid int // 0: unknown
}

func (e *errDataDirInUse) Error() string {
	who := "pid unknown"
	if e.pid > 0 {
		who = "pid " + strconv.Itoa(e.pid)
	}
	return fmt.Sprintf("data directory %s is in use by another iapd (%s): stop that one first, or give this one another -data (or data: in the configuration)", e.dir, who)
}

// dataDirInUse reports, before anything in dir is touched, whether another
// process holds Badger's lock on dir: an *errDataDirInUse naming its pid
// when it does, nil when dir is absent, free, or cannot be probed (Open
// then reports). It only probes and releases the lock at once: the lock
// that protects the directory is the one Badger's Open takes.
func dataDirInUse(dir string) error {
	locked, err := dirLocked(dir) // datadir_unix.go
	if err != nil || !locked {
		return nil
	}
	return &errDataDirInUse{dir: dir, pid: lockHolder(dir)}
}

// explainOpenError turns Badger's own message for a directory locked by
// another process ("Cannot acquire directory lock on …", from a start that
// raced the probe) into an *errDataDirInUse; other errors are returned as
// they are. Badger does not wrap the lock error, hence the text match.
func explainOpenError(dir string, err error) error {
	if err != nil && strings.Contains(err.Error(), "Cannot acquire directory lock") {
		return &errDataDirInUse{dir: dir, pid: lockHolder(dir)}
	}
	return err
}

// lockHolder returns the pid Badger wrote in dir's lock file, 0 if none
// can be read.
func lockHolder(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, badgerLockFile))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return 0
	}
	return pid
}

// listenError describes a listener that could not be opened, at start-up,
// before the data directory is touched.
func listenError(what, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s: %s is already in use by another process (another iapd?); nothing was started and the data directory was not opened: %w", what, addr, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
