package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/rpc/rpctest"
	"github.com/iapd/iapd/storage"
)

// mixed is the setup of issue 19: partner autocomplete served here, SMS
// and letters forwarded, reveal refused.
var mixed = map[storage.ServiceName]Mode{storage.SMS: Upstream, storage.Snailmail: Upstream, storage.Reveal: Refuse}

// tok is a 32-hex account token, distinct per n.
func tok(n int) string { return fmt.Sprintf("%032x", n) }

// recorder is an upstream that records the requests it gets and answers
// with answer(path).
type recorder struct {
	mu     sync.Mutex
	bodies []string // "path body"
	answer func(path string) string
}

func (r *recorder) handle(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.bodies = append(r.bodies, req.URL.Path+" "+string(b))
	a := r.answer(req.URL.Path)
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, a)
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...)
}

func (r *recorder) setAnswer(f func(string) string) {
	r.mu.Lock()
	r.answer = f
	r.mu.Unlock()
}

// TestServicesTokenCombined: Odoo 17's account list (PROTOCOL §4.2) names
// no service. With SMS and snailmail forwarded, the answer holds the
// local accounts of the local services and, from one upstream call with
// Odoo's exact request, the upstream's items of the forwarded services
// only — each with the keys 17.0 accepts and a token that was sent, in
// the order of the tokens sent; the refused reveal account and a stale
// local SMS account are left out. With the upstream down, the local
// accounts alone (the list shows its local data for the others).
func TestServicesTokenCombined(t *testing.T) {
	rec := &recorder{}
	h := newHarness(t, mixed, Config{}, false, rec.handle)
	ctx := context.Background()
	for _, a := range []struct {
		svc storage.ServiceName
		tok string
	}{{storage.PartnerAutocomplete, tok(1)}, {storage.SMS, tok(2)}, {storage.Reveal, tok(3)}} {
		if _, err := h.ledger.Account(ctx, a.svc, storage.AccountToken(a.tok), storage.FirstSight{DBUUID: "d"}); err != nil {
			t.Fatal(err)
		}
	}
	item := func(tk, svc string, balance any, extra string) string {
		b, _ := json.Marshal(balance)
		return fmt.Sprintf(`{"account_token": %q, "balance": %s, "account_uuid_hashed": "h", "service_name": %q, "description": "d", "warn_me": false, "warning_threshold": 0.0, "warning_email": "", "unit_name": "Credits"%s}`, tk, b, svc, extra)
	}
	upItems := []string{
		item(tok(3), "snailmail", 7, ""),             // kept
		item(tok(2), "sms", 12.5, ""),                // kept: SMS lives upstream
		item(tok(1), "partner_autocomplete", 99, ""), // dropped: served here
		item(tok(2), "snailmail", 1, `, "foo": 1`),   // dropped: a key 17.0 refuses
		item(tok(9), "sms", 1, ""),                   // dropped: a token not sent
		item(tok(3), "sms", "12", ""),                // dropped: balance not a number
		item(tok(1), "reveal", 5, ""),                // dropped: refused
		`{"account_token": "` + tok(2) + `"}`,        // dropped: no service
		`["` + tok(1) + `"]`,                         // dropped: not an object
		`{"account_token": "` + tok(3) + `", "service_name": "sms", "balance": 2, "warning_email": false, "warn_me": null}`, // kept: false and null are Odoo's empty values
	}
	rec.setAnswer(func(string) string {
		return `{"jsonrpc": "2.0", "id": "x", "result": [` + strings.Join(upItems, ", ") + `]}`
	})
	body := []byte(`{"jsonrpc": "2.0", "method": "call", "params": {"dbuuid": "d", "iap_accounts": ["` + tok(1) + `", "` + tok(2) + `", "` + tok(3) + `", "` + tok(1) + `"]}, "id": "f17d"}`)

	type info struct {
		AccountToken string  `json:"account_token"`
		ServiceName  string  `json:"service_name"`
		Balance      float64 `json:"balance"`
	}
	list := func(got []byte) []info {
		t.Helper()
		res, name := checkEnvelope(t, "services-token", got)
		var l []info
		if name != "" || json.Unmarshal(res, &l) != nil || !bytes.Contains(got, []byte(`"id":"f17d"`)) {
			t.Fatalf("services-token: %s", got)
		}
		return l
	}
	got := list(h.post(servicesTokenPath, body))
	want := []info{{tok(1), "partner_autocomplete", 0}, {tok(2), "sms", 12.5}, {tok(3), "sms", 2}, {tok(3), "snailmail", 7}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("services-token:\n got %v\nwant %v", got, want)
	}
	if g := rec.got(); len(g) != 1 || g[0] != servicesTokenPath+" "+string(body) {
		t.Errorf("upstream got %q, want Odoo's request once", g)
	}
	if h.local.Load() != 1 {
		t.Errorf("local handler ran %d times", h.local.Load())
	}

	// Upstream answering garbage, an error, or down: the local accounts.
	for _, a := range []string{`<html>502</html>`, `{"jsonrpc": "2.0", "id": 1, "result": {"a": 1}}`,
		`{"jsonrpc": "2.0", "id": 1, "error": {"code": 200, "message": "x", "data": {"name": "odoo.exceptions.UserError", "message": "m"}}}`} {
		rec.setAnswer(func(string) string { return a })
		if got := list(h.post(servicesTokenPath, body)); fmt.Sprint(got) != fmt.Sprint(want[:1]) {
			t.Errorf("upstream answering %s: %v, want %v", a, got, want[:1])
		}
	}
	h.up.Close()
	if got := list(h.post(servicesTokenPath, body)); fmt.Sprint(got) != fmt.Sprint(want[:1]) {
		t.Errorf("upstream down: %v, want %v", got, want[:1])
	}
	if !strings.Contains(h.audit.String(), `"route":"/iap/services-token","service":"-"`) {
		t.Errorf("audit: %s", h.audit.String())
	}
}

// TestServicesTokenRefuseOnly: with no service forwarded, the list is
// the local one without the refused services' accounts; nothing goes
// upstream.
func TestServicesTokenRefuseOnly(t *testing.T) {
	h := newHarness(t, map[storage.ServiceName]Mode{storage.Reveal: Refuse}, Config{}, false, func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("upstream reached: %s", r.URL.Path)
	})
	for _, svc := range []storage.ServiceName{storage.SMS, storage.Reveal} {
		if _, err := h.ledger.Account(context.Background(), svc, storage.AccountToken(tok(1)), storage.FirstSight{DBUUID: "d"}); err != nil {
			t.Fatal(err)
		}
	}
	got := h.post(servicesTokenPath, []byte(`{"jsonrpc":"2.0","method":"call","id":1,"params":{"dbuuid":"d","iap_accounts":["`+tok(1)+`"]}}`))
	if res, _ := checkEnvelope(t, "services-token", got); !bytes.Contains(res, []byte(`"service_name":"sms"`)) || bytes.Contains(res, []byte("reveal")) {
		t.Errorf("services-token: %s", got)
	}
}

// TestAlertSettingsCombined: the alert settings of Odoo 17 (§4.3) and
// 18+ (§4.5) carry a token and no service. With SMS forwarded they are
// applied to the local accounts of the token and forwarded with Odoo's
// exact bytes; the answer is true only if both took them; an upstream
// that is down, answers garbage or an error other than AccessError is
// answered AccessError (what 17.0–19.0 catch and log), the local change
// staying.
func TestAlertSettingsCombined(t *testing.T) {
	for _, fx := range []struct{ version, name string }{
		{"odoo17", "003_iap_update-warning-odoo.json"},
		{"odoo18", "005_iap_1_update-warning-email-alerts.json"},
		{"odoo19", "005_iap_1_update-warning-email-alerts.json"},
	} {
		t.Run(fx.version, func(t *testing.T) {
			req := rpctest.Load(t, fx.version, func(r *rpctest.Request) bool { return r.Name == fx.name })[0]
			wire := req.Wire(t)
			tk := storage.AccountToken(req.Params(t)["account_token"].(string))
			rec := &recorder{answer: func(string) string { return `{"jsonrpc": "2.0", "id": 1, "result": true}` }}
			h := newHarness(t, mixed, Config{}, false, rec.handle)
			ctx := context.Background()
			if _, err := h.ledger.Account(ctx, storage.PartnerAutocomplete, tk, storage.FirstSight{DBUUID: "d"}); err != nil {
				t.Fatal(err)
			}
			answer := func() (json.RawMessage, string) {
				t.Helper()
				got := h.post(req.Path, wire)
				if !bytes.Contains(got, req.ID(t)) {
					t.Errorf("id not echoed: %s", got)
				}
				return checkEnvelope(t, req.Path, got)
			}
			if res, name := answer(); name != "" || string(res) != "true" {
				t.Fatalf("both took it: %s %s", name, res)
			}
			if g := rec.got(); len(g) != 1 || g[0] != req.Path+" "+string(wire) {
				t.Errorf("upstream got %q, want Odoo's request once", g)
			}
			a, err := h.ledger.LookupAccount(ctx, storage.PartnerAutocomplete, tk)
			if err != nil || !a.Alerts.Enabled || a.Alerts.Threshold.String() != fmt.Sprint(req.Params(t)["warning_threshold"]) || len(a.Alerts.Recipients) == 0 {
				t.Errorf("local account's alerts: %+v %v", a.Alerts, err)
			}
			rec.setAnswer(func(string) string { return `{"jsonrpc": "2.0", "id": 1, "result": false}` })
			if res, name := answer(); name != "" || string(res) != "false" {
				t.Errorf("upstream false: %s %s", name, res)
			}
			for _, a := range []string{`<html>maintenance</html>`, `{"jsonrpc": "2.0", "id": 1}`,
				`{"jsonrpc": "2.0", "id": 1, "error": {"code": 200, "message": "x", "data": {"name": "odoo.addons.iap.tools.iap_tools.InsufficientCreditError", "message": "{}"}}}`,
				`{"jsonrpc": "2.0", "id": 1, "error": {"code": 200, "message": "x", "data": {"name": "odoo.exceptions.UserError", "message": "m"}}}`} {
				rec.setAnswer(func(string) string { return a })
				if _, name := answer(); name != "odoo.exceptions.AccessError" {
					t.Errorf("upstream answering %s: %s", a, name)
				}
			}
			h.up.Close()
			if _, name := answer(); name != "odoo.exceptions.AccessError" {
				t.Errorf("upstream down: %s", name)
			}
			if h.local.Load() != 7 {
				t.Errorf("local handler ran %d times, want 7", h.local.Load())
			}
		})
	}
}

// TestBalanceAuditNamesService: a forwarded balance call is audited and
// counted under the service it names, not "-".
func TestBalanceAuditNamesService(t *testing.T) {
	h := newHarness(t, mixed, Config{}, false, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"jsonrpc": "2.0", "id": 1, "result": 3.0}`)
	})
	req := rpctest.Load(t, "odoo17", func(r *rpctest.Request) bool { return r.Name == "001_iap_1_balance.json" })[0]
	if res, _ := checkEnvelope(t, "balance", h.post(req.Path, req.Wire(t))); string(res) != "3.0" {
		t.Fatalf("balance: %s", res)
	}
	var r AuditRecord
	if err := json.Unmarshal([]byte(strings.TrimSpace(h.audit.String())), &r); err != nil || r.Service != "sms" || r.Route != balancePath {
		t.Errorf("audit %s (%v)", h.audit.String(), err)
	}
	if n := h.px.requests.WithLabelValues("sms", balancePath, OutcomeOK); n == nil {
		t.Error("no sms balance series")
	}
}

// outageCases are upstreams in trouble: down, slow, answering garbage or
// an endless body.
var outageCases = []struct {
	name string
	down bool
	h    func(w http.ResponseWriter, r *http.Request, release <-chan struct{})
}{
	{name: "down", down: true},
	{name: "slow", h: func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}},
	{name: "garbage", h: func(w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
		io.WriteString(w, "<html><body>502 Bad Gateway</body></html>")
	}},
	{name: "endless", h: func(w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
		chunk := bytes.Repeat([]byte(`{"result": [`), 1<<13)
		for range 1 << 12 { // up to 400 MiB, if nobody stops reading
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}},
}

// accountPaths are the account routes of iap.endpoint (§4).
var accountPaths = map[string]bool{balancePath: true, servicesTokenPath: true, warningOdooPath: true, accountsInfoPath: true, warningEmailPath: true}

// TestOutagePerVersion replays every captured request of Odoo 16, 17, 18
// and 19 with every service forwarded to an upstream that is down, slow,
// answering garbage or an endless body, and checks each answer against
// what its route class handles (PROTOCOL §1.4, §4, §6, §7): the account
// routes answer like an unreachable IAP (AccessError: get_credits -1, the
// lists and forms show local data, alert writes logged; services-token a
// list of the local accounts), never UserError nor
// InsufficientCreditError; each service route its own "server error"
// (SMS server_error per message, letters UNKNOWN_ERROR, SMS wizards
// unknown_error, else the error envelope). The ledger is untouched.
func TestOutagePerVersion(t *testing.T) {
	versions := []string{"odoo16", "odoo17", "odoo18", "odoo19"} // odoo16 by name: rpctest.Versions may not list it yet
	for _, oc := range outageCases {
		t.Run(oc.name, func(t *testing.T) {
			release := make(chan struct{})
			defer close(release)
			cfg := Config{MaxBodyBytes: 1 << 20, Timeouts: map[string]time.Duration{}}
			if oc.name == "slow" {
				for _, v := range versions {
					for _, r := range rpctest.Load(t, v, servicePath) {
						cfg.Timeouts[r.Path] = 300 * time.Millisecond
					}
				}
			}
			if oc.down {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				dead := "http://" + ln.Addr().String()
				ln.Close()
				cfg.Hosts = map[Role]string{}
				for r := range DefaultHosts {
					cfg.Hosts[r] = dead
				}
			}
			h := newHarness(t, allUpstream, cfg, false, func(w http.ResponseWriter, r *http.Request) {
				if oc.h != nil {
					oc.h(w, r, release)
				}
			})
			for _, v := range versions {
				reqs := rpctest.Load(t, v, servicePath)
				if len(reqs) < 15 {
					t.Errorf("%s: only %d requests replayed", v, len(reqs))
				}
				// All at once: the slow case waits a timeout each.
				answers := make([][]byte, len(reqs))
				var wg sync.WaitGroup
				for i, req := range reqs {
					wire := req.Wire(t)
					wg.Add(1)
					go func() {
						defer wg.Done()
						answers[i] = h.serve(req.Path, wire)
					}()
				}
				wg.Wait()
				for i, req := range reqs {
					checkOutageAnswer(t, v+"/"+req.Name, req, answers[i])
				}
			}
			h.noAccounts()
		})
	}
}

// serve answers one request through the proxy; safe to call from any
// goroutine (post is for the test's own).
func (h *harness) serve(path string, body []byte) []byte {
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI(path)
	req.Header.SetContentType("application/json")
	req.SetBody(body)
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}, nil)
	h.h(&ctx)
	if sc := ctx.Response.StatusCode(); sc != 200 {
		return []byte(fmt.Sprintf("HTTP %d", sc))
	}
	return append([]byte(nil), ctx.Response.Body()...)
}

// checkOutageAnswer checks got, the answer to req while the upstream is
// in trouble, against what req's route class handles.
func checkOutageAnswer(t *testing.T, what string, req *rpctest.Request, got []byte) {
	t.Helper()
	res, name := checkEnvelope(t, what, got)
	if strings.HasSuffix(name, "InsufficientCreditError") {
		t.Errorf("%s: InsufficientCreditError on an outage: %s", what, got)
	}
	if !bytes.Contains(got, req.ID(t)) {
		t.Errorf("%s: id not echoed: %s", what, got)
	}
	params := req.Params(t)
	switch p := req.Path; {
	case p == servicesTokenPath:
		if name != "" || string(res) != "[]" { // the local accounts: none here
			t.Errorf("%s: %s, want the local list", what, got)
		}
	case accountPaths[p]:
		if name != "odoo.exceptions.AccessError" {
			t.Errorf("%s: %s, want AccessError (an unreachable IAP)", what, got)
		}
	case p == "/iap/sms/2/send" || p == "/iap/sms/3/send" || p == "/api/sms/3/send":
		var states []struct{ State string }
		msgs, _ := params["messages"].([]any)
		if name != "" || json.Unmarshal(res, &states) != nil || len(states) == 0 || len(msgs) == 0 {
			t.Fatalf("%s: %s", what, got)
		}
		for _, s := range states {
			if s.State != "server_error" {
				t.Errorf("%s: %s", what, got)
			}
		}
	case strings.HasPrefix(p, "/api/sms/") && strings.Contains(p, "/account/"):
		if string(res) != `{"state":"unknown_error"}` {
			t.Errorf("%s: %s", what, got)
		}
	case p == "/iap/snailmail/1/print":
		var sm struct {
			Request struct {
				Documents []struct {
					Sent  bool
					Error string
				}
			}
		}
		if name != "" || json.Unmarshal(res, &sm) != nil || len(sm.Request.Documents) == 0 {
			t.Fatalf("%s: %s", what, got)
		}
		for _, d := range sm.Request.Documents {
			if d.Sent || d.Error != "UNKNOWN_ERROR" {
				t.Errorf("%s: %s", what, got)
			}
		}
	default: // the other services: their error path ("could not reach the service")
		if name == "" {
			t.Errorf("%s: %s, want the error envelope", what, got)
		}
	}
}

// TestCombinedRoutesBounded: a combined or split account route over its
// body limit or list limit is refused by the local router (the
// route's own answer) and never forwarded.
func TestCombinedRoutesBounded(t *testing.T) {
	h := newHarness(t, mixed, Config{}, false, func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("upstream reached: %s", r.URL.Path)
	})
	big := []byte(`{"jsonrpc":"2.0","id":1,"params":{"dbuuid":"d","iap_accounts":["` + strings.Repeat("a", 2<<20) + `"]}}`)
	toks := make([]string, 501)
	for i := range toks {
		toks[i] = tok(i)
	}
	many, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "params": map[string]any{"dbuuid": "d", "iap_accounts": toks}})
	for _, c := range []struct {
		path string
		body []byte
		want string
	}{
		{servicesTokenPath, big, "larger"}, {servicesTokenPath, many, "at most 500"},
		{accountsInfoPath, big, "larger"}, {warningOdooPath, big, "larger"},
	} {
		got := h.post(c.path, c.body)
		if _, name := checkEnvelope(t, c.path, got); name == "" || !strings.Contains(string(got), c.want) {
			t.Errorf("%s (%d bytes): %s", c.path, len(c.body), truncate(string(got), 300))
		}
	}
}
