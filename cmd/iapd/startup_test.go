package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runBinary runs the built iapd to its end (within two minutes) and
// returns its exit status and output.
func runBinary(t *testing.T, bin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "IAPD_ADMIN_TOKEN=startup-test-admin-token-0123")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("iapd %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("iapd %s did not end within 2 minutes (it served?)\n%s", strings.Join(args, " "), errOut.String())
	}
	return code, out.String(), errOut.String()
}

// TestStartupRefusals runs the real binary: an address in use stops the
// start before the data directory is created (exit status 1, a message
// naming the address), a data directory another iapd has open is refused
// with a message naming that process, and the help exits 0.
func TestStartupRefusals(t *testing.T) {
	bin := buildIapd(t)

	t.Run("PortInUse", func(t *testing.T) {
		taken, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer taken.Close()
		addr := taken.Addr().String()
		for _, c := range []struct{ flag, other, what string }{
			{"-listen", "-ops-listen", "public listener"},
			{"-ops-listen", "-listen", "ops listener"},
		} {
			data := filepath.Join(t.TempDir(), "data")
			code, _, stderr := runBinary(t, bin, "serve", c.flag, addr, c.other, "127.0.0.1:0", "-data", data, "-log-level", "warn")
			if code != 1 || !strings.Contains(stderr, "iapd: "+c.what) || !strings.Contains(stderr, addr+" is already in use") {
				t.Errorf("%s in use: exit %d, stderr:\n%s", c.flag, code, stderr)
			}
			if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s in use: the data directory was created (%v)", c.flag, err)
			}
		}
	})

	t.Run("SecondProcessOnTheDataDirectory", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "data")
		first, _, _, ops := launch(t, bin, []string{"serve", "-listen", "127.0.0.1:0", "-ops-listen", "127.0.0.1:0", "-data", data, "-log-level", "warn"}, nil, &syncBuffer{})
		before, err := os.ReadDir(data)
		if err != nil {
			t.Fatal(err)
		}
		code, _, stderr := runBinary(t, bin, "serve", "-listen", "127.0.0.1:0", "-ops-listen", "127.0.0.1:0", "-data", data, "-log-level", "warn")
		want := "data directory " + data + " is in use by another iapd (pid " + strconv.Itoa(first.Process.Pid) + ")"
		if code != 1 || !strings.Contains(stderr, want) || strings.Contains(stderr, "Cannot acquire") {
			t.Fatalf("second process: exit %d, want %q in stderr:\n%s", code, want, stderr)
		}
		// The first one still serves, its directory as it was.
		resp, err := http.Get(ops + "/readyz")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("first iapd after the refused second: %v %v", resp, err)
		}
		resp.Body.Close()
		after, err := os.ReadDir(data)
		if err != nil || len(after) != len(before) {
			t.Fatalf("data directory changed by the refused start: %d entries, then %d (%v)", len(before), len(after), err)
		}
	})

	t.Run("Help", func(t *testing.T) {
		for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
			code, stdout, stderr := runBinary(t, bin, args...)
			if code != 0 || !strings.Contains(stdout, "iapd credit SERVICE TOKEN AMOUNT") || !strings.Contains(stdout, "iapd vouchers create") || stderr != "" {
				t.Errorf("iapd %s: exit %d\n%s\n%s", args[0], code, stdout, stderr)
			}
		}
		code, stdout, _ := runBinary(t, bin, "credit", "-h")
		if code != 0 || !strings.Contains(stdout, "-any-token") || !strings.Contains(stdout, "-ref") {
			t.Errorf("iapd credit -h: exit %d\n%s", code, stdout)
		}
		code, _, stderr := runBinary(t, bin, "credit", "sms", "shorttoken", "10")
		if code != 1 || !strings.Contains(stderr, "not an account token Odoo generates") || strings.Contains(stderr, "shorttoken") {
			t.Errorf("iapd credit with a short token: exit %d\n%s", code, stderr)
		}
	})
}
