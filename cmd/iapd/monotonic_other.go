//go:build !linux

package main

import "time"

var processStart = time.Now()

// monotonicNow has no systemd to agree with off Linux: time since start.
func monotonicNow() time.Duration { return time.Since(processStart) }
