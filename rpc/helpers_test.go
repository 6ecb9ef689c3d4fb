package rpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/storage"
)

// The custom service of the fixtures: Odoo's provider helpers were called
// with this key (fixtures odoo17 011/012, odoo18 028–031, nocredit_024/025).
const stubService storage.ServiceName = "stub"

const stubKey = "stub-service-key"

const testPublicURL = "https://iap.example.test"

// testLogger logs to the test output with -v and IAPD_TEST_LOG set;
// otherwise discards.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("IAPD_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// setupServices creates the built-in services (auto-registering, no
// trial credit; units as Odoo ships them, PROTOCOL §3) and the stub
// provider service with its key.
func setupServices(t testing.TB, l storage.Ledger) {
	t.Helper()
	ctx := context.Background()
	units := map[storage.ServiceName]string{
		storage.SMS: "Credits", storage.Snailmail: "Stamps",
		storage.PartnerAutocomplete: "Enrichments", storage.Reveal: "Credits",
	}
	for _, name := range storage.BuiltinServices {
		if _, err := l.EnsureService(ctx, storage.Service{Name: name, AutoRegister: true,
			Description: "Odoo " + string(name), UnitName: units[name]}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.EnsureService(ctx, storage.Service{Name: stubService, AutoRegister: true, Description: "Stub provider"}); err != nil {
		t.Fatal(err)
	}
	if err := l.SetServiceKey(ctx, stubService, storage.HashKey(stubKey)); err != nil {
		t.Fatal(err)
	}
}

func recharge(t testing.TB, l storage.Ledger, svc storage.ServiceName, tok storage.AccountToken, amount string) {
	t.Helper()
	c, err := storage.ParseCredits(amount)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Recharge(context.Background(), storage.RechargeRequest{Service: svc, Account: tok, Amount: c, Kind: storage.EntryRecharge}); err != nil {
		t.Fatal(err)
	}
}

func newTestServer(t testing.TB, l storage.Ledger) *Server {
	t.Helper()
	s, err := New(Config{Ledger: l, PublicURL: testPublicURL + "/", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startServer serves s on a real fasthttp server on 127.0.0.1:0 and
// returns its address.
func startServer(t testing.TB, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewHTTPServer(s.Front(s.Handler()), testLogger(t))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.ShutdownWithContext(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// reply is an HTTP answer.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

// rawRequest sends one HTTP/1.1 request with exactly these path, headers
// and body bytes on a new connection and reads the answer.
func rawRequest(t testing.TB, addr, method, path string, headers map[string]string, body []byte) reply {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, addr)
	keys := make([]string, 0, len(headers))
	for k := range headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	hasLen := false
	for _, k := range keys {
		if strings.EqualFold(k, "Content-Length") {
			hasLen = true
		}
		fmt.Fprintf(&req, "%s: %s\r\n", k, headers[k])
	}
	if !hasLen && (body != nil || method == "POST" || method == "PUT") {
		fmt.Fprintf(&req, "Content-Length: %d\r\n", len(body))
	}
	req.WriteString("\r\n")
	req.Write(body)
	if _, err := conn.Write(req.Bytes()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// odooHeaders are the headers python-requests sends (fixtures READMEs).
func odooHeaders(n int) map[string]string {
	return map[string]string{
		"User-Agent": "python-requests/2.28.1", "Accept-Encoding": "gzip, deflate", "Accept": "*/*",
		"Connection": "keep-alive", "Content-Type": "application/json", "Content-Length": fmt.Sprint(n),
	}
}

// call posts an Odoo JSON-RPC request with these params and returns the
// decoded answer.
func call(t testing.TB, addr, path string, params any) map[string]any {
	t.Helper()
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "params": params, "id": "test-id"})
	if err != nil {
		t.Fatal(err)
	}
	r := rawRequest(t, addr, "POST", path, odooHeaders(len(body)), body)
	return mustEnvelope(t, r)
}

// mustEnvelope checks an answer is HTTP 200 JSON holding a JSON-RPC
// envelope and decodes it (numbers as json.Number).
func mustEnvelope(t testing.TB, r reply) map[string]any {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("HTTP %d, want 200: %s", r.Status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q: %s", ct, r.Body)
	}
	m, err := decodeJSON(r.Body)
	if err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, r.Body)
	}
	env, ok := m.(map[string]any)
	if !ok || env["jsonrpc"] != "2.0" {
		t.Fatalf("not a JSON-RPC envelope: %s", r.Body)
	}
	_, hasResult := env["result"]
	_, hasError := env["error"]
	if hasResult == hasError {
		t.Fatalf("envelope must have exactly one of result and error: %s", r.Body)
	}
	if _, ok := env["id"]; !ok {
		t.Fatalf("envelope has no id: %s", r.Body)
	}
	if hasError {
		checkErrorShape(t, env, r.Body)
	}
	return env
}

// checkErrorShape checks Odoo's error envelope (PROTOCOL §1.3): data.name
// a non-empty string, data.message a string, arguments, context, debug.
func checkErrorShape(t testing.TB, env map[string]any, raw []byte) {
	t.Helper()
	e, ok := env["error"].(map[string]any)
	if !ok {
		t.Fatalf("error is not an object: %s", raw)
	}
	if keys(e) != "code,data,message" || e["message"] != "Odoo Server Error" {
		t.Fatalf("error keys %s: %s", keys(e), raw)
	}
	d, ok := e["data"].(map[string]any)
	if !ok || keys(d) != "arguments,context,debug,message,name" {
		t.Fatalf("error.data keys: %s", raw)
	}
	if name, ok := d["name"].(string); !ok || name == "" {
		t.Fatalf("error.data.name must be a non-empty string: %s", raw)
	}
	msg, ok := d["message"].(string)
	if !ok {
		t.Fatalf("error.data.message must be a string: %s", raw)
	}
	if args, ok := d["arguments"].([]any); !ok || len(args) != 1 || args[0] != msg {
		t.Fatalf("error.data.arguments must be [message]: %s", raw)
	}
}

func decodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, fmt.Errorf("trailing data")
	}
	return v, nil
}

// keys returns the sorted keys of m, comma-joined.
func keys(m map[string]any) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}

// errorName returns error.data.name of an envelope ("" on success).
func errorName(env map[string]any) string {
	e, _ := env["error"].(map[string]any)
	d, _ := e["data"].(map[string]any)
	n, _ := d["name"].(string)
	return n
}

func errorMessage(env map[string]any) string {
	e, _ := env["error"].(map[string]any)
	d, _ := e["data"].(map[string]any)
	n, _ := d["message"].(string)
	return n
}

// serveInProcess runs h on one request without a network.
func serveInProcess(h fasthttp.RequestHandler, method, path, contentType string, body []byte) *fasthttp.Response {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(path)
	if contentType != "" {
		req.Header.SetContentType(contentType)
	}
	req.SetBody(body)
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	h(&ctx)
	var resp fasthttp.Response
	ctx.Response.CopyTo(&resp)
	return &resp
}
