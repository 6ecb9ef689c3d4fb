package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iapd/iapd/rpc/admin"
	"github.com/iapd/iapd/storage"
)

// TestHostileInput runs the hostile-input suite against a real iapd
// started by run() on loopback, over real TCP, with raw requests where
// Go's HTTP client would not send them: malformed JSON, wrong types for
// every param of every route, duplicate keys, deep nesting, huge and
// not-a-number amounts, dust, big and slow bodies, wrong methods, content
// types and paths, control characters in tokens, "+" suffix games, forged
// and replayed transaction tokens, capture/cancel races, pipelining and
// header floods (hostileCases lists them).
//
// Every case checks that
//
//   - the answer is well formed: Odoo's JSON-RPC error envelope (PROTOCOL
//     §1.3: HTTP 200, error.data.name a non-empty string,
//     error.data.message a string, no result), or the result the case
//     expects, or an HTTP 4xx status where no JSON-RPC answer is possible;
//   - the ledger did not change (every account's figures, state, alerts
//     and history length, and the services, read through the admin API
//     before and after), unless the case says exactly what may change;
//   - the server logged no panic and no error;
//   - the server keeps serving: a good request succeeds after the case.
//
// IAPD_HOSTILE_REPORT names a file that gets the one-line summary.
func TestHostileInput(t *testing.T) {
	t.Parallel() // with TestHostileSlowDripTimesOut, which mostly waits
	h := newHostile(t)
	cases := hostileCases(h)
	names := map[string]bool{}
	classes := map[string]int{}
	for _, c := range cases {
		if names[c.name] {
			t.Fatalf("two cases are named %q", c.name)
		}
		names[c.name] = true
		class, _, _ := strings.Cut(c.name, "/")
		classes[class]++
	}
	began := time.Now()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { h.run(t, c) })
	}
	var cl []string
	for k, n := range classes {
		cl = append(cl, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(cl)
	summary := fmt.Sprintf("hostile input: %d cases in %s (%s)", len(cases), time.Since(began).Round(time.Millisecond), strings.Join(cl, ", "))
	t.Log(summary)
	if f := os.Getenv("IAPD_HOSTILE_REPORT"); f != "" {
		if err := os.WriteFile(f, []byte(summary+"\n"), 0o644); err != nil {
			t.Errorf("writing the report: %v", err)
		}
	}
	if len(cases) < 100 {
		t.Errorf("only %d hostile cases", len(cases))
	}
}

// hcase is one hostile input.
type hcase struct {
	name string
	// do sends the input and checks the answer.
	do func(t *testing.T, h *hostile)
	// changes, when set, checks the state change the case may make; nil
	// means none at all.
	changes func(t *testing.T, before, after *snapshot)
}

// hostile is the server under attack and what the suite set up in it.
type hostile struct {
	s     *testServer
	addr  string // host:port of the public listener
	admin *adminClient

	key, otherKey    string // service keys of "hostile" and "other"
	tokA, tokB, tokC string // account tokens: A and B hold 100 credits in hostile, C 10
	held             string // a hold of 1 on hostile/A, left held
	captured         string // a hold of 1 on hostile/A, captured for 1
	cancelled        string // a hold of 1 on hostile/A, cancelled
	otherHeld        string // a hold of 1 on other/A, left held
}

const (
	hostileService = "hostile"
	otherService   = "other"
)

func newHostile(t *testing.T) *hostile {
	t.Helper()
	s := startServer(t, map[string]string{"IAPD_ADMIN_TOKEN": testAdminToken}, "-log-level", "info")
	h := &hostile{
		s:     s,
		addr:  strings.TrimPrefix(s.public, "http://"),
		admin: &adminClient{base: s.ops, token: testAdminToken, hc: &http.Client{Timeout: 30 * time.Second}},
		tokA:  strings.Repeat("a1", 16),
		tokB:  strings.Repeat("b2", 16),
		tokC:  strings.Repeat("c3", 16),
	}
	ctx := context.Background()
	for _, svc := range []string{hostileService, otherService} {
		var sk admin.ServiceKey
		if err := h.admin.call(ctx, "POST", "/v1/services", nil, map[string]any{"name": svc, "auto_register": true}, &sk); err != nil {
			t.Fatal(err)
		}
		if svc == hostileService {
			h.key = sk.Key
		} else {
			h.otherKey = sk.Key
		}
	}
	for _, c := range []struct{ svc, tok, amount string }{
		{hostileService, h.tokA, "100"}, {hostileService, h.tokB, "100"}, {hostileService, h.tokC, "10"},
		{otherService, h.tokA, "100"}, {string(storage.SMS), h.tokA, "100"},
	} {
		if err := h.admin.call(ctx, "POST", "/v1/account/credit", nil, map[string]any{
			"service": c.svc, "token": c.tok, "amount": json.Number(c.amount), "ref": "setup-" + c.svc + "-" + c.tok,
		}, nil); err != nil {
			t.Fatal(err)
		}
	}
	h.held = h.authorize(t, h.key, h.tokA, "1")
	h.captured = h.authorize(t, h.key, h.tokA, "1")
	h.mustTrue(t, "/iap/1/capture", map[string]any{"token": h.captured, "key": h.key, "credit_to_capture": 1})
	h.cancelled = h.authorize(t, h.key, h.tokA, "1")
	h.mustTrue(t, "/iap/1/cancel", map[string]any{"token": h.cancelled, "key": h.key})
	h.otherHeld = h.authorize(t, h.otherKey, h.tokA, "1")
	return h
}

// run runs one case with its checks.
func (h *hostile) run(t *testing.T, c hcase) {
	logFrom := len(h.s.stderr.String())
	before := h.snapshot(t)
	c.do(t, h)
	after := h.snapshot(t)
	if c.changes == nil {
		before.mustEqual(t, after)
	} else {
		c.changes(t, before, after)
	}
	if log := h.s.stderr.String()[logFrom:]; strings.Contains(log, "panic") || strings.Contains(log, "level=ERROR") {
		t.Fatalf("the server logged a panic or an error:\n%s", log)
	}
	// Still serving: a good request answers the balance the ledger has.
	want := after.accounts[hostileService+"/"+h.tokA].Available
	res := h.result(t, h.post("/iap/1/balance", rpcBody("good", map[string]any{"account_token": h.tokA, "service_name": hostileService})))
	if c, err := storage.ParseCredits(string(res)); err != nil || c != want {
		t.Fatalf("after the case, balance answers %s, the ledger has %s", res, want)
	}
}

// ---- the ledger through the admin API ----

// snapshot is the state a hostile request must not change: every
// account (figures, state, alerts, history length) and every service.
type snapshot struct {
	accounts map[string]admin.Account // service/token →
	services []admin.Service
}

func (h *hostile) snapshot(t *testing.T) *snapshot {
	t.Helper()
	ctx := context.Background()
	var list admin.AccountList
	if err := h.admin.call(ctx, "GET", "/v1/accounts", url.Values{"limit": {"1000"}}, nil, &list); err != nil {
		t.Fatalf("admin API: %v", err)
	}
	if list.Next != "" {
		t.Fatal("more than 1000 accounts: the suite created accounts it should not have")
	}
	s := &snapshot{accounts: map[string]admin.Account{}}
	for _, a := range list.Accounts {
		a.CreatedAt, a.UpdatedAt = "", ""
		s.accounts[string(a.Service)+"/"+string(a.Token)] = a
		if a.Recharged != a.Available+a.Held+a.Captured {
			t.Fatalf("account %s/%s breaks recharged = available + held + captured: %+v", a.Service, a.Token, a)
		}
	}
	var svcs struct{ Services []admin.Service }
	if err := h.admin.call(ctx, "GET", "/v1/services", nil, nil, &svcs); err != nil {
		t.Fatalf("admin API: %v", err)
	}
	s.services = svcs.Services
	return s
}

// mustEqual fails unless the two snapshots are the same.
func (s *snapshot) mustEqual(t *testing.T, after *snapshot) {
	t.Helper()
	s.mustEqualBut(t, after, nil)
}

// mustEqualBut fails unless the snapshots are the same except for the
// accounts in but, which check checks.
func (s *snapshot) mustEqualBut(t *testing.T, after *snapshot, but map[string]func(before, after admin.Account) string) {
	t.Helper()
	var diffs []string
	for k, a := range after.accounts {
		b, ok := s.accounts[k]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("account %s was created: %+v", k, a))
			continue
		}
		if check := but[k]; check != nil {
			if d := check(b, a); d != "" {
				diffs = append(diffs, fmt.Sprintf("account %s: %s (before %+v, after %+v)", k, d, b, a))
			}
			continue
		}
		if !reflect.DeepEqual(a, b) {
			diffs = append(diffs, fmt.Sprintf("account %s changed:\n  before %+v\n  after  %+v", k, b, a))
		}
	}
	for k := range s.accounts {
		if _, ok := after.accounts[k]; !ok {
			diffs = append(diffs, "account "+k+" disappeared")
		}
	}
	if !reflect.DeepEqual(s.services, after.services) {
		diffs = append(diffs, fmt.Sprintf("services changed:\n  before %+v\n  after  %+v", s.services, after.services))
	}
	if len(diffs) > 0 {
		sort.Strings(diffs)
		t.Fatalf("the ledger changed:\n%s", strings.Join(diffs, "\n"))
	}
}

// figuresSame checks an account whose history grew by n entries but whose
// figures are back where they were (a hold made and cancelled).
func figuresSame(n uint64) func(b, a admin.Account) string {
	return func(b, a admin.Account) string {
		if a.Seq != b.Seq+n {
			return fmt.Sprintf("history grew by %d entries, want %d", a.Seq-b.Seq, n)
		}
		if a.Recharged != b.Recharged || a.Available != b.Available || a.Held != b.Held || a.Captured != b.Captured {
			return "figures changed"
		}
		b.Seq, a.Seq = 0, 0
		if !reflect.DeepEqual(a, b) {
			return "changed"
		}
		return ""
	}
}

func (h *hostile) history(t *testing.T, svc, tok string) []admin.Entry {
	t.Helper()
	var hist admin.History
	if err := h.admin.call(context.Background(), "GET", "/v1/account/history",
		url.Values{"service": {svc}, "token": {tok}, "limit": {"1000"}}, nil, &hist); err != nil {
		t.Fatal(err)
	}
	return hist.Entries
}

func (h *hostile) transaction(t *testing.T, token string) admin.Transaction {
	t.Helper()
	var tx admin.Transaction
	if err := h.admin.call(context.Background(), "GET", "/v1/transaction", url.Values{"token": {token}}, nil, &tx); err != nil {
		t.Fatalf("transaction %s: %v", token, err)
	}
	return tx
}

// ---- requests on the wire ----

// hresp is one HTTP answer read off the wire; err is set when the
// connection ended without one.
type hresp struct {
	status int
	header http.Header
	body   []byte
	err    error
}

func (r hresp) String() string {
	if r.err != nil {
		return "no answer: " + r.err.Error()
	}
	b := r.body
	if len(b) > 400 {
		b = append(b[:400:400], "…"...)
	}
	return fmt.Sprintf("HTTP %d %s", r.status, b)
}

// rpcBody is a JSON-RPC request as Odoo sends it.
func rpcBody(id string, params any) []byte {
	b, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": id, "params": params})
	if err != nil {
		panic(err)
	}
	return b
}

// httpRequest builds one HTTP/1.1 request: Host, then Content-Type
// application/json and Content-Length unless extra replaces them (a line
// "Content-Type:" with no value removes the header), then extra.
func (h *hostile) httpRequest(method, path string, body []byte, extra ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, h.addr)
	has := func(name string) bool {
		for _, e := range extra {
			if strings.HasPrefix(strings.ToLower(e), strings.ToLower(name)+":") {
				return true
			}
		}
		return false
	}
	if !has("Content-Type") {
		b.WriteString("Content-Type: application/json\r\n")
	}
	if !has("Content-Length") && !has("Transfer-Encoding") {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	for _, e := range extra {
		if strings.HasSuffix(e, ":") {
			continue // a removed header
		}
		b.WriteString(e + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// post sends one POST with an Odoo-like header and reads the answer.
func (h *hostile) post(path string, body []byte, extra ...string) hresp {
	return h.exchange(h.httpRequest("POST", path, body, extra...), "POST")
}

// exchange writes raw on a new connection (concurrently with reading,
// since the server may answer before the request is all sent) and reads
// one answer to a request of method.
func (h *hostile) exchange(raw []byte, method string) hresp {
	rs := h.exchangeN(raw, []string{method})
	return rs[0]
}

// exchangeN is exchange for pipelined requests: it reads one answer per
// method, in order.
func (h *hostile) exchangeN(raw []byte, methods []string) []hresp {
	return h.pipeline(raw, methods, false)
}

// pipeline writes raw on a new connection, half-closing it after when
// halfClose (the server then knows no more bytes come), and reads one
// answer per method.
func (h *hostile) pipeline(raw []byte, methods []string, halfClose bool) []hresp {
	out := make([]hresp, len(methods))
	conn, err := net.DialTimeout("tcp", h.addr, 5*time.Second)
	if err != nil {
		for i := range out {
			out[i].err = err
		}
		return out
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	go func() {
		_, _ = conn.Write(raw)
		if halfClose {
			_ = conn.(*net.TCPConn).CloseWrite()
		}
	}()
	br := bufio.NewReader(conn)
	for i, m := range methods {
		out[i] = readResponse(br, m)
		if out[i].err != nil {
			for j := i + 1; j < len(out); j++ {
				out[j].err = out[i].err
			}
			break
		}
	}
	return out
}

// readResponse reads one final answer (after any 1xx interim one).
func readResponse(br *bufio.Reader, method string) hresp {
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 {
		resp, err = http.ReadResponse(br, &http.Request{Method: method})
	}
	if err != nil {
		return hresp{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return hresp{err: fmt.Errorf("reading the body of HTTP %d: %w", resp.StatusCode, err)}
	}
	return hresp{status: resp.StatusCode, header: resp.Header, body: body}
}

// ---- what answers must look like ----

// envelope decodes a JSON-RPC answer: HTTP 200, application/json, a JSON
// object with jsonrpc "2.0", an id, and exactly one of result and error.
func envelope(t *testing.T, r hresp) map[string]json.RawMessage {
	t.Helper()
	if r.err != nil || r.status != 200 {
		t.Fatalf("want a JSON-RPC answer, got %s", r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("content type %q: %s", ct, r)
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &env); err != nil {
		t.Fatalf("the answer is not a JSON object: %s", r)
	}
	if string(env["jsonrpc"]) != `"2.0"` {
		t.Fatalf("jsonrpc %s: %s", env["jsonrpc"], r)
	}
	if _, ok := env["id"]; !ok {
		t.Fatalf("no id: %s", r)
	}
	_, hasErr := env["error"]
	_, hasRes := env["result"]
	if hasErr == hasRes {
		t.Fatalf("want exactly one of result and error: %s", r)
	}
	return env
}

// rpcErr checks r is Odoo's error envelope (§1.3) and returns the last
// dotted segment of error.data.name and error.data.message.
func rpcErr(t *testing.T, r hresp) (name, msg string) {
	t.Helper()
	env := envelope(t, r)
	raw, ok := env["error"]
	if !ok {
		t.Fatalf("want an error, got %s", r)
	}
	var e struct {
		Code    *int    `json:"code"`
		Message *string `json:"message"`
		Data    *struct {
			Name    *string `json:"name"`
			Message *string `json:"message"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &e); err != nil || e.Data == nil || e.Data.Name == nil || *e.Data.Name == "" || e.Data.Message == nil || e.Code == nil || e.Message == nil {
		t.Fatalf("error without a non-empty string data.name and a string data.message: %s", r)
	}
	n := *e.Data.Name
	return n[strings.LastIndexByte(n, '.')+1:], *e.Data.Message
}

// expectErr checks r is an error envelope named name (last segment; ""
// for any) whose message contains every one of want.
func expectErr(t *testing.T, r hresp, name string, want ...string) {
	t.Helper()
	n, msg := rpcErr(t, r)
	if name != "" && n != name {
		t.Fatalf("error %s (%q), want %s", n, msg, name)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Fatalf("error %s message %q does not mention %q", n, msg, w)
		}
	}
}

// result checks r is a success and returns its result.
func (h *hostile) result(t *testing.T, r hresp) json.RawMessage {
	t.Helper()
	env := envelope(t, r)
	res, ok := env["result"]
	if !ok {
		t.Fatalf("want a result, got %s", r)
	}
	return res
}

// httpErr checks r is an HTTP error status (one of codes, or any 4xx when
// none is given) — the answer where no JSON-RPC answer is possible. A
// connection closed without an answer is accepted when closeOK.
func httpErr(t *testing.T, r hresp, closeOK bool, codes ...int) {
	t.Helper()
	if r.err != nil {
		if closeOK {
			t.Logf("closed without an answer: %v", r.err)
			return
		}
		t.Fatalf("want an HTTP error status, got %s", r)
	}
	if len(codes) == 0 && r.status >= 400 && r.status < 500 {
		return
	}
	if !slices.Contains(codes, r.status) {
		t.Fatalf("want HTTP %v, got %s", codes, r)
	}
}

// wellFormed checks r is a JSON-RPC answer (result or Odoo error
// envelope) or an HTTP 4xx status.
func wellFormed(t *testing.T, r hresp) {
	t.Helper()
	t.Logf("answered %s", r)
	if r.err == nil && r.status >= 400 && r.status < 500 {
		return
	}
	env := envelope(t, r)
	if _, ok := env["error"]; ok {
		rpcErr(t, r)
	}
}

// ---- good requests the cases build on ----

func (h *hostile) authorizeParams(tok, credit string) map[string]any {
	return map[string]any{"account_token": tok, "key": h.key, "credit": json.Number(credit),
		"description": "hostile", "ttl": 1, "dbuuid": "hostile-db"}
}

// authorize holds credit and returns the transaction token.
func (h *hostile) authorize(t *testing.T, key, tok, credit string) string {
	t.Helper()
	p := h.authorizeParams(tok, credit)
	p["key"] = key
	var token string
	if err := json.Unmarshal(h.result(t, h.post("/iap/1/authorize", rpcBody("auth", p))), &token); err != nil || len(token) != 32 {
		t.Fatalf("authorize answered no token: %v", err)
	}
	return token
}

func (h *hostile) mustTrue(t *testing.T, path string, params map[string]any) {
	t.Helper()
	if res := h.result(t, h.post(path, rpcBody("t", params))); string(res) != "true" {
		t.Fatalf("%s answered %s", path, res)
	}
}

// ---- concurrency ----

// together runs f(i) for i in [0, n) on n goroutines released at once.
func together(n int, f func(i int)) {
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	ready.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			f(i)
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
}

// dialDrip opens a connection and writes b in pieces of size bytes every
// every, until b is written, stop is closed or the write fails.
func (h *hostile) dialDrip(b []byte, size int, every time.Duration, stop <-chan struct{}) (net.Conn, <-chan error, error) {
	conn, err := net.DialTimeout("tcp", h.addr, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	done := make(chan error, 1)
	go func() {
		for len(b) > 0 {
			n := min(size, len(b))
			if _, err := conn.Write(b[:n]); err != nil {
				done <- err
				return
			}
			b = b[n:]
			select {
			case <-stop:
				done <- errors.New("stopped")
				return
			case <-time.After(every):
			}
		}
		done <- nil
	}()
	return conn, done, nil
}

// goodLatency sends good requests on fresh connections while a hostile
// one is under way and fails if one takes longer than limit. The limit is
// not a latency target (a shared CPU makes a request slow, not wrong):
// callers give one well under how long the hostile connection lasts, so
// that a request queued behind it is told from a slow one.
func (h *hostile) goodLatency(t *testing.T, n int, limit time.Duration) {
	t.Helper()
	for i := range n {
		began := time.Now()
		r := h.post("/iap/1/balance", rpcBody("meanwhile", map[string]any{"account_token": h.tokA, "service_name": hostileService}))
		h.result(t, r)
		if d := time.Since(began); d > limit {
			t.Fatalf("good request %d took %s while the hostile one was under way", i, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// exchangeHalfClose writes raw, closes the sending side (the request
// will not grow) and reads one answer.
func (h *hostile) exchangeHalfClose(raw []byte, method string) hresp {
	return h.pipeline(raw, []string{method}, true)[0]
}
