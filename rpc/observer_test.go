package rpc

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/storage"
)

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu   sync.Mutex
	seen []observed
}

type observed struct {
	route, outcome string
	d              time.Duration
}

func (r *recorder) ObserveRequest(route, outcome string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, observed{route, outcome, d})
}

// take returns what was observed since the last take.
func (r *recorder) take() []observed {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.seen
	r.seen = nil
	return s
}

func newObservedServer(t *testing.T, l storage.Ledger) (*Server, *recorder) {
	t.Helper()
	rec := &recorder{}
	s, err := New(Config{Ledger: l, PublicURL: testPublicURL, Logger: testLogger(t), Observer: rec})
	if err != nil {
		t.Fatal(err)
	}
	return s, rec
}

// Every kind of answer the router gives is reported once, with the route
// of the table (or "unknown") and the outcome the answer stands for.
func TestObserverOutcomes(t *testing.T) {
	l := newMemLedger()
	setupServices(t, l)
	recharge(t, l, stubService, "tok-rich", "10")
	s, rec := newObservedServer(t, l)
	s.HandleGET("/iap/page", func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("a page") })
	s.HandleGET("/iap/broken-page", func(ctx *fasthttp.RequestCtx) { ctx.Error("gone", fasthttp.StatusGone) })
	s.HandleGET("/iap/panicking-page", func(ctx *fasthttp.RequestCtx) { panic("boom") })
	addr := startServer(t, s)

	post := func(path string, params any) func() {
		return func() { call(t, addr, path, params) }
	}
	raw := func(method, path string, body []byte) func() {
		return func() { rawRequest(t, addr, method, path, odooHeaders(len(body)), body) }
	}
	authorize := func(tok, credit string) map[string]any {
		return map[string]any{"account_token": tok, "key": stubKey, "credit": json.Number(credit), "ttl": 1}
	}
	for _, tc := range []struct {
		name           string
		do             func()
		route, outcome string
	}{
		{"balance", post("/iap/1/balance", map[string]any{"account_token": "tok-rich", "service_name": "stub"}), "/iap/1/balance", "ok"},
		{"path with slashes", post("//iap/1/balance/", map[string]any{"account_token": "tok-rich", "service_name": "stub"}), "/iap/1/balance", "ok"},
		{"unknown service", post("/iap/1/balance", map[string]any{"account_token": "tok-rich", "service_name": "nope"}), "/iap/1/balance", "not_found"},
		{"authorize", post("/iap/1/authorize", authorize("tok-rich", "1")), "/iap/1/authorize", "ok"},
		{"insufficient credit", post("/iap/1/authorize", authorize("tok-rich", "1000")), "/iap/1/authorize", "insufficient_credit"},
		{"wrong key", post("/iap/1/authorize", map[string]any{"account_token": "tok-rich", "key": "wrong-key", "credit": 1}), "/iap/1/authorize", "unauthorized"},
		{"disabled token", post("/iap/1/authorize", authorize("tok-rich+disabled", "1")), "/iap/1/authorize", "forbidden"},
		{"bad param", post("/iap/1/authorize", authorize("tok-rich", "0.00001")), "/iap/1/authorize", "invalid"},
		{"capture unknown", post("/iap/1/capture", map[string]any{"token": strings.Repeat("ab", 16), "key": stubKey}), "/iap/1/capture", "not_found"},
		{"malformed JSON", raw("POST", "/iap/1/balance", []byte(`{"jsonrpc":`)), "/iap/1/balance", "invalid"},
		{"params of the wrong type", raw("POST", "/iap/1/balance", []byte(`{"jsonrpc":"2.0","method":"call","params":[1]}`)), "/iap/1/balance", "invalid"},
		{"body over the route's limit", raw("POST", "/iap/1/cancel", []byte(`{"x":"`+strings.Repeat("a", 70<<10)+`"}`)), "/iap/1/cancel", "invalid"},
		{"unknown route", post("/iap/1/nope", map[string]any{}), RouteUnknown, "not_found"},
		{"client-chosen path", raw("POST", "/made/up/"+strings.Repeat("x", 50), nil), RouteUnknown, "not_found"},
		{"GET unknown", raw("GET", "/nothing-here", nil), RouteUnknown, "http_error"},
		{"GET on an RPC route", raw("GET", "/iap/1/balance", nil), "/iap/1/balance", "http_error"},
		{"page", raw("GET", "/iap/page", nil), "/iap/page", "ok"},
		{"POST on a page", raw("POST", "/iap/page", nil), "/iap/page", "http_error"},
		{"page answering 410", raw("GET", "/iap/broken-page", nil), "/iap/broken-page", "http_error"},
		{"page panicking", raw("GET", "/iap/panicking-page", nil), "/iap/panicking-page", "internal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec.take()
			tc.do()
			got := rec.take()
			if len(got) != 1 || got[0].route != tc.route || got[0].outcome != tc.outcome {
				t.Fatalf("observed %+v, want one (%s, %s)", got, tc.route, tc.outcome)
			}
			if got[0].d <= 0 || got[0].d > 10*time.Second {
				t.Errorf("duration %v", got[0].d)
			}
			if !slices.Contains(Outcomes(), got[0].outcome) {
				t.Errorf("outcome %q not in Outcomes()", got[0].outcome)
			}
		})
	}
}

// A capture of a hold, then the same capture again (idempotent, ok), a
// cancel of the captured hold (conflict), and the ledger failing
// (unavailable): kinds decided deep in the ledger reach the outcome.
func TestObserverLedgerKinds(t *testing.T) {
	l := newMemLedger()
	setupServices(t, l)
	recharge(t, l, stubService, "tok", "10")
	s, rec := newObservedServer(t, l)
	addr := startServer(t, s)
	env := call(t, addr, "/iap/1/authorize", map[string]any{"account_token": "tok", "key": stubKey, "credit": 2, "ttl": 1})
	txn, _ := env["result"].(string)
	call(t, addr, "/iap/1/capture", map[string]any{"token": txn, "key": stubKey})
	call(t, addr, "/iap/1/capture", map[string]any{"token": txn, "key": stubKey})
	call(t, addr, "/iap/1/cancel", map[string]any{"token": txn, "key": stubKey})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	call(t, addr, "/iap/1/balance", map[string]any{"account_token": "tok", "service_name": "stub"})
	var got []string
	for _, o := range rec.take() {
		got = append(got, o.route+" "+o.outcome)
	}
	want := []string{
		"/iap/1/authorize ok", "/iap/1/capture ok", "/iap/1/capture ok",
		"/iap/1/cancel conflict", "/iap/1/balance unavailable",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("observed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// An account route never answers InsufficientCreditError (the codec turns
// it into an internal error); the outcome says what was answered.
func TestCallOutcomeMapsLikeTheCodec(t *testing.T) {
	var ctx fasthttp.RequestCtx
	account := &Served{Route: routes[0]}
	transaction := &Served{Route: Route{Path: "/iap/1/authorize"}, creditErrors: true}
	if got := callOutcome(&ctx, transaction); got != "invalid" {
		t.Errorf("no method ran: %q", got)
	}
	ctx.SetUserValue(callResultKey{}, callResult(0))
	if got := callOutcome(&ctx, transaction); got != "ok" {
		t.Errorf("success: %q", got)
	}
	ctx.SetUserValue(callResultKey{}, 1+callResult(storage.InsufficientCredit))
	if got := callOutcome(&ctx, transaction); got != "insufficient_credit" {
		t.Errorf("transaction route: %q", got)
	}
	if got := callOutcome(&ctx, account); got != "internal" {
		t.Errorf("account route: %q", got)
	}
	ctx.SetUserValue(callResultKey{}, callResult(200))
	if got := callOutcome(&ctx, transaction); got != "other" {
		t.Errorf("unknown kind: %q", got)
	}
}

// Outcomes lists each outcome once, all snake_case.
func TestOutcomesList(t *testing.T) {
	seen := map[string]bool{}
	for _, o := range Outcomes() {
		if seen[o] || o == "" || strings.ToLower(o) != o || strings.ContainsAny(o, " -") {
			t.Errorf("bad or repeated outcome %q", o)
		}
		seen[o] = true
	}
	if len(seen) != 2+int(storage.Internal)+1 {
		t.Errorf("%d outcomes: %v", len(seen), Outcomes())
	}
}

// Many clients at once: every request is observed exactly once, with its
// own outcome (the per-request note does not leak between requests on a
// connection or across the pool).
func TestObserverConcurrent(t *testing.T) {
	l := newMemLedger()
	setupServices(t, l)
	recharge(t, l, stubService, "tok", "1000000")
	s, rec := newObservedServer(t, l)
	c := inMemoryServer(t, s.Front(s.Handler()))
	const workers, rounds = 8, 40
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				credit := 1
				if (w+i)%2 == 1 {
					credit = 1 << 30 // insufficient
				}
				postVia(t, c, "/iap/1/authorize", rpcBody(fmt.Sprint(i), map[string]any{"account_token": "tok", "key": stubKey, "credit": credit, "ttl": 1}))
				postVia(t, c, "/iap/1/balance", []byte(`{"jsonrpc":`)) // invalid, no method ran
			}
		}()
	}
	wg.Wait()
	count := map[string]int{}
	for _, o := range rec.take() {
		count[o.route+" "+o.outcome]++
	}
	want := map[string]int{
		"/iap/1/authorize ok":                  workers * rounds / 2,
		"/iap/1/authorize insufficient_credit": workers * rounds / 2,
		"/iap/1/balance invalid":               workers * rounds,
	}
	if fmt.Sprint(count) != fmt.Sprint(want) {
		t.Fatalf("observed %v, want %v", count, want)
	}
}
