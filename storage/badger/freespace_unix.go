//go:build linux || darwin || freebsd || netbsd || openbsd

package badger

import "syscall"

// StatFS is the default FreeSpaceFunc: statfs(2)'s blocks available to
// an unprivileged writer (f_bavail) times the block size. Blocks kept for
// root (ext4's 5 %) are not counted: iapd need not run as root.
func StatFS(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil //nolint:unconvert // field types differ by platform
}
