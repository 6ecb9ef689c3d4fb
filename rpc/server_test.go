package rpc

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/rpc/rpctest"
	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

func TestNewValidatesConfig(t *testing.T) {
	l := newMemLedger()
	for _, c := range []Config{
		{PublicURL: testPublicURL},
		{Ledger: l},
		{Ledger: l, PublicURL: "iap.example.org"},
		{Ledger: l, PublicURL: "ftp://iap.example.org"},
		{Ledger: l, PublicURL: testPublicURL, MaxBodyBytes: -1},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
	s, err := New(Config{Ledger: l, PublicURL: "http://127.0.0.1:8069//", MaxBodyBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if s.creditURL != "http://127.0.0.1:8069/iap/1/credit" {
		t.Errorf("credit URL %s", s.creditURL)
	}
	for _, rt := range s.routes {
		if rt.maxBody > 1000 {
			t.Errorf("%s: limit %d over Config.MaxBodyBytes", rt.Path, rt.maxBody)
		}
	}
	if len(Routes()) != len(s.routes) {
		t.Error("Routes() and the server disagree")
	}
}

// A hold past its ttl cannot be captured (UserError) and cancelling it is
// harmless (PROTOCOL §5.1 ttl; storage.Ledger.Capture/Cancel).
func TestCaptureAfterExpiry(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	l, err := badger.Open(badger.Options{Dir: t.TempDir(), Now: func() time.Time { return time.Unix(0, now.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	setupServices(t, l)
	recharge(t, l, stubService, badTok, "10")
	addr := startServer(t, newTestServer(t, l))

	p := validParams("/iap/1/authorize")
	p["ttl"] = 1
	txn := call(t, addr, "/iap/1/authorize", p)["result"]
	now.Add(int64(2 * time.Hour))
	expectError(t, call(t, addr, "/iap/1/capture", map[string]any{"token": txn, "key": stubKey}), nameUserError, "cannot be captured")
	if env := call(t, addr, "/iap/1/cancel", map[string]any{"token": txn, "key": stubKey}); env["result"] != true {
		t.Errorf("cancel after expiry: %v", env)
	}
	if env := call(t, addr, "/iap/1/balance", map[string]any{"account_token": badTok, "service_name": "stub"}); env["result"].(interface{ String() string }).String() != "10" {
		t.Errorf("balance after expiry: %v", env["result"])
	}
}

// lockedBuffer is a log sink for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// No account token, service key or transaction token ever reaches the
// logs or an error message, even at debug level.
func TestNoSecretsInLogsOrMessages(t *testing.T) {
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l, err := badger.Open(badger.Options{Dir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	setupServices(t, l)
	s, err := New(Config{Ledger: l, PublicURL: testPublicURL, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	addr := startServer(t, s)

	secrets := []string{stubKey, "wrong-secret-key"}
	var answers bytes.Buffer
	for _, r := range rpctest.Load(t, "odoo18", func(r *rpctest.Request) bool { return isRoute(r.Path) }) {
		p := r.Params(t)
		for _, k := range []string{"account_token", "token"} {
			if s, ok := p[k].(string); ok {
				secrets = append(secrets, strings.Split(s, "+")[0])
			}
		}
		resp := rawRequest(t, addr, r.Method, r.Path, r.Headers, r.Wire(t))
		// get-accounts-information is keyed by the tokens sent (§4.4):
		// only error messages must not hold them.
		answers.WriteString(errorMessage(mustEnvelope(t, resp)))
	}
	// Errors of every kind, carrying secrets in their params.
	for _, params := range []map[string]any{
		{"account_token": badTok, "credit": 1, "key": "wrong-secret-key"},
		{"account_token": badTok + "+disabled", "credit": 1, "key": stubKey},
		{"account_token": badTok, "credit": "x", "key": stubKey},
		{"account_token": badTok, "credit": 1e9, "key": stubKey},
	} {
		env := call(t, addr, "/iap/1/authorize", params)
		answers.WriteString(errorMessage(env))
	}
	answers.WriteString(errorMessage(call(t, addr, "/iap/1/capture", map[string]any{"token": "fedcba9876543210fedcba9876543210", "key": stubKey})))
	secrets = append(secrets, badTok, "fedcba9876543210fedcba9876543210")

	out := logs.String()
	if !strings.Contains(out, "level=DEBUG") {
		t.Fatal("nothing was logged: the test tests nothing")
	}
	for _, sec := range secrets {
		if sec == "" {
			continue
		}
		if strings.Contains(out, sec) {
			t.Errorf("a secret (%s…) is in the logs", sec[:4])
		}
		if strings.Contains(answers.String(), sec) {
			t.Errorf("a secret (%s…) is in an answer", sec[:4])
		}
	}
}

// panicLedger panics on every call.
type panicLedger struct{ storage.Ledger }

func (panicLedger) Account(context.Context, storage.ServiceName, storage.AccountToken, storage.FirstSight) (storage.Account, error) {
	panic("boom")
}

// A panic in a handler is answered (JSON-RPC error on POST, 500 on GET)
// and the server keeps serving.
func TestPanicRecovered(t *testing.T) {
	s := newTestServer(t, panicLedger{newMemLedger()})
	s.HandleGET("/boom", func(*fasthttp.RequestCtx) { panic("boom") })
	addr := startServer(t, s)
	for range 3 {
		env := call(t, addr, "/iap/1/balance", map[string]any{"account_token": badTok, "service_name": "sms"})
		expectError(t, env, nameUserError, "internal error")
		if r := rawRequest(t, addr, "GET", "/boom", nil, nil); r.Status != http.StatusInternalServerError {
			t.Errorf("GET panic: HTTP %d", r.Status)
		}
	}
}

// A ledger that cannot serve gives a generic message (the cause is
// logged, not shown).
func TestLedgerUnavailable(t *testing.T) {
	l := testLedger(t)
	setupServices(t, l)
	addr := startServer(t, newTestServer(t, l))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// An account route answers AccessError, what its clients catch (an
	// unreachable IAP: PROTOCOL §4.1, balance -1); a UserError would
	// escape Odoo 17's get_credits and break Settings.
	for _, path := range []string{"/iap/1/balance", "/iap/1/authorize", "/iap/services-token", "/iap/1/get-accounts-information",
		"/iap/update-warning-odoo", "/iap/1/update-warning-email-alerts"} {
		env := call(t, addr, path, validParams(path))
		want := nameAccessError
		if path == "/iap/1/authorize" {
			want = nameUserError
		}
		expectError(t, env, want, "temporarily unavailable")
	}
}

// Pages registered with HandleGET answer GET and HEAD; POST there is 405
// unless an RPC route has the same path.
func TestHandleGET(t *testing.T) {
	s := newTestServer(t, newMemLedger())
	addr := startServer(t, s)
	if r := rawRequest(t, addr, "GET", "/iap/1/credit", nil, nil); r.Status != http.StatusNotFound {
		t.Fatalf("before registration: %d", r.Status)
	}
	s.HandleGET("/iap/1/credit/", func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("credit page") })
	s.HandleGET("/iap/1/balance", func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("balance page") })
	for _, p := range []string{"/iap/1/credit", "//iap/1/credit/?dbuuid=x"} {
		if r := rawRequest(t, addr, "GET", p, nil, nil); r.Status != 200 || string(r.Body) != "credit page" {
			t.Errorf("GET %s: %d %s", p, r.Status, r.Body)
		}
	}
	if r := rawRequest(t, addr, "POST", "/iap/1/credit", nil, []byte("{}")); r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST on a page: %d %q", r.Status, r.Header.Get("Allow"))
	}
	if r := rawRequest(t, addr, "GET", "/iap/1/balance", nil, nil); string(r.Body) != "balance page" {
		t.Errorf("GET on an RPC route with a page: %s", r.Body)
	}
	if r := rawRequest(t, addr, "PUT", "/iap/1/balance", nil, nil); r.Header.Get("Allow") != "POST, GET, HEAD" {
		t.Errorf("PUT: Allow %q", r.Header.Get("Allow"))
	}
}

// The codec also works behind plain net/http (outside the seam): routing
// on r.URL.Path, body limit, unknown paths.
func TestCodecWithoutSeam(t *testing.T) {
	l := newMemLedger()
	setupServices(t, l)
	recharge(t, l, storage.SMS, badTok, "5")
	s, err := New(Config{Ledger: l, PublicURL: testPublicURL})
	if err != nil {
		t.Fatal(err)
	}
	do := func(path, body string) map[string]any {
		req := httptest.NewRequest("POST", path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		s.gorilla.ServeHTTP(rec, req)
		return mustEnvelope(t, reply{Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()})
	}
	env := do("//iap/1/balance/", `{"params": {"account_token": "`+badTok+`", "service_name": "sms"}, "id": 3}`)
	if env["result"].(interface{ String() string }).String() != "5" {
		t.Errorf("%v", env)
	}
	expectError(t, do("/nope", `{"id": 4}`), nameNotFound, "Not Found")
	expectError(t, do("/iap/1/balance", `{"params": {"pad": "`+strings.Repeat("x", 70<<10)+`"}}`), nameUserError, "larger than")
}

// creditLedger's Account fails InsufficientCredit, which no account route
// may pass on.
type creditLedger struct{ storage.Ledger }

func (creditLedger) Account(context.Context, storage.ServiceName, storage.AccountToken, storage.FirstSight) (storage.Account, error) {
	return storage.Account{}, &storage.Error{Op: "account", Kind: storage.InsufficientCredit, Service: "sms", Credit: 1}
}

// Account routes never answer InsufficientCreditError, whatever the
// ledger says: 17.0 and 18.0 let it escape and break Settings and the
// account form (PROTOCOL §4.1; fixtures odoo18 nocredit_001–004).
func TestAccountRoutesNeverInsufficientCredit(t *testing.T) {
	l := newMemLedger()
	setupServices(t, l)
	addr := startServer(t, newTestServer(t, creditLedger{l}))
	for _, path := range []string{"/iap/1/balance", "/iap/1/get-accounts-information"} {
		env := call(t, addr, path, validParams(path))
		if errorName(env) == nameInsufficientCredit {
			t.Errorf("%s answered InsufficientCreditError", path)
		}
		expectError(t, env, nameAccessError, "internal error") // what get_credits and web_read catch
	}
}
