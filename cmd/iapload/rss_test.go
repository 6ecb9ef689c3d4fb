package main

import (
	"os"
	"runtime"
	"strings"
	"testing"
)

// A /proc/<pid>/status as Linux 6.1 writes it (abridged).
const statusText = "Name:\tiapd\nVmPeak:\t 2241508 kB\nVmHWM:\t   98312 kB\nVmRSS:\t   89248 kB\n" +
	"RssAnon:\t   36204 kB\nRssFile:\t   53044 kB\nRssShmem:\t       0 kB\nThreads:\t12\n"

func TestParseMemStatus(t *testing.T) {
	m, err := parseMemStatus([]byte(statusText))
	if err != nil {
		t.Fatal(err)
	}
	want := memStatus{RSS: 89248 << 10, Peak: 98312 << 10, Anon: 36204 << 10, File: 53044 << 10}
	if m != want {
		t.Fatalf("got %+v, want %+v", m, want)
	}

	// No VmRSS (a kernel thread, or not a status file): an error, not zeros.
	if _, err := parseMemStatus([]byte("Name:\tkthreadd\nThreads:\t1\n")); err == nil {
		t.Fatal("a status without VmRSS parsed")
	}
	// A value that is not "<n> kB" is an error naming the line.
	_, err = parseMemStatus([]byte(strings.Replace(statusText, "89248 kB", "lots", 1)))
	if err == nil || !strings.Contains(err.Error(), "VmRSS") {
		t.Fatalf("garbled VmRSS: err = %v", err)
	}
}

func TestReadMemStatusSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/<pid>/status is Linux's")
	}
	m, err := readMemStatus(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// A running Go test binary has heap and a mapped binary; RSS is their sum
	// (plus shmem, none here) and the peak is at least the current figure.
	if m.Anon <= 0 || m.File <= 0 || m.RSS < m.Anon+m.File || m.Peak < m.RSS {
		t.Fatalf("implausible %+v", m)
	}
}
