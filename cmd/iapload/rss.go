package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// memStatus is a process's memory as /proc/<pid>/status reports it
// (Linux), in bytes. RSS is anonymous + file + shmem: for iapd, anon is
// essentially the Go heap (bounded by its memory limit) and file the
// pages of the files it maps — its binary and Badger's tables, which
// grow with the ledger and which the kernel reclaims under pressure.
type memStatus struct {
	RSS, Peak, Anon, File int64
}

// readMemStatus reads pid's memStatus.
func readMemStatus(pid int) (memStatus, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memStatus{}, err
	}
	return parseMemStatus(b)
}

// parseMemStatus reads the VmRSS, VmHWM, RssAnon and RssFile lines of a
// /proc/<pid>/status text; VmRSS is required, the others read 0 when
// the kernel does not report them (RssAnon and RssFile since Linux 4.5).
func parseMemStatus(b []byte) (memStatus, error) {
	var m memStatus
	fields := map[string]*int64{"VmRSS:": &m.RSS, "VmHWM:": &m.Peak, "RssAnon:": &m.Anon, "RssFile:": &m.File}
	seen := false
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, "\t")
		dst := fields[name]
		if !ok || dst == nil {
			continue
		}
		var kb int64
		if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err != nil {
			return memStatus{}, fmt.Errorf("%s %q: %w", name, strings.TrimSpace(v), err)
		}
		*dst = kb * 1024
		seen = seen || name == "VmRSS:"
	}
	if !seen {
		return memStatus{}, errors.New("no VmRSS line")
	}
	return m, nil
}

// cpuTime is the CPU (user + system) a process has used so far: pid 0
// reads iapload's own, through getrusage; another pid reads
// /proc/<pid>/stat (Linux; ticks of 1/100 s).
func cpuTime(pid int) (time.Duration, error) {
	if pid == 0 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0, err
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields are
	// counted from the last ')'. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	var ut, st int64
	if _, err := fmt.Sscan(f[11], &ut); err != nil {
		return 0, err
	}
	if _, err := fmt.Sscan(f[12], &st); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * (time.Second / clockTicks), nil
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// every Linux architecture Go supports.
const clockTicks = 100
