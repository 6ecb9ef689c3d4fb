package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// hupReloads is what SIGHUP (systemctl reload iapd) reads again: the TLS
// certificate, the upstream audit log, the providers' files. Each part
// registers a function before serving starts; one loop (reloadOnHUP) runs
// them all per SIGHUP, so that systemd hears one RELOADING=1 … READY=1
// around the whole reload. A part that fails keeps what it had.
type hupReloads struct {
	mu    sync.Mutex
	parts []hupReload
}

type hupReload struct {
	name string
	f    func() error
}

// add registers f, run on each SIGHUP under name (in errors and logs).
func (r *hupReloads) add(name string, f func() error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.parts = append(r.parts, hupReload{name, f})
}

// run calls every registered function in order, each failure logged, and
// returns the failures joined (nil when all succeeded).
func (r *hupReloads) run(log *slog.Logger) error {
	r.mu.Lock()
	parts := append([]hupReload(nil), r.parts...)
	r.mu.Unlock()
	var errs []error
	for _, p := range parts {
		if err := p.f(); err != nil {
			log.Error("reload on SIGHUP failed: the previous one is still served", "part", p.name, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
		}
	}
	return errors.Join(errs...)
}

// reloadOnHUP runs reloads on each SIGHUP until ctx is done, telling
// systemd (Type=notify, systemd ≥ 253 semantics; older ones ignore it)
// RELOADING=1 with MONOTONIC_USEC when a reload starts and READY=1 when it
// ends, with STATUS=reload failed: <reason> when a part failed (the
// reasons name files and parts, never a secret). mono reads
// CLOCK_MONOTONIC.
// hup is from listenHUP, which it stops when ctx is done.
func reloadOnHUP(ctx context.Context, hup chan os.Signal, reloads *hupReloads, sd sdNotifier, mono func() time.Duration, log *slog.Logger) {
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if err := sd.notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d\nSTATUS=reloading", mono().Microseconds())); err != nil {
			log.Warn("telling systemd iapd is reloading", "err", err)
		}
		state := "READY=1\nSTATUS=serving"
		if err := reloads.run(log); err != nil {
			state = "READY=1\nSTATUS=" + statusLine("reload failed: "+err.Error())
		} else {
			log.Info("reloaded on SIGHUP")
		}
		if err := sd.notify(state); err != nil {
			log.Warn("telling systemd the reload ended", "err", err)
		}
	}
}

// listenHUP starts listening for SIGHUP (from then on a SIGHUP no longer
// ends the process); reloadOnHUP handles what arrives.
func listenHUP() chan os.Signal {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup
}

// statusLine makes s one STATUS= value: a single line (a newline would
// start another assignment) of at most 200 bytes.
func statusLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:197] + "..."
	}
	return s
}

// watchdogInterval is how often systemd expects WATCHDOG=1
// ($WATCHDOG_USEC of WatchdogSec=), 0 when it expects none: no
// $WATCHDOG_USEC, or $WATCHDOG_PID set for another process.
func watchdogInterval(getenv func(string) string, pid int) time.Duration {
	usec, err := strconv.ParseInt(getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if p := getenv("WATCHDOG_PID"); p != "" && p != strconv.Itoa(pid) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond
}

// sdWatchdog sends WATCHDOG=1 every interval/2 until ctx is done, each
// time only if probe succeeds within interval/4 (so two pings are never
// more than 3/4 interval apart while it answers): a wedged process stops
// pinging and systemd restarts it. The probe is liveness, not readiness
// (GET /healthz on the ops listener, opsProbe): a process that is
// degraded but serving (disk below its reserve, PostgreSQL down) answers
// /healthz and is correctly refusing writes; restarting it would not help,
// so it keeps pinging.
func sdWatchdog(ctx context.Context, sd sdNotifier, interval time.Duration, probe func(context.Context) error, log *slog.Logger) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, interval/4)
		err := probe(pctx)
		cancel()
		if err != nil {
			if !failing {
				log.Error("watchdog: liveness probe failed; systemd is not told WATCHDOG=1", "err", err)
			}
			failing = true
			continue
		}
		if failing {
			log.Info("watchdog: liveness probe answers again")
		}
		failing = false
		if err := sd.notify("WATCHDOG=1"); err != nil {
			log.Warn("watchdog ping to systemd", "err", err)
		}
	}
}

// opsProbe returns a probe that GETs /healthz on the ops listener at addr
// (an unspecified IP is reached on loopback) and wants 200: the accept
// loop and the handlers answer.
func opsProbe(addr net.Addr) func(context.Context) error {
	network, target := addr.Network(), addr.String()
	if ta, ok := addr.(*net.TCPAddr); ok && (ta.IP == nil || ta.IP.IsUnspecified()) {
		ip := "127.0.0.1"
		if ta.IP != nil && ta.IP.To4() == nil {
			ip = "::1"
		}
		target = net.JoinHostPort(ip, strconv.Itoa(ta.Port))
	}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, target)
		},
		DisableKeepAlives: true,
	}}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://iapd/healthz", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /healthz: %s", resp.Status)
		}
		return nil
	}
}
