//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package badger

import "errors"

// StatFS is the default FreeSpaceFunc; here it cannot measure, and the
// ledger then admits every write (logged once at Open).
func StatFS(string) (int64, error) {
	return 0, errors.New("free space cannot be measured on this platform")
}
