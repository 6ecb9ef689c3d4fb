//go:build !linux

package main

import "time"

// monotonicNow is 0 off Linux: there is no systemd to read MONOTONIC_USEC
// (and no $NOTIFY_SOCKET, so it is never sent).
func monotonicNow() time.Duration { return 0 }
