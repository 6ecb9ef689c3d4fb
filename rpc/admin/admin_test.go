package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iapd/iapd/rpc/admin"
	"github.com/iapd/iapd/storage"
)

const adminToken = "test-admin-token-0123456789abcdef"

type fixture struct {
	t      *testing.T
	ledger storage.Ledger
	srv    *httptest.Server
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newFixture(t *testing.T, token string, ready func() error) *fixture {
	t.Helper()
	f := &fixture{t: t, ledger: newTestLedger(t), logs: &syncBuffer{}}
	log := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, name := range storage.BuiltinServices {
		if _, err := f.ledger.EnsureService(context.Background(), storage.Service{Name: name, AutoRegister: true, UnitName: "Credits"}); err != nil {
			t.Fatal(err)
		}
	}
	f.srv = httptest.NewServer(admin.New(admin.Config{Ledger: f.ledger, Token: token, Logger: log, Ready: ready}))
	t.Cleanup(f.srv.Close)
	return f
}

// do sends a request with the admin token and decodes the JSON answer into
// out (when non-nil). It returns the status.
func (f *fixture) do(method, path string, body any, out any) int {
	f.t.Helper()
	return f.doAuth(method, path, "Bearer "+adminToken, body, out)
}

func (f *fixture) doAuth(method, path, auth string, body any, out any) int {
	f.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			f.t.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		f.t.Fatalf("%s %s: Content-Type %q, body %s", method, path, ct, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			f.t.Fatalf("%s %s: decoding %s: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode
}

type apiError struct {
	Error struct {
		Kind    string `json:"kind"`
		Message string `json:"message"`
	} `json:"error"`
}

func (f *fixture) wantError(method, path string, body any, status int, kind string) apiError {
	f.t.Helper()
	var e apiError
	if got := f.do(method, path, body, &e); got != status || e.Error.Kind != kind || e.Error.Message == "" {
		f.t.Fatalf("%s %s: got %d %+v, want %d kind %q", method, path, got, e, status, kind)
	}
	return e
}

func q(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return "?" + v.Encode()
}

func TestProbes(t *testing.T) {
	var mu sync.Mutex
	var readyErr error
	f := newFixture(t, "", func() error { mu.Lock(); defer mu.Unlock(); return readyErr })

	var m map[string]string
	if got := f.doAuth("GET", "/healthz", "", nil, &m); got != 200 || m["status"] != "ok" {
		t.Fatalf("healthz: %d %v", got, m)
	}
	if got := f.doAuth("GET", "/readyz", "", nil, &m); got != 200 || m["status"] != "ready" {
		t.Fatalf("readyz: %d %v", got, m)
	}
	mu.Lock()
	readyErr = errors.New("ledger closed")
	mu.Unlock()
	var e apiError
	if got := f.doAuth("GET", "/readyz", "", nil, &e); got != 503 || e.Error.Kind != "unavailable" || !strings.Contains(e.Error.Message, "ledger closed") {
		t.Fatalf("readyz not ready: %d %+v", got, e)
	}
}

func TestAuth(t *testing.T) {
	f := newFixture(t, adminToken, nil)
	for _, tc := range []struct{ name, auth string }{
		{"missing", ""},
		{"wrong", "Bearer not-the-token"},
		{"prefix of the token", "Bearer " + adminToken[:10]},
		{"token plus", "Bearer " + adminToken + "x"},
		{"basic scheme", "Basic " + adminToken},
		{"empty bearer", "Bearer "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e apiError
			if got := f.doAuth("GET", "/v1/services", tc.auth, nil, &e); got != 401 || e.Error.Kind != "unauthorized" {
				t.Fatalf("got %d %+v, want 401 unauthorized", got, e)
			}
			if strings.Contains(e.Error.Message, adminToken[:10]) {
				t.Fatalf("message echoes the token: %q", e.Error.Message)
			}
		})
	}
	// Unknown routes are 401 too before authentication: no route probing.
	if got := f.doAuth("GET", "/v1/nope", "", nil, nil); got != 401 {
		t.Fatalf("unknown route without token: %d", got)
	}
	if got := f.do("GET", "/v1/services", nil, nil); got != 200 {
		t.Fatalf("right token: %d", got)
	}
	if got := f.doAuth("GET", "/v1/services", "bearer "+adminToken, nil, nil); got != 200 {
		t.Fatalf("lower-case scheme: %d", got)
	}
	f.wantError("GET", "/v1/nope", nil, 404, "not_found")
	if strings.Contains(f.logs.String(), adminToken) {
		t.Fatal("the admin token was logged")
	}
}

func TestDisabledWithoutToken(t *testing.T) {
	f := newFixture(t, "", nil)
	for _, auth := range []string{"", "Bearer ", "Bearer x", "Bearer " + adminToken} {
		var e apiError
		if got := f.doAuth("GET", "/v1/services", auth, nil, &e); got != 401 || !strings.Contains(e.Error.Message, "disabled") {
			t.Fatalf("auth %q: got %d %+v", auth, got, e)
		}
	}
	if got := f.doAuth("GET", "/healthz", "", nil, nil); got != 200 {
		t.Fatalf("healthz: %d", got)
	}
}

func TestServices(t *testing.T) {
	f := newFixture(t, adminToken, nil)
	ctx := context.Background()

	var list struct{ Services []admin.Service }
	if f.do("GET", "/v1/services", nil, &list) != 200 || len(list.Services) != 4 {
		t.Fatalf("list: %+v", list)
	}

	var created admin.ServiceKey
	body := map[string]any{"name": "geo", "trial_credits": 2.5, "auto_register": false, "description": "Geocoding", "unit_name": "Lookups"}
	if got := f.do("POST", "/v1/services", body, &created); got != 201 {
		t.Fatalf("create: %d", got)
	}
	if len(created.Key) != 64 || strings.Trim(created.Key, "0123456789abcdef") != "" {
		t.Fatalf("generated key %q is not 64 hex", created.Key)
	}
	s := created.Service
	if s.Name != "geo" || !s.HasKey || s.AutoRegister || s.TrialCredits != 25000 || s.Description != "Geocoding" || s.UnitName != "Lookups" {
		t.Fatalf("created service: %+v", s)
	}
	if got, err := f.ledger.ServiceByKey(ctx, storage.HashKey(created.Key)); err != nil || got.Name != "geo" {
		t.Fatalf("ServiceByKey(new key): %v %v", got.Name, err)
	}
	// The key is never shown again.
	var raw json.RawMessage
	f.do("GET", "/v1/services/geo", nil, &raw)
	f.do("GET", "/v1/services", nil, &list)
	if strings.Contains(string(raw), created.Key) || len(list.Services) != 5 {
		t.Fatalf("show: %s", raw)
	}

	f.wantError("POST", "/v1/services", map[string]any{"name": "geo"}, 409, "exists")
	f.wantError("POST", "/v1/services", map[string]any{"name": "Bad Name"}, 400, "invalid")
	f.wantError("POST", "/v1/services", map[string]any{"name": "short", "key": "too-short"}, 400, "invalid")
	f.wantError("POST", "/v1/services", map[string]any{"name": "spaces", "key": "has spaces in the key"}, 400, "invalid")
	f.wantError("POST", "/v1/services", map[string]any{"name": "dust", "trial_credits": 0.00001}, 400, "invalid")
	f.wantError("POST", "/v1/services", map[string]any{"name": "neg", "trial_credits": -1}, 400, "invalid")
	f.wantError("POST", "/v1/services", map[string]any{"name": "x", "extra": 1}, 400, "invalid")
	f.wantError("POST", "/v1/services", `{"name": "x"`, 400, "invalid")
	f.wantError("POST", "/v1/services", ``, 400, "invalid")
	f.wantError("GET", "/v1/services/nope", nil, 404, "not_found")

	// Imported key; and the same key for another service is refused.
	imported := "imported-key-0123456789"
	var imp admin.ServiceKey
	if got := f.do("POST", "/v1/services", map[string]any{"name": "imp", "key": imported}, &imp); got != 201 || imp.Key != imported {
		t.Fatalf("import: %d %+v", got, imp)
	}
	if !imp.Service.AutoRegister || imp.Service.UnitName != "Credits" {
		t.Fatalf("defaults: %+v", imp.Service)
	}
	f.wantError("POST", "/v1/services", map[string]any{"name": "imp2", "key": imported}, 409, "exists")
	if _, err := f.ledger.Service(ctx, "imp2"); !storage.Is(err, storage.NotFound) {
		t.Fatalf("imp2 was created despite the refusal: %v", err)
	}

	// Rotation: new key works, old one no longer.
	var rot admin.ServiceKey
	if got := f.do("POST", "/v1/services/geo/key", nil, &rot); got != 200 || rot.Key == created.Key || len(rot.Key) != 64 {
		t.Fatalf("rotate: %d %+v", got, rot)
	}
	if _, err := f.ledger.ServiceByKey(ctx, storage.HashKey(created.Key)); !storage.Is(err, storage.Unauthorized) {
		t.Fatalf("old key still valid: %v", err)
	}
	if got, err := f.ledger.ServiceByKey(ctx, storage.HashKey(rot.Key)); err != nil || got.Name != "geo" {
		t.Fatalf("new key: %v", err)
	}
	// A keyless (configured) service gets a key by rotation, imported here.
	if got := f.do("POST", "/v1/services/sms/key", map[string]string{"key": "sms-key-0123456789abcdef"}, &rot); got != 200 || rot.Key != "sms-key-0123456789abcdef" || !rot.Service.HasKey {
		t.Fatalf("rotate keyless: %d %+v", got, rot)
	}
	f.wantError("POST", "/v1/services/nope/key", nil, 404, "not_found")
	f.wantError("POST", "/v1/services/sms/key", map[string]string{"key": imported}, 409, "exists")

	if logs := f.logs.String(); strings.Contains(logs, created.Key) || strings.Contains(logs, rot.Key) || strings.Contains(logs, imported) {
		t.Fatalf("a service key was logged:\n%s", logs)
	}
}

func TestAccounts(t *testing.T) {
	f := newFixture(t, adminToken, nil)
	ctx := context.Background()
	// 5 sms accounts, 2 snailmail, one unregistered service account.
	for _, tok := range []string{"a1", "a2", "a3", "a4", "a5"} {
		if _, err := f.ledger.Account(ctx, "sms", storage.AccountToken(tok), storage.FirstSight{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tok := range []string{"b1", "b2"} {
		if _, err := f.ledger.Account(ctx, "snailmail", storage.AccountToken(tok), storage.FirstSight{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.ledger.EnsureService(ctx, storage.Service{Name: "closed", AutoRegister: false}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ledger.Account(ctx, "closed", "c1", storage.FirstSight{}); err != nil {
		t.Fatal(err)
	}

	// Paging within a service.
	var page admin.AccountList
	var toks []string
	path := "/v1/accounts" + q("service", "sms", "limit", "2")
	for i := 0; ; i++ {
		if got := f.do("GET", path, nil, &page); got != 200 {
			t.Fatalf("list: %d", got)
		}
		for _, a := range page.Accounts {
			toks = append(toks, string(a.Token))
		}
		if page.Next == "" || i > 5 {
			break
		}
		path = "/v1/accounts" + q("service", "sms", "limit", "2", "after", page.Next)
		page = admin.AccountList{}
	}
	if strings.Join(toks, ",") != "a1,a2,a3,a4,a5" {
		t.Fatalf("paged tokens: %v", toks)
	}

	// Paging across services.
	toks = nil
	path = "/v1/accounts" + q("limit", "3")
	for i := 0; ; i++ {
		page = admin.AccountList{}
		f.do("GET", path, nil, &page)
		for _, a := range page.Accounts {
			toks = append(toks, string(a.Service)+":"+string(a.Token))
		}
		if page.Next == "" || i > 5 {
			break
		}
		path = "/v1/accounts" + q("limit", "3", "after", page.Next)
	}
	if want := "closed:c1,sms:a1,sms:a2,sms:a3,sms:a4,sms:a5,snailmail:b1,snailmail:b2"; strings.Join(toks, ",") != want {
		t.Fatalf("all accounts: %v", toks)
	}

	page = admin.AccountList{}
	f.do("GET", "/v1/accounts"+q("state", "unregistered"), nil, &page)
	if len(page.Accounts) != 1 || page.Accounts[0].Token != "c1" || page.Next != "" {
		t.Fatalf("state filter: %+v", page)
	}
	f.wantError("GET", "/v1/accounts"+q("state", "happy"), nil, 400, "invalid")
	f.wantError("GET", "/v1/accounts"+q("limit", "-1"), nil, 400, "invalid")
	f.wantError("GET", "/v1/accounts"+q("service", "nope"), nil, 404, "not_found")
	f.wantError("GET", "/v1/accounts"+q("after", "garbage"), nil, 400, "invalid")

	// Show, with Odoo's +disabled suffix tolerated.
	var a admin.Account
	if got := f.do("GET", "/v1/account"+q("service", "sms", "token", "a1+disabled"), nil, &a); got != 200 || a.Token != "a1" || a.State != storage.Registered {
		t.Fatalf("show: %d %+v", got, a)
	}
	f.wantError("GET", "/v1/account"+q("service", "sms", "token", "zz"), nil, 404, "not_found")
	f.wantError("GET", "/v1/account"+q("service", "sms"), nil, 400, "invalid")
	f.wantError("GET", "/v1/account"+q("token", "a1"), nil, 400, "invalid")

	// Ban, unban, register.
	ref := map[string]string{"service": "sms", "token": "a1"}
	if f.do("POST", "/v1/account/ban", ref, &a); a.State != storage.Banned {
		t.Fatalf("ban: %+v", a)
	}
	if f.do("POST", "/v1/account/ban", ref, &a); a.State != storage.Banned {
		t.Fatalf("ban twice: %+v", a)
	}
	f.wantError("POST", "/v1/account/register", ref, 409, "conflict")
	if f.do("POST", "/v1/account/unban", ref, &a); a.State != storage.Registered {
		t.Fatalf("unban: %+v", a)
	}
	if f.do("POST", "/v1/account/unban", ref, &a); a.State != storage.Registered {
		t.Fatalf("unban twice: %+v", a)
	}
	closed := map[string]string{"service": "closed", "token": "c1"}
	f.wantError("POST", "/v1/account/unban", closed, 409, "conflict")
	if f.do("POST", "/v1/account/register", closed, &a); a.State != storage.Registered {
		t.Fatalf("register: %+v", a)
	}
	// register creates an absent account, ban does not.
	if got := f.do("POST", "/v1/account/register", map[string]string{"service": "closed", "token": "c2"}, &a); got != 200 || a.State != storage.Registered {
		t.Fatalf("register absent: %d %+v", got, a)
	}
	f.wantError("POST", "/v1/account/ban", map[string]string{"service": "sms", "token": "nobody"}, 404, "not_found")
	f.wantError("POST", "/v1/account/ban", map[string]string{"service": "nope", "token": "a1"}, 404, "not_found")
	f.wantError("POST", "/v1/account/ban", map[string]string{"service": "sms", "token": "bad token"}, 400, "invalid")
}

func TestCreditAndHistory(t *testing.T) {
	f := newFixture(t, adminToken, nil)
	ctx := context.Background()

	credit := func(amount any, ref string) (int, admin.Credit) {
		var c admin.Credit
		got := f.do("POST", "/v1/account/credit", map[string]any{
			"service": "sms", "token": "acct", "amount": amount, "ref": ref, "description": "test",
		}, &c)
		return got, c
	}
	got, c := credit(json.Number("100.25"), "r1")
	if got != 200 || c.Replayed || c.Entry.Kind != storage.EntryRecharge || c.Entry.Amount != 1002500 || c.Account.Available != 1002500 || c.Account.Recharged != 1002500 {
		t.Fatalf("credit: %d %+v", got, c)
	}
	// Same ref, same amount: nothing changes.
	if got, c2 := credit(json.Number("100.25"), "r1"); got != 200 || !c2.Replayed || c2.Entry.Seq != c.Entry.Seq || c2.Account.Available != 1002500 {
		t.Fatalf("idempotent credit: %d %+v", got, c2)
	}
	f.wantError("POST", "/v1/account/credit", map[string]any{"service": "sms", "token": "acct", "amount": 5, "ref": "r1"}, 409, "conflict")
	// Amount as a string; a negative amount is an adjustment.
	if got, c = credit("-0.25", ""); got != 200 || c.Entry.Kind != storage.EntryAdjustment || c.Account.Available != 1000000 {
		t.Fatalf("adjustment: %d %+v", got, c)
	}
	f.wantError("POST", "/v1/account/credit", map[string]any{"service": "sms", "token": "acct", "amount": -1000}, 409, "insufficient_credit")
	for _, bad := range []any{0, "abc", 0.00001, 1e20, nil} {
		f.wantError("POST", "/v1/account/credit", map[string]any{"service": "sms", "token": "acct", "amount": bad}, 400, "invalid")
	}
	f.wantError("POST", "/v1/account/credit", map[string]any{"service": "nope", "token": "acct", "amount": 1}, 404, "not_found")

	// A hold, for history and transaction lookup.
	txn, err := f.ledger.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: "acct", Amount: 30000, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := f.ledger.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "acct", Amount: storage.Scale, Kind: storage.EntryRecharge}); err != nil {
			t.Fatal(err)
		}
	}
	var h admin.History
	var seqs []uint64
	path := "/v1/account/history" + q("service", "sms", "token", "acct", "limit", "3")
	for i := 0; ; i++ {
		h = admin.History{}
		if got := f.do("GET", path, nil, &h); got != 200 {
			t.Fatalf("history: %d", got)
		}
		for _, e := range h.Entries {
			seqs = append(seqs, e.Seq)
			if e.DRecharged != e.DAvailable+e.DHeld+e.DCaptured {
				t.Fatalf("entry breaks the invariant: %+v", e)
			}
		}
		if h.Next == 0 || i > 5 {
			break
		}
		path = "/v1/account/history" + q("service", "sms", "token", "acct", "limit", "3", "before", jsonString(h.Next))
	}
	if len(seqs) != 8 || seqs[0] != 8 || seqs[7] != 1 {
		t.Fatalf("history seqs: %v", seqs)
	}
	f.wantError("GET", "/v1/account/history"+q("service", "sms", "token", "nobody"), nil, 404, "not_found")
	f.wantError("GET", "/v1/account/history"+q("service", "sms", "token", "acct", "before", "x"), nil, 400, "invalid")

	var tx admin.Transaction
	if got := f.do("GET", "/v1/transaction"+q("token", txn.Token), nil, &tx); got != 200 || tx.State != storage.Held || tx.Amount != 30000 || tx.Account != "acct" {
		t.Fatalf("transaction: %d %+v", got, tx)
	}
	f.wantError("GET", "/v1/transaction"+q("token", "nope"), nil, 404, "not_found")
	f.wantError("GET", "/v1/transaction", nil, 400, "invalid")
}

// TestCreditReplayed: "replayed" says whether a credit with a ref wrote
// its entry, also when other entries came after the first one, and when
// retries of the same ref race: exactly one of them applies.
func TestCreditReplayed(t *testing.T) {
	f := newFixture(t, adminToken, nil)
	ctx := context.Background()
	credit := func(tok, ref string) admin.Credit {
		var c admin.Credit
		if got := f.do("POST", "/v1/account/credit", map[string]any{"service": "sms", "token": tok, "amount": 5, "ref": ref}, &c); got != 200 {
			t.Errorf("credit %s %s: %d", tok, ref, got)
		}
		return c
	}
	if c := credit("acct", "r1"); c.Replayed {
		t.Fatalf("first credit replayed: %+v", c)
	}
	if _, err := f.ledger.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: "acct", Amount: 10000, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if c := credit("acct", "r2"); c.Replayed || c.Entry.Seq != 3 {
		t.Fatalf("second ref after a hold: %+v", c)
	}
	if c := credit("acct", "r1"); !c.Replayed || c.Entry.Seq != 1 || c.Account.Available != 90000 {
		t.Fatalf("r1 again: %+v", c)
	}
	// Without a ref every call applies.
	if c := credit("acct", ""); c.Replayed {
		t.Fatalf("credit without ref replayed: %+v", c)
	}
	const retries = 8
	applied := make(chan bool, retries)
	var wg sync.WaitGroup
	for range retries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			applied <- !credit("racer", "order-7").Replayed
		}()
	}
	wg.Wait()
	close(applied)
	n := 0
	for a := range applied {
		if a {
			n++
		}
	}
	a, err := f.ledger.LookupAccount(ctx, "sms", "racer")
	if n != 1 || err != nil || a.Available != 50000 {
		t.Fatalf("%d concurrent retries: %d said applied; account %+v, %v", retries, n, a, err)
	}
}

// TestStateChangeChanged: ban, unban and register say whether they
// changed the account; register of an unseen token creates it (changed,
// even where the service would have registered it anyway).
func TestStateChangeChanged(t *testing.T) {
	f := newFixture(t, adminToken, nil)
	ctx := context.Background()
	if _, err := f.ledger.Account(ctx, "sms", "acct", storage.FirstSight{}); err != nil {
		t.Fatal(err)
	}
	for i, step := range []struct {
		path, token string
		state       storage.AccountState
		changed     bool
	}{
		{"/v1/account/ban", "acct", storage.Banned, true},
		{"/v1/account/ban", "acct", storage.Banned, false},
		{"/v1/account/unban", "acct", storage.Registered, true},
		{"/v1/account/unban", "acct", storage.Registered, false},
		{"/v1/account/register", "acct", storage.Registered, false},
		{"/v1/account/register", "fresh", storage.Registered, true},
		{"/v1/account/register", "fresh", storage.Registered, false},
	} {
		var sc admin.StateChange
		if got := f.do("POST", step.path, map[string]any{"service": "sms", "token": step.token}, &sc); got != 200 || sc.State != step.state || sc.Changed != step.changed || sc.Token != storage.AccountToken(step.token) {
			t.Fatalf("step %d %s %s: %d %+v", i, step.path, step.token, got, sc)
		}
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// Go's profiles are served behind the admin token, like the admin API.
func TestPprofBehindToken(t *testing.T) {
	f := newFixture(t, adminToken, nil)
	get := func(auth string) (int, string) {
		req, err := http.NewRequest("GET", f.srv.URL+"/debug/pprof/cmdline", nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(""); code != 401 {
		t.Fatalf("pprof without a token: %d, want 401", code)
	}
	if code, _ := get("Bearer wrong"); code != 401 {
		t.Fatalf("pprof with a wrong token: %d, want 401", code)
	}
	if code, body := get("Bearer " + adminToken); code != 200 || !strings.Contains(body, ".test") {
		t.Fatalf("pprof with the token: %d %q, want 200 and the command line", code, body)
	}
}
