package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/iapd/iapd/rpc/rpctest"
	"github.com/iapd/iapd/storage"
)

const badTok = "0123456789abcdef0123456789abcdef"

// badInputServer is a real server with an account of 100 credits in sms
// and in the stub service.
func badInputServer(t *testing.T) (addr string, l storage.Ledger) {
	l = testLedger(t)
	setupServices(t, l)
	recharge(t, l, storage.SMS, badTok, "100")
	recharge(t, l, stubService, badTok, "100")
	return startServer(t, newTestServer(t, l)), l
}

// stillServing checks the server answers a good request after a bad one.
func stillServing(t *testing.T, addr string) {
	t.Helper()
	env := call(t, addr, "/iap/1/balance", map[string]any{"account_token": badTok, "service_name": "sms"})
	if env["result"] == nil {
		t.Fatalf("the server stopped answering good requests: %v", env)
	}
}

// expectError checks env is an error envelope with this data.name whose
// message contains want.
func expectError(t *testing.T, env map[string]any, name, want string) {
	t.Helper()
	if got := errorName(env); got != name {
		t.Fatalf("error name %q, want %q (answer %v)", got, name, env)
	}
	if !strings.Contains(errorMessage(env), want) {
		t.Errorf("message %q does not mention %q", errorMessage(env), want)
	}
}

func post(t *testing.T, addr, path, ctype string, body []byte) map[string]any {
	t.Helper()
	h := odooHeaders(len(body))
	if ctype == "" {
		delete(h, "Content-Type")
	} else {
		h["Content-Type"] = ctype
	}
	return mustEnvelope(t, rawRequest(t, addr, "POST", path, h, body))
}

// Malformed or truncated JSON, and bodies that are not a JSON-RPC object,
// get a UserError envelope (PROTOCOL §1.2: always HTTP 200, valid JSON).
func TestBadInputMalformed(t *testing.T) {
	addr, _ := badInputServer(t)
	fixture := rpctest.Load(t, "odoo18", func(r *rpctest.Request) bool { return r.Name == "028_iap_1_authorize.json" })[0].Wire(t)
	cases := map[string]string{
		"empty":          ``,
		"open brace":     `{`,
		"truncated":      string(fixture[:len(fixture)/2]),
		"truncated end":  string(fixture[:len(fixture)-1]),
		"missing value":  `{"jsonrpc": "2.0", "params": {"account_token": }, "id": 1}`,
		"trailing data":  `{"jsonrpc": "2.0", "params": {}, "id": 1} {}`,
		"bare NaN":       `{"jsonrpc": "2.0", "params": {"credit": NaN}, "id": 1}`,
		"null":           `null`,
		"array (batch)":  `[{"jsonrpc": "2.0", "params": {}, "id": 1}]`,
		"string":         `"call"`,
		"number":         `42`,
		"invalid utf-8":  "{\"jsonrpc\": \"2.0\", \"params\": {\"account_token\": \"\xff\xfe\"}, \"id\": 1}",
		"params string":  `{"jsonrpc": "2.0", "params": "x", "id": 1}`,
		"params array":   `{"jsonrpc": "2.0", "params": [1, 2], "id": 1}`,
		"params number":  `{"jsonrpc": "2.0", "params": 3, "id": 1}`,
		"params null":    `{"jsonrpc": "2.0", "params": null, "id": 1}`,
		"params missing": `{"jsonrpc": "2.0", "id": 1}`,
		"deep nesting":   `{"params": {"x": ` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}}`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			for _, path := range []string{"/iap/1/balance", "/iap/1/authorize", "/iap/services-token"} {
				env := post(t, addr, path, "application/json", []byte(body))
				if name == "invalid utf-8" && path == "/iap/services-token" {
					continue // decoded as U+FFFD: not a token, left out of the list
				}
				if _, ok := env["error"]; !ok {
					t.Fatalf("%s: %s answered %v", path, name, env)
				}
				if n := errorName(env); n != nameUserError && n != nameAccessError {
					t.Errorf("%s: error %s", path, n)
				}
			}
			stillServing(t, addr)
		})
	}
}

// validParams are correct params of every route (the transaction token
// is filled in by the test).
func validParams(route string) map[string]any {
	switch route {
	case "/iap/1/balance":
		return map[string]any{"dbuuid": "db", "account_token": badTok, "service_name": "sms"}
	case "/iap/services-token":
		return map[string]any{"dbuuid": "db", "iap_accounts": []any{badTok}}
	case "/iap/update-warning-odoo":
		return map[string]any{"account_token": badTok, "dbuuid": "db", "warn_me": true, "warning_threshold": 10, "warning_email": "a@example.org"}
	case "/iap/1/get-accounts-information":
		return map[string]any{"iap_accounts": []any{map[string]any{"token": badTok, "service": "sms"}}, "dbuuid": "db"}
	case "/iap/1/update-warning-email-alerts":
		return map[string]any{"account_token": badTok, "warning_threshold": 1, "warning_emails": []any{map[string]any{"email": "a@example.org", "lang_code": "en_US"}}}
	case "/iap/1/authorize":
		return map[string]any{"account_token": badTok, "key": stubKey, "credit": 1, "description": "d", "ttl": 24, "dbuuid": "db"}
	case "/iap/1/capture":
		return map[string]any{"token": "", "key": stubKey, "credit_to_capture": 1}
	case "/iap/1/cancel":
		return map[string]any{"token": "", "key": stubKey}
	}
	panic(route)
}

// wrongValues are values of the wrong JSON type for a param whose valid
// value is v.
func wrongValues(v any) []any {
	switch v.(type) {
	case string:
		return []any{12, true, map[string]any{}, []any{"x"}}
	case int, float64:
		return []any{"1", true, map[string]any{}, []any{1}}
	case bool:
		return []any{"yes", 1, []any{}}
	case []any:
		return []any{"x", 1, true, map[string]any{}}
	}
	panic(fmt.Sprintf("%T", v))
}

// Every param of every route, given a value of the wrong JSON type, gets a
// UserError naming it; a good request of the same route then succeeds.
func TestBadInputWrongTypes(t *testing.T) {
	addr, _ := badInputServer(t)
	for _, rt := range routes {
		t.Run(rt.Path, func(t *testing.T) {
			for param, good := range validParams(rt.Path) {
				for _, bad := range wrongValues(good) {
					p := validParams(rt.Path)
					if p["token"] != nil {
						p["token"] = authorizeOne(t, addr)
					}
					p[param] = bad
					env := call(t, addr, rt.Path, p)
					expectError(t, env, nameUserError, param)
				}
			}
			// Nested params.
			switch rt.Path {
			case "/iap/1/get-accounts-information":
				p := validParams(rt.Path)
				p["iap_accounts"] = []any{map[string]any{"token": 5, "service": "sms"}}
				expectError(t, call(t, addr, rt.Path, p), nameUserError, "iap_accounts.token")
				p["iap_accounts"] = []any{"not an object"}
				expectError(t, call(t, addr, rt.Path, p), nameUserError, "iap_accounts")
			case "/iap/1/update-warning-email-alerts":
				p := validParams(rt.Path)
				p["warning_emails"] = []any{map[string]any{"email": 5}}
				expectError(t, call(t, addr, rt.Path, p), nameUserError, "warning_emails.email")
			case "/iap/services-token":
				p := validParams(rt.Path)
				p["iap_accounts"] = []any{badTok, 7}
				expectError(t, call(t, addr, rt.Path, p), nameUserError, "iap_accounts")
			}
			p := validParams(rt.Path)
			if p["token"] != nil {
				p["token"] = authorizeOne(t, addr)
			}
			if env := call(t, addr, rt.Path, p); env["error"] != nil {
				t.Fatalf("good request refused: %v", env)
			}
		})
	}
}

func authorizeOne(t *testing.T, addr string) string {
	t.Helper()
	env := call(t, addr, "/iap/1/authorize", validParams("/iap/1/authorize"))
	s, ok := env["result"].(string)
	if !ok {
		t.Fatalf("authorize: %v", env)
	}
	return s
}

// Credit amounts are converted exactly; negative, not-a-number, dust and
// huge amounts are refused as UserError naming the param (and nothing is
// held).
func TestBadInputCredits(t *testing.T) {
	addr, l := badInputServer(t)
	bad := []string{`-1`, `-0.5`, `"NaN"`, `"1"`, `0.00001`, `1e20`, `1e400`, `1000000000001`, `true`, `[]`, `{}`}
	for _, lit := range bad {
		for _, c := range []struct{ path, param string }{
			{"/iap/1/authorize", "credit"},
			{"/iap/1/capture", "credit_to_capture"},
			{"/iap/1/update-warning-email-alerts", "warning_threshold"},
			{"/iap/update-warning-odoo", "warning_threshold"},
		} {
			t.Run(c.path+"/"+lit, func(t *testing.T) {
				p := validParams(c.path)
				if p["token"] != nil {
					p["token"] = authorizeOne(t, addr)
				}
				p[c.param] = json.RawMessage(lit)
				env := call(t, addr, c.path, p)
				expectError(t, env, nameUserError, c.param)
			})
		}
	}
	// Missing credit on authorize.
	p := validParams("/iap/1/authorize")
	delete(p, "credit")
	expectError(t, call(t, addr, "/iap/1/authorize", p), nameUserError, "credit")
	// Bad ttl.
	for _, ttl := range []string{`0`, `-5`, `1.5`, `"24"`, `1e9`} {
		p := validParams("/iap/1/authorize")
		p["ttl"] = json.RawMessage(ttl)
		expectError(t, call(t, addr, "/iap/1/authorize", p), nameUserError, "ttl")
	}
	// Only the holds of the successful authorizes above are open; every
	// refused one left the account alone.
	a, err := l.LookupAccount(t.Context(), stubService, badTok)
	if err != nil {
		t.Fatal(err)
	}
	if a.Recharged != a.Available+a.Held+a.Captured {
		t.Errorf("invariant broken: %+v", a)
	}
	stillServing(t, addr)
}

// The provider API refuses wrong keys, unknown transactions and disabled
// tokens with AccessError, and state conflicts with UserError (§5).
func TestBadInputTransactions(t *testing.T) {
	addr, l := badInputServer(t)
	ctx := t.Context()

	// Wrong, missing and empty keys.
	for _, key := range []any{"wrong", "", nil} {
		for _, path := range []string{"/iap/1/authorize", "/iap/1/capture", "/iap/1/cancel"} {
			p := validParams(path)
			if p["token"] != nil {
				p["token"] = authorizeOne(t, addr)
			}
			if key == nil {
				delete(p, "key")
			} else {
				p["key"] = key
			}
			expectError(t, call(t, addr, path, p), nameAccessError, "")
		}
	}
	// Unknown transactions.
	for _, path := range []string{"/iap/1/capture", "/iap/1/cancel"} {
		p := validParams(path)
		p["token"] = "ffffffffffffffffffffffffffffffff"
		expectError(t, call(t, addr, path, p), nameAccessError, "Unknown transaction")
		p["token"] = strings.Repeat("a", 500)
		expectError(t, call(t, addr, path, p), nameUserError, "token")
		delete(p, "token")
		expectError(t, call(t, addr, path, p), nameUserError, "token")
	}
	// A transaction of another service is unknown to this key.
	if _, err := l.EnsureService(ctx, storage.Service{Name: "other", AutoRegister: true}); err != nil {
		t.Fatal(err)
	}
	if err := l.SetServiceKey(ctx, "other", storage.HashKey("other-key")); err != nil {
		t.Fatal(err)
	}
	txn := authorizeOne(t, addr)
	expectError(t, call(t, addr, "/iap/1/capture", map[string]any{"token": txn, "key": "other-key"}), nameAccessError, "Unknown transaction")

	// Disabled tokens are refused before the ledger: no account, nothing held.
	for _, tok := range []string{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa+disabled", badTok + "+disabled", badTok + "+DISABLED", badTok + "+x+disabled",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa+disabled ", badTok + "+disabled ", badTok + "+disabled\x00", badTok + "+ disabled\n", badTok + "+disable", badTok + "+x"} {
		p := validParams("/iap/1/authorize")
		p["account_token"] = tok
		expectError(t, call(t, addr, "/iap/1/authorize", p), nameAccessError, "neutralised")
	}
	if _, err := l.LookupAccount(ctx, stubService, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"); !storage.Is(err, storage.NotFound) {
		t.Errorf("a disabled token created an account: %v", err)
	}
	// Bad account tokens.
	for _, tok := range []any{"", "+disabled", strings.Repeat("a", 65), "has space"} {
		p := validParams("/iap/1/authorize")
		p["account_token"] = tok
		expectError(t, call(t, addr, "/iap/1/authorize", p), nameUserError, "account_token")
	}

	// Capture twice (idempotent), cancel after capture (UserError), capture
	// after cancel (UserError), cancel twice (idempotent), capture with
	// false = the held amount, capture for another amount (UserError).
	txn = authorizeOne(t, addr)
	capture := map[string]any{"token": txn, "key": stubKey, "credit_to_capture": false}
	for range 2 {
		if env := call(t, addr, "/iap/1/capture", capture); env["result"] != true {
			t.Fatalf("capture: %v", env)
		}
	}
	capture["credit_to_capture"] = 0.5
	expectError(t, call(t, addr, "/iap/1/capture", capture), nameUserError, "cannot be captured")
	expectError(t, call(t, addr, "/iap/1/cancel", map[string]any{"token": txn, "key": stubKey}), nameUserError, "cannot be cancelled")

	txn = authorizeOne(t, addr)
	for range 2 {
		if env := call(t, addr, "/iap/1/cancel", map[string]any{"token": txn, "key": stubKey}); env["result"] != true {
			t.Fatalf("cancel: %v", env)
		}
	}
	expectError(t, call(t, addr, "/iap/1/capture", map[string]any{"token": txn, "key": stubKey}), nameUserError, "cannot be captured")

	// Held credit is not available (§5.1): hold 99.5 of what is left.
	a, _ := l.LookupAccount(ctx, stubService, badTok)
	p := validParams("/iap/1/authorize")
	p["credit"] = json.RawMessage(a.Available.String())
	authorizeOne(t, addr) // 1 more held
	env := call(t, addr, "/iap/1/authorize", p)
	checkInsufficientCredit(t, env, map[string]any{"credit": json.Number(a.Available.String())}, stubService)
	stillServing(t, addr)
}

// A provider may settle a hold of an account banned since the authorize —
// a capture up to the hold — but not capture more: the excess would be new
// spending, which authorize refuses a banned account. The refusal is an
// AccessError (the one error §5.2 lists for capture), the hold and the
// account unchanged, so the provider can still capture the hold or cancel.
func TestCaptureOverHoldBanned(t *testing.T) {
	addr, l := badInputServer(t)
	ctx := t.Context()
	over, exact := authorizeOne(t, addr), authorizeOne(t, addr) // 1 each, 98 available
	banned := storage.Banned
	if _, err := l.UpdateAccount(ctx, stubService, badTok, storage.AccountUpdate{State: &banned}); err != nil {
		t.Fatal(err)
	}
	for _, amount := range []any{1.0001, 2, 98} {
		env := call(t, addr, "/iap/1/capture", map[string]any{"token": over, "key": stubKey, "credit_to_capture": amount})
		expectError(t, env, nameAccessError, "banned")
	}
	if tx, err := l.Transaction(ctx, over); err != nil || tx.State != storage.Held || tx.Captured != 0 {
		t.Fatalf("hold after refused over-captures: %+v, %v", tx, err)
	}
	a, err := l.LookupAccount(ctx, stubService, badTok)
	if err != nil || a.Available.String() != "98" || a.Held.String() != "2" || a.Captured != 0 {
		t.Fatalf("account after refused over-captures: %+v, %v", a, err)
	}
	// Up to the hold settles what was held.
	for _, c := range []map[string]any{
		{"token": over, "key": stubKey, "credit_to_capture": 1},
		{"token": exact, "key": stubKey, "credit_to_capture": false},
	} {
		if env := call(t, addr, "/iap/1/capture", c); env["result"] != true {
			t.Fatalf("capture up to the hold of a banned account: %v", env)
		}
	}
	a, err = l.LookupAccount(ctx, stubService, badTok)
	if err != nil || a.Available.String() != "98" || a.Held != 0 || a.Captured.String() != "2" {
		t.Fatalf("account after the captures: %+v, %v", a, err)
	}
}

// Account routes never answer InsufficientCreditError (§4.1) and an
// account without credit has balance 0; held credit is not part of the
// balance.
func TestBalanceIsAvailableCredit(t *testing.T) {
	addr, _ := badInputServer(t)
	p := validParams("/iap/1/authorize")
	p["credit"] = 30.25
	p["account_token"] = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	expectError(t, call(t, addr, "/iap/1/authorize", p), nameInsufficientCredit, "credit")

	p["account_token"] = badTok
	call(t, addr, "/iap/1/authorize", p)
	env := call(t, addr, "/iap/1/balance", map[string]any{"account_token": badTok, "service_name": "stub"})
	if fmt.Sprint(env["result"]) != "69.75" {
		t.Errorf("balance %v, want 69.75 (100 - 30.25 held)", env["result"])
	}
	env = call(t, addr, "/iap/1/balance", map[string]any{"account_token": "cccccccccccccccccccccccccccccccc", "service_name": "sms"})
	if fmt.Sprint(env["result"]) != "0" {
		t.Errorf("new account balance %v, want 0", env["result"])
	}
	expectError(t, call(t, addr, "/iap/1/balance", map[string]any{"account_token": badTok, "service_name": "nope"}), nameAccessError, "Unknown service")
	expectError(t, call(t, addr, "/iap/1/balance", map[string]any{"account_token": badTok, "service_name": "Bad Name"}), nameAccessError, "Unknown service")
	expectError(t, call(t, addr, "/iap/1/balance", map[string]any{"account_token": badTok}), nameUserError, "service_name")
}

// The transport: methods, content types, paths, body limits and ids.
func TestBadInputTransport(t *testing.T) {
	addr, _ := badInputServer(t)
	good, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": "x",
		"params": map[string]any{"account_token": badTok, "service_name": "sms"}})

	t.Run("methods", func(t *testing.T) {
		for _, m := range []string{"GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"} {
			var body []byte
			if m == "PUT" || m == "PATCH" {
				body = good
			}
			r := rawRequest(t, addr, m, "/iap/1/balance", nil, body)
			if r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "POST" {
				t.Errorf("%s: HTTP %d Allow %q", m, r.Status, r.Header.Get("Allow"))
			}
		}
		stillServing(t, addr)
	})

	t.Run("content types", func(t *testing.T) {
		for _, ct := range []string{"", "application/json", "application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "garbage;;;"} {
			env := post(t, addr, "/iap/1/balance", ct, good)
			if fmt.Sprint(env["result"]) != "100" {
				t.Errorf("%q: %v", ct, env)
			}
		}
	})

	t.Run("paths", func(t *testing.T) {
		// Odoo concatenates endpoint and route: an endpoint ending in '/'
		// gives "//iap/…" (§1.1, §15.1).
		for _, path := range []string{"//iap/1/balance", "/iap/1/balance/", "//iap//1///balance//", "/iap/1/balance?x=1"} {
			env := post(t, addr, path, "application/json", good)
			if fmt.Sprint(env["result"]) != "100" {
				t.Errorf("%s: %v", path, env)
			}
		}
		for _, path := range []string{"/", "/iap", "/iap/1/balanc", "/IAP/1/BALANCE", "/iap/1/balance/x", "/iap/2/balance"} {
			env := post(t, addr, path, "application/json", good)
			expectError(t, env, nameNotFound, "Not Found")
			if e := env["error"].(map[string]any); fmt.Sprint(e["code"]) != "404" {
				t.Errorf("%s: code %v", path, e["code"])
			}
			if env["id"] != "x" {
				t.Errorf("%s: id %v", path, env["id"])
			}
		}
		if r := rawRequest(t, addr, "GET", "/nothing", nil, nil); r.Status != http.StatusNotFound {
			t.Errorf("GET unknown: %d", r.Status)
		}
		stillServing(t, addr)
	})

	t.Run("ids", func(t *testing.T) {
		for _, id := range []string{`"s"`, `""`, `1`, `-0`, `1.5e3`, `12345678901234567890123`, `null`, `true`, `{"a":1}`, `["x"]`, `"\u00e9\n"`} {
			body := []byte(`{"jsonrpc": "2.0", "method": "call", "params": {"account_token": "` + badTok + `", "service_name": "sms"}, "id": ` + id + `}`)
			r := rawRequest(t, addr, "POST", "/iap/1/balance", odooHeaders(len(body)), body)
			mustEnvelope(t, r)
			if !bytes.Contains(r.Body, []byte(`"id":`+id+`,`)) {
				t.Errorf("id %s not echoed: %s", id, r.Body)
			}
			// and on errors
			bad := bytes.Replace(body, []byte(`"sms"`), []byte(`5`), 1)
			r = rawRequest(t, addr, "POST", "/iap/1/balance", odooHeaders(len(bad)), bad)
			mustEnvelope(t, r)
			if !bytes.Contains(r.Body, []byte(`"id":`+id+`,`)) {
				t.Errorf("id %s not echoed on error: %s", id, r.Body)
			}
		}
		body := []byte(`{"jsonrpc": "2.0", "method": "call", "params": {"account_token": "` + badTok + `", "service_name": "sms"}}`)
		r := rawRequest(t, addr, "POST", "/iap/1/balance", odooHeaders(len(body)), body)
		mustEnvelope(t, r)
		if !bytes.Contains(r.Body, []byte(`"id":null,`)) {
			t.Errorf("absent id not answered as null: %s", r.Body)
		}
	})

	t.Run("body limits", func(t *testing.T) {
		// Over the route's 64 KiB but within the server's limit: a JSON-RPC
		// error, id echoed.
		pad := strings.Repeat("x", 100<<10)
		body := []byte(`{"jsonrpc": "2.0", "method": "call", "id": "big", "params": {"account_token": "` + badTok + `", "service_name": "sms", "pad": "` + pad + `"}}`)
		env := post(t, addr, "/iap/1/balance", "application/json", body)
		expectError(t, env, nameUserError, "larger than")
		// Refused from its Content-Length, before the body is read: the id
		// is not known (Odoo never checks it, PROTOCOL §1.1).
		if env["id"] != nil {
			t.Errorf("id %v", env["id"])
		}
		// The same body is fine on a route with a larger limit (unknown
		// params are ignored).
		body = []byte(`{"jsonrpc": "2.0", "method": "call", "id": "big", "params": {"iap_accounts": [], "pad": "` + pad + `"}}`)
		if env := post(t, addr, "/iap/services-token", "application/json", body); env["error"] != nil {
			t.Errorf("services-token with a 100 KiB body: %v", env)
		}
		// Over the server's limit: the same JSON-RPC error, answered as
		// soon as the body starts (only its first bytes are sent), the
		// connection closed.
		r := rawRequest(t, addr, "POST", "/iap/1/balance", odooHeaders(DefaultMaxBodyBytes+1), []byte(`{"jsonrpc"`))
		mustEnvelope(t, r)
		if !bytes.Contains(r.Body, []byte("larger than")) {
			t.Errorf("over the server limit: HTTP %d %s", r.Status, r.Body)
		}
		stillServing(t, addr)
	})
}

// FuzzHandler: whatever the body and path, the answer is HTTP 200 with a
// well-formed envelope holding exactly one of result and error, error.data.name
// a non-empty string — and no panic.
func FuzzHandler(f *testing.F) {
	for _, v := range rpctest.Versions {
		for _, r := range rpctest.Load(f, v, func(r *rpctest.Request) bool { return isRoute(r.Path) }) {
			f.Add(normalizePath(r.Path), r.Wire(f))
		}
	}
	f.Add("/iap/1/authorize", []byte(`{"params": {"credit": 1e999999, "ttl": -1e-999}}`))
	l := newMemLedger()
	setupServices(f, l)
	h := newTestServer(f, l).Handler()
	f.Fuzz(func(t *testing.T, path string, body []byte) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, "?# \r\n\t%") {
			path = "/iap/1/balance"
		}
		resp := serveInProcess(h, "POST", path, "application/json", body)
		mustEnvelope(t, reply{Status: resp.StatusCode(), Header: http.Header{"Content-Type": {string(resp.Header.ContentType())}}, Body: resp.Body()})
	})
}

// One call may not name more accounts than any database has (a bound
// against creating accounts in bulk on first sight, PROTOCOL §4.2/§4.4).
func TestTooManyAccountsPerCall(t *testing.T) {
	addr, l := badInputServer(t)
	before, err := l.Accounts(context.Background(), storage.AccountFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var refs, toks []any
	for i := 0; i <= maxAccountsPerCall; i++ {
		tok := fmt.Sprintf("%032x", i+1)
		toks = append(toks, tok)
		refs = append(refs, map[string]any{"token": tok, "service": "sms"})
	}
	for path, params := range map[string]map[string]any{
		"/iap/1/get-accounts-information": {"iap_accounts": refs, "dbuuid": "x"},
		"/iap/services-token":             {"iap_accounts": toks, "dbuuid": "x"},
	} {
		env := call(t, addr, path, params)
		expectError(t, env, "odoo.exceptions.UserError", "at most")
		after, err := l.Accounts(context.Background(), storage.AccountFilter{Limit: 1000})
		if err != nil || len(after) != len(before) {
			t.Fatalf("%s: %d accounts before, %d after (%v)", path, len(before), len(after), err)
		}
		stillServing(t, addr)
	}
}
