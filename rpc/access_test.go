package rpc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/storage"
)

// accessLines parses the JSON access lines of out.
func accessLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("access line is not JSON: %v: %s", err, l)
		}
		lines = append(lines, m)
	}
	return lines
}

// The access log (issue 14): one line per request whoever answers it,
// with the route, the service, the account by TokenRef, the outcome and
// the error name Odoo got (PROTOCOL §1.3), the HTTP status, the sizes,
// the client as the client address header resolves it, and the Odoo
// version when the request tells it; never the token.
func TestAccessLog(t *testing.T) {
	l := newMemLedger()
	setupServices(t, l)
	const rich = "0123456789abcdef0123456789abcdef"
	const poor = "fedcba9876543210fedcba9876543210"
	recharge(t, l, storage.SMS, rich, "10")
	recharge(t, l, stubService, rich, "10")
	var out lockedBuffer
	s, err := New(Config{Ledger: l, PublicURL: testPublicURL, Logger: testLogger(t),
		AccessLog:      slog.New(slog.NewJSONHandler(&out, nil)),
		ClientIPHeader: "X-Real-IP"})
	if err != nil {
		t.Fatal(err)
	}
	s.HandleGET("/page", func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("page") })
	addr := startServer(t, s)

	post := func(path string, params map[string]any, hdr map[string]string) reply {
		body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": 1, "params": params})
		h := odooHeaders(len(body))
		for k, v := range hdr {
			h[k] = v
		}
		return rawRequest(t, addr, "POST", path, h, body)
	}
	type want struct {
		path, service, account, outcome, errName, client, version string
		status                                                    int
	}
	var wants []want
	// A result (§4.1), from behind a proxy, with Odoo 19's db_version.
	r := post("/iap/1/balance", map[string]any{"account_token": rich + "+disabled", "service_name": "sms", "db_version": "19.0+e-20251227"},
		map[string]string{"X-Real-IP": "2001:db8::7"})
	wants = append(wants, want{"/iap/1/balance", "sms", TokenRef(rich), OutcomeOK, "", "2001:db8::7", "19.0+e-20251227", 200})
	// InsufficientCreditError (§5.1).
	post("/iap/1/authorize", map[string]any{"account_token": poor, "key": stubKey, "credit": 5}, nil)
	wants = append(wants, want{"/iap/1/authorize", "", TokenRef(poor), "insufficient_credit", "InsufficientCreditError", "127.0.0.1", "", 200})
	// AccessError: a wrong service key.
	post("/iap/1/authorize", map[string]any{"account_token": rich, "key": "wrong-secret-key", "credit": 1}, nil)
	wants = append(wants, want{"/iap/1/authorize", "", TokenRef(rich), "unauthorized", "AccessError", "127.0.0.1", "", 200})
	// UserError: params the route refuses.
	post("/iap/1/authorize", map[string]any{"account_token": rich, "key": stubKey, "credit": "x"}, nil)
	wants = append(wants, want{"/iap/1/authorize", "", TokenRef(rich), "invalid", "UserError", "127.0.0.1", "", 200})
	// NotFound: a path iapd does not serve.
	post("/iap/message_send", map[string]any{"account_token": rich}, nil)
	wants = append(wants, want{"/iap/message_send", "", TokenRef(rich), "not_found", "NotFound", "127.0.0.1", "", 200})
	// A body over the route's limit, refused from its Content-Length.
	big := bytes.Repeat([]byte(" "), 70<<10)
	rawRequest(t, addr, "POST", "/iap/1/balance", odooHeaders(len(big)), big)
	wants = append(wants, want{"/iap/1/balance", "", "", "invalid", "UserError", "127.0.0.1", "", 200})
	// A page, and an HTTP-level answer.
	rawRequest(t, addr, "GET", "/page", nil, nil)
	wants = append(wants, want{"/page", "", "", OutcomeOK, "", "127.0.0.1", "", 200})
	rawRequest(t, addr, "GET", "/nowhere", nil, nil)
	wants = append(wants, want{"/nowhere", "", "", OutcomeHTTPError, "", "127.0.0.1", "", 404})
	if r.Status != 200 {
		t.Fatalf("balance: HTTP %d", r.Status)
	}

	text := out.String()
	for _, secret := range []string{rich, poor, stubKey, "wrong-secret-key"} {
		if strings.Contains(text, secret) {
			t.Fatalf("the access log holds a secret %q:\n%s", secret, text)
		}
	}
	lines := accessLines(t, text)
	if len(lines) != len(wants) {
		t.Fatalf("%d access lines for %d requests:\n%s", len(lines), len(wants), text)
	}
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
	for i, w := range wants {
		m := lines[i]
		got := want{str(m, "path"), str(m, "service"), str(m, "account"), str(m, "outcome"), str(m, "error"),
			str(m, "client"), str(m, "odoo_version"), 0}
		if st, ok := m["status"].(float64); ok {
			got.status = int(st)
		}
		if got != w {
			t.Errorf("line %d:\n got  %+v\n want %+v\n%v", i, got, w, m)
		}
		if m["msg"] != "request" || m["level"] != "INFO" {
			t.Errorf("line %d: msg %v level %v", i, m["msg"], m["level"])
		}
		if _, ok := m["duration"]; !ok {
			t.Errorf("line %d: no duration", i)
		}
		if rb, _ := m["response_bytes"].(float64); rb <= 0 {
			t.Errorf("line %d: response_bytes %v", i, m["response_bytes"])
		}
	}
	if rb, _ := lines[0]["request_bytes"].(float64); rb < 50 {
		t.Errorf("balance: request_bytes %v", lines[0]["request_bytes"])
	}
	if rb, _ := lines[5]["request_bytes"].(float64); int(rb) != len(big) {
		t.Errorf("refused body: request_bytes %v, want the declared %d", lines[5]["request_bytes"], len(big))
	}
}

// answerError reads error.data.name of any error envelope, ours or an
// upstream's (spaces, key order), and nothing else.
func TestAnswerError(t *testing.T) {
	for in, want := range map[string]string{
		string(appendErrorEnvelope(nil, []byte("1"), 200, nameInsufficientCredit, "m")):                                        "InsufficientCreditError",
		string(appendNotFound(nil, nil)):                                                                                       "NotFound",
		`{"id": 1, "error": {"data": {"message": "x", "name": "odoo.exceptions.AccessError"}, "code": 200}, "jsonrpc": "2.0"}`: "AccessError",
		`{"jsonrpc":"2.0","id":1,"result":{"error":{"data":{"name":"a.B"}}}}`:                                                  "",
		`{"jsonrpc":"2.0","id":1,"result":"error"}`:                                                                            "",
		`{"error": {"data": {"name": 3}}}`:                                                                                     "",
		`{"error": {"data": {"name": "x`:                                                                                       "",
		`not json "error"`:                                                                                                     "",
		"":                                                                                                                     "",
	} {
		if got := answerError([]byte(in)); got != want {
			t.Errorf("answerError(%s) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkAccessLog: a balance call through the front, router, seam and
// handler (in process, on the map ledger: the front's own cost), with the
// access log off and on (JSON lines to io.Discard).
func BenchmarkAccessLog(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("access=%v", on), func(b *testing.B) {
			l := newMemLedger()
			setupServices(b, l)
			recharge(b, l, storage.SMS, "e1c341df746e42af93b5587c490dc106", "4242")
			cfg := Config{Ledger: l, PublicURL: testPublicURL}
			if on {
				cfg.AccessLog = slog.New(slog.NewJSONHandler(discard{}, nil))
			}
			s, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			h := s.Front(s.Handler())
			body := balanceFixture(b)
			var req fasthttp.Request
			req.Header.SetMethod("POST")
			req.SetRequestURI("/iap/1/balance")
			req.SetBody(body)
			var ctx fasthttp.RequestCtx
			ctx.Init(&req, nil, nil)
			b.ReportAllocs()
			for b.Loop() {
				ctx.Response.Reset()
				ctx.ResetUserValues()
				h(&ctx)
			}
			if ctx.Response.StatusCode() != 200 || bytes.Contains(ctx.Response.Body(), []byte(`"error"`)) {
				b.Fatalf("answer: %s", ctx.Response.Body())
			}
		})
	}
}

// BenchmarkAccessLogAuthorizeCapture: authorize and capture through the
// whole stack over a connection (in-memory listener) on the on-disk
// Badger ledger, 16×GOMAXPROCS clients, with the access log off and on.
func BenchmarkAccessLogAuthorizeCapture(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("access=%v", on), func(b *testing.B) {
			l := testLedger(b)
			setupServices(b, l)
			for i := range 64 {
				recharge(b, l, stubService, storage.AccountToken(fmt.Sprintf("%032x", i)), "1000000000")
			}
			cfg := Config{Ledger: l, PublicURL: testPublicURL}
			if on {
				cfg.AccessLog = slog.New(slog.NewJSONHandler(discard{}, nil))
			}
			s, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			c := inMemoryServer(b, s.Front(s.Handler()))
			var next atomic.Int64
			b.SetParallelism(16)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				tok := fmt.Sprintf("%032x", next.Add(1)%64)
				authorize := rpcBody("a", map[string]any{"account_token": tok, "key": stubKey, "credit": 1, "ttl": 1})
				for pb.Next() {
					var env struct{ Result string }
					if json.Unmarshal(postVia(b, c, "/iap/1/authorize", authorize), &env) != nil || len(env.Result) != 32 {
						b.Fatal("authorize failed")
					}
					postVia(b, c, "/iap/1/capture", rpcBody("c", map[string]any{"token": env.Result, "key": stubKey, "credit_to_capture": 1}))
				}
			})
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
