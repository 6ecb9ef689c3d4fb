//go:build !iapd_failpoints

package failpoint

// Hit does nothing: failpoints exist only in builds tagged iapd_failpoints.
func Hit(step string) {}
