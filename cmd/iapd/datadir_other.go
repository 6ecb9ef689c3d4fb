//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package main

import "errors"

// dirLocked cannot probe flock(2) here; Badger's Open reports a locked
// directory instead (explainOpenError).
func dirLocked(string) (bool, error) {
	return false, errors.New("directory locks cannot be probed on this platform")
}
