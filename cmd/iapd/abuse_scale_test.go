package main

import (
	"bufio"
	"context"
	"crypto/sha1" // #nosec G505 -- Odoo 19's hashed token (PROTOCOL §4.7)
	"encoding/hex"
	"encoding/json"
	"fmt"

	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestAbuseScale is issue 21's scale driver: for each ledger size of
// $IAPD_SCALE (comma-separated account counts; default 10000, which CI
// runs), it grows a fresh ledger to that many sms accounts through the
// server (/iap/1/balance on new tokens auto-registers each one, as Odoo
// databases do), restarts iapd on it and prints the curve: Go heap, RSS
// split anonymous/file, start to /readyz, idle CPU and GC cycles over 10 s,
// a /metrics scrape, authorize+capture throughput and p99 from 32 callers,
// credit-page latency (raw and hashed link), verify, backup and export.
// $IAPD_SCALE_BIN measures another build of iapd instead of this tree's
// (the figures before a change); $IAPD_SCALE_PROFILE=PREFIX saves the
// idle server's heap profile as PREFIX-<accounts>.pb.gz. Figures only:
// nothing here is timed.
//
// It asserts what must hold at any size: the hashed credit link of an
// account grown before the restart resolves (no index to wait for), and
// the ledger's metrics count every account grown.
func TestAbuseScale(t *testing.T) {
	sizes := []int{10000}
	if s := os.Getenv("IAPD_SCALE"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 0 {
				t.Fatalf("IAPD_SCALE: %q", s)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		t.Run(strconv.Itoa(n), func(t *testing.T) { scaleRun(t, n) })
	}
}

func scaleRun(t *testing.T, n int) {
	data := t.TempDir() + "/data"
	// The account-creation limits are raised: the ledger is grown from one
	// address on purpose.
	const cfg = "limits:\n  accounts_per_address: 100000000/1h\n  accounts_total: 100000000/1h\nservices:\n  sms:\n    auto_register: true\n    trial_credits: 0\n"
	p := startAbuse(t, abuseOpts{Data: data, Config: cfg, Bin: os.Getenv("IAPD_SCALE_BIN")})
	hc := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}

	// Grow: n new sms accounts from 32 callers; keep a sample of tokens.
	start := time.Now()
	sample := growAccounts(t, hc, p.Public, n, 32)
	grow := time.Since(start)

	// A service with a key for authorize+capture, 1000 funded accounts.
	key := randHex(32)
	if err := p.Admin.call(context.Background(), "POST", "/v1/services", nil,
		map[string]any{"name": "scale", "key": key, "auto_register": true}, nil); err != nil {
		t.Fatal(err)
	}
	payers := make([]string, 1000)
	for i := range payers {
		payers[i] = randHex(16)
		if err := p.Admin.call(context.Background(), "POST", "/v1/account/credit", nil,
			map[string]any{"service": "scale", "token": payers[i], "amount": "1000000"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	p.Stop()

	// Restart on the grown ledger: start to /readyz.
	start = time.Now()
	p = startAbuse(t, abuseOpts{Data: data, Config: cfg, NotReady: true, Bin: os.Getenv("IAPD_SCALE_BIN")})
	for {
		if code, _ := p.Readyz(); code == 200 {
			break
		}
		if time.Since(start) > 10*time.Minute {
			t.Fatalf("not ready after 10 minutes\n%s", p.Stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	ready := time.Since(start)

	// The hashed link of an account grown before the restart resolves.
	tok := sample[0]
	h := sha1.Sum([]byte(tok)) // #nosec G401 -- see import
	hashed := p.Public + "/iap/1/credit?service_name=sms&hashed=1&account_token=" + hex.EncodeToString(h[:])
	if code := httpStatus(t, hc, hashed); n > 0 && code != 200 {
		t.Fatalf("hashed credit link of a grown account: HTTP %d", code)
	}

	// Idle: settle, then 10 s with no traffic.
	time.Sleep(2 * time.Second)
	gc0 := scrapeValue(t, hc, p.Ops, "go_gc_duration_seconds_count")
	cpu0 := p.CPUTime()
	time.Sleep(10 * time.Second)
	idleCPU := p.CPUTime() - cpu0
	gcs := scrapeValue(t, hc, p.Ops, "go_gc_duration_seconds_count") - gc0
	heap := scrapeValue(t, hc, p.Ops, "go_memstats_heap_inuse_bytes")
	mem := p.Memory()
	if prefix := os.Getenv("IAPD_SCALE_PROFILE"); prefix != "" {
		// The idle server's heap profile, for go tool pprof.
		rc, err := p.Admin.stream(context.Background(), "/debug/pprof/heap", url.Values{"gc": {"1"}})
		if err != nil {
			t.Fatalf("heap profile: %v", err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err == nil {
			err = os.WriteFile(fmt.Sprintf("%s-%d.pb.gz", prefix, n), b, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	// A /metrics scrape that reads the ledger's figures (the cache of the
	// previous one has expired after 5 s).
	time.Sleep(6 * time.Second)
	start = time.Now()
	accounts := scrapeValue(t, hc, p.Ops, `iap_accounts{service="sms",state="registered"}`)
	scrape := time.Since(start)
	if int(accounts) != n {
		t.Errorf("iap_accounts{sms,registered} = %v, grew %d", accounts, n)
	}

	// Credit pages: raw and hashed links of random grown accounts.
	var raw, hsh [2]time.Duration
	if n > 0 {
		raw, hsh = pageLatencies(t, hc, p.Public, sample)
	}

	// authorize+capture from 32 callers for 5 s.
	rate, p99, fails := authCapture(hc, p.Public, key, payers, 32, 5*time.Second)
	if fails > 0 {
		t.Errorf("%d authorize+capture failures", fails)
	}

	timed := func(path string) time.Duration {
		// No deadline on the answer's header: verify answers once done.
		start := time.Now()
		req, err := http.NewRequest("GET", p.Ops+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+p.Token)
		resp, err := (&http.Client{}).Do(req)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: HTTP %d %v", path, resp.StatusCode, err)
		}
		return time.Since(start)
	}
	verify, backup, export := timed("/v1/verify"), timed("/v1/backup"), timed("/v1/export")
	heapAfter := scrapeValue(t, hc, p.Ops, "go_memstats_heap_inuse_bytes")
	p.Stop()

	abuseFigure(t, "accounts %d | grow %.1fs (%.0f/s) | heap in use idle %.1f MB, after load %.1f MB | %s | start to /readyz %v | idle CPU over 10 s %v (%.2f%% of a core), %v GCs | /metrics scrape %v | authorize+capture %.0f/s p99 %v | credit page p50/p99 raw %v/%v hashed %v/%v | verify %v backup %v export %v",
		n, grow.Seconds(), float64(n)/grow.Seconds(), heap/1e6, heapAfter/1e6, mem, ready.Round(time.Millisecond),
		idleCPU, 100*idleCPU.Seconds()/10, gcs, scrape.Round(time.Millisecond), rate, p99.Round(time.Microsecond),
		raw[0].Round(time.Microsecond), raw[1].Round(time.Microsecond), hsh[0].Round(time.Microsecond), hsh[1].Round(time.Microsecond),
		verify.Round(time.Millisecond), backup.Round(time.Millisecond), export.Round(time.Millisecond))
}

// growAccounts creates n sms accounts with /iap/1/balance on new tokens
// from conns callers and returns up to 1000 of the tokens.
func growAccounts(t *testing.T, hc *http.Client, base string, n, conns int) []string {
	var next atomic.Int64
	var mu sync.Mutex
	var sample []string
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				tok := randHex(16)
				body := `{"jsonrpc":"2.0","method":"call","id":1,"params":{"service_name":"sms","account_token":"` + tok + `"}}`
				resp, err := hc.Post(base+"/iap/1/balance", "application/json", strings.NewReader(body))
				if err != nil {
					failed.Add(1)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || strings.Contains(string(b), `"error"`) {
					if failed.Add(1) == 1 {
						t.Errorf("balance: HTTP %d %.200s", resp.StatusCode, b)
					}
					continue
				}
				mu.Lock()
				if len(sample) < 1000 {
					sample = append(sample, tok)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d balance calls failed", f, n)
	}
	if len(sample) == 0 {
		sample = append(sample, "0")
	}
	return sample
}

func httpStatus(t *testing.T, hc *http.Client, u string) int {
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// scrapeValue reads one series' value from /metrics (0 if absent).
func scrapeValue(t *testing.T, hc *http.Client, ops, series string) float64 {
	resp, err := hc.Get(ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	v := 0.0
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, _ = strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return v
}

// pageLatencies returns p50 and p99 of 200 credit pages by raw link and
// 200 by hashed link, one at a time.
func pageLatencies(t *testing.T, hc *http.Client, base string, sample []string) (raw, hashed [2]time.Duration) {
	measure := func(link func(tok string) string) [2]time.Duration {
		var ds []time.Duration
		for i := range 200 {
			tok := sample[(i*7919)%len(sample)]
			start := time.Now()
			if code := httpStatus(t, hc, link(tok)); code != 200 {
				t.Fatalf("credit page: HTTP %d", code)
			}
			ds = append(ds, time.Since(start))
		}
		slices.Sort(ds)
		return [2]time.Duration{ds[len(ds)/2], ds[len(ds)*99/100]}
	}
	raw = measure(func(tok string) string {
		return base + "/iap/1/credit?service_name=sms&account_token=" + url.QueryEscape(tok)
	})
	hashed = measure(func(tok string) string {
		h := sha1.Sum([]byte(tok)) // #nosec G401 -- see import
		return base + "/iap/1/credit?service_name=sms&hashed=1&account_token=" + hex.EncodeToString(h[:])
	})
	return raw, hashed
}

// authCapture runs authorize then capture from conns callers for d and
// returns pairs per second, the p99 of a pair and the failures.
func authCapture(hc *http.Client, base, key string, payers []string, conns int, d time.Duration) (float64, time.Duration, int) {
	call := func(path string, params map[string]any) (json.RawMessage, bool) {
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": 1, "params": params})
		resp, err := hc.Post(base+path, "application/json", strings.NewReader(string(b)))
		if err != nil {
			return nil, false
		}
		defer resp.Body.Close()
		var env struct {
			Result json.RawMessage `json:"result"`
			Error  json.RawMessage `json:"error"`
		}
		if json.NewDecoder(resp.Body).Decode(&env) != nil || env.Error != nil {
			return nil, false
		}
		return env.Result, true
	}
	var mu sync.Mutex
	var lat []time.Duration
	fails := 0
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			bad := 0
			for i := 0; time.Now().Before(deadline); i++ {
				tok := payers[(c*31+i)%len(payers)]
				start := time.Now()
				res, ok := call("/iap/1/authorize", map[string]any{"account_token": tok, "key": key, "credit": 1, "description": "scale", "ttl": 60})
				var txn string
				if ok && json.Unmarshal(res, &txn) == nil {
					_, ok = call("/iap/1/capture", map[string]any{"token": txn, "key": key, "credit_to_capture": 1})
				} else {
					ok = false
				}
				if !ok {
					bad++
					continue
				}
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			lat = append(lat, mine...)
			fails += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(lat) == 0 {
		return 0, 0, fails
	}
	slices.Sort(lat)
	return float64(len(lat)) / d.Seconds(), lat[len(lat)*99/100], fails
}
