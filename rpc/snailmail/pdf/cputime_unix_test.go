//go:build unix

package pdf

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user and system) of this process so far: a
// figure a busy machine inflates far less than wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
