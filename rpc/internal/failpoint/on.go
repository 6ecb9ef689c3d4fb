//go:build iapd_failpoints

package failpoint

import (
	"os"
	"syscall"
)

// Hit SIGKILLs the process when step is the value of IAPD_FAILPOINT: no
// deferred function, no flush, no shutdown runs, as with kill -9.
func Hit(step string) {
	if step != "" && os.Getenv("IAPD_FAILPOINT") == step {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is delivered; never go on
	}
}
