package main

import (
	"math"
	"runtime/debug"
	"strings"
	"testing"
)

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{
		"0": 0, "67108864": 64 << 20, "64MiB": 64 << 20, "64 MiB": 64 << 20, "512KiB": 512 << 10,
		"2GiB": 2 << 30, "1TiB": 1 << 40, "100B": 100, " 8MiB ": 8 << 20,
	} {
		if got, err := ParseByteSize(in); err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "64MB", "64mib", "1.5GiB", "MiB", "off", "9999999999TiB"} {
		if got, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestConfigMemoryLimit(t *testing.T) {
	if c := DefaultConfig(); c.MemoryLimit != 48<<20 {
		t.Fatalf("default memory_limit %d", c.MemoryLimit)
	}
	for in, want := range map[string]ByteSize{"memory_limit: 96MiB": 96 << 20, "memory_limit: 0": 0, "memory_limit: 1000000": 1000000} {
		c, err := ParseConfig([]byte(in), func(string) string { return "" })
		if err != nil || c.MemoryLimit != want {
			t.Errorf("%q: %d, %v; want %d", in, c.MemoryLimit, err, want)
		}
	}
	for _, in := range []string{"memory_limit: lots", "memory_limit: [1]", "memory_limit: -5"} {
		if _, err := ParseConfig([]byte(in), func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: %v, want an error naming the line", in, err)
		}
	}
	c := DefaultConfig()
	c.MemoryLimit = -1
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "memory_limit") {
		t.Errorf("negative memory_limit: %v", err)
	}
}

func TestApplyMemoryLimit(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(orig)
	noEnv := func(string) string { return "" }

	inForce, source, prev := applyMemoryLimit(48<<20, noEnv)
	if inForce != 48<<20 || source != "memory_limit" || prev != orig || debug.SetMemoryLimit(-1) != 48<<20 {
		t.Errorf("memory_limit 48MiB: %d %s %d", inForce, source, prev)
	}
	if inForce, _, _ := applyMemoryLimit(0, noEnv); inForce != math.MaxInt64 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Errorf("memory_limit 0: %d", inForce)
	}
	debug.SetMemoryLimit(123 << 20) // as if GOMEMLIMIT=123MiB at start-up
	env := func(k string) string {
		if k == "GOMEMLIMIT" {
			return "123MiB"
		}
		return ""
	}
	if inForce, source, _ := applyMemoryLimit(48<<20, env); inForce != 123<<20 || source != "GOMEMLIMIT" || debug.SetMemoryLimit(-1) != 123<<20 {
		t.Errorf("GOMEMLIMIT set: %d %s", inForce, source)
	}
}
