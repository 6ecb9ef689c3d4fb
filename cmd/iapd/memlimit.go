package main

import (
	"context"
	"io"
	"math"
	"runtime/debug"
)

// The Go memory limit of iapd serve (config memory_limit, README
// "Performance"). Most of Badger's memory is Go heap (memtable arenas,
// table builders during flushes and compactions) and, without a limit, the
// heap grows to twice what is live before each collection: a limit keeps
// the resident set of a small server under 100 MB at the price of more
// frequent collections when the heap nears it.

// runServeWithMemoryLimit runs iapd serve under its configured memory
// limit, restoring the process's previous limit when serve returns (tests
// run serve in-process).
func runServeWithMemoryLimit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	// runServe loads the configuration again and reports its errors; one
	// that does not load leaves the limit alone.
	if cfg, err := loadServeConfig(args, getenv, io.Discard); err == nil {
		limit, source, prev := applyMemoryLimit(cfg.MemoryLimit, getenv)
		defer debug.SetMemoryLimit(prev)
		log := newLogger(cfg, stderr)
		if limit == math.MaxInt64 {
			log.Info("no Go memory limit", "source", source)
		} else {
			log.Info("Go memory limit", "bytes", limit, "source", source)
		}
	}
	return runServe(ctx, args, getenv, stdout, stderr)
}

// applyMemoryLimit sets the Go runtime's soft memory limit to limit bytes
// (0: none) unless the GOMEMLIMIT environment variable is set, which the
// runtime applied at start-up and which wins. It returns the limit in
// force, where it comes from, and the limit it replaced.
func applyMemoryLimit(limit ByteSize, getenv func(string) string) (inForce int64, source string, prev int64) {
	prev = debug.SetMemoryLimit(-1)
	switch {
	case getenv("GOMEMLIMIT") != "":
		return prev, "GOMEMLIMIT", prev
	case limit == 0:
		debug.SetMemoryLimit(math.MaxInt64)
		return math.MaxInt64, "memory_limit", prev
	}
	debug.SetMemoryLimit(int64(limit))
	return int64(limit), "memory_limit", prev
}
