package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/iapd/iapd/rpc/admin"
	"github.com/iapd/iapd/storage"
)

// hostileCases lists the suite's cases, by class (the part of the name
// before the first '/').
func hostileCases(h *hostile) []hcase {
	var cs []hcase
	for _, f := range []func(*hostile) []hcase{
		malformedCases, typeCases, duplicateKeyCases, nestingCases, numberCases, sizeCases, dripCases,
		methodCases, contentTypeCases, routeCases, tokenCases, suffixCases, transactionTokenCases,
		raceCases, pipelineCases, headerCases,
	} {
		cs = append(cs, f(h)...)
	}
	return cs
}

// refused is a case posting body to path whose answer must be an error
// envelope named name mentioning want, the ledger unchanged.
func refused(name, path string, body []byte, errName string, want ...string) hcase {
	return hcase{name: name, do: func(t *testing.T, h *hostile) {
		expectErr(t, h.post(path, body), errName, want...)
	}}
}

// withParam returns params with key set to the raw JSON value (a copy).
func withParam(params map[string]any, key string, raw string) map[string]any {
	p := make(map[string]any, len(params)+1)
	for k, v := range params {
		p[k] = v
	}
	p[key] = json.RawMessage(raw)
	return p
}

// ---- malformed and truncated JSON ----

func malformedCases(h *hostile) []hcase {
	good := string(rpcBody("m", h.authorizeParams(h.tokA, "1")))
	params := good[strings.Index(good, `"params":`)+len(`"params":`) : len(good)-1]
	tokAt := strings.Index(good, h.tokA)
	bodies := []struct{ name, body string }{
		{"empty", ``},
		{"whitespace only", " \r\n\t "},
		{"open brace", `{`},
		{"close brace", `}`},
		{"truncated at half", good[:len(good)/2]},
		{"truncated by one byte", good[:len(good)-1]},
		{"truncated inside a string", good[:tokAt+10]},
		{"missing value", `{"jsonrpc": "2.0", "id": 1, "params": {"account_token": }}`},
		{"missing comma", strings.Replace(good, `,"credit"`, ` "credit"`, 1)},
		{"trailing comma in object", strings.Replace(good, `}}`, `,}}`, 1)},
		{"trailing comma in array", `{"id": 1, "params": {"account_token": "` + h.tokA + `", "description": ["x",]}}`},
		{"trailing garbage", good + "x"},
		{"two objects", good + good},
		{"single quotes", strings.ReplaceAll(good, `"`, `'`)},
		{"comment", `{/* c */"id": 1, "params": ` + params + `}`},
		{"byte order mark", "\xef\xbb\xbf" + good},
		{"leading garbage", "x" + good},
		{"unterminated string", `{"id": 1, "params": {"account_token": "` + h.tokA},
		{"bad escape", strings.Replace(good, `"hostile"`, `"\x41"`, 1)},
		{"short unicode escape", strings.Replace(good, `"hostile"`, `"\u12"`, 1)},
		{"raw control character in string", strings.Replace(good, `"hostile"`, "\"a\x01b\"", 1)},
		{"raw newline in string", strings.Replace(good, `"hostile"`, "\"a\nb\"", 1)},
		{"raw NUL in string", strings.Replace(good, `"hostile"`, "\"a\x00b\"", 1)},
		{"NUL body", "\x00"},
		{"uppercase literal", strings.Replace(good, `"hostile"`, `NULL`, 1)},
		{"unquoted key", strings.Replace(good, `"params":`, `params:`, 1)},
		{"plus sign number", strings.Replace(good, `"credit":1`, `"credit":+1`, 1)},
		{"leading zero number", strings.Replace(good, `"credit":1`, `"credit":01`, 1)},
		{"bare fraction number", strings.Replace(good, `"credit":1`, `"credit":.5`, 1)},
		{"dangling dot number", strings.Replace(good, `"credit":1`, `"credit":1.`, 1)},
		{"hex number", strings.Replace(good, `"credit":1`, `"credit":0x10`, 1)},
		{"null body", `null`},
		{"batch array", `[` + good + `]`},
		{"string body", `"call"`},
		{"number body", `42`},
		{"params string", `{"jsonrpc": "2.0", "id": 1, "params": "x"}`},
		{"params array", `{"jsonrpc": "2.0", "id": 1, "params": ["` + h.tokA + `", "` + h.key + `", 1]}`},
		{"params number", `{"jsonrpc": "2.0", "id": 1, "params": 3}`},
		{"params true", `{"jsonrpc": "2.0", "id": 1, "params": true}`},
		{"params null", `{"jsonrpc": "2.0", "id": 1, "params": null}`},
		{"params missing", `{"jsonrpc": "2.0", "method": "call", "id": 1}`},
	}
	var cs []hcase
	for _, b := range bodies {
		cs = append(cs, refused("json/"+b.name, "/iap/1/authorize", []byte(b.body), "UserError"))
	}
	return cs
}

// ---- wrong JSON types for every param of every route ----

// paramKind is the JSON type a param takes.
type paramKind int

const (
	kString paramKind = iota
	kText             // a string, or false or null
	kNumber
	kBool
	kArray
)

type routeParam struct {
	name string
	kind paramKind
}

// routeParams are the params of every route and their types (PROTOCOL
// §4–§5), with good values in goodParams.
var routeParams = []struct {
	path   string
	params []routeParam
}{
	{"/iap/1/balance", []routeParam{{"dbuuid", kString}, {"account_token", kString}, {"service_name", kString}}},
	{"/iap/services-token", []routeParam{{"dbuuid", kString}, {"iap_accounts", kArray}}},
	{"/iap/update-warning-odoo", []routeParam{{"account_token", kString}, {"dbuuid", kString}, {"warn_me", kBool},
		{"warning_threshold", kNumber}, {"warning_email", kText}}},
	{"/iap/1/get-accounts-information", []routeParam{{"iap_accounts", kArray}, {"dbuuid", kString}}},
	{"/iap/1/update-warning-email-alerts", []routeParam{{"account_token", kString}, {"warning_threshold", kNumber}, {"warning_emails", kArray}}},
	{"/iap/1/authorize", []routeParam{{"account_token", kString}, {"key", kString}, {"credit", kNumber},
		{"description", kText}, {"ttl", kNumber}, {"dbuuid", kString}}},
	{"/iap/1/capture", []routeParam{{"token", kString}, {"key", kString}, {"credit_to_capture", kNumber}}},
	{"/iap/1/cancel", []routeParam{{"token", kString}, {"key", kString}}},
}

// goodParams are params each route accepts (and that would change the
// ledger on the routes that change it).
func (h *hostile) goodParams(path string) map[string]any {
	switch path {
	case "/iap/1/balance":
		return map[string]any{"dbuuid": "db", "account_token": h.tokA, "service_name": hostileService}
	case "/iap/services-token":
		return map[string]any{"dbuuid": "db", "iap_accounts": []any{h.tokA}}
	case "/iap/update-warning-odoo":
		return map[string]any{"account_token": h.tokA, "dbuuid": "db", "warn_me": true, "warning_threshold": 10, "warning_email": "a@example.org"}
	case "/iap/1/get-accounts-information":
		return map[string]any{"iap_accounts": []any{map[string]any{"token": h.tokA, "service": hostileService}}, "dbuuid": "db"}
	case "/iap/1/update-warning-email-alerts":
		return map[string]any{"account_token": h.tokA, "warning_threshold": 7, "warning_emails": []any{map[string]any{"email": "a@example.org", "lang_code": "en_US"}}}
	case "/iap/1/authorize":
		return h.authorizeParams(h.tokA, "1")
	case "/iap/1/capture":
		return map[string]any{"token": h.held, "key": h.key, "credit_to_capture": 1}
	case "/iap/1/cancel":
		return map[string]any{"token": h.held, "key": h.key}
	}
	panic(path)
}

// wrongValues are values of each wrong JSON type for a param of kind k,
// by the name of their type.
func wrongValues(k paramKind) [][2]string {
	switch k {
	case kString, kText:
		return [][2]string{{"number", `12`}, {"true", `true`}, {"object", `{"s": "x"}`}, {"array", `["x"]`}}
	case kNumber:
		return [][2]string{{"string", `"1"`}, {"true", `true`}, {"object", `{"n": 1}`}, {"array", `[1]`}}
	case kBool:
		return [][2]string{{"string", `"yes"`}, {"number", `1`}, {"array", `[]`}, {"object", `{}`}}
	case kArray:
		return [][2]string{{"string", `"x"`}, {"number", `1`}, {"true", `true`}, {"object", `{}`}}
	}
	panic(k)
}

func typeCases(h *hostile) []hcase {
	var cs []hcase
	for _, rt := range routeParams {
		route := rt.path[strings.LastIndexByte(rt.path, '/')+1:]
		for _, p := range rt.params {
			for _, w := range wrongValues(p.kind) {
				cs = append(cs, refused(fmt.Sprintf("types/%s/%s=%s", route, p.name, w[0]), rt.path,
					rpcBody("ty", withParam(h.goodParams(rt.path), p.name, w[1])), "UserError", p.name))
			}
		}
	}
	// Inside arrays.
	for _, n := range []struct{ name, path, param, raw, want string }{
		{"services-token/iap_accounts[0]=number", "/iap/services-token", "iap_accounts", `["` + h.tokA + `", 7]`, "iap_accounts"},
		{"services-token/iap_accounts[0]=object", "/iap/services-token", "iap_accounts", `[{"token": "x"}]`, "iap_accounts"},
		{"get-accounts-information/iap_accounts[0]=string", "/iap/1/get-accounts-information", "iap_accounts", `["` + h.tokA + `"]`, "iap_accounts"},
		{"get-accounts-information/iap_accounts[0].token=number", "/iap/1/get-accounts-information", "iap_accounts", `[{"token": 5, "service": "hostile"}]`, "iap_accounts.token"},
		{"get-accounts-information/iap_accounts[0].service=array", "/iap/1/get-accounts-information", "iap_accounts", `[{"token": "` + h.tokA + `", "service": ["hostile"]}]`, "iap_accounts.service"},
		{"update-warning-email-alerts/warning_emails[0]=string", "/iap/1/update-warning-email-alerts", "warning_emails", `["a@example.org"]`, "warning_emails"},
		{"update-warning-email-alerts/warning_emails[0].email=number", "/iap/1/update-warning-email-alerts", "warning_emails", `[{"email": 5, "lang_code": "en_US"}]`, "warning_emails.email"},
		{"update-warning-email-alerts/warning_emails[0].lang_code=object", "/iap/1/update-warning-email-alerts", "warning_emails", `[{"email": "a@example.org", "lang_code": {}}]`, "warning_emails.lang_code"},
	} {
		cs = append(cs, refused("types/"+n.name, n.path, rpcBody("ty", withParam(h.goodParams(n.path), n.param, n.raw)), "UserError", n.want))
	}
	return cs
}

// ---- duplicate keys ----

// Python's json (Odoo's) keeps the last of duplicate keys. A decoder may
// refuse duplicates; it must not act on an earlier value.
func duplicateKeyCases(h *hostile) []hcase {
	auth := func(dup string) []byte {
		return []byte(`{"jsonrpc": "2.0", "method": "call", "id": "dup", "params": {"account_token": "` + h.tokA +
			`", "key": "` + h.key + `", "ttl": 1, ` + dup + `}}`)
	}
	return []hcase{
		refused("dupkeys/credit good then dust", "/iap/1/authorize", auth(`"credit": 1, "credit": 0.00001`), "UserError", "credit"),
		refused("dupkeys/credit good then string", "/iap/1/authorize", auth(`"credit": 1, "credit": "1"`), "UserError", "credit"),
		refused("dupkeys/key right then wrong", "/iap/1/authorize", []byte(`{"id": 1, "params": {"account_token": "`+h.tokA+
			`", "credit": 1, "key": "`+h.key+`", "key": "wrong-key-0123456789"}}`), "AccessError"),
		refused("dupkeys/account_token then disabled", "/iap/1/authorize", auth(`"credit": 1, "account_token": "`+h.tokA+`+disabled"`), "AccessError"),
		refused("dupkeys/params good then null", "/iap/1/authorize", []byte(`{"id": 1, "params": `+
			string(mustJSON(h.authorizeParams(h.tokA, "1")))+`, "params": null}`), "UserError"),
		refused("dupkeys/params good then bad", "/iap/1/authorize", []byte(`{"id": 1, "params": `+
			string(mustJSON(h.authorizeParams(h.tokA, "1")))+`, "params": {"credit": -1}}`), "UserError", "credit"),
		refused("dupkeys/capture amount good then negative", "/iap/1/capture", []byte(`{"id": 1, "params": {"token": "`+h.held+
			`", "key": "`+h.key+`", "credit_to_capture": 1, "credit_to_capture": -1}}`), "UserError", "credit_to_capture"),
		{name: "dupkeys/service_name unknown then known", do: func(t *testing.T, h *hostile) {
			r := h.post("/iap/1/balance", []byte(`{"id": 1, "params": {"account_token": "`+h.tokA+
				`", "service_name": "nope", "service_name": "`+hostileService+`"}}`))
			env := envelope(t, r)
			if _, ok := env["error"]; ok {
				if n, msg := rpcErr(t, r); n != "UserError" {
					t.Fatalf("the first of duplicate keys was used: %s %q", n, msg)
				}
			}
		}},
		caseVariantKeys(h),
		{name: "dupkeys/id twice", do: func(t *testing.T, h *hostile) {
			r := h.post("/iap/1/balance", []byte(`{"id": "first", "id": "second", "params": {"account_token": "`+h.tokA+
				`", "service_name": "`+hostileService+`"}}`))
			env := envelope(t, r)
			if _, ok := env["result"]; ok && string(env["id"]) != `"second"` {
				t.Fatalf("id %s, want the last one", env["id"])
			}
		}},
	}
}

// caseVariantKeys: "credit" and "CREDIT" in one authorize. Whatever a
// server makes of them (Python's json: CREDIT is unknown, so the credit
// is dust and refused; encoding/json: keys match case-insensitively, the
// last wins, 1 is held), an unrelated, deeply nested param must not
// change it. Holds made are cancelled.
func caseVariantKeys(h *hostile) hcase {
	var holds uint64
	deep := `, "x": ` + strings.Repeat("[", 100) + strings.Repeat("]", 100)
	return hcase{name: "dupkeys/credit and CREDIT, with and without a deep unknown param", do: func(t *testing.T, h *hostile) {
		holds = 0
		var outcomes []string
		for _, extra := range []string{"", deep} {
			r := h.post("/iap/1/authorize", []byte(`{"jsonrpc": "2.0", "id": 1, "params": {"account_token": "`+h.tokA+
				`", "key": "`+h.key+`", "ttl": 1, "credit": 0.00001, "CREDIT": 1`+extra+`}}`))
			env := envelope(t, r)
			if _, ok := env["error"]; ok {
				n, _ := rpcErr(t, r)
				outcomes = append(outcomes, "refused: "+n)
				continue
			}
			var tok string
			if err := json.Unmarshal(env["result"], &tok); err != nil {
				t.Fatal(err)
			}
			outcomes = append(outcomes, "held "+h.transaction(t, tok).Amount.String())
			h.mustTrue(t, "/iap/1/cancel", map[string]any{"token": tok, "key": h.key})
			holds++
		}
		if outcomes[0] != outcomes[1] {
			t.Errorf("the same credit params are read differently when an unrelated param is deeply nested: without it %s, with it %s", outcomes[0], outcomes[1])
		}
	}, changes: func(t *testing.T, b, a *snapshot) {
		b.mustEqualBut(t, a, map[string]func(b, a admin.Account) string{hostileService + "/" + h.tokA: figuresSame(2 * holds)})
	}}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// ---- deep nesting ----

func nestingCases(h *hostile) []hcase {
	open, closed := strings.Repeat("[", 100000), strings.Repeat("]", 100000)
	return []hcase{
		refused("nesting/100k unclosed brackets in a param", "/iap/services-token",
			[]byte(`{"id": 1, "params": {"iap_accounts": [], "x": `+open+`}}`), "UserError"),
		{name: "nesting/100k balanced brackets in an unknown param", do: func(t *testing.T, h *hostile) {
			wellFormed(t, h.post("/iap/services-token", []byte(`{"id": 1, "params": {"iap_accounts": [], "x": `+open+closed+`}}`)))
		}},
		refused("nesting/100k brackets as the body", "/iap/services-token", []byte(open+closed), "UserError"),
		refused("nesting/100k brackets as iap_accounts", "/iap/1/get-accounts-information",
			[]byte(`{"id": 1, "params": {"iap_accounts": `+open+closed+`}}`), "UserError"),
		{name: "nesting/50k objects in an unknown param", do: func(t *testing.T, h *hostile) {
			deep := strings.Repeat(`{"a":`, 50000) + "1" + strings.Repeat("}", 50000)
			wellFormed(t, h.post("/iap/services-token", []byte(`{"id": 1, "params": {"x": `+deep+`, "iap_accounts": []}}`)))
		}},
		refused("nesting/30k brackets as credit", "/iap/1/authorize",
			[]byte(`{"id": 1, "params": {"account_token": "`+h.tokA+`", "key": "`+h.key+`", "credit": `+
				strings.Repeat("[", 30000)+strings.Repeat("]", 30000)+`}}`), "UserError"),
		{name: "nesting/5k brackets as the id", do: func(t *testing.T, h *hostile) {
			id := strings.Repeat("[", 5000) + strings.Repeat("]", 5000)
			r := h.post("/iap/1/balance", []byte(`{"id": `+id+`, "params": {"account_token": "`+h.tokA+`", "service_name": "`+hostileService+`"}}`))
			env := envelope(t, r)
			if _, ok := env["result"]; ok && string(env["id"]) != id {
				t.Fatalf("a deep id answered but not echoed")
			}
		}},
	}
}

// ---- huge numbers, NaN and Infinity, negative and dust credits ----

func numberCases(h *hostile) []hcase {
	var cs []hcase
	bad := func(class, path, param string, lits ...string) {
		for _, lit := range lits {
			route := path[strings.LastIndexByte(path, '/')+1:]
			cs = append(cs, refused(fmt.Sprintf("%s/%s %s=%s", class, route, param, lit), path,
				rpcBody("n", withParam(h.goodParams(path), param, lit)), "UserError", param))
		}
	}
	const (
		auth  = "/iap/1/authorize"
		capt  = "/iap/1/capture"
		email = "/iap/1/update-warning-email-alerts"
		odoo  = "/iap/update-warning-odoo"
	)
	// Huge and tiny.
	bad("numbers", auth, "credit", "1e400", "1e999999999", "-1e400", "123456789012345678901234567890",
		"9223372036854775807", "9223372036854775808", "1e20", "1e-400", "1.00000000000000000000001", "1000000000001")
	bad("numbers", auth, "ttl", "1e308", "1e400", "876001", "9223372036854775807", "0", "-1", "1.5", "1e-400")
	bad("numbers", capt, "credit_to_capture", "1e400", "1e-400")
	bad("numbers", email, "warning_threshold", "1e400", "1e20")
	bad("numbers", odoo, "warning_threshold", "1e999")
	// Not JSON numbers at all.
	for _, lit := range []string{"NaN", "Infinity", "-Infinity", "nan", "inf", "1e", "--1"} {
		cs = append(cs, hcase{name: "nan/authorize credit=" + lit, do: refusedLiteral(auth, h.goodParams(auth), "credit", lit)})
	}
	cs = append(cs,
		hcase{name: "nan/authorize ttl=NaN", do: refusedLiteral(auth, h.goodParams(auth), "ttl", "NaN")},
		hcase{name: "nan/capture credit_to_capture=NaN", do: refusedLiteral(capt, h.goodParams(capt), "credit_to_capture", "NaN")},
		hcase{name: "nan/update-warning-email-alerts warning_threshold=Infinity", do: refusedLiteral(email, h.goodParams(email), "warning_threshold", "Infinity")},
	)
	bad("nan", auth, "credit", `"NaN"`, `"Infinity"`)
	// Negative and dust.
	bad("amounts", auth, "credit", "-1", "-0.0001", "-1e-5", "0.00001", "0.00005", "1.00001", "1e-5", "0.000010", "12.34567", "99.99999")
	bad("amounts", capt, "credit_to_capture", "-1", "-0.5", "0.00001", "1.00001")
	bad("amounts", email, "warning_threshold", "-1", "0.00001")
	bad("amounts", odoo, "warning_threshold", "-5", "0.00001")
	// Over the available credit: refused as InsufficientCreditError.
	cs = append(cs, refused("amounts/authorize more than available", auth,
		rpcBody("n", h.authorizeParams(h.tokC, "10.0001")), "InsufficientCreditError"))
	cs = append(cs, refused("amounts/capture more than hold and available", capt,
		rpcBody("n", map[string]any{"token": h.held, "key": h.key, "credit_to_capture": json.Number("1000000")}), "InsufficientCreditError"))
	// A zero hold is allowed (0 ≤ amount): made and cancelled, the figures
	// are back.
	var zero bool
	cs = append(cs, hcase{name: "amounts/authorize -0", do: func(t *testing.T, h *hostile) {
		r := h.post(auth, rpcBody("z", h.authorizeParams(h.tokA, "-0")))
		env := envelope(t, r)
		zero = false
		if _, ok := env["error"]; ok {
			rpcErr(t, r)
			return
		}
		var tok string
		if err := json.Unmarshal(env["result"], &tok); err != nil || len(tok) != 32 {
			t.Fatalf("authorize -0 answered %s", env["result"])
		}
		if tx := h.transaction(t, tok); tx.Amount != 0 || tx.State != storage.Held {
			t.Fatalf("authorize -0 held %+v", tx)
		}
		h.mustTrue(t, "/iap/1/cancel", map[string]any{"token": tok, "key": h.key})
		zero = true
	}, changes: func(t *testing.T, b, a *snapshot) {
		n := uint64(0)
		if zero {
			n = 2
		}
		b.mustEqualBut(t, a, map[string]func(b, a admin.Account) string{hostileService + "/" + h.tokA: figuresSame(n)})
	}})
	// An id that is a huge number is echoed as sent.
	cs = append(cs, hcase{name: "numbers/id 1e999999", do: func(t *testing.T, h *hostile) {
		r := h.post("/iap/1/balance", []byte(`{"id": 1e999999, "params": {"account_token": "`+h.tokA+`", "service_name": "`+hostileService+`"}}`))
		h.result(t, r)
		if !bytes.Contains(r.body, []byte(`"id":1e999999,`)) {
			t.Fatalf("id not echoed as sent: %s", r.body)
		}
	}})
	return cs
}

// refusedLiteral posts params with param set to lit, not JSON (NaN,
// Infinity…): the body is malformed and must be refused.
func refusedLiteral(path string, params map[string]any, param, lit string) func(*testing.T, *hostile) {
	return func(t *testing.T, h *hostile) {
		const marker = "\"@@LITERAL@@\""
		body := bytes.Replace(rpcBody("nan", withParam(params, param, marker)), []byte(marker), []byte(lit), 1)
		expectErr(t, h.post(path, body), "UserError")
	}
}

// ---- big bodies ----

func sizeCases(h *hostile) []hcase {
	padded := func(n int) []byte {
		head := `{"jsonrpc": "2.0", "method": "call", "id": "big", "params": {"account_token": "` + h.tokA +
			`", "key": "` + h.key + `", "credit": 1, "ttl": 1, "service_name": "` + hostileService + `", "pad": "`
		tail := `"}}`
		return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
	}
	tenMB := padded(10 << 20)
	return []hcase{
		// Over the route's limit, whatever the listener's (issue 13): the
		// JSON-RPC error Odoo reads, answered as soon as the body starts,
		// the rest of the body drained so that the client reads it.
		refused("size/10 MB body with Content-Length", "/iap/1/authorize", tenMB, "UserError", "larger than"),
		{name: "size/10 MB Content-Length, headers and the first byte", do: func(t *testing.T, h *hostile) {
			expectErr(t, h.exchange(h.httpRequest("POST", "/iap/1/authorize", []byte("{"), fmt.Sprintf("Content-Length: %d", len(tenMB))), "POST"), "UserError", "larger than")
		}},
		{name: "size/10 MB chunked body", do: func(t *testing.T, h *hostile) {
			var b bytes.Buffer
			for rest := tenMB; len(rest) > 0; {
				n := min(64<<10, len(rest))
				fmt.Fprintf(&b, "%x\r\n%s\r\n", n, rest[:n])
				rest = rest[n:]
			}
			b.WriteString("0\r\n\r\n")
			expectErr(t, h.exchange(h.httpRequest("POST", "/iap/1/authorize", b.Bytes(), "Transfer-Encoding: chunked"), "POST"), "UserError", "larger than")
		}},
		{name: "size/40 MB body on an unknown route", do: func(t *testing.T, h *hostile) {
			expectErr(t, h.post("/nowhere", padded(40<<20)), "UserError", "larger than")
		}},
		refused("size/3 MB body on authorize (64 KiB route)", "/iap/1/authorize", padded(3<<20), "UserError", "larger than"),
		refused("size/2 MB body on services-token (1 MiB route)", "/iap/services-token", padded(2<<20), "UserError", "larger than"),
		refused("size/route limit plus one byte", "/iap/1/balance", padded(64<<10+1), "UserError", "larger than"),
		{name: "size/route limit exactly", do: func(t *testing.T, h *hostile) {
			h.result(t, h.post("/iap/1/balance", padded(64<<10)))
		}},
		{name: "size/Content-Length longer than the body", do: func(t *testing.T, h *hostile) {
			body := rpcBody("short", h.authorizeParams(h.tokA, "1"))
			conn, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_, _ = conn.Write(h.httpRequest("POST", "/iap/1/authorize", body, fmt.Sprintf("Content-Length: %d", len(body)+100)))
			_ = conn.(*net.TCPConn).CloseWrite() // the rest never comes
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			r := readResponse(bufioReader(conn), "POST")
			httpErr(t, r, true) // 400, or closed: the request was never whole
		}},
	}
}

// ---- slow bodies ----

// goodLatencyLimit is how long a good request may take while a hostile
// connection is under way. Every hostile request below is still
// incomplete while the good ones are sent (the drips that would end by
// themselves keep their last bytes until the good requests are
// answered), so a good request held behind one would wait for the read
// timeout (30 s); 10 s tells that from a request slowed by a busy CPU.
const goodLatencyLimit = 10 * time.Second

// dripHoldingTail drips all of req but its last byte, then, once the
// caller has done its part (between), sends that byte and returns the
// connection, its whole request sent.
func (h *hostile) dripHoldingTail(t *testing.T, req []byte, between func()) net.Conn {
	t.Helper()
	head, tail := req[:len(req)-1], req[len(req)-1:]
	conn, done, err := h.dialDrip(head, max(1, len(head)/20), 100*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	between()
	if err := <-done; err != nil {
		t.Fatalf("drip: %v", err)
	}
	if _, err := conn.Write(tail); err != nil {
		t.Fatalf("drip: the last byte: %v", err)
	}
	return conn
}

func dripCases(h *hostile) []hcase {
	balance := func(h *hostile) []byte {
		return h.httpRequest("POST", "/iap/1/balance", rpcBody("drip", map[string]any{"account_token": h.tokA, "service_name": hostileService}))
	}
	return []hcase{
		{name: "drip/whole request a few bytes per 100ms", do: func(t *testing.T, h *hostile) {
			conn := h.dripHoldingTail(t, balance(h), func() { h.goodLatency(t, 10, goodLatencyLimit) })
			_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			h.result(t, readResponse(bufioReader(conn), "POST"))
		}},
		{name: "drip/dust authorize a few bytes per 100ms", do: func(t *testing.T, h *hostile) {
			req := h.httpRequest("POST", "/iap/1/authorize", rpcBody("drip", h.authorizeParams(h.tokA, "0.00001")))
			conn := h.dripHoldingTail(t, req, func() { h.goodLatency(t, 10, goodLatencyLimit) })
			_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			expectErr(t, readResponse(bufioReader(conn), "POST"), "UserError", "credit")
		}},
		{name: "drip/half a body then hang up", do: func(t *testing.T, h *hostile) {
			req := h.httpRequest("POST", "/iap/1/authorize", rpcBody("drip", h.authorizeParams(h.tokA, "1")))
			stop := make(chan struct{})
			conn, _, err := h.dialDrip(req[:len(req)-20], 8, 50*time.Millisecond, stop)
			if err != nil {
				t.Fatal(err)
			}
			h.goodLatency(t, 5, goodLatencyLimit)
			close(stop)
			conn.Close()
		}},
		{name: "drip/slowloris 64 connections of headers", do: func(t *testing.T, h *hostile) {
			stop := make(chan struct{})
			var conns []net.Conn
			for range 64 {
				c, _, err := h.dialDrip(balance(h), 1, 100*time.Millisecond, stop)
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
			}
			h.goodLatency(t, 10, goodLatencyLimit)
			close(stop)
			for _, c := range conns {
				c.Close()
			}
		}},
	}
}

// TestHostileSlowDripTimesOut: a body that drips (one byte per 100 ms,
// 60 000 of them) is cut by the server's read timeout (30 s) — it does not hold
// the connection for ever — and other clients are served meanwhile.
func TestHostileSlowDripTimesOut(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the 30 s read timeout")
	}
	t.Parallel()
	h := &hostile{}
	s := startServer(t, nil)
	h.s, h.addr, h.tokA = s, strings.TrimPrefix(s.public, "http://"), strings.Repeat("d4", 16)
	// Within the route's 64 KiB (a larger declared length is answered at
	// once: TestHostileInput's size cases).
	req := h.httpRequest("POST", "/iap/1/balance", nil, "Content-Length: 60000")
	req = append(req, bytes.Repeat([]byte(" "), 60000)...)
	stop := make(chan struct{})
	defer close(stop)
	began := time.Now()
	conn, done, err := h.dialDrip(req, 1, 100*time.Millisecond, stop)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	got := make(chan hresp, 1)
	go func() { got <- readResponse(bufioReader(conn), "POST") }()
	for {
		select {
		case r := <-got:
			if r.err == nil && r.status != 408 {
				t.Fatalf("the dripping request got %s, want 408 or a closed connection", r)
			}
			if d := time.Since(began); d < 25*time.Second || d > 55*time.Second { // before our own 60 s deadline
				t.Fatalf("the dripping connection ended after %s, want the 30 s read timeout", d)
			}
			t.Logf("dripping connection ended after %s: %v", time.Since(began).Round(time.Second), r)
			return
		case err := <-done:
			if err == nil {
				t.Fatal("a megabyte dripped through without the server timing out")
			}
		case <-time.After(3 * time.Second):
			r := h.post("/iap/1/balance", rpcBody("meanwhile", map[string]any{"account_token": h.tokA, "service_name": "sms"}))
			h.result(t, r)
		}
	}
}

// ---- HTTP methods ----

func methodCases(h *hostile) []hcase {
	body := rpcBody("method", h.authorizeParams(h.tokA, "1"))
	var cs []hcase
	for _, m := range []string{"GET", "PUT", "DELETE", "OPTIONS", "PATCH", "HEAD", "TRACE", "FROB", "post"} {
		cs = append(cs, hcase{name: "methods/" + m + " with an authorize body", do: func(t *testing.T, h *hostile) {
			r := h.exchange(h.httpRequest(m, "/iap/1/authorize", body), m)
			if m == "post" {
				httpErr(t, r, false) // methods are case-sensitive: not POST
				return
			}
			httpErr(t, r, false, 405)
			if a := r.header.Get("Allow"); a != "POST" {
				t.Fatalf("Allow %q", a)
			}
		}})
	}
	cs = append(cs,
		hcase{name: "methods/GET an unknown path", do: func(t *testing.T, h *hostile) {
			httpErr(t, h.exchange(h.httpRequest("GET", "/nowhere", nil), "GET"), false, 404)
		}},
		hcase{name: "methods/CONNECT", do: func(t *testing.T, h *hostile) {
			r := h.exchange([]byte("CONNECT "+h.addr+" HTTP/1.1\r\nHost: "+h.addr+"\r\n\r\n"), "CONNECT")
			httpErr(t, r, false)
		}},
	)
	return cs
}

// ---- content types ----

func contentTypeCases(h *hostile) []hcase {
	body := rpcBody("ct", map[string]any{"account_token": h.tokA, "service_name": hostileService})
	var cs []hcase
	for _, ct := range []struct{ name, line string }{
		{"missing", "Content-Type:"},
		{"text/plain", "Content-Type: text/plain"},
		{"form", "Content-Type: application/x-www-form-urlencoded"},
		{"multipart with boundary", "Content-Type: multipart/form-data; boundary=xyz"},
		{"multipart without boundary", "Content-Type: multipart/form-data"},
		{"garbage", "Content-Type: ;;;==;"},
		{"utf-16 charset", "Content-Type: application/json; charset=utf-16"},
		{"xml", "Content-Type: application/xml"},
		{"8 KB value", "Content-Type: application/json; x=" + strings.Repeat("y", 1000)},
		{"twice", "Content-Type: text/plain\r\nContent-Type: application/json"},
	} {
		cs = append(cs, hcase{name: "ctype/" + ct.name, do: func(t *testing.T, h *hostile) {
			r := h.post("/iap/1/balance", body, ct.line)
			res := h.result(t, r)
			if c, err := storage.ParseCredits(string(res)); err != nil || c < 0 {
				t.Fatalf("balance %s", res)
			}
		}})
	}
	cs = append(cs, hcase{name: "ctype/text/plain dust authorize", do: func(t *testing.T, h *hostile) {
		expectErr(t, h.post("/iap/1/authorize", rpcBody("ct", h.authorizeParams(h.tokA, "0.00001")), "Content-Type: text/plain"), "UserError", "credit")
	}})
	return cs
}

// ---- routes and paths ----

func routeCases(h *hostile) []hcase {
	body := rpcBody("route", h.authorizeParams(h.tokA, "1"))
	var cs []hcase
	// Unknown routes: Odoo's own NotFound envelope (HTTP 200, code 404),
	// nothing held.
	for _, p := range []string{"/", "/iap", "/iap/1", "/iap/1/authoriz", "/IAP/1/AUTHORIZE", "/iap/1/authorize/x",
		"/iap/2/authorize", "/iap/1/authorize.json", "/iap/1/authorize%00", "/iap/1/authorize;x", "/api/iap/1/authorize",
		"/iap/1/credit", "/iap/1/authorize%2Fx", "/" + strings.Repeat("a", 4000)} {
		name := p
		if len(name) > 40 {
			name = name[:20] + fmt.Sprintf("…(%d bytes)", len(p))
		}
		cs = append(cs, hcase{name: "routes/unknown " + name, do: func(t *testing.T, h *hostile) {
			r := h.post(p, body)
			if r.err == nil && (r.status == 414 || r.status == 431) {
				return
			}
			expectErr(t, r, "NotFound", "Not Found")
			var env struct {
				ID    string
				Error struct{ Code int }
			}
			if err := json.Unmarshal(r.body, &env); err != nil || env.Error.Code != 404 || env.ID != "route" {
				t.Fatalf("want code 404 and the id echoed: %s", r.body)
			}
		}})
	}
	// Paths a normalising server may map to a route: whatever the
	// answer, it is well formed (and balance is read-only).
	bal := rpcBody("route", map[string]any{"account_token": h.tokA, "service_name": hostileService})
	for _, p := range []string{"/iap/1/./balance", "/iap/x/../1/balance", "/iap%2F1%2Fbalance", "/iap/1/b%61lance", "/../iap/1/balance", "/iap/1/balance#frag"} {
		cs = append(cs, hcase{name: "routes/normalised " + p, do: func(t *testing.T, h *hostile) {
			wellFormed(t, h.post(p, bal))
		}})
	}
	// "//" and trailing slashes: Odoo builds URLs by concatenation
	// (PROTOCOL §1.1), so these are the route.
	for _, p := range []string{"//iap/1/balance", "///iap/1/balance", "/iap//1//balance", "/iap/1/balance/", "//iap//1//balance//", "/iap/1/balance?x=1&y"} {
		cs = append(cs, hcase{name: "paths/" + p, do: func(t *testing.T, h *hostile) {
			if res := h.result(t, h.post(p, bal)); len(res) == 0 || res[0] == '"' {
				t.Fatalf("balance %s", res)
			}
		}})
	}
	cs = append(cs, refused("paths///iap/1/authorize dust", "//iap/1/authorize", rpcBody("p", h.authorizeParams(h.tokA, "0.00001")), "UserError", "credit"))
	return cs
}

// ---- tokens: unicode, control characters, NUL ----

func tokenCases(h *hostile) []hcase {
	var cs []hcase
	badTokens := []struct{ name, tok string }{
		{"NUL inside", h.tokA[:16] + "\x00" + h.tokA[16:]},
		{"NUL at the end", h.tokA + "\x00"},
		{"NUL only", "\x00"},
		{"newline", h.tokA + "\n"},
		{"CRLF", h.tokA + "\r\nX-Injected: 1"},
		{"tab", "\t" + h.tokA},
		{"space", h.tokA[:10] + " " + h.tokA[10:]},
		{"DEL", h.tokA + "\x7f"},
		{"emoji", h.tokA + "😀"},
		{"accented", "tök" + h.tokA},
		{"right-to-left override", h.tokA + "\u202e"},
		{"zero-width space", h.tokA + "\u200b"},
		{"line separator", h.tokA + "\u2028"},
		{"fullwidth", "ａ１ａ１"},
		{"cyrillic homoglyph", "а1" + h.tokA[2:]},
		{"invalid UTF-8", h.tokA + "\xff\xfe"},
		{"65 bytes", strings.Repeat("a", 65)},
		{"empty", ""},
	}
	for _, bt := range badTokens {
		cs = append(cs, refused("tokens/authorize account_token "+bt.name, "/iap/1/authorize",
			rpcBody("tok", h.authorizeParams(bt.tok, "1")), "UserError", "account_token"))
	}
	for _, bt := range badTokens[:8] {
		cs = append(cs, refused("tokens/balance account_token "+bt.name, "/iap/1/balance",
			rpcBody("tok", map[string]any{"account_token": bt.tok, "service_name": hostileService}), "UserError", "account_token"))
	}
	for _, svc := range []string{"hostile\x00", "HOSTILE", "hostilé", "hostile\n", " hostile", "hos tile", strings.Repeat("h", 65), "sms\x00"} {
		cs = append(cs, refused(fmt.Sprintf("tokens/balance service_name %q", svc), "/iap/1/balance",
			rpcBody("svc", map[string]any{"account_token": h.tokA, "service_name": svc}), "AccessError"))
	}
	for _, k := range []struct{ name, key string }{
		{"NUL appended", h.key + "\x00"}, {"space appended", h.key + " "}, {"upper case", strings.ToUpper(h.key)},
		{"one character short", h.key[:len(h.key)-1]}, {"unicode", h.key + "é"}, {"empty", ""},
	} {
		p := h.authorizeParams(h.tokA, "1")
		p["key"] = k.key
		cs = append(cs, refused("tokens/authorize key "+k.name, "/iap/1/authorize", rpcBody("key", p), "AccessError"))
	}
	return cs
}

// ---- "+" suffix games ----

func suffixCases(h *hostile) []hcase {
	var cs []hcase
	// A disabled suffix refuses paid work (PROTOCOL §3): AccessError,
	// nothing held, no account created.
	for _, tok := range []string{h.tokA + "+disabled", h.tokA + "+DISABLED", h.tokA + "+Disabled", h.tokA + "+x+disabled",
		h.tokA + "+disabled+x", h.tokA + "++disabled", strings.Repeat("e5", 16) + "+disabled", "dummy_value+disabled"} {
		cs = append(cs, refused("suffix/authorize "+strings.Replace(tok, h.tokA, "tok", 1), "/iap/1/authorize",
			rpcBody("sfx", h.authorizeParams(tok, "1")), "AccessError", "neutralised"))
	}
	// Any suffix that is not empty is disabled: a mangled "+disabled"
	// (whitespace, NUL, control characters, a typo) never reads as
	// enabled, or a neutralised staging copy would spend production
	// credit. Same answer, nothing held.
	for _, sfx := range []string{"disabled ", " disabled", "disabled\x00", "\x00disabled", "disabled\n", "disabled\r\n",
		"\tdisabled", "disabled\x7f", "disabled\u00a0", "\ufeffdisabled", "disable", "x", "+", " ", "\x00"} {
		cs = append(cs, refused(fmt.Sprintf("suffix/authorize tok+%q", sfx), "/iap/1/authorize",
			rpcBody("sfx", h.authorizeParams(h.tokA+"+"+sfx, "1")), "AccessError", "neutralised"))
	}
	// No account before the '+'.
	for _, tok := range []string{"+disabled", "+", "++", "+" + h.tokA, h.tokA + "+" + strings.Repeat("x", 65)} {
		cs = append(cs, refused("suffix/authorize "+strings.Replace(tok, h.tokA, "tok", 1), "/iap/1/authorize",
			rpcBody("sfx", h.authorizeParams(tok, "1")), "UserError", "account_token"))
	}
	// An empty suffix is no suffix: the hold is on tok (made and
	// cancelled here).
	cs = append(cs, hcase{name: "suffix/authorize tok+", do: func(t *testing.T, h *hostile) {
		var tok string
		if err := json.Unmarshal(h.result(t, h.post("/iap/1/authorize", rpcBody("sfx", h.authorizeParams(h.tokA+"+", "1")))), &tok); err != nil {
			t.Fatal(err)
		}
		if tx := h.transaction(t, tok); string(tx.Account) != h.tokA || tx.Amount != storage.Scale {
			t.Fatalf("the hold of tok+ is %+v", tx)
		}
		h.mustTrue(t, "/iap/1/cancel", map[string]any{"token": tok, "key": h.key})
	}, changes: func(t *testing.T, b, a *snapshot) {
		b.mustEqualBut(t, a, map[string]func(b, a admin.Account) string{hostileService + "/" + h.tokA: figuresSame(2)})
	}})
	// Reading is not paid work: a disabled token reads its account.
	want := func(t *testing.T, h *hostile) storage.Credits {
		return h.snapshot(t).accounts[hostileService+"/"+h.tokA].Available
	}
	cs = append(cs,
		hcase{name: "suffix/balance tok+disabled", do: func(t *testing.T, h *hostile) {
			res := h.result(t, h.post("/iap/1/balance", rpcBody("sfx", map[string]any{"account_token": h.tokA + "+disabled", "service_name": hostileService})))
			if c, err := storage.ParseCredits(string(res)); err != nil || c != want(t, h) {
				t.Fatalf("balance of tok+disabled %s", res)
			}
		}},
		hcase{name: "suffix/get-accounts-information tok+disabled", do: func(t *testing.T, h *hostile) {
			raw := h.tokA + "+disabled"
			res := h.result(t, h.post("/iap/1/get-accounts-information", rpcBody("sfx", map[string]any{
				"iap_accounts": []any{map[string]any{"token": raw, "service": hostileService}}})))
			var m map[string]struct{ Balance json.Number }
			if err := json.Unmarshal(res, &m); err != nil || m[raw].Balance.String() != want(t, h).String() {
				t.Fatalf("get-accounts-information of tok+disabled: %s", res)
			}
		}},
		hcase{name: "suffix/services-token tok+disabled", do: func(t *testing.T, h *hostile) {
			raw := h.tokA + "+disabled"
			res := h.result(t, h.post("/iap/services-token", rpcBody("sfx", map[string]any{"iap_accounts": []any{raw, raw + "\x00"}})))
			var list []struct {
				AccountToken string `json:"account_token"`
			}
			if err := json.Unmarshal(res, &list); err != nil || len(list) == 0 {
				t.Fatalf("services-token of tok+disabled: %s", res)
			}
			for _, a := range list {
				if a.AccountToken != raw && a.AccountToken != raw+"\x00" {
					t.Fatalf("services-token answered a token not sent: %q", a.AccountToken)
				}
			}
		}},
		hcase{name: "suffix/balance tok+ and control characters", do: func(t *testing.T, h *hostile) {
			r := h.post("/iap/1/balance", rpcBody("sfx", map[string]any{"account_token": h.tokA + "+\x00\r\n", "service_name": hostileService}))
			wellFormed(t, r)
		}},
	)
	return cs
}

// ---- forged and replayed transaction tokens ----

func transactionTokenCases(h *hostile) []hcase {
	capture := func(tok, key string, amount any) []byte {
		p := map[string]any{"token": tok, "key": key}
		if amount != nil {
			p["credit_to_capture"] = amount
		}
		return rpcBody("tx", p)
	}
	cancel := func(tok, key string) []byte { return rpcBody("tx", map[string]any{"token": tok, "key": key}) }
	random := strings.Repeat("0f", 16)
	return []hcase{
		refused("txtokens/capture a random token", "/iap/1/capture", capture(random, h.key, 1), "AccessError", "Unknown transaction"),
		refused("txtokens/cancel a random token", "/iap/1/cancel", cancel(random, h.key), "AccessError", "Unknown transaction"),
		refused("txtokens/capture another service's hold", "/iap/1/capture", capture(h.otherHeld, h.key, nil), "AccessError", "Unknown transaction"),
		refused("txtokens/cancel another service's hold", "/iap/1/cancel", cancel(h.otherHeld, h.key), "AccessError", "Unknown transaction"),
		refused("txtokens/capture with another service's key", "/iap/1/capture", capture(h.held, h.otherKey, nil), "AccessError", "Unknown transaction"),
		refused("txtokens/cancel with another service's key", "/iap/1/cancel", cancel(h.held, h.otherKey), "AccessError", "Unknown transaction"),
		refused("txtokens/capture a cancelled hold", "/iap/1/capture", capture(h.cancelled, h.key, 1), "UserError", "cannot be captured"),
		refused("txtokens/cancel a captured hold", "/iap/1/cancel", cancel(h.captured, h.key), "UserError", "cannot be cancelled"),
		refused("txtokens/capture again for another amount", "/iap/1/capture", capture(h.captured, h.key, 0.5), "UserError", "cannot be captured"),
		{name: "txtokens/capture replayed, same amount", do: func(t *testing.T, h *hostile) {
			h.mustTrue(t, "/iap/1/capture", map[string]any{"token": h.captured, "key": h.key, "credit_to_capture": 1})
			h.mustTrue(t, "/iap/1/capture", map[string]any{"token": h.captured, "key": h.key})
		}},
		{name: "txtokens/cancel replayed", do: func(t *testing.T, h *hostile) {
			h.mustTrue(t, "/iap/1/cancel", map[string]any{"token": h.cancelled, "key": h.key})
		}},
		refused("txtokens/capture the upper-cased token", "/iap/1/capture", capture(strings.ToUpper(h.held), h.key, 1), "AccessError"),
		refused("txtokens/capture the token with a NUL", "/iap/1/capture", capture(h.held+"\x00", h.key, 1), ""),
		refused("txtokens/capture the token with spaces", "/iap/1/capture", capture(" "+h.held+" ", h.key, 1), ""),
		refused("txtokens/capture the token +disabled", "/iap/1/capture", capture(h.held+"+disabled", h.key, 1), ""),
		refused("txtokens/capture a prefix of the token", "/iap/1/capture", capture(h.held[:31], h.key, 1), "AccessError"),
		refused("txtokens/capture 129 bytes", "/iap/1/capture", capture(strings.Repeat("f", 129), h.key, 1), "UserError", "token"),
		refused("txtokens/capture the account token", "/iap/1/capture", capture(h.tokA, h.key, 1), "AccessError"),
		refused("txtokens/capture the service key", "/iap/1/capture", capture(h.key, h.key, 1), "AccessError"),
		refused("txtokens/capture without a token", "/iap/1/capture", rpcBody("tx", map[string]any{"key": h.key}), "UserError", "token"),
		refused("txtokens/capture without a key", "/iap/1/capture", rpcBody("tx", map[string]any{"token": h.held}), "AccessError"),
	}
}

// ---- races on one transaction ----

func raceCases(h *hostile) []hcase {
	const holds, racers = 8, 16
	var captures int // holds that captured, for the changes check
	return []hcase{
		{name: "races/capture against cancel", do: func(t *testing.T, h *hostile) {
			captures = 0
			for range holds {
				tok := h.authorize(t, h.key, h.tokB, "1")
				answers := make([]hresp, racers)
				together(racers, func(i int) {
					if i%2 == 0 {
						answers[i] = h.post("/iap/1/capture", rpcBody("race", map[string]any{"token": tok, "key": h.key, "credit_to_capture": 1}))
					} else {
						answers[i] = h.post("/iap/1/cancel", rpcBody("race", map[string]any{"token": tok, "key": h.key}))
					}
				})
				won := map[string]int{}
				for i, r := range answers {
					op := "capture"
					if i%2 == 1 {
						op = "cancel"
					}
					env := envelope(t, r)
					if _, ok := env["result"]; ok {
						won[op]++
						continue
					}
					expectErr(t, r, "UserError", "cannot be")
				}
				if len(won) != 1 || (won["capture"] != racers/2 && won["cancel"] != racers/2) {
					t.Fatalf("not exactly one outcome won: %v", won)
				}
				tx := h.transaction(t, tok)
				switch {
				case won["capture"] > 0 && tx.State == storage.Captured && tx.Captured == storage.Scale:
					captures++
				case won["cancel"] > 0 && tx.State == storage.Cancelled:
				default:
					t.Fatalf("%v won, the ledger has %+v", won, tx)
				}
				checkTxnEntries(t, h.history(t, hostileService, h.tokB), tok)
			}
		}, changes: func(t *testing.T, b, a *snapshot) {
			b.mustEqualBut(t, a, map[string]func(b, a admin.Account) string{hostileService + "/" + h.tokB: func(b, a admin.Account) string {
				c := storage.Credits(captures) * storage.Scale
				if a.Seq != b.Seq+2*holds || a.Captured != b.Captured+c || a.Available != b.Available-c || a.Held != b.Held || a.Recharged != b.Recharged {
					return fmt.Sprintf("%d of %d holds captured: want seq +%d, captured +%s", captures, holds, 2*holds, c)
				}
				return ""
			}})
		}},
		{name: "races/captures of different amounts", do: func(t *testing.T, h *hostile) {
			tok := h.authorize(t, h.key, h.tokB, "1")
			answers := make([]hresp, racers)
			together(racers, func(i int) {
				amount := json.Number(fmt.Sprintf("0.%04d", 1000+i*500))
				answers[i] = h.post("/iap/1/capture", rpcBody("race", map[string]any{"token": tok, "key": h.key, "credit_to_capture": amount}))
			})
			wins := 0
			for _, r := range answers {
				if _, ok := envelope(t, r)["result"]; ok {
					wins++
					continue
				}
				expectErr(t, r, "UserError", "cannot be captured")
			}
			if wins != 1 {
				t.Fatalf("%d captures of different amounts won", wins)
			}
			checkTxnEntries(t, h.history(t, hostileService, h.tokB), tok)
			// Leave the account as it was: what was captured is given back.
			tx := h.transaction(t, tok)
			if tx.State != storage.Captured {
				t.Fatalf("%+v", tx)
			}
		}, changes: func(t *testing.T, b, a *snapshot) {
			b.mustEqualBut(t, a, map[string]func(b, a admin.Account) string{hostileService + "/" + h.tokB: func(b, a admin.Account) string {
				got := a.Captured - b.Captured
				if a.Seq != b.Seq+3 || got <= 0 || got >= storage.Scale || a.Available != b.Available-got || a.Held != b.Held {
					return "want one hold, one capture of part of it and one release of the rest"
				}
				return ""
			}})
		}},
		{name: "races/cancels", do: func(t *testing.T, h *hostile) {
			tok := h.authorize(t, h.key, h.tokB, "1")
			answers := make([]hresp, racers)
			together(racers, func(i int) {
				answers[i] = h.post("/iap/1/cancel", rpcBody("race", map[string]any{"token": tok, "key": h.key}))
			})
			for _, r := range answers {
				if res := h.result(t, r); string(res) != "true" {
					t.Fatalf("cancel answered %s", res)
				}
			}
			checkTxnEntries(t, h.history(t, hostileService, h.tokB), tok)
		}, changes: func(t *testing.T, b, a *snapshot) {
			b.mustEqualBut(t, a, map[string]func(b, a admin.Account) string{hostileService + "/" + h.tokB: figuresSame(2)})
		}},
		{name: "races/authorizes draining an account", do: func(t *testing.T, h *hostile) {
			// C has 10 credits: of 30 authorizes of 1, exactly 10 hold.
			const n = 30
			answers := make([]hresp, n)
			together(n, func(i int) {
				answers[i] = h.post("/iap/1/authorize", rpcBody("drain", h.authorizeParams(h.tokC, "1")))
			})
			var toks []string
			for _, r := range answers {
				env := envelope(t, r)
				if res, ok := env["result"]; ok {
					var tok string
					if err := json.Unmarshal(res, &tok); err != nil {
						t.Fatal(err)
					}
					toks = append(toks, tok)
					continue
				}
				expectErr(t, r, "InsufficientCreditError")
			}
			if len(toks) != 10 {
				t.Fatalf("%d of %d authorizes of 1 held on an account of 10", len(toks), n)
			}
			if a := h.snapshot(t).accounts[hostileService+"/"+h.tokC]; a.Available != 0 || a.Held != 10*storage.Scale {
				t.Fatalf("after the drain: %+v", a)
			}
			for _, tok := range toks {
				h.mustTrue(t, "/iap/1/cancel", map[string]any{"token": tok, "key": h.key})
			}
		}, changes: func(t *testing.T, b, a *snapshot) {
			b.mustEqualBut(t, a, map[string]func(b, a admin.Account) string{hostileService + "/" + h.tokC: figuresSame(20)})
		}},
	}
}

// checkTxnEntries checks the history (newest first) has one hold of tok,
// then one capture (and a release of the rest) or one release: nothing
// doubled.
func checkTxnEntries(t *testing.T, hist []admin.Entry, tok string) {
	t.Helper()
	var kinds []storage.EntryKind
	for i := len(hist) - 1; i >= 0; i-- {
		if hist[i].Transaction == tok {
			kinds = append(kinds, hist[i].Kind)
		}
	}
	k := fmt.Sprint(kinds)
	switch k {
	case "[hold capture]", "[hold capture release]", "[hold release]":
		return
	}
	t.Fatalf("transaction %s has the entries %s", tok, k)
}

// ---- pipelining ----

func pipelineCases(h *hostile) []hcase {
	bal := func(id string) []byte {
		return h.httpRequest("POST", "/iap/1/balance", rpcBody(id, map[string]any{"account_token": h.tokA, "service_name": hostileService}))
	}
	checkIDs := func(t *testing.T, rs []hresp, ids []string) {
		t.Helper()
		for i, r := range rs {
			env := envelope(t, r)
			if string(env["id"]) != `"`+ids[i]+`"` {
				t.Fatalf("answer %d has id %s, want %q: answers out of order", i, env["id"], ids[i])
			}
		}
	}
	return []hcase{
		{name: "pipeline/5 balances in one write", do: func(t *testing.T, h *hostile) {
			var raw []byte
			var ids, methods []string
			for i := range 5 {
				id := fmt.Sprintf("p%d", i)
				raw = append(raw, bal(id)...)
				ids, methods = append(ids, id), append(methods, "POST")
			}
			rs := h.exchangeN(raw, methods)
			checkIDs(t, rs, ids)
			for _, r := range rs {
				h.result(t, r)
			}
		}},
		{name: "pipeline/100 balances in one write", do: func(t *testing.T, h *hostile) {
			var raw []byte
			var ids, methods []string
			for i := range 100 {
				id := fmt.Sprintf("q%d", i)
				raw = append(raw, bal(id)...)
				ids, methods = append(ids, id), append(methods, "POST")
			}
			checkIDs(t, h.exchangeN(raw, methods), ids)
		}},
		{name: "pipeline/good, malformed, unknown route, dust, good", do: func(t *testing.T, h *hostile) {
			raw := append([]byte{}, bal("a")...)
			raw = append(raw, h.httpRequest("POST", "/iap/1/authorize", []byte(`{"id": "b", "params": {`))...)
			raw = append(raw, h.httpRequest("POST", "/nowhere", rpcBody("c", map[string]any{}))...)
			raw = append(raw, h.httpRequest("POST", "/iap/1/authorize", rpcBody("d", h.authorizeParams(h.tokA, "0.00001")))...)
			raw = append(raw, bal("e")...)
			rs := h.exchangeN(raw, []string{"POST", "POST", "POST", "POST", "POST"})
			h.result(t, rs[0])
			expectErr(t, rs[1], "UserError")
			expectErr(t, rs[2], "NotFound")
			expectErr(t, rs[3], "UserError", "credit")
			h.result(t, rs[4])
			if string(envelope(t, rs[4])["id"]) != `"e"` {
				t.Fatal("answers out of order")
			}
		}},
		{name: "pipeline/good then a broken request line", do: func(t *testing.T, h *hostile) {
			raw := append(bal("a"), "GARBAGE\r\n\r\n"...)
			raw = append(raw, bal("never")...)
			rs := h.exchangeN(raw, []string{"POST", "POST"})
			h.result(t, rs[0])
			httpErr(t, rs[1], true, 400)
		}},
		{name: "pipeline/Content-Length shorter than the body", do: func(t *testing.T, h *hostile) {
			body := rpcBody("short", h.authorizeParams(h.tokA, "1"))
			raw := h.httpRequest("POST", "/iap/1/authorize", body, fmt.Sprintf("Content-Length: %d", len(body)-30))
			rs := h.pipeline(raw, []string{"POST", "POST"}, true)
			expectErr(t, rs[0], "UserError") // truncated JSON
			httpErr(t, rs[1], true, 400)     // the rest is no request
		}},
		{name: "pipeline/HEAD and GET between POSTs", do: func(t *testing.T, h *hostile) {
			raw := append([]byte{}, bal("a")...)
			raw = append(raw, h.httpRequest("HEAD", "/iap/1/balance", nil)...)
			raw = append(raw, h.httpRequest("GET", "/nowhere", nil)...)
			raw = append(raw, bal("b")...)
			rs := h.exchangeN(raw, []string{"POST", "HEAD", "GET", "POST"})
			h.result(t, rs[0])
			httpErr(t, rs[1], false, 405)
			httpErr(t, rs[2], false, 404)
			h.result(t, rs[3])
		}},
	}
}

// ---- header floods and HTTP framing ----

func headerCases(h *hostile) []hcase {
	bal := rpcBody("hdr", map[string]any{"account_token": h.tokA, "service_name": hostileService})
	repeat := func(n int, f func(i int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	big := func(name string, lines []string) hcase {
		return hcase{name: "headers/" + name, do: func(t *testing.T, h *hostile) {
			httpErr(t, h.post("/iap/1/authorize", rpcBody("hdr", h.authorizeParams(h.tokA, "1")), lines...), false, 431)
		}}
	}
	raw := func(name string, req string, closeOK bool, codes ...int) hcase {
		return hcase{name: "headers/" + name, do: func(t *testing.T, h *hostile) {
			req := strings.ReplaceAll(req, "HOST", h.addr)
			httpErr(t, h.exchange([]byte(req), "POST"), closeOK, codes...)
		}}
	}
	good := func(name string, req func(h *hostile) []byte) hcase {
		return hcase{name: "headers/" + name, do: func(t *testing.T, h *hostile) {
			h.result(t, h.exchange(req(h), "POST"))
		}}
	}
	balLen := fmt.Sprint(len(bal))
	cs := []hcase{
		big("10000 headers", repeat(10000, func(i int) string { return fmt.Sprintf("X-Flood-%d: %d", i, i) })),
		big("one 100 KB header", []string{"X-Big: " + strings.Repeat("b", 100<<10)}),
		big("1000 cookies", repeat(1000, func(i int) string { return fmt.Sprintf("Cookie: c%d=%s", i, strings.Repeat("v", 20)) })),
		big("64 KB request line", nil),
		{name: "headers/100 small headers", do: func(t *testing.T, h *hostile) {
			wellFormed(t, h.post("/iap/1/balance", bal, repeat(100, func(i int) string { return fmt.Sprintf("X-H%d: v", i) })...))
		}},
		raw("conflicting Content-Length", "POST /iap/1/authorize HTTP/1.1\r\nHost: HOST\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\n{\"a\":1}", true, 400),
		raw("negative Content-Length", "POST /iap/1/authorize HTTP/1.1\r\nHost: HOST\r\nContent-Length: -1\r\n\r\n{}", true, 400),
		raw("non-numeric Content-Length", "POST /iap/1/authorize HTTP/1.1\r\nHost: HOST\r\nContent-Length: abc\r\n\r\n{}", true, 400),
		raw("huge Content-Length", "POST /iap/1/authorize HTTP/1.1\r\nHost: HOST\r\nContent-Length: 99999999999999999999\r\n\r\n{}", true, 400, 413),
		raw("unknown Transfer-Encoding", "POST /iap/1/authorize HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding: gzip\r\n\r\n{}", true),
		raw("bad chunk size", "POST /iap/1/authorize HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", true, 400),
		{name: "headers/header name with a space", do: func(t *testing.T, h *hostile) {
			r := h.exchange([]byte("POST /iap/1/authorize HTTP/1.1\r\nHost: "+h.addr+"\r\nBad Header: x\r\nContent-Length: 2\r\n\r\n{}"), "POST")
			if r.err == nil && r.status == 200 {
				expectErr(t, r, "UserError", "account_token") // the header ignored, the body read
				return
			}
			httpErr(t, r, true, 400)
		}},
		raw("garbage request line", "HELLO\r\n\r\n", true, 400),
		raw("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", true),
		raw("TLS client hello", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"+strings.Repeat("\x00", 40)+"\r\n\r\n", true),
		{name: "headers/Content-Length and chunked together", do: func(t *testing.T, h *hostile) {
			body := rpcBody("te", h.authorizeParams(h.tokA, "0.00001"))
			req := h.httpRequest("POST", "/iap/1/authorize", []byte(fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)),
				"Transfer-Encoding: chunked", "Content-Length: 3")
			r := h.exchange(req, "POST")
			if r.err == nil && r.status == 200 {
				expectErr(t, r, "UserError", "credit") // the chunked body was read, as RFC 9112 says
				return
			}
			httpErr(t, r, true, 400)
		}},
		good("chunked body", func(h *hostile) []byte {
			return h.httpRequest("POST", "/iap/1/balance", []byte(fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(bal), bal)), "Transfer-Encoding: chunked")
		}),
		good("Expect 100-continue", func(h *hostile) []byte {
			return h.httpRequest("POST", "/iap/1/balance", bal, "Expect: 100-continue")
		}),
		good("HTTP/1.0 without Host", func(h *hostile) []byte {
			return []byte("POST /iap/1/balance HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: " + balLen + "\r\n\r\n" + string(bal))
		}),
		good("absolute-form request target", func(h *hostile) []byte {
			return []byte("POST http://" + h.addr + "/iap/1/balance HTTP/1.1\r\nHost: " + h.addr + "\r\nContent-Length: " + balLen + "\r\n\r\n" + string(bal))
		}),
		{name: "headers/bare LF line ends", do: func(t *testing.T, h *hostile) {
			// fasthttp waits for a CRLF that never comes: the client gives
			// up (here: half-closes), the server answers 400 or closes.
			r := h.exchangeHalfClose([]byte("POST /iap/1/balance HTTP/1.1\nHost: "+h.addr+"\nContent-Length: "+balLen+"\n\n"+string(bal)), "POST")
			if r.err == nil && r.status == 200 {
				h.result(t, r)
				return
			}
			httpErr(t, r, true, 400)
		}},
		{name: "headers/HTTP/1.1 without Host", do: func(t *testing.T, h *hostile) {
			wellFormed(t, h.exchange([]byte("POST /iap/1/balance HTTP/1.1\r\nContent-Length: "+balLen+"\r\n\r\n"+string(bal)), "POST"))
		}},
		{name: "headers/Content-Encoding gzip on a plain body", do: func(t *testing.T, h *hostile) {
			wellFormed(t, h.post("/iap/1/balance", bal, "Content-Encoding: gzip"))
		}},
		{name: "headers/NUL and CR in a header value", do: func(t *testing.T, h *hostile) {
			r := h.exchange(h.httpRequest("POST", "/iap/1/authorize", rpcBody("hdr", h.authorizeParams(h.tokA, "1")), "X-Evil: a\x00b\rc"), "POST")
			httpErr(t, r, true, 400)
		}},
	}
	// The 64 KB request line is a path, not a header.
	for i := range cs {
		if cs[i].name == "headers/64 KB request line" {
			cs[i].do = func(t *testing.T, h *hostile) {
				r := h.post("/iap/1/authorize?"+strings.Repeat("q", 64<<10), rpcBody("hdr", h.authorizeParams(h.tokA, "1")))
				httpErr(t, r, false, 414, 431)
			}
		}
	}
	return cs
}

// bufioReader reads answers off conn.
func bufioReader(conn net.Conn) *bufio.Reader { return bufio.NewReader(conn) }
