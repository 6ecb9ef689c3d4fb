package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// The variables systemd sets for another process, or a count that is not
// one, are never taken for sockets (these cases stop before any file
// descriptor is touched, so the test process keeps its own fd 3).
func TestListenersFromSystemdEnv(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	pid := os.Getpid()
	for _, tc := range []struct {
		name    string
		getenv  func(string) string
		wantErr string
	}{
		{"none", env(), ""},
		{"no pid", env("LISTEN_FDS", "1", "LISTEN_FDNAMES", "public"), ""},
		{"other pid", env("LISTEN_PID", "1", "LISTEN_FDS", "1", "LISTEN_FDNAMES", "public"), ""},
		{"not a number", env("LISTEN_PID", "x", "LISTEN_FDS", "1"), ""},
		{"bad count", env("LISTEN_PID", strconv.Itoa(pid), "LISTEN_FDS", "two"), `LISTEN_FDS="two"`},
		{"negative count", env("LISTEN_PID", strconv.Itoa(pid), "LISTEN_FDS", "-1"), `LISTEN_FDS="-1"`},
		{"zero", env("LISTEN_PID", strconv.Itoa(pid), "LISTEN_FDS", "0"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ls, err := listenersFromSystemd(tc.getenv, pid)
			if tc.wantErr == "" && (err != nil || len(ls) != 0) {
				t.Fatalf("got %d listeners, %v; want none and no error", len(ls), err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("got %v, want an error with %s", err, tc.wantErr)
			}
		})
	}
}

// Without $NOTIFY_SOCKET (not under systemd, or not Type=notify) notify
// does nothing; with one nobody listens on, it says so.
func TestSDNotifierWithoutSystemd(t *testing.T) {
	if err := newSDNotifier(func(string) string { return "" }).notify("READY=1"); err != nil {
		t.Fatal(err)
	}
	missing := t.TempDir() + "/none"
	err := newSDNotifier(func(string) string { return missing }).notify("READY=1")
	if err == nil || !strings.Contains(err.Error(), "systemd notify socket") {
		t.Fatalf("notify to a socket nobody listens on: %v", err)
	}
}
