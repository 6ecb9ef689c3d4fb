package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/outbound"
	"github.com/iapd/iapd/proxy"
	"github.com/iapd/iapd/rpc/rpctest"
)

// serviceOfPath is the IAP service a fixture path bills (PROTOCOL §6–§11),
// "" for the account routes of iap.endpoint.
func serviceOfPath(p string) string {
	switch {
	case strings.HasPrefix(p, "/iap/snailmail/"):
		return "snailmail"
	case strings.HasPrefix(p, "/iap/clearbit/"), p == "/api/dnb/1/search_by_criteria":
		return "reveal"
	case strings.HasPrefix(p, "/api/sms/"), strings.HasPrefix(p, "/iap/sms/"):
		return "sms"
	case strings.HasPrefix(p, "/api/dnb/"), strings.HasPrefix(p, "/iap/partner_autocomplete/"):
		return "partner_autocomplete"
	}
	return ""
}

// fixturePath keeps the captured requests of real routes (not the
// /inband and /envelope variants the capture server used).
func fixturePath(r *rpctest.Request) bool {
	return r.Method == "POST" && !strings.HasPrefix(r.Path, "/inband/") && !strings.HasPrefix(r.Path, "/envelope/")
}

// fakeUpstream answers like Odoo's IAP hosts: the captured answer to each
// captured request (by its exact bytes), else fallback; it records what
// it received.
type fakeUpstream struct {
	*httptest.Server
	answers  map[string][]byte // request body → answer
	fallback []byte
	mu       sync.Mutex
	got      []string // paths received
	bodies   map[string][]byte
}

func newFakeUpstream(t *testing.T) *fakeUpstream {
	f := &fakeUpstream{answers: map[string][]byte{}, bodies: map[string][]byte{}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.got = append(f.got, r.URL.Path)
		f.bodies[r.URL.Path+" "+string(b)] = b
		a, ok := f.answers[string(b)]
		f.mu.Unlock()
		if !ok {
			a = f.fallback
		}
		switch r.URL.Path {
		case "/iap/1/get-accounts-information":
			if !ok {
				a = accountsAnswer(b) // a request the proxy rebuilt
			}
		case "/iap/services-token":
			a = []byte(`{"jsonrpc": "2.0", "id": 1, "result": []}`) // no account upstream
		case "/iap/update-warning-odoo", "/iap/1/update-warning-email-alerts":
			a = []byte(`{"jsonrpc": "2.0", "id": 1, "result": true}`)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(a)
	}))
	t.Cleanup(f.Close)
	return f
}

// accountsAnswer answers a get-accounts-information request as Odoo's
// IAP does (§4.4), each account with sender_name "Upstream".
func accountsAnswer(body []byte) []byte {
	var env struct {
		ID     json.RawMessage
		Params struct {
			IAPAccounts []struct{ Token, Service string } `json:"iap_accounts"`
		}
	}
	json.Unmarshal(body, &env)
	out := map[string]any{}
	for _, a := range env.Params.IAPAccounts {
		out[a.Token] = map[string]any{"balance": 7, "warning_threshold": 1, "registered": "registered", "sender_name": "Upstream", "service": a.Service}
	}
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": env.ID, "result": out})
	return b
}

func (f *fakeUpstream) paths() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.got...)
}

// hostsYAML points every upstream role at base.
func hostsYAML(base string) string {
	var b strings.Builder
	b.WriteString("  hosts:\n")
	for r := range proxy.DefaultHosts {
		fmt.Fprintf(&b, "    %s: %s\n", r, base)
	}
	return b.String()
}

// postRaw POSTs body to url as Odoo does and returns the status and answer.
func proxyPost(t *testing.T, c *http.Client, url string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "python-requests/2.28.1")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// odooReadable fails unless Odoo's iap_jsonrpc can read b (§1.2, §1.3).
func odooReadable(t *testing.T, what string, b []byte) (result json.RawMessage, errName string) {
	t.Helper()
	var env map[string]json.RawMessage
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatalf("%s: not a JSON object: %s", what, b)
	}
	if e, ok := env["error"]; ok {
		var ee struct {
			Data struct {
				Name    *string `json:"name"`
				Message *string `json:"message"`
			} `json:"data"`
		}
		if json.Unmarshal(e, &ee) != nil || ee.Data.Name == nil || ee.Data.Message == nil {
			t.Fatalf("%s: error Odoo cannot read: %s", what, b)
		}
		return nil, *ee.Data.Name
	}
	if _, ok := env["result"]; !ok {
		t.Fatalf("%s: no result: %s", what, b)
	}
	return env["result"], ""
}

// routesJSON runs "iapd routes -config cfg -json".
func routesJSON(t *testing.T, cfg string) []proxy.PlanLine {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"routes", "-config", cfg, "-json"}, func(string) string { return "" }, strings.NewReader(""), &out, &errb); err != nil {
		t.Fatalf("iapd routes: %v\n%s", err, errb.String())
	}
	var r struct{ Routes []proxy.PlanLine }
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("iapd routes -json: %v\n%s", err, out.String())
	}
	return r.Routes
}

// modeOf is the mode iapd routes gives path: its own line, else the
// "other paths" line of its prefix.
func modeOf(plan []proxy.PlanLine, path string) string {
	best, mode := "", "local"
	for _, l := range plan {
		if l.Path == path {
			return l.Mode
		}
		if p, ok := strings.CutSuffix(l.Path, "… (other paths)"); ok && strings.HasPrefix(path, p) && len(p) > len(best) {
			best, mode = p, l.Mode
		}
	}
	return mode
}

// TestProxyMixedConfiguration runs iapd with SMS local, snailmail
// upstream and reveal refused, replays every captured request of Odoo 17,
// 18 and 19, and checks that each went where configured: snailmail to the
// upstream with Odoo's exact bytes and back with the upstream's exact
// answer, reveal refused the way its clients understand, SMS and the rest
// never upstream. The ledger holds no snailmail or reveal account, the
// audit log and the metrics count the forwarded letters, and "iapd routes"
// tells the same story.
func TestProxyMixedConfiguration(t *testing.T) {
	up := newFakeUpstream(t)
	snail := rpctest.Load(t, "odoo18", func(r *rpctest.Request) bool { return r.Name == "013_iap_snailmail_1_print.json" })[0]
	up.fallback, _ = snail.Response(t)
	var reqs []*rpctest.Request
	for _, v := range rpctest.Versions {
		for _, r := range rpctest.Load(t, v, fixturePath) {
			reqs = append(reqs, r)
			if a, ok := r.Response(t); ok {
				up.answers[string(r.Wire(t))] = a
			}
		}
	}

	dir := t.TempDir()
	audit := filepath.Join(dir, "upstream-audit.jsonl")
	cfgPath := filepath.Join(dir, "iapd.yaml")
	cfg := "admin_token: " + testAdminToken + `
services:
  sms:
    mode: local
  snailmail:
    mode: upstream
  reveal:
    mode: refuse
upstream:
` + hostsYAML(up.URL) + "  audit_log: " + audit + "\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	plan := routesJSON(t, cfgPath)
	for path, want := range map[string]string{
		"/iap/snailmail/1/print":              "upstream",
		"/iap/clearbit/1/reveal":              "refuse",
		"/iap/clearbit/2/lead_mining_request": "refuse",
		"/api/dnb/1/search_by_criteria":       "refuse",
		"/api/sms/3/send":                     "local",
		"/iap/1/balance":                      "by service_name",
		"/iap/1/authorize":                    "local",
	} {
		if got := modeOf(plan, path); got != want {
			t.Errorf("iapd routes: %s is %q, want %q", path, got, want)
		}
	}

	s := startServer(t, nil, "-config", cfgPath)
	forwarded, accountsForwarded, balanceForwarded := 0, 0, 0
	for _, r := range reqs {
		what := r.Version + "/" + r.Name
		wire := r.Wire(t)
		before := len(up.paths())
		code, got := proxyPost(t, http.DefaultClient, s.public+r.Path, wire)
		if code != 200 {
			t.Fatalf("%s: HTTP %d %s", what, code, got)
		}
		res, errName := odooReadable(t, what, got)
		after := up.paths()
		switch svc := serviceOfPath(r.Path); svc {
		case "snailmail":
			forwarded++
			if len(after) != before+1 || after[before] != r.Path {
				t.Fatalf("%s: not forwarded (upstream saw %v)", what, after[before:])
			}
			up.mu.Lock()
			sent := up.bodies[r.Path+" "+string(wire)]
			up.mu.Unlock()
			if !bytes.Equal(sent, wire) {
				t.Errorf("%s: the upstream did not get Odoo's bytes", what)
			}
			want, ok := up.answers[string(wire)]
			if !ok {
				want = up.fallback
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s: answer changed on the way:\n got %s\nwant %s", what, got, want)
			}
		case "":
			switch r.Path {
			case "/iap/services-token", "/iap/update-warning-odoo", "/iap/1/update-warning-email-alerts":
				// Combined: answered here and asked upstream once
				// (snailmail accounts may live there).
				accountsForwarded++
				if len(after) != before+1 || after[before] != r.Path || errName != "" {
					t.Errorf("%s: upstream saw %v, answer %s", what, after[before:], got)
				}
				continue
			case "/iap/1/balance":
				// By service_name (§4.1; 16.0 012 asks snailmail's, 018
				// reveal's): upstream passed through, refused 0, else local.
				switch r.Params(t)["service_name"] {
				case "snailmail":
					balanceForwarded++
					if want, _ := r.Response(t); len(after) != before+1 || !bytes.Equal(got, want) {
						t.Errorf("%s: snailmail balance not passed through (upstream saw %v): %s", what, after[before:], got)
					}
				case "reveal":
					if len(after) != before || string(res) != "0" {
						t.Errorf("%s: reveal balance %s (upstream saw %v), want 0 here", what, got, after[before:])
					}
				default:
					if len(after) != before {
						t.Fatalf("%s: reached the upstream: %v", what, after[before:])
					}
				}
				continue
			}
			if r.Path != "/iap/1/get-accounts-information" {
				if len(after) != before {
					t.Fatalf("%s: reached the upstream: %v", what, after[before:])
				}
				continue
			}
			// The account form: snailmail accounts upstream, reveal
			// refused, the others local, merged (§4.4).
			var sent struct {
				IAPAccounts []struct{ Token, Service string } `json:"iap_accounts"`
			}
			raw, _ := json.Marshal(r.Params(t))
			json.Unmarshal(raw, &sent)
			var m map[string]struct {
				Registered string `json:"registered"`
				SenderName string `json:"sender_name"`
				Service    string `json:"service"`
			}
			if json.Unmarshal(res, &m) != nil && errName == "" {
				t.Fatalf("%s: %s", what, got)
			}
			snailAccounts := 0
			for _, a := range sent.IAPAccounts {
				if a.Service == "snailmail" {
					snailAccounts++
				}
			}
			if snailAccounts > 0 {
				accountsForwarded++
			}
			if snailAccounts == len(sent.IAPAccounts) { // all upstream: passed through
				if want, _ := r.Response(t); len(after) != before+1 || !bytes.Equal(got, want) {
					t.Errorf("%s: not passed through: %s", what, got)
				}
				continue
			}
			for _, a := range sent.IAPAccounts {
				v := m[a.Token]
				switch a.Service {
				case "snailmail":
					if v.SenderName != "Upstream" || v.Service != "snailmail" {
						t.Errorf("%s: snailmail account not answered upstream: %+v", what, v)
					}
				case "reveal":
					if v.Registered != "unregistered" {
						t.Errorf("%s: reveal account not refused: %+v", what, v)
					}
				default:
					if v.SenderName == "Upstream" {
						t.Errorf("%s: %s account answered upstream", what, a.Service)
					}
				}
			}
			if want := before + min(snailAccounts, 1); len(after) != want {
				t.Errorf("%s: upstream saw %v", what, after[before:])
			}
		default:
			if len(after) != before {
				t.Fatalf("%s (%s): reached the upstream: %v", what, svc, after[before:])
			}
			if svc != "reveal" {
				continue
			}
			// Refused the way each reveal client understands (§9–§11).
			switch {
			case r.Path == "/iap/clearbit/1/reveal":
				if string(res) != `{"reveal_data":[],"credit_error":false}` {
					t.Errorf("%s: %s", what, got)
				}
			case r.Path == "/iap/clearbit/1/lead_enrichment_email":
				if errName != "" || bytes.Contains(res, []byte(`{"`)) && !bytes.Contains(res, []byte(`":false`)) {
					t.Errorf("%s: %s", what, got)
				}
			default: // lead mining: the wizard's error path, with the text
				if errName != "odoo.exceptions.AccessError" || !bytes.Contains(got, []byte("reveal service is turned off")) {
					t.Errorf("%s: %s", what, got)
				}
			}
		}
	}
	if forwarded < 5 {
		t.Fatalf("only %d snailmail requests replayed", forwarded)
	}
	if balanceForwarded == 0 {
		t.Error("no snailmail balance replayed (fixtures odoo16 012)")
	}

	// Nothing reached the ledger for the services not served locally.
	for _, svc := range []string{"snailmail", "reveal"} {
		out := s.mustCLI(t, "", "accounts", "list", "-service", svc, "-json")
		var l struct{ Accounts []json.RawMessage }
		if err := json.Unmarshal([]byte(out), &l); err != nil || len(l.Accounts) != 0 {
			t.Errorf("%s accounts in the ledger: %s", svc, out)
		}
	}
	// Metrics on the ops listener.
	code, metrics := get(t, s.ops+"/metrics", "")
	if code != 200 || !strings.Contains(metrics, `iap_upstream_requests_total{outcome="ok",route=`) ||
		!strings.Contains(metrics, `service="snailmail"} `+fmt.Sprint(forwarded)) || !strings.Contains(metrics, `iap_refused_requests_total{route=`) {
		t.Errorf("metrics:\n%s", grep(metrics, "iap_upstream_requests_total", "iap_refused"))
	}
	s.stop(t)
	b, err := os.ReadFile(audit)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != forwarded+accountsForwarded+balanceForwarded || accountsForwarded == 0 {
		t.Fatalf("audit log: %d lines, want %d + %d + %d", len(lines), forwarded, accountsForwarded, balanceForwarded)
	}
	for _, l := range lines {
		var rec proxy.AuditRecord
		err := json.Unmarshal([]byte(l), &rec)
		letter := rec.Service == "snailmail" && rec.Route == "/iap/snailmail/1/print" && len(rec.Account) == 40
		account := rec.Service == "-" && (rec.Route == "/iap/1/get-accounts-information" || rec.Route == "/iap/services-token" ||
			rec.Route == "/iap/update-warning-odoo" || rec.Route == "/iap/1/update-warning-email-alerts")
		balance := rec.Service == "snailmail" && rec.Route == "/iap/1/balance" // a forwarded balance names its service
		if err != nil || !(letter || account || balance) || rec.Outcome != proxy.OutcomeOK || rec.Upstream != up.URL {
			t.Errorf("audit line %s (%v)", l, err)
		}
	}
	if bytes.Contains(b, []byte("pdf_bin")) || bytes.Contains(b, []byte(snail.Params(t)["account_token"].(string))) {
		t.Error("the audit log holds a body or a raw token")
	}
	if _, routes, _ := strings.Cut(s.stderr.String(), `msg="wiring: routes"`); !strings.Contains(strings.SplitN(routes, "\n", 2)[0], "/iap/1/balance") {
		t.Error("no startup report of the routes in the log")
	}
}

func grep(s string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// testHTTPProvider is a provider that calls the URL of its settings and
// declares its host (providers.Endpoints), registered for these tests.
type testHTTPProvider struct {
	name, endpoint string
	http           *http.Client
}

func (p *testHTTPProvider) Name() string { return p.name }
func (p *testHTTPProvider) Type() string { return "iapd-test-http" }
func (p *testHTTPProvider) Close() error { return nil }
func (p *testHTTPProvider) Hosts() []string {
	return outbound.HostsOfURLs([]string{p.endpoint})
}

func init() {
	providers.Register("iapd-test-http", func(cfg providers.Config, deps providers.Deps) (providers.Provider, error) {
		var s struct {
			API string `yaml:"api"`
		}
		if err := cfg.Decode(&s); err != nil {
			return nil, err
		}
		return &testHTTPProvider{name: cfg.Name, endpoint: s.API, http: deps.HTTP}, nil
	})
}

var _ providers.Endpoints = (*testHTTPProvider)(nil)

// countingListener accepts connections on a loopback address no one may
// reach in air-gapped mode, and counts them.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func newCountingListener(t *testing.T) *countingListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.2:0") // a second loopback address
	if err != nil {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
	}
	c := &countingListener{Listener: ln}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.n.Add(1)
			conn.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return c
}

// TestAirGapped wires iapd air-gapped, with every service configured
// upstream, Odoo's hosts and an HTTP proxy pointing at a listener that
// counts connections, and one provider whose API is another listener. It
// replays every captured request through the public handler and calls
// out through the providers' client: the provider's API is reached, the
// counting listener never is, every request gets an answer Odoo reads,
// and the startup report says what goes where.
func TestAirGapped(t *testing.T) {
	forbidden := newCountingListener(t)
	forbiddenURL := "http://" + forbidden.Addr().String()
	var apiHits atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { apiHits.Add(1); io.WriteString(w, "ok") }))
	defer api.Close()
	t.Setenv("HTTP_PROXY", forbiddenURL) // a proxy would be a way out
	t.Setenv("HTTPS_PROXY", forbiddenURL)

	cfg, err := ParseConfig([]byte(`air_gapped: true
services:
  sms: {mode: upstream}
  snailmail: {mode: upstream}
  partner_autocomplete: {mode: upstream}
  reveal: {mode: upstream}
providers:
  gateway:
    type: iapd-test-http
    api: `+api.URL+`/v1
upstream:
  forward_unknown: true
`+hostsYAML(forbiddenURL)), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	w, done, err := offlineWiring(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	h := w.handler()

	replayed := 0
	for _, v := range rpctest.Versions {
		for _, r := range rpctest.Load(t, v, fixturePath) {
			var ctx fasthttp.RequestCtx
			var req fasthttp.Request
			req.Header.SetMethod("POST")
			req.SetRequestURI(r.Path)
			req.Header.SetContentType("application/json")
			req.SetBody(r.Wire(t))
			ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
			h(&ctx)
			if ctx.Response.StatusCode() != 200 {
				t.Fatalf("%s/%s: HTTP %d", v, r.Name, ctx.Response.StatusCode())
			}
			res, errName := odooReadable(t, v+"/"+r.Name, ctx.Response.Body())
			if serviceOfPath(r.Path) == "sms" && r.Path == "/api/sms/3/send" && !bytes.Contains(res, []byte(`"state":"unregistered"`)) {
				t.Errorf("%s/%s: SMS air-gapped: %s %s", v, r.Name, errName, ctx.Response.Body())
			}
			replayed++
		}
	}
	// Unknown routes are not forwarded either, forward_unknown or not.
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("POST")
	ctx.Request.SetRequestURI("/api/olg/1/chat")
	ctx.Request.SetBody([]byte(`{"jsonrpc":"2.0","method":"call","id":1,"params":{}}`))
	h(&ctx)
	odooReadable(t, "olg", ctx.Response.Body())

	// The providers' client: the provider's API yes, anything else no.
	resp, err := w.outbound.Get(api.URL + "/v1/ping")
	if err != nil {
		t.Fatalf("the provider's API was refused: %v", err)
	}
	resp.Body.Close()
	for _, u := range []string{forbiddenURL + "/", "https://iap.odoo.com/", "https://sms.api.odoo.com/api/sms/3/send"} {
		if resp, err := w.outbound.Get(u); err == nil || !strings.Contains(err.Error(), outbound.ErrRefused.Error()) {
			if err == nil {
				resp.Body.Close()
			}
			t.Errorf("GET %s: %v, want refused", u, err)
		}
	}
	// Raw connections (an SMTP relay) through providers.DialerOf obey the
	// same rule.
	dial := providers.DialerOf(w.outbound)
	if c, err := dial(context.Background(), "tcp", forbidden.Addr().String()); err == nil || !strings.Contains(err.Error(), outbound.ErrRefused.Error()) {
		if err == nil {
			c.Close()
		}
		t.Errorf("raw dial to the forbidden listener: %v", err)
	}
	c, err := dial(context.Background(), "tcp", strings.TrimPrefix(api.URL, "http://"))
	if err != nil {
		t.Fatalf("raw dial to the provider: %v", err)
	}
	c.Close()
	if n := forbidden.n.Load(); n != 0 {
		t.Fatalf("%d connections reached a host that is not a configured provider's", n)
	}
	if replayed < 100 || apiHits.Load() != 1 { // the raw dial sent no request
		t.Fatalf("replayed %d, provider API hits %d", replayed, apiHits.Load())
	}
	report := strings.Join(w.report, "\n")
	apiHost := strings.TrimPrefix(api.URL, "http://")
	for _, want := range []string{
		"air-gapped: nothing is forwarded to Odoo; outbound connections only to:",
		apiHost + " (provider gateway settings)",
		"route /iap/1/authorize [-, iap.endpoint]: local → iapd",
		"route /iap/1/balance [-, iap.endpoint]: by service_name → balance 0 for partner_autocomplete, reveal, sms, snailmail; iapd otherwise",
		"/iap/snailmail/… (other paths) [snailmail, snailmail.endpoint]: refuse (upstream, air-gapped) → refused",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("startup report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, forbiddenURL) && strings.Contains(report, "→ "+forbiddenURL) {
		t.Errorf("the report forwards somewhere:\n%s", report)
	}
}

// TestServiceModeValidated: an unknown mode stops serve with the key.
func TestServiceModeValidated(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "iapd.yaml")
	if err := os.WriteFile(cfg, []byte("services:\n  sms:\n    mode: forward\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := tryStartServer(t, nil, "-config", cfg)
	if err == nil || !strings.Contains(err.Error(), "services.sms.mode") {
		t.Fatalf("err = %v", err)
	}
	if err := os.WriteFile(cfg, []byte("upstream:\n  hosts:\n    nowhere: https://x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tryStartServer(t, nil, "-config", cfg); err == nil || !strings.Contains(err.Error(), "unknown role") {
		t.Fatalf("err = %v", err)
	}
}

// TestSettingsHosts: the hosts allowed from a provider's settings before
// it is built (air-gapped mode): every URL value and host keys with their
// port; nothing else.
func TestSettingsHosts(t *testing.T) {
	cfg, err := ParseConfig([]byte(`providers:
  relay:
    type: smtp
    host: SMTP.example.org
    port: 587
    from: "IAP <iap@example.org>"
  twilio-eu:
    type: twilio
    base_url: https://api.twilio.com/2010-04-01
    status_callback: https://iap.example.org/providers/twilio-eu/status
    account_sid: AC123
  hook:
    type: webhook
    targets:
      - url: https://user:pw@hooks.example.net:8443/iap?x=1
      - url: not a url
`), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"relay":     "[SMTP.example.org:587]",
		"twilio-eu": "[api.twilio.com iap.example.org]",
		"hook":      "[hooks.example.net:8443]",
	}
	for name, w := range want {
		s := cfg.Providers[name].Settings
		if got := fmt.Sprint(settingsHosts(&s)); got != w {
			t.Errorf("%s: %s, want %s", name, got, w)
		}
	}
}
