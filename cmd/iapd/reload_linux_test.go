package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fakeNotify is systemd's notify socket for unit tests: a unixgram path
// whose datagrams are read one at a time by next.
type fakeNotify struct {
	t    *testing.T
	conn *net.UnixConn
	sd   sdNotifier
}

func newFakeNotify(t *testing.T) *fakeNotify {
	t.Helper()
	name := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &fakeNotify{t: t, conn: conn, sd: newSDNotifier(func(k string) string {
		if k == "NOTIFY_SOCKET" {
			return name
		}
		return ""
	})}
}

// next returns the next message as its KEY=VALUE lines, failing the test
// after a minute without one.
func (f *fakeNotify) next() map[string]string {
	f.t.Helper()
	if err := f.conn.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		f.t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := f.conn.Read(buf)
	if err != nil {
		f.t.Fatalf("notify socket: no message: %v", err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(buf[:n]), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			f.t.Fatalf("notify message %q: line %q is not KEY=VALUE", buf[:n], line)
		}
		m[k] = v
	}
	return m
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// A SIGHUP reload tells systemd RELOADING=1 with MONOTONIC_USEC (read on
// CLOCK_MONOTONIC when the reload starts) and then READY=1 with
// STATUS=serving; a part that fails makes the READY=1 carry
// STATUS=reload failed: <part>: <reason> on one line, and the other parts
// are still reloaded.
func TestReloadNotifiesSystemd(t *testing.T) {
	f := newFakeNotify(t)
	var calls []string
	fail := errors.New("open /etc/iapd/iapd.crt: permission denied\n(second line)")
	failing := false
	reloads := &hupReloads{}
	reloads.add("certificate", func() error {
		calls = append(calls, "certificate")
		if failing {
			return fail
		}
		return nil
	})
	reloads.add("providers", func() error { calls = append(calls, "providers"); return nil })

	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan os.Signal, 1)
	done := make(chan struct{})
	go func() { defer close(done); reloadOnHUP(ctx, hup, reloads, f.sd, monotonicNow, discardLog()) }()
	defer func() { cancel(); <-done }()

	before := monotonicNow()
	hup <- syscall.SIGHUP
	m := f.next()
	after := monotonicNow()
	if m["RELOADING"] != "1" {
		t.Fatalf("first message %v, want RELOADING=1", m)
	}
	usec, err := strconv.ParseInt(m["MONOTONIC_USEC"], 10, 64)
	if err != nil || usec < before.Microseconds() || usec > after.Microseconds() {
		t.Fatalf("MONOTONIC_USEC=%q, want CLOCK_MONOTONIC between %d and %d µs", m["MONOTONIC_USEC"], before.Microseconds(), after.Microseconds())
	}
	if m := f.next(); m["READY"] != "1" || m["STATUS"] != "serving" {
		t.Fatalf("second message %v, want READY=1 and STATUS=serving", m)
	}
	if strings.Join(calls, ",") != "certificate,providers" {
		t.Fatalf("reloaded %v", calls)
	}

	failing, calls = true, nil
	hup <- syscall.SIGHUP
	if m := f.next(); m["RELOADING"] != "1" {
		t.Fatalf("first message %v, want RELOADING=1", m)
	}
	m = f.next()
	want := "reload failed: certificate: open /etc/iapd/iapd.crt: permission denied (second line)"
	if m["READY"] != "1" || m["STATUS"] != want {
		t.Fatalf("after a failed reload: %v, want READY=1 and STATUS=%s", m, want)
	}
	if strings.Join(calls, ",") != "certificate,providers" {
		t.Fatalf("a failing part stopped the others: reloaded %v", calls)
	}
}

// statusLine keeps a STATUS= value one line and short.
func TestReloadStatusLine(t *testing.T) {
	if got := statusLine("a\nb\tc  d"); got != "a b c d" {
		t.Fatalf("statusLine = %q", got)
	}
	if got := statusLine(strings.Repeat("x", 500)); len(got) != 200 || !strings.HasSuffix(got, "...") {
		t.Fatalf("statusLine of 500 bytes: %d bytes", len(got))
	}
}

// WATCHDOG_USEC is taken only for this process (WATCHDOG_PID absent or
// equal to its pid) and only when it is a positive count of µs.
func TestWatchdogInterval(t *testing.T) {
	pid := os.Getpid()
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name   string
		getenv func(string) string
		want   time.Duration
	}{
		{"none", env(), 0},
		{"usec", env("WATCHDOG_USEC", "30000000"), 30 * time.Second},
		{"this pid", env("WATCHDOG_USEC", "30000000", "WATCHDOG_PID", strconv.Itoa(pid)), 30 * time.Second},
		{"other pid", env("WATCHDOG_USEC", "30000000", "WATCHDOG_PID", "1"), 0},
		{"zero", env("WATCHDOG_USEC", "0"), 0},
		{"not a number", env("WATCHDOG_USEC", "30s"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := watchdogInterval(tc.getenv, pid); got != tc.want {
				t.Fatalf("watchdogInterval = %v, want %v", got, tc.want)
			}
		})
	}
}

// The watchdog pings at half the interval (never sooner: three pings take
// at least 1.5 intervals), sends none while the probe fails, and starts
// again when it answers; without an interval it returns at once.
func TestWatchdogPings(t *testing.T) {
	f := newFakeNotify(t)
	const interval = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	// The probe answers, answers, fails three times, answers, then hangs
	// (probe 7) until the test ends.
	results := []error{nil, nil, errors.New("wedged"), errors.New("wedged"), errors.New("wedged"), nil}
	probes := make(chan int, 100)
	n := 0
	probe := func(pctx context.Context) error {
		if _, ok := pctx.Deadline(); !ok {
			t.Error("probe without a deadline")
		}
		n++
		probes <- n
		if n <= len(results) {
			return results[n-1]
		}
		<-ctx.Done()
		return ctx.Err()
	}
	done := make(chan struct{})
	start := time.Now()
	go func() { defer close(done); sdWatchdog(ctx, f.sd, interval, probe, discardLog()) }()
	for ping := 1; ping <= 3; ping++ {
		if m := f.next(); m["WATCHDOG"] != "1" || len(m) != 1 {
			t.Fatalf("ping %d: %v, want WATCHDOG=1", ping, m)
		}
	}
	if el := time.Since(start); el < 3*interval/2 {
		t.Fatalf("three pings in %v: faster than every %v", el, interval/2)
	}
	// Once probe 7 has started, every ping of probes 1–6 has been sent
	// (one goroutine): a fourth would already be queued on the socket.
	for timeout := time.After(time.Minute); ; {
		select {
		case i := <-probes:
			if i < 7 {
				continue
			}
		case <-timeout:
			t.Fatal("no seventh probe")
		}
		break
	}
	if err := f.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if k, err := f.conn.Read(make([]byte, 4096)); err == nil {
		t.Fatalf("a ping while the probe failed: 4 pings for 3 answering probes (%d bytes)", k)
	}
	cancel()
	<-done

	returned := make(chan struct{})
	go func() {
		defer close(returned)
		sdWatchdog(context.Background(), f.sd, watchdogInterval(func(string) string { return "" }, os.Getpid()), probe, discardLog())
	}()
	select {
	case <-returned:
	case <-time.After(time.Minute):
		t.Fatal("without WATCHDOG_USEC the watchdog did not return")
	}
}

// opsProbe wants 200 from GET /healthz, reaching a listener on the
// unspecified address through loopback.
func TestWatchdogOpsProbe(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusOK)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(int(status.Load()))
	})
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	probe := opsProbe(ln.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := probe(ctx); err != nil {
		t.Fatalf("probe of a healthy listener: %v", err)
	}
	status.Store(http.StatusServiceUnavailable)
	if err := probe(ctx); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("probe of a 503: %v", err)
	}
	srv.Close()
	if err := probe(ctx); err == nil {
		t.Fatal("probe of a closed listener succeeded")
	}
}
