package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"
)

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("iapload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		targetURL = fs.String("url", "http://127.0.0.1:8070", "iapd public URL (loopback)")
		ops       = fs.String("ops", "127.0.0.1:9070", "iapd ops address, for the admin API (setup)")
		mixFlag   = fs.String("mix", "authcap=8,balance=1,authcancel=1", "weighted ops: authcap, authcancel, balance, sms")
		conns     = fs.Int("c", 64, "concurrent connections")
		dur       = fs.Duration("d", 10*time.Second, "duration of each measured run")
		warmup    = fs.Duration("warmup", 2*time.Second, "unmeasured warm-up before each run")
		newConn   = fs.Bool("newconn", false, "a new TCP connection per request (as Odoo's iap_jsonrpc calls)")
		baseline  = fs.Bool("baseline", false, "also measure, in the same run, a native fasthttp JSON-RPC echo and the same echo answering only once a record is durable (group fsync in -syncdir), and print the ratios")
		syncDir   = fs.String("syncdir", os.TempDir(), "directory of the durable echo's file, on the disk of iapd's data directory")
		accounts  = fs.Int("accounts", 1000, "number of accounts to spread the load over")
		credit    = fs.String("credit", "1000000", "credits given to each account at setup")
		key       = fs.String("key", "", "service key to use (skips service creation); default: create service iapload")
		pid       = fs.Int("pid", 0, "iapd's process id, to report its RSS")
		growN     = fs.Int("grow", 0, "instead of a load run: create this many new accounts of -grow-service through /iap/1/balance on fresh tokens (as new Odoo databases do), from -c connections, and exit; iapd's account-creation limits must allow it")
		growSvc   = fs.String("grow-service", "sms", "service of the accounts -grow creates (it must auto-register)")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	m, err := parseMix(*mixFlag)
	if err != nil {
		return err
	}
	u, err := url.Parse(*targetURL)
	if err != nil || u.Host == "" || u.Scheme != "http" {
		return fmt.Errorf("-url %q: want http://host:port", *targetURL)
	}
	if *conns <= 0 || *accounts <= 0 || *dur <= 0 || *growN < 0 {
		return errors.New("-c, -accounts and -d must be positive, -grow not negative")
	}

	var out bytes.Buffer
	flush := func() { stdout.Write(out.Bytes()); out.Reset() }
	if *growN > 0 {
		fmt.Fprintf(&out, "iapload: growing %d accounts of service %s from %d connections\n", *growN, *growSvc, *conns)
		flush()
		return grow(ctx, &out, flush, &target{addr: u.Host}, *growSvc, *growN, *conns)
	}
	mode := "keep-alive"
	if *newConn {
		mode = "new connection per request"
	}
	fmt.Fprintf(&out, "iapload: %d connections, %s, %s per run, mix %s\n", *conns, mode, *dur, *mixFlag)
	flush()

	var base, durable *result
	if *baseline {
		if base, err = measureEcho(ctx, &out, "baseline", nil, *newConn, m, *conns, *warmup, *dur); err != nil {
			return err
		}
		flush()
		gs, err := startGroupSync(*syncDir)
		if err != nil {
			return fmt.Errorf("durable echo: %w", err)
		}
		durable, err = measureEcho(ctx, &out, "durable", gs, *newConn, m, *conns, *warmup, *dur)
		gs.close()
		if err != nil {
			return err
		}
		flush()
	}

	admin := &adminClient{base: "http://" + *ops, token: getenv("IAPD_ADMIN_TOKEN")}
	t := &target{addr: u.Host, newConn: *newConn, service: "iapload", key: *key}
	if t.key == "" {
		if t.key, err = admin.ensureService(ctx, t.service); err != nil {
			return fmt.Errorf("setup: %w", err)
		}
	}
	run := make([]byte, 4)
	rand.Read(run)
	prefix := hex.EncodeToString(run)
	sms := m.has(opSMS)
	for i := 0; i < *accounts; i++ {
		tok := fmt.Sprintf("%s%024x", prefix, i)
		if err := admin.credit(ctx, t.service, tok, *credit, "iapload-"+tok); err != nil {
			return fmt.Errorf("setup: crediting account %d: %w", i, err)
		}
		// SMS are billed to the same token's account of service sms
		// (one of iapd's configured services; sandbox provider by default).
		if sms {
			if err := admin.credit(ctx, "sms", tok, *credit, "iapload-"+tok); err != nil {
				return fmt.Errorf("setup: crediting sms account %d: %w", i, err)
			}
		}
		t.tokens = append(t.tokens, tok)
	}
	drive(ctx, "warmup", t, m, *conns, *warmup)
	c0, _ := cpuTime(0)
	s0, serr := cpuTime(*pid)
	res := drive(ctx, "iapd", t, m, *conns, *dur)
	c1, _ := cpuTime(0)
	s1, _ := cpuTime(*pid)
	res.report(&out)
	if *pid > 0 && serr == nil {
		fmt.Fprintf(&out, "cpu       client %.1f µs/req, server %.1f µs/req\n", perReq(c1-c0, res.requests), perReq(s1-s0, res.requests))
	} else {
		fmt.Fprintf(&out, "cpu       client %.1f µs/req\n", perReq(c1-c0, res.requests))
	}
	if base != nil {
		fmt.Fprintf(&out, "ratio     iapd / baseline = %.2f (req/s)\n", res.rps()/base.rps())
		fmt.Fprintf(&out, "ratio     durable / baseline = %.2f, iapd / durable = %.2f (req/s)\n", durable.rps()/base.rps(), res.rps()/durable.rps())
	}
	if *pid > 0 {
		if m, err := readMemStatus(*pid); err == nil {
			fmt.Fprintf(&out, "server    RSS %.1f MB (peak %.1f MB): anonymous %.1f MB, file %.1f MB\n",
				mb(m.RSS), mb(m.Peak), mb(m.Anon), mb(m.File))
		} else {
			fmt.Fprintf(&out, "server    RSS unavailable: %v\n", err)
		}
	}
	flush()
	return ctx.Err()
}

// measureEcho runs the load against an echo served inside iapload (gs:
// the durable echo) and reports it as name.
func measureEcho(ctx context.Context, out *bytes.Buffer, name string, gs *groupSync, newConn bool, m mix, conns int, warmup, dur time.Duration) (*result, error) {
	addr, stop, err := startBaseline(gs)
	if err != nil {
		return nil, err
	}
	bt := &target{addr: addr, newConn: newConn, echoOnly: true}
	drive(ctx, "warmup", bt, m, conns, warmup)
	c0, _ := cpuTime(0)
	res := drive(ctx, name, bt, m, conns, dur)
	c1, _ := cpuTime(0)
	stop()
	res.report(out)
	// The echo runs inside iapload: its CPU is the client's and the
	// echo's together.
	fmt.Fprintf(out, "cpu       client+echo %.1f µs/req\n", perReq(c1-c0, res.requests))
	return res, nil
}

// perReq is CPU time per request in microseconds.
func perReq(cpu time.Duration, requests int64) float64 {
	if requests == 0 {
		return 0
	}
	return float64(cpu.Microseconds()) / float64(requests)
}

// mb is n bytes in MiB, for the report.
func mb(n int64) float64 { return float64(n) / (1 << 20) }
