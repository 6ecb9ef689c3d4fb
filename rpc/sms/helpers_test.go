package sms

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

const testPublicURL = "https://iap.example.test"

// fakeSender is an SMSSender whose behaviour the test sets; it records
// what it was asked to send.
type fakeSender struct {
	name string
	// batchErr, if set, fails the whole batch.
	batchErr func(msgs []providers.SMS) error
	// result decides one message; nil accepts it.
	result func(m providers.SMS) providers.SMSResult
	// holdUntilDeadline: a batch holding this number returns only when the
	// call's context is done (a vendor answering at the last moment).
	holdUntilDeadline string

	mu   sync.Mutex
	sent []providers.SMS
	seq  int
}

func (f *fakeSender) Name() string { return f.name }
func (f *fakeSender) Type() string { return "fake" }
func (f *fakeSender) Close() error { return nil }

func (f *fakeSender) SendSMS(ctx context.Context, msgs []providers.SMS) ([]providers.SMSResult, error) {
	f.mu.Lock()
	f.sent = append(f.sent, msgs...)
	f.mu.Unlock()
	for _, m := range msgs {
		if f.holdUntilDeadline != "" && m.To == f.holdUntilDeadline {
			<-ctx.Done()
		}
	}
	if f.batchErr != nil {
		if err := f.batchErr(msgs); err != nil {
			return nil, err
		}
	}
	out := make([]providers.SMSResult, len(msgs))
	for i, m := range msgs {
		if f.result != nil {
			out[i] = f.result(m)
			out[i].ID = m.ID
			continue
		}
		f.mu.Lock()
		f.seq++
		out[i] = providers.SMSResult{ID: m.ID, ProviderID: fmt.Sprintf("%s-%d", f.name, f.seq), Status: providers.SMSAccepted, Segments: 1}
		f.mu.Unlock()
	}
	return out, nil
}

func (f *fakeSender) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sent)
}

func (f *fakeSender) messages() []providers.SMS {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]providers.SMS(nil), f.sent...)
}

// reporter is a fakeSender that is a DeliveryReporter with a callback
// route.
type reporter struct {
	*fakeSender
	sink providers.DeliverySink
}

func (r *reporter) SetSink(s providers.DeliverySink) { r.sink = s }
func (r *reporter) CallbackRoutes() []providers.Callback {
	return []providers.Callback{{Path: "/providers/" + r.name + "/status", Handler: func(ctx context.Context, req *providers.CallbackRequest) providers.CallbackResponse {
		return providers.CallbackResponse{Status: 204}
	}}}
}

var (
	_ providers.SMSSender        = (*fakeSender)(nil)
	_ providers.DeliveryReporter = (*reporter)(nil)
)

func perr(name string, k providers.Kind) *providers.Error {
	return &providers.Error{Provider: name, Kind: k, Msg: "test " + k.String()}
}

// env is an SMS service on an in-memory Badger ledger behind a real
// rpc.Server.
type env struct {
	t      testing.TB
	ledger *badger.Ledger
	svc    *Service
	srv    *rpc.Server
	reg    *prometheus.Registry
}

func openLedger(t testing.TB, autoRegister bool) *badger.Ledger {
	t.Helper()
	return openLedgerWith(t, autoRegister, badger.Options{InMemory: true})
}

func openLedgerWith(t testing.TB, autoRegister bool, opts badger.Options) *badger.Ledger {
	t.Helper()
	l, err := badger.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if _, err := l.EnsureService(context.Background(), storage.Service{Name: storage.SMS, AutoRegister: autoRegister, UnitName: "Credits"}); err != nil {
		t.Fatal(err)
	}
	return l
}

func newEnv(t testing.TB, cfg Settings, senders ...providers.SMSSender) *env {
	t.Helper()
	return newEnvOn(t, openLedger(t, true), cfg, senders...)
}

func newEnvOn(t testing.TB, l *badger.Ledger, cfg Settings, senders ...providers.SMSSender) *env {
	t.Helper()
	m := map[string]providers.SMSSender{}
	for _, s := range senders {
		m[s.Name()] = s
	}
	if len(cfg.Providers) == 0 && len(senders) > 0 {
		cfg.Providers = []string{senders[0].Name()}
	}
	reg := prometheus.NewRegistry()
	svc, err := New(cfg, Deps{Ledger: l, Records: l, Senders: m, PublicURL: testPublicURL, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range senders {
		if r, ok := s.(providers.DeliveryReporter); ok {
			r.SetSink(svc.Sink())
		}
	}
	srv, err := rpc.New(rpc.Config{Ledger: l, PublicURL: testPublicURL})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Register(ServiceName, svc, svc.Routes()); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ledger: l, svc: svc, srv: srv, reg: reg}
}

// call posts a JSON-RPC call to path through the real router and codec
// and returns the decoded envelope.
func (e *env) call(path string, params any) map[string]json.RawMessage {
	e.t.Helper()
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": "abc", "params": params})
	if err != nil {
		e.t.Fatal(err)
	}
	return e.raw(path, body)
}

func (e *env) raw(path string, body []byte) map[string]json.RawMessage {
	e.t.Helper()
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI(path)
	req.Header.SetContentType("application/json")
	req.SetBody(body)
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
	e.srv.Handler()(&ctx)
	if ctx.Response.StatusCode() != 200 {
		e.t.Fatalf("HTTP %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal(ctx.Response.Body(), &env); err != nil {
		e.t.Fatalf("not JSON: %s", ctx.Response.Body())
	}
	if v, ok := env["error"]; ok && string(v) == "null" {
		e.t.Fatalf(`"error": null is forbidden (PROTOCOL §1.2): %s`, ctx.Response.Body())
	}
	return env
}

// results decodes the result of a send as a list of objects, keeping
// the raw values.
func (e *env) results(env map[string]json.RawMessage) []map[string]json.RawMessage {
	e.t.Helper()
	r, ok := env["result"]
	if !ok {
		e.t.Fatalf("no result: %v", env)
	}
	var out []map[string]json.RawMessage
	if err := json.Unmarshal(r, &out); err != nil || out == nil {
		e.t.Fatalf("result is not a list of objects: %s", r)
	}
	return out
}

// send3 sends groups {content: [uuid:number…]} through /api/sms/3/send and
// returns state (and credit) by uuid.
type num struct{ uuid, number string }

func (e *env) send3(tok string, webhook string, groups map[string][]num) map[string]result3 {
	e.t.Helper()
	var msgs []map[string]any
	for content, ns := range groups {
		var numbers []map[string]string
		for _, n := range ns {
			numbers = append(numbers, map[string]string{"uuid": n.uuid, "number": n.number})
		}
		msgs = append(msgs, map[string]any{"content": content, "numbers": numbers})
	}
	params := map[string]any{"account_token": tok, "messages": msgs, "dbuuid": "db-1"}
	if webhook != "" {
		params["webhook_url"] = webhook
	}
	return e.decode3(e.call("/api/sms/3/send", params))
}

type result3 struct {
	State     string
	Credit    string // raw JSON; "" when absent
	hasCredit bool
}

func (e *env) decode3(env map[string]json.RawMessage) map[string]result3 {
	e.t.Helper()
	out := map[string]result3{}
	for _, r := range e.results(env) {
		for k := range r {
			if k != "uuid" && k != "state" && k != "credit" {
				e.t.Errorf("unexpected key %q in %v", k, r)
			}
		}
		var u, st string
		if json.Unmarshal(r["uuid"], &u) != nil || json.Unmarshal(r["state"], &st) != nil {
			e.t.Fatalf("uuid and state must be strings: %v", r)
		}
		if _, dup := out[u]; dup {
			e.t.Errorf("uuid %s answered twice", u)
		}
		c, has := r["credit"]
		out[u] = result3{State: st, Credit: string(c), hasCredit: has}
	}
	return out
}

func (e *env) recharge(tok storage.AccountToken, amount string) {
	e.t.Helper()
	c, err := storage.ParseCredits(amount)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.ledger.Recharge(context.Background(), storage.RechargeRequest{Service: storage.SMS, Account: tok, Amount: c, Kind: storage.EntryRecharge}); err != nil {
		e.t.Fatal(err)
	}
}

// account returns the account and checks the ledger invariant
// Recharged = Available + Held + Captured.
func (e *env) account(tok storage.AccountToken) storage.Account {
	e.t.Helper()
	a, err := e.ledger.LookupAccount(context.Background(), storage.SMS, tok)
	if err != nil {
		e.t.Fatal(err)
	}
	if a.Recharged != a.Available+a.Held+a.Captured {
		e.t.Fatalf("ledger invariant broken: recharged %s != available %s + held %s + captured %s", a.Recharged, a.Available, a.Held, a.Captured)
	}
	return a
}

func credits(t *testing.T, s string) storage.Credits {
	t.Helper()
	c, err := storage.ParseCredits(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// uuidN is a distinct 32-hex uuid.
func uuidN(n int) string { return fmt.Sprintf("%032x", 0xabc000+n) }

// odooStatusEndpoint is a local endpoint that validates delivery reports
// exactly as Odoo's /sms/status controller does (odoo@17.0+:
// addons/sms/controllers/main.py, PROTOCOL §6.4): every sms_status must
// match ^\w+$ and every uuid ^[0-9a-f]{32}$, else a JSON-RPC error
// (UserError "Bad parameters"); otherwise "OK".
type odooStatusEndpoint struct {
	*httptest.Server
	mu       sync.Mutex
	statuses map[string][]string // uuid → statuses in order received
	calls    int
	refused  int
	fail     int // answer HTTP 503 to this many calls first
	got      chan struct{}
}

var (
	odooStatusRE = regexp.MustCompile(`^\w+$`)
	odooUUIDRE   = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

func newOdooStatusEndpoint(t *testing.T) *odooStatusEndpoint {
	o := &odooStatusEndpoint{statuses: map[string][]string{}, got: make(chan struct{}, 100)}
	o.Server = httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(o.Close)
	return o
}

func (o *odooStatusEndpoint) serve(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls++
	if o.fail > 0 {
		o.fail--
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	var req struct {
		JSONRPC string          `json:"jsonrpc"`
		Method  string          `json:"method"`
		ID      json.RawMessage `json:"id"`
		Params  struct {
			MessageStatuses []struct {
				Status string   `json:"sms_status"`
				UUIDs  []string `json:"uuids"`
			} `json:"message_statuses"`
		} `json:"params"`
	}
	w.Header().Set("Content-Type", "application/json")
	if r.Method != "POST" || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") || json.NewDecoder(r.Body).Decode(&req) != nil || req.JSONRPC != "2.0" {
		http.Error(w, "bad request", 400)
		return
	}
	bad := len(req.Params.MessageStatuses) == 0
	for _, st := range req.Params.MessageStatuses {
		if !odooStatusRE.MatchString(st.Status) {
			bad = true
		}
		for _, u := range st.UUIDs {
			if !odooUUIDRE.MatchString(u) {
				bad = true
			}
		}
	}
	if bad {
		o.refused++
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":200,"message":"Odoo Server Error","data":{"name":"odoo.exceptions.UserError","message":"Bad parameters"}}}`, req.ID)
		return
	}
	for _, st := range req.Params.MessageStatuses {
		for _, u := range st.UUIDs {
			o.statuses[u] = append(o.statuses[u], st.Status)
		}
	}
	fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":"OK"}`, req.ID)
	select {
	case o.got <- struct{}{}:
	default:
	}
}

// wait waits until cond holds for the received statuses.
func (o *odooStatusEndpoint) wait(t *testing.T, cond func(map[string][]string) bool) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		o.mu.Lock()
		ok := cond(o.statuses)
		o.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-o.got:
		case <-deadline:
			o.mu.Lock()
			defer o.mu.Unlock()
			t.Fatalf("the endpoint did not receive the expected reports; got %v after %d calls", o.statuses, o.calls)
		}
	}
}

// runRelay runs the service's relay loop until the test ends.
func runRelay(t *testing.T, s *Service) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}
