package main

import (
	"context"
	"os"
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

// The baseline echo answers the client's JSON-RPC calls, in both client
// modes; so does the durable echo, which answers only once each request's
// record is in its file (and removes the file when closed).
func TestBaselineBothModes(t *testing.T) {
	for _, durable := range []bool{false, true} {
		var gs *groupSync
		dir := t.TempDir()
		if durable {
			var err error
			if gs, err = startGroupSync(dir); err != nil {
				t.Fatal(err)
			}
		}
		addr, stop, err := startBaseline(gs)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := parseMix("balance=1")
		var requests int64
		for _, newConn := range []bool{false, true} {
			res := drive(context.Background(), "baseline", &target{addr: addr, echoOnly: true, newConn: newConn}, m, 4, 200*time.Millisecond)
			if res.requests == 0 || res.ops != res.requests || len(res.errors) != 0 {
				t.Fatalf("durable=%v newConn=%v: requests %d ops %d errors %v", durable, newConn, res.requests, res.ops, res.errors)
			}
			if res.percentile(0.5) <= 0 {
				t.Fatalf("no latency recorded")
			}
			requests += res.requests
		}
		stop()
		if !durable {
			continue
		}
		// Every answered request has its record in the file (a request
		// the client gave up on may have one too).
		st, err := gs.f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		if st.Size()%durableRecord != 0 || st.Size()/durableRecord < requests {
			t.Errorf("durable echo file holds %d bytes for %d answered requests of %d bytes", st.Size(), requests, durableRecord)
		}
		gs.close()
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("durable echo left %d files in %s", len(ents), dir)
		}
	}
}

// readEnvelope: the fast path and encoding/json agree on the answers iapd
// gives, and the unusual ones go through encoding/json.
func TestReadEnvelope(t *testing.T) {
	for _, c := range []struct {
		body, result, kind string
	}{
		{`{"jsonrpc": "2.0", "id": "x", "result": "0123abcd"}`, `"0123abcd"`, ""},
		{`{"jsonrpc":"2.0","id":1,"result":true}`, `true`, ""},
		{`{"jsonrpc":"2.0","id":1,"result":{"credit":1.5,"x":[1,2]}}`, `{"credit":1.5,"x":[1,2]}`, ""},
		{`{"jsonrpc":"2.0","id":1,"result":"a\"b"}`, `"a\"b"`, ""},
		{`{"result":"last","jsonrpc":"2.0","id":1}`, `"last"`, ""},
		{`{"jsonrpc":"2.0","id":1,"error":{"code":200,"message":"x","data":{"name":"odoo.addons.iap.tools.iap_tools.InsufficientCreditError"}}}`, "", "rpc_InsufficientCreditError"},
		{`{"jsonrpc":"2.0","id":1,"result":`, "", "bad_json"},
	} {
		res, kind := readEnvelope([]byte(c.body))
		if kind != c.kind || string(res) != c.result {
			t.Errorf("readEnvelope(%s) = %s, %q; want %s, %q", c.body, res, kind, c.result, c.kind)
		}
	}
}
