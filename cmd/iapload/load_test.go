package main

import (
	"context"
	"testing"
	"time"
)

func TestParseMix(t *testing.T) {
	m, err := parseMix("authcap=8, balance=1,authcancel=0")
	if err != nil {
		t.Fatal(err)
	}
	if m.total != 9 || len(m.ops) != 2 || m.ops[0] != opAuthCapture || m.ops[1] != opBalance {
		t.Fatalf("parseMix = %+v", m)
	}
	for _, bad := range []string{"", "authcap=0", "bogus=1", "balance=-1", "balance=x"} {
		if _, err := parseMix(bad); err == nil {
			t.Errorf("parseMix(%q): want an error", bad)
		}
	}
}

func TestPercentile(t *testing.T) {
	r := &result{}
	for i := 1; i <= 1000; i++ {
		r.latencies = append(r.latencies, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {0.999, 999 * time.Millisecond}, {1, time.Second}} {
		if got := r.percentile(c.p); got != c.want {
			t.Errorf("percentile(%v) = %v, want %v", c.p, got, c.want)
		}
	}
}

// The baseline echo answers the client's JSON-RPC calls, in both client modes.
func TestBaselineBothModes(t *testing.T) {
	addr, stop, err := startBaseline()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	m, _ := parseMix("balance=1")
	for _, newConn := range []bool{false, true} {
		res := drive(context.Background(), "baseline", &target{addr: addr, echoOnly: true, newConn: newConn}, m, 4, 200*time.Millisecond)
		if res.requests == 0 || res.ops != res.requests || len(res.errors) != 0 {
			t.Fatalf("newConn=%v: requests %d ops %d errors %v", newConn, res.requests, res.ops, res.errors)
		}
		if res.percentile(0.5) <= 0 {
			t.Fatalf("no latency recorded")
		}
	}
}
