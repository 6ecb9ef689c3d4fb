package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/providers/outbound"
	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/rpc/fallback"
	"github.com/iapd/iapd/rpc/rpctest"
	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

// fixtureRoutes are the service routes the fixtures call, registered on a
// test service with the Service, Endpoint and Timeout the service packages
// give them, and the refusal and outage answers they declare (PROTOCOL §2,
// §13).
var fixtureRoutes = []rpc.Route{
	{Path: "/iap/sms/2/send", Endpoint: "sms.endpoint", Service: storage.SMS, Answer: fallback.SMSByResID},
	{Path: "/iap/sms/3/send", Endpoint: "sms.endpoint", Service: storage.SMS, Answer: fallback.SMSByUUID},
	{Path: "/api/sms/3/send", Endpoint: "sms.endpoint", Service: storage.SMS, Answer: fallback.SMSByUUID},
	{Path: "/api/sms/1/account/create", Endpoint: "sms.endpoint", Service: storage.SMS, Answer: fallback.SMSAccount},
	{Path: "/api/sms/2/account/verify", Endpoint: "sms.endpoint", Service: storage.SMS, Answer: fallback.SMSAccount},
	{Path: "/api/sms/1/account/update_sender", Endpoint: "sms.endpoint", Service: storage.SMS, Answer: fallback.SMSAccount},
	{Path: "/iap/snailmail/1/print", Endpoint: "snailmail.endpoint", Service: storage.Snailmail, Timeout: 30 * time.Second, Answer: fallback.Snailmail},
	{Path: "/iap/partner_autocomplete/search", Endpoint: "iap.partner_autocomplete.endpoint", Service: storage.PartnerAutocomplete, Answer: fallback.PASearch},
	{Path: "/iap/partner_autocomplete/enrich", Endpoint: "iap.partner_autocomplete.endpoint", Service: storage.PartnerAutocomplete, Answer: fallback.PAEnrich},
	{Path: "/iap/partner_autocomplete/search_vat", Endpoint: "iap.partner_autocomplete.endpoint", Service: storage.PartnerAutocomplete, Answer: fallback.PASearchVAT},
	{Path: "/api/dnb/1/search_by_name", Endpoint: "iap.partner_autocomplete.endpoint", Service: storage.PartnerAutocomplete, Answer: fallback.DnBSearch},
	{Path: "/api/dnb/1/search_by_vat", Endpoint: "iap.partner_autocomplete.endpoint", Service: storage.PartnerAutocomplete, Answer: fallback.DnBSearch},
	{Path: "/api/dnb/1/enrich_by_duns", Endpoint: "iap.partner_autocomplete.endpoint", Service: storage.PartnerAutocomplete, Answer: fallback.DnBEnrich},
	{Path: "/api/dnb/1/enrich_by_gst", Endpoint: "iap.partner_autocomplete.endpoint", Service: storage.PartnerAutocomplete, Answer: fallback.DnBEnrich},
	{Path: "/api/dnb/1/enrich_by_domain", Endpoint: "iap.partner_autocomplete.endpoint", Service: storage.PartnerAutocomplete, Answer: fallback.DnBEnrich},
	{Path: "/api/dnb/1/search_by_criteria", Endpoint: "reveal.endpoint", Service: storage.Reveal, Timeout: 300 * time.Second},
	{Path: "/iap/clearbit/1/lead_enrichment_email", Endpoint: "enrich.endpoint", Service: storage.Reveal, Timeout: 300 * time.Second, Answer: fallback.Enrich},
	{Path: "/iap/clearbit/1/lead_mining_request", Endpoint: "reveal.endpoint", Service: storage.Reveal, Timeout: 300 * time.Second},
	{Path: "/iap/clearbit/2/lead_mining_request", Endpoint: "reveal.endpoint", Service: storage.Reveal, Timeout: 300 * time.Second},
	{Path: "/iap/clearbit/1/reveal", Endpoint: "reveal.endpoint", Service: storage.Reveal, Timeout: 300 * time.Second, Answer: fallback.Reveal},
}

// Fix is the local handler of the fixture routes; the harness counts the
// requests that reach the local side whatever their route.
type Fix struct{}

// Call answers true.
func (Fix) Call(_ *http.Request, _ *struct{}, reply *bool) error { *reply = true; return nil }

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// harness is a Proxy in front of a real rpc.Server (in-memory Badger
// ledger), forwarding to a local upstream that answers like Odoo's hosts.
type harness struct {
	t      *testing.T
	ledger *badger.Ledger
	px     *Proxy
	h      fasthttp.RequestHandler
	local  atomic.Int64
	up     *httptest.Server
	upHits atomic.Int64
	reg    *prometheus.Registry
	audit  *syncBuf
	guard  *outbound.Guard
}

func newHarness(t *testing.T, modes map[storage.ServiceName]Mode, cfg Config, airGapped bool, upstream http.HandlerFunc) *harness {
	t.Helper()
	h := &harness{t: t, reg: prometheus.NewRegistry(), audit: &syncBuf{}}
	var err error
	h.ledger, err = badger.Open(badger.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.ledger.Close() })
	for _, svc := range storage.BuiltinServices {
		if _, err := h.ledger.EnsureService(context.Background(), storage.Service{Name: svc, AutoRegister: true, UnitName: "Credits"}); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := rpc.New(rpc.Config{Ledger: h.ledger, PublicURL: "https://iap.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	rs := append([]rpc.Route(nil), fixtureRoutes...)
	for i := range rs {
		rs[i].Method, rs[i].MaxBody = "Fix.Call", 8<<20
	}
	if err := srv.Register("Fix", Fix{}, rs); err != nil {
		t.Fatal(err)
	}
	h.up = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.upHits.Add(1)
		upstream(w, r)
	}))
	t.Cleanup(h.up.Close)
	if cfg.Hosts == nil {
		cfg.Hosts = map[Role]string{}
		for r := range DefaultHosts {
			cfg.Hosts[r] = h.up.URL
		}
	}
	h.guard = outbound.NewGuard(airGapped, nil)
	ob := outbound.NewOutbound(h.guard, 0)
	t.Cleanup(ob.CloseIdleConnections)
	h.px, err = New(Options{Config: cfg, Routes: srv.Routes(), Modes: modes, AirGapped: airGapped, Transport: ob,
		Lookup: srv.Lookup, Pages: srv.HasPage, Errors: srv, Requests: srv, Registerer: h.reg, Audit: NewAudit(h.audit)})
	if err != nil {
		t.Fatal(err)
	}
	local := srv.Handler()
	h.h = h.px.Wrap(func(ctx *fasthttp.RequestCtx) { h.local.Add(1); local(ctx) })
	return h
}

// post sends body to path through the proxy and returns the answer.
func (h *harness) post(path string, body []byte) []byte {
	h.t.Helper()
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI(path)
	req.Header.SetContentType("application/json")
	req.Header.SetUserAgent("python-requests/2.28.1")
	req.SetBody(body)
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}, nil)
	h.h(&ctx)
	if sc := ctx.Response.StatusCode(); sc != 200 {
		h.h = nil
		h.t.Fatalf("%s: HTTP %d", path, sc)
	}
	return append([]byte(nil), ctx.Response.Body()...)
}

// noAccounts asserts the local ledger holds no account of any service:
// nothing forwarded or refused touched it.
func (h *harness) noAccounts() {
	h.t.Helper()
	as, err := h.ledger.Accounts(context.Background(), storage.AccountFilter{})
	if err != nil {
		h.t.Fatal(err)
	}
	if len(as) != 0 {
		h.t.Fatalf("the local ledger has %d accounts, want none", len(as))
	}
}

var allUpstream = map[storage.ServiceName]Mode{
	storage.SMS: Upstream, storage.Snailmail: Upstream, storage.PartnerAutocomplete: Upstream, storage.Reveal: Upstream,
}

// servicePath is a fixture route the harness serves (not the /inband and
// /envelope variants the capture server used to pick its answer).
func servicePath(r *rpctest.Request) bool {
	return !strings.HasPrefix(r.Path, "/inband/") && !strings.HasPrefix(r.Path, "/envelope/")
}

// TestUpstreamPassesFixturesThrough replays every captured 18.0 and 19.0
// request with all services upstream: the upstream receives the exact
// bytes Odoo sent on the same path, and the database receives the exact
// bytes the upstream answered (success and error envelopes, in-band
// errors), while the local handlers and ledger see nothing. The account
// routes stay local, except /iap/1/balance for a forwarded service.
func TestUpstreamPassesFixturesThrough(t *testing.T) {
	var mu sync.Mutex
	var gotPath, gotUA string
	var gotBody, answer []byte
	h := newHarness(t, allUpstream, Config{}, false, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		gotPath, gotBody, gotUA = r.URL.Path, b, r.UserAgent()
		w.Header().Set("Content-Type", "application/json")
		w.Write(answer)
	})
	forwarded := 0
	for _, v := range []string{"odoo18", "odoo19"} {
		for _, req := range rpctest.Load(t, v, servicePath) {
			resp, ok := req.Response(t)
			if !ok {
				t.Fatalf("%s/%s: no captured response", v, req.Name)
			}
			wire := req.Wire(t)
			mu.Lock()
			answer, gotPath, gotBody = resp, "", nil
			mu.Unlock()
			local0, hits0 := h.local.Load(), h.upHits.Load()
			got := h.post(req.Path, wire)
			e := h.px.routes[req.Path]
			isLocal := e.mode == Local && req.Path != balancePath && req.Path != accountsInfoPath && e.combine == combineNone
			if e.combine == combineWrite {
				// The alert settings: applied here and forwarded, true
				// only if both took it; an upstream error other than
				// AccessError becomes AccessError (§4.5: 18.0+ catch
				// only that).
				forwarded++
				if h.local.Load() != local0+1 || h.upHits.Load() != hits0+1 {
					t.Errorf("%s/%s: local %d→%d, upstream %d→%d; want both once", v, req.Name, local0, h.local.Load(), hits0, h.upHits.Load())
				}
				res, name := checkEnvelope(t, req.Name, got)
				if _, wantName := checkEnvelope(t, req.Name, resp); wantName != "" {
					if name != "odoo.exceptions.AccessError" {
						t.Errorf("%s/%s: upstream %s answered %s", v, req.Name, wantName, got)
					}
				} else if string(res) != "true" {
					t.Errorf("%s/%s: %s, want true", v, req.Name, got)
				}
				continue
			}
			if isLocal {
				if h.local.Load() != local0+1 || h.upHits.Load() != hits0 {
					t.Errorf("%s/%s: account route %s was not served locally", v, req.Name, req.Path)
				}
				continue
			}
			forwarded++
			if h.local.Load() != local0 || h.upHits.Load() != hits0+1 {
				t.Fatalf("%s/%s: local %d→%d, upstream %d→%d; want forwarded once", v, req.Name, local0, h.local.Load(), hits0, h.upHits.Load())
			}
			mu.Lock()
			if gotPath != req.Path || !bytes.Equal(gotBody, wire) || gotUA != "python-requests/2.28.1" {
				t.Errorf("%s/%s: upstream got %s %q (UA %q), want %s and Odoo's exact body", v, req.Name, gotPath, truncate(string(gotBody), 80), gotUA, req.Path)
			}
			mu.Unlock()
			if _, name := checkEnvelope(t, req.Name, resp); e.route.Account && name != "" && !strings.HasSuffix(name, ".AccessError") {
				// §4.1, §4.4: 17.0–19.0 catch only AccessError on the
				// account routes (fixtures odoo18 nocredit 001–004).
				if _, gotName := checkEnvelope(t, req.Name, got); gotName != "odoo.exceptions.AccessError" {
					t.Errorf("%s/%s: upstream %s on an account route answered %s", v, req.Name, name, got)
				}
			} else if !bytes.Equal(got, resp) {
				t.Errorf("%s/%s: answer changed on the way:\n got %s\nwant %s", v, req.Name, got, resp)
			}
		}
	}
	if forwarded < 60 {
		t.Fatalf("only %d requests forwarded", forwarded)
	}
	h.noAccounts()
	if n := testutil.ToFloat64(h.px.requests.WithLabelValues("sms", "/api/sms/3/send", OutcomeOK)); n < 4 {
		t.Errorf("iap_upstream_requests_total{sms,/api/sms/3/send,ok} = %v", n)
	}
	if n := testutil.ToFloat64(h.px.requests.WithLabelValues("sms", "/api/sms/3/send", OutcomeRPCError)); n != 0 {
		t.Errorf("sms rpc_error = %v, want 0 (its no-credit answers are in-band)", n)
	}
	if n := testutil.ToFloat64(h.px.requests.WithLabelValues("partner_autocomplete", "/api/dnb/1/search_by_name", OutcomeRPCError)); n < 2 {
		t.Errorf("autocomplete InsufficientCreditError envelopes counted %v times as rpc_error", n)
	}
	// The audit log: one line per forwarded request, hashed tokens, no body.
	lines := strings.Split(strings.TrimSpace(h.audit.String()), "\n")
	if len(lines) != forwarded {
		t.Fatalf("audit log has %d lines, want %d", len(lines), forwarded)
	}
	for _, l := range lines {
		var rec AuditRecord
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		if rec.Route == "" || rec.Upstream != h.up.URL || rec.Status != 200 || rec.RequestBytes == 0 || rec.ResponseBytes == 0 {
			t.Errorf("audit record %+v", rec)
		}
		if rec.Account != "" && len(rec.Account) != 40 {
			t.Errorf("audit account %q is not a SHA-1 hex", rec.Account)
		}
	}
	for _, secret := range []string{"+32470123456", "Hello from real Odoo", "pdf_bin"} {
		if strings.Contains(h.audit.String(), secret) {
			t.Errorf("audit log holds %q", secret)
		}
	}
	req := rpctest.Load(t, "odoo18", func(r *rpctest.Request) bool { return r.Name == "008_api_sms_3_send.json" })[0]
	tok := req.Params(t)["account_token"].(string)
	if strings.Contains(h.audit.String(), tok) || !strings.Contains(h.audit.String(), rpc.HashedToken(storage.AccountToken(tok))) {
		t.Errorf("audit log: want the hashed token of %s…, never the token", tok[:6])
	}
}

// TestBalanceFollowsService: /iap/1/balance goes upstream for a
// forwarded service and stays local for the others (§4.1).
func TestBalanceFollowsService(t *testing.T) {
	h := newHarness(t, map[storage.ServiceName]Mode{storage.SMS: Upstream}, Config{}, false, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"jsonrpc": "2.0", "id": 1, "result": 4242.0}`)
	})
	body := func(svc string) []byte {
		return []byte(`{"jsonrpc":"2.0","method":"call","id":1,"params":{"dbuuid":"d","account_token":"0123456789abcdef0123456789abcdef","service_name":"` + svc + `"}}`)
	}
	if got := h.post("/iap/1/balance", body("sms")); string(got) != `{"jsonrpc": "2.0", "id": 1, "result": 4242.0}` || h.upHits.Load() != 1 {
		t.Fatalf("sms balance: %s (upstream hits %d)", got, h.upHits.Load())
	}
	h.noAccounts()
	if got := h.post("/iap/1/balance", body("snailmail")); h.upHits.Load() != 1 || h.local.Load() != 1 {
		t.Fatalf("snailmail balance: %s (upstream hits %d, local %d)", got, h.upHits.Load(), h.local.Load())
	}
}

// checkEnvelope decodes an answer and fails unless Odoo's iap_jsonrpc can
// read it (§1.2, §1.3): a result and no error key, or an error whose
// data.name and data.message are strings. It returns the result (nil for
// an error) and the error name.
func checkEnvelope(t *testing.T, what string, b []byte) (json.RawMessage, string) {
	t.Helper()
	var env map[string]json.RawMessage
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatalf("%s: answer is not a JSON object: %s", what, b)
	}
	if e, ok := env["error"]; ok {
		var ee struct {
			Data struct {
				Name    *string `json:"name"`
				Message *string `json:"message"`
			} `json:"data"`
		}
		if json.Unmarshal(e, &ee) != nil || ee.Data.Name == nil || ee.Data.Message == nil {
			t.Fatalf("%s: error envelope Odoo cannot read: %s", what, b)
		}
		return nil, *ee.Data.Name
	}
	r, ok := env["result"]
	if !ok {
		t.Fatalf("%s: no result: %s", what, b)
	}
	return r, ""
}

// failureCases are upstreams that fail in every way the proxy must turn
// into an answer Odoo handles.
var failureCases = []struct {
	name    string
	outcome string
	h       func(w http.ResponseWriter, r *http.Request, release <-chan struct{})
}{
	{"html 502", OutcomeHTTPError, func(w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
		w.WriteHeader(502)
		io.WriteString(w, "<html>Bad Gateway</html>")
	}},
	{"not json", OutcomeInvalid, func(w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
		io.WriteString(w, "<html>maintenance</html>")
	}},
	{"truncated", OutcomeInvalid, func(w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
		io.WriteString(w, `{"jsonrpc":"2.0","result":[`)
	}},
	{"array", OutcomeInvalid, func(w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) { io.WriteString(w, `[]`) }},
	{"error null", OutcomeInvalid, func(w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"error":null,"result":[]}`)
	}},
	{"no result", OutcomeInvalid, func(w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
		io.WriteString(w, `{"jsonrpc":"2.0","id":1}`)
	}},
	{"error without name", OutcomeInvalid, func(w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"error":{"code":200,"message":"x","data":{"message":"m"}}}`)
	}},
	{"too large", OutcomeTooLarge, func(w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":"`+strings.Repeat("x", 4096)+`"}`)
	}},
	{"slow", OutcomeTimeout, func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
		select { // past the route's timeout: held until the test ends
		case <-release:
		case <-r.Context().Done():
		}
	}},
	{"connection dropped", OutcomeUnavailable, func(w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			c.Close()
		}
	}},
}

// TestUpstreamFailures: an upstream that answers an HTTP error, garbage,
// too much, too late, or drops the connection gives each route the answer
// its client handles: per-SMS server_error, per-letter UNKNOWN_ERROR,
// SMS wizard unknown_error, else an error envelope with a string
// data.name (the generic error path: -1 for a balance, no suggestions for
// autocomplete, a retry for the reveal cron). The ledger is untouched.
func TestUpstreamFailures(t *testing.T) {
	sms := rpctest.Load(t, "odoo18", func(r *rpctest.Request) bool { return r.Name == "008_api_sms_3_send.json" })[0]
	letter := rpctest.Load(t, "odoo18", func(r *rpctest.Request) bool { return r.Name == "013_iap_snailmail_1_print.json" })[0]
	wizard := rpctest.Load(t, "odoo19", func(r *rpctest.Request) bool { return r.Name == "010_api_sms_1_account_create.json" })[0]
	search := rpctest.Load(t, "odoo19", func(r *rpctest.Request) bool { return r.Name == "014_api_dnb_1_search_by_name.json" })[0]
	reveal := rpctest.Load(t, "odoo18", func(r *rpctest.Request) bool { return r.Name == "027_iap_clearbit_1_reveal.json" })[0]
	balance := rpctest.Load(t, "odoo18", func(r *rpctest.Request) bool { return r.Name == "001_iap_1_balance.json" })[0]

	for _, fc := range failureCases {
		t.Run(fc.name, func(t *testing.T) {
			release := make(chan struct{})
			defer close(release)
			cfg := Config{MaxBodyBytes: 1 << 20, Timeouts: map[string]time.Duration{}}
			if fc.outcome == OutcomeTooLarge {
				cfg.MaxBodyBytes = 1024
			}
			for _, r := range []*rpctest.Request{sms, letter, wizard, search, reveal, balance} {
				cfg.Timeouts[r.Path] = 200 * time.Millisecond // the slow case waits this long, per route
			}
			h := newHarness(t, allUpstream, cfg, false, func(w http.ResponseWriter, r *http.Request) { fc.h(w, r, release) })

			// SMS: every uuid in server_error, nothing else.
			res, name := checkEnvelope(t, "sms", h.post(sms.Path, sms.Wire(t)))
			var states []struct{ UUID, State string }
			if name != "" || json.Unmarshal(res, &states) != nil || len(states) != 3 {
				t.Fatalf("sms: %s %s", name, res)
			}
			for _, s := range states {
				if s.State != "server_error" || len(s.UUID) != 32 {
					t.Errorf("sms: %+v", s)
				}
			}
			// Snailmail: the letter in UNKNOWN_ERROR, request_code 200.
			res, name = checkEnvelope(t, "snailmail", h.post(letter.Path, letter.Wire(t)))
			var sm struct {
				RequestCode int `json:"request_code"`
				Request     struct {
					Documents []struct {
						LetterID int `json:"letter_id"`
						Sent     bool
						Error    string
					}
				}
			}
			if name != "" || json.Unmarshal(res, &sm) != nil || sm.RequestCode != 200 || len(sm.Request.Documents) != 1 ||
				sm.Request.Documents[0].LetterID != 1 || sm.Request.Documents[0].Sent || sm.Request.Documents[0].Error != "UNKNOWN_ERROR" {
				t.Errorf("snailmail: %s %s", name, res)
			}
			// SMS registration wizard: a state it has a message for.
			if res, name = checkEnvelope(t, "wizard", h.post(wizard.Path, wizard.Wire(t))); name != "" || string(res) != `{"state":"unknown_error"}` {
				t.Errorf("wizard: %s %s", name, res)
			}
			// The others: the error envelope, id echoed.
			for _, r := range []*rpctest.Request{search, reveal, balance} {
				got := h.post(r.Path, r.Wire(t))
				want := "odoo.exceptions.UserError" // the services' "server error" (§1.4)
				if r == balance {
					want = "odoo.exceptions.AccessError" // get_credits catches it: -1 (§4.1)
				}
				if _, name := checkEnvelope(t, r.Name, got); name != want {
					t.Errorf("%s: %s", r.Name, got)
				}
				if !bytes.Contains(got, r.ID(t)) {
					t.Errorf("%s: id not echoed: %s", r.Name, got)
				}
			}
			if n := testutil.ToFloat64(h.px.requests.WithLabelValues("sms", sms.Path, fc.outcome)); n != 1 {
				t.Errorf("iap_upstream_requests_total{sms,%s,%s} = %v, want 1", sms.Path, fc.outcome, n)
			}
			if !strings.Contains(h.audit.String(), `"outcome":"`+fc.outcome+`"`) {
				t.Errorf("audit log has no %s record: %s", fc.outcome, h.audit.String())
			}
			if h.local.Load() != 0 {
				t.Errorf("%d requests reached the local handlers", h.local.Load())
			}
			h.noAccounts()
		})
	}
}

// TestUpstreamDown: nothing listens at the upstream address.
func TestUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	hosts := map[Role]string{}
	for r := range DefaultHosts {
		hosts[r] = dead
	}
	h := newHarness(t, allUpstream, Config{Hosts: hosts}, false, func(http.ResponseWriter, *http.Request) {})
	sms := rpctest.Load(t, "odoo19", func(r *rpctest.Request) bool { return r.Name == "008_api_sms_3_send.json" })[0]
	res, name := checkEnvelope(t, "sms", h.post(sms.Path, sms.Wire(t)))
	if name != "" || !bytes.Contains(res, []byte(`"state":"server_error"`)) {
		t.Fatalf("sms with the upstream down: %s %s", name, res)
	}
	mining := rpctest.Load(t, "odoo19", func(r *rpctest.Request) bool { return r.Name == "024_iap_clearbit_2_lead_mining_request.json" })[0]
	got := h.post(mining.Path, mining.Wire(t))
	if _, name := checkEnvelope(t, "mining", got); name != "odoo.exceptions.UserError" || !bytes.Contains(got, []byte("temporarily unavailable")) {
		t.Fatalf("mining with the upstream down: %s", got)
	}
	if n := testutil.ToFloat64(h.px.requests.WithLabelValues("reveal", mining.Path, OutcomeUnavailable)); n != 1 {
		t.Errorf("unavailable counted %v times", n)
	}
	h.noAccounts()
}

// TestRefusals: in mode refuse, each route gets the refusal its client
// understands, with a text the user can act on where the client shows
// one; neither the upstream nor the local side is reached.
func TestRefusals(t *testing.T) {
	refuse := map[storage.ServiceName]Mode{storage.SMS: Refuse, storage.Snailmail: Refuse, storage.PartnerAutocomplete: Refuse, storage.Reveal: Refuse}
	h := newHarness(t, refuse, Config{}, false, func(w http.ResponseWriter, r *http.Request) { t.Errorf("upstream reached: %s", r.URL.Path) })
	want := map[string]func(res json.RawMessage, name string) bool{
		"/api/sms/3/send": func(res json.RawMessage, _ string) bool {
			return bytes.Contains(res, []byte(`"state":"unregistered"`)) && bytes.Contains(res, []byte("turned off")) && !bytes.Contains(res, []byte("server_error"))
		},
		"/api/sms/1/account/create":        func(res json.RawMessage, _ string) bool { return string(res) == `{"state":"closed_feature"}` },
		"/api/sms/2/account/verify":        func(res json.RawMessage, _ string) bool { return string(res) == `{"state":"closed_feature"}` },
		"/api/sms/1/account/update_sender": func(res json.RawMessage, _ string) bool { return string(res) == `{"state":"closed_feature"}` },
		"/iap/snailmail/1/print": func(res json.RawMessage, _ string) bool {
			return bytes.Contains(res, []byte(`"error":"UNKNOWN_ERROR"`)) && bytes.Contains(res, []byte(`"request_code":200`))
		},
		"/iap/partner_autocomplete/search":     func(res json.RawMessage, _ string) bool { return string(res) == `[]` },
		"/iap/partner_autocomplete/enrich":     func(res json.RawMessage, _ string) bool { return string(res) == `{"credit_error":false}` },
		"/iap/partner_autocomplete/search_vat": func(res json.RawMessage, _ string) bool { return string(res) == `false` },
		"/api/dnb/1/search_by_name": func(res json.RawMessage, _ string) bool {
			return bytes.HasPrefix(res, []byte(`{"data":[],"error":"The partner_autocomplete service is turned off`))
		},
		"/api/dnb/1/search_by_vat":    func(res json.RawMessage, _ string) bool { return bytes.HasPrefix(res, []byte(`{"data":[],"error":"`)) },
		"/api/dnb/1/enrich_by_duns":   func(res json.RawMessage, _ string) bool { return bytes.HasPrefix(res, []byte(`{"error":"`)) },
		"/api/dnb/1/enrich_by_gst":    func(res json.RawMessage, _ string) bool { return bytes.HasPrefix(res, []byte(`{"error":"`)) },
		"/api/dnb/1/enrich_by_domain": func(res json.RawMessage, _ string) bool { return bytes.HasPrefix(res, []byte(`{"error":"`)) },
		"/iap/clearbit/1/lead_enrichment_email": func(res json.RawMessage, _ string) bool {
			var m map[string]any
			if json.Unmarshal(res, &m) != nil || len(m) == 0 {
				return false
			}
			for _, v := range m {
				if v != false {
					return false
				}
			}
			return true
		},
		"/iap/clearbit/1/reveal": func(res json.RawMessage, _ string) bool {
			return string(res) == `{"reveal_data":[],"credit_error":false}`
		},
		"/iap/clearbit/2/lead_mining_request": func(_ json.RawMessage, name string) bool { return name == "odoo.exceptions.AccessError" },
		"/api/dnb/1/search_by_criteria":       func(_ json.RawMessage, name string) bool { return name == "odoo.exceptions.AccessError" },
	}
	seen := map[string]bool{}
	for _, v := range rpctest.Versions {
		for _, req := range rpctest.Load(t, v, servicePath) {
			check := want[req.Path]
			if check == nil {
				continue
			}
			got := h.post(req.Path, req.Wire(t))
			res, name := checkEnvelope(t, v+"/"+req.Name, got)
			if !check(res, name) {
				t.Errorf("%s/%s: refusal %s", v, req.Name, got)
			}
			if !bytes.Contains(got, req.ID(t)) {
				t.Errorf("%s/%s: id not echoed", v, req.Name)
			}
			seen[req.Path] = true
		}
	}
	for p := range want {
		if !seen[p] {
			t.Errorf("no fixture exercised %s", p)
		}
	}
	if h.local.Load() != 0 || h.upHits.Load() != 0 {
		t.Errorf("local %d, upstream %d; want none", h.local.Load(), h.upHits.Load())
	}
	if n := testutil.ToFloat64(h.px.refusals.WithLabelValues("sms", "/api/sms/3/send")); n == 0 {
		t.Error("refusals not counted")
	}
	// The mining refusal carries the text for the clients that show it.
	mining := rpctest.Load(t, "odoo18", func(r *rpctest.Request) bool { return r.Name == "024_iap_clearbit_2_lead_mining_request.json" })[0]
	if got := h.post(mining.Path, mining.Wire(t)); !bytes.Contains(got, []byte("The reveal service is turned off on this IAP server. Ask your administrator")) {
		t.Errorf("mining refusal text: %s", got)
	}
	h.noAccounts()
}

// TestAirGapped: upstream modes become refusals with the air-gapped text,
// no connection is attempted (the upstream sees none), the guard refuses
// any host not allowed before resolving it, and allows the allowed ones.
func TestAirGapped(t *testing.T) {
	h := newHarness(t, allUpstream, Config{ForwardUnknown: true}, true, func(w http.ResponseWriter, r *http.Request) { t.Errorf("upstream reached: %s", r.URL.Path) })
	for _, v := range rpctest.Versions {
		for _, req := range rpctest.Load(t, v, servicePath) {
			got := h.post(req.Path, req.Wire(t))
			checkEnvelope(t, v+"/"+req.Name, got)
		}
	}
	got := h.post("/api/olg/1/chat", []byte(`{"jsonrpc":"2.0","method":"call","id":7,"params":{"prompt":"x"}}`))
	if _, name := checkEnvelope(t, "olg", got); name != "werkzeug.exceptions.NotFound" {
		t.Errorf("unknown route air-gapped: %s", got)
	}
	sms := rpctest.Load(t, "odoo18", func(r *rpctest.Request) bool { return r.Name == "008_api_sms_3_send.json" })[0]
	if got := h.post(sms.Path, sms.Wire(t)); !bytes.Contains(got, []byte("air-gapped")) || !bytes.Contains(got, []byte(`"state":"unregistered"`)) {
		t.Errorf("sms air-gapped: %s", got)
	}
	if h.upHits.Load() != 0 {
		t.Fatalf("upstream saw %d requests", h.upHits.Load())
	}
	for _, l := range h.px.Plan() {
		if strings.Contains(l.Destination, "http") {
			t.Errorf("air-gapped plan forwards: %+v", l)
		}
	}

	// The guard: an allowed host gets through, anything else is refused
	// without a lookup (the name below does not resolve anywhere).
	allowed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	defer allowed.Close()
	g := outbound.NewGuard(true, nil)
	if err := g.Allow("provider test", strings.TrimPrefix(allowed.URL, "http://")); err != nil {
		t.Fatal(err)
	}
	ob := outbound.NewOutbound(g, 0)
	defer ob.CloseIdleConnections()
	c := ob.Client(5 * time.Second)
	resp, err := c.Get(allowed.URL)
	if err != nil {
		t.Fatalf("allowed host refused: %v", err)
	}
	resp.Body.Close()
	for _, u := range []string{h.up.URL, "https://iap.odoo.com/iap/1/balance", "http://unresolvable.invalid/"} {
		_, err := c.Get(u)
		if err == nil || !strings.Contains(err.Error(), outbound.ErrRefused.Error()) {
			t.Errorf("GET %s: %v, want refused by the guard", u, err)
		}
	}
	if g.Refused() != 3 {
		t.Errorf("refused %d dials, want 3", g.Refused())
	}
	if g.Permits("API.Twilio.com:443") || !g.Permits(strings.ToUpper(strings.TrimPrefix(allowed.URL, "http://"))) {
		t.Error("Permits: want only the allowed host:port, case-insensitive")
	}
}

// TestForwardUnknown: paths no route serves are forwarded to their role
// only when allowed, never when a local page answers them.
func TestForwardUnknown(t *testing.T) {
	var got string
	var mu sync.Mutex
	up := func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.URL.Path
		mu.Unlock()
		io.WriteString(w, `{"jsonrpc":"2.0","id":7,"result":{"status":"success","content":"hi"}}`)
	}
	body := []byte(`{"jsonrpc":"2.0","method":"call","id":7,"params":{"prompt":"x"}}`)

	h := newHarness(t, nil, Config{}, false, up)
	if res := h.post("/api/olg/1/chat", body); !bytes.Contains(res, []byte("NotFound")) || h.upHits.Load() != 0 {
		t.Fatalf("forward_unknown off: %s", res)
	}

	h = newHarness(t, nil, Config{ForwardUnknown: true}, false, up)
	if res := h.post("/api/olg/1/chat/", body); string(res) != `{"jsonrpc":"2.0","id":7,"result":{"status":"success","content":"hi"}}` || got != "/api/olg/1/chat" {
		t.Fatalf("forward_unknown on: %s (upstream path %q)", res, got)
	}
	if n := testutil.ToFloat64(h.px.requests.WithLabelValues("olg", RouteUnknown, OutcomeOK)); n != 1 {
		t.Errorf("counted %v", n)
	}
	if res := h.post("/nowhere", body); !bytes.Contains(res, []byte("NotFound")) || h.upHits.Load() != 1 {
		t.Fatalf("a path of no role: %s", res)
	}

	// A service sent upstream takes its paths iapd does not serve along
	// (a newer API version), a refused one refuses them: without
	// forward_unknown.
	h = newHarness(t, map[storage.ServiceName]Mode{storage.Snailmail: Upstream, storage.Reveal: Refuse}, Config{}, false, up)
	if res := h.post("/iap/snailmail/2/print", body); got != "/iap/snailmail/2/print" || h.upHits.Load() != 1 || !bytes.Contains(res, []byte(`"status":"success"`)) {
		t.Fatalf("unknown snailmail path: %s (upstream path %q)", res, got)
	}
	if res := h.post("/iap/clearbit/3/lead_mining_request", body); !bytes.Contains(res, []byte("AccessError")) || !bytes.Contains(res, []byte("reveal service is turned off")) {
		t.Fatalf("unknown reveal path: %s", res)
	}
	if res := h.post("/api/olg/1/chat", body); !bytes.Contains(res, []byte("NotFound")) || h.upHits.Load() != 1 || h.local.Load() != 1 {
		t.Fatalf("olg without forward_unknown: %s", res)
	}
	plan := fmt.Sprint(h.px.Plan())
	for _, want := range []string{"/iap/snailmail/… (other paths) snailmail.endpoint snailmail upstream " + h.up.URL, "/iap/clearbit/… (other paths) reveal.endpoint reveal refuse refused"} {
		if !strings.Contains(plan, want) {
			t.Errorf("plan lacks %q: %s", want, plan)
		}
	}
}

// TestForwardingLoop: when upstream.hosts (or iapd's own DNS) lead back
// to iapd, the forwarded request is not forwarded again.
func TestForwardingLoop(t *testing.T) {
	var h *harness
	h = newHarness(t, allUpstream, Config{}, false, func(w http.ResponseWriter, r *http.Request) {
		// The upstream is this iapd: hand the request to the proxy again.
		body, _ := io.ReadAll(r.Body)
		var ctx fasthttp.RequestCtx
		var req fasthttp.Request
		req.Header.SetMethod("POST")
		req.SetRequestURI(r.URL.Path)
		req.Header.Set("Via", r.Header.Get("Via"))
		req.SetBody(body)
		ctx.Init(&req, nil, nil)
		h.h(&ctx)
		w.Write(ctx.Response.Body())
	})
	sms := rpctest.Load(t, "odoo19", func(r *rpctest.Request) bool { return r.Name == "008_api_sms_3_send.json" })[0]
	got := h.post(sms.Path, sms.Wire(t))
	if !bytes.Contains(got, []byte(`"state":"server_error"`)) || h.upHits.Load() != 1 {
		t.Fatalf("loop: %s (upstream hits %d)", got, h.upHits.Load())
	}
	if n := testutil.ToFloat64(h.px.requests.WithLabelValues("sms", sms.Path, OutcomeLoop)); n != 1 {
		t.Errorf("loop counted %v times", n)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{Hosts: map[Role]string{"nope": "https://x"}},
		{Hosts: map[Role]string{RoleSMS: "ftp://x"}},
		{Hosts: map[Role]string{RoleSMS: "https://user:pw@x"}},
		{Timeouts: map[string]time.Duration{"iap/1/balance": time.Second}},
		{Timeouts: map[string]time.Duration{"/iap/1/balance": 0}},
		{MaxBodyBytes: -1},
		{OutboundAllow: []string{"http://x/"}},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	ok := Config{Hosts: map[Role]string{RoleSnailmail: "https://egress.example.org/odoo-snailmail/"},
		Timeouts: map[string]time.Duration{"/iap/snailmail/1/print": time.Minute}, OutboundAllow: []string{"smtp.example.org:587", "api.twilio.com"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if ok.BaseURL(RoleSnailmail) != "https://egress.example.org/odoo-snailmail" || ok.BaseURL(RoleSMSLegacy) != "https://iap-sms.odoo.com" {
		t.Error(ok.BaseURL(RoleSnailmail))
	}
	for in, want := range map[string]Mode{"": Local, "LOCAL": Local, "upstream": Upstream, " refuse": Refuse} {
		if m, err := ParseMode(in); err != nil || m != want {
			t.Errorf("ParseMode(%q) = %v, %v", in, m, err)
		}
	}
	if _, err := ParseMode("forward"); err == nil {
		t.Error("ParseMode(forward): no error")
	}
	for _, r := range fixtureRoutes {
		want := map[string]Role{"sms.endpoint": RoleSMS, "snailmail.endpoint": RoleSnailmail, "iap.partner_autocomplete.endpoint": RolePartnerAutocomplete,
			"enrich.endpoint": RoleEnrich, "reveal.endpoint": RoleReveal}[r.Endpoint]
		if r.Path == "/iap/sms/2/send" {
			want = RoleSMSLegacy
		}
		if got := RoleOf(r); got != want {
			t.Errorf("RoleOf(%s) = %s, want %s", r.Path, got, want)
		}
	}
}

// TestAccountsInformationSplit: the 18.0 account form reads accounts of
// several services in one call (§4.4); with sms upstream, reveal refused
// and the others local, each account is answered by its service's side
// and the answers merged, the refused one without touching the ledger.
func TestAccountsInformationSplit(t *testing.T) {
	var upGot []byte
	var mu sync.Mutex
	h := newHarness(t, map[storage.ServiceName]Mode{storage.SMS: Upstream, storage.Reveal: Refuse}, Config{}, false, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var env struct {
			ID     json.RawMessage
			Params struct {
				IAPAccounts []struct{ Token, Service string } `json:"iap_accounts"`
			}
		}
		json.Unmarshal(b, &env)
		mu.Lock()
		upGot = b
		mu.Unlock()
		out := map[string]any{}
		for _, a := range env.Params.IAPAccounts {
			out[a.Token] = map[string]any{"balance": 4242.123456, "warning_threshold": 10.0, "registered": "registered", "sender_name": "Upstream"}
		}
		json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": env.ID, "result": out})
	})
	req := rpctest.Load(t, "odoo18", func(r *rpctest.Request) bool { return r.Name == "003_iap_1_get-accounts-information.json" })[0]
	var p struct {
		IAPAccounts []struct{ Token, Service string } `json:"iap_accounts"`
	}
	raw, _ := json.Marshal(req.Params(t))
	json.Unmarshal(raw, &p)
	if len(p.IAPAccounts) != 4 {
		t.Fatalf("fixture has %d accounts", len(p.IAPAccounts))
	}
	got := h.post(req.Path, req.Wire(t))
	res, name := checkEnvelope(t, "accounts", got)
	var m map[string]struct {
		Balance    float64 `json:"balance"`
		Registered string  `json:"registered"`
		SenderName string  `json:"sender_name"`
	}
	if name != "" || json.Unmarshal(res, &m) != nil || len(m) != 4 {
		t.Fatalf("merged answer: %s", got)
	}
	for _, a := range p.IAPAccounts {
		v, ok := m[a.Token]
		switch {
		case !ok:
			t.Errorf("%s account missing", a.Service)
		case a.Service == "sms" && (v.SenderName != "Upstream" || v.Balance != 4242.123456):
			t.Errorf("sms account not from upstream: %+v", v)
		case a.Service == "reveal" && (v.Registered != "unregistered" || v.Balance != 0):
			t.Errorf("refused reveal account: %+v", v)
		case a.Service != "sms" && v.SenderName == "Upstream":
			t.Errorf("%s account answered upstream", a.Service)
		}
	}
	mu.Lock()
	if bytes.Count(upGot, []byte(`"token"`)) != 1 || !bytes.Contains(upGot, []byte(`"service":"sms"`)) {
		t.Errorf("upstream got %s", upGot)
	}
	mu.Unlock()
	for _, svc := range []storage.ServiceName{storage.SMS, storage.Reveal} {
		as, err := h.ledger.Accounts(context.Background(), storage.AccountFilter{Service: svc})
		if err != nil || len(as) != 0 {
			t.Errorf("%s accounts in the ledger: %v %v", svc, as, err)
		}
	}
	if h.local.Load() != 1 {
		t.Errorf("local handler ran %d times", h.local.Load())
	}
}

type nopErrors struct{}

func (nopErrors) AppendErrorEnvelope(b, _ []byte, _ string, _ error) []byte { return b }

// BenchmarkWrapLocal is what the proxy costs a request it hands to the
// local handler (a path normalisation and a map lookup).
func BenchmarkWrapLocal(b *testing.B) {
	px, err := New(Options{Routes: fixtureRoutes, Modes: map[storage.ServiceName]Mode{storage.Snailmail: Upstream},
		Errors: nopErrors{}, Transport: http.DefaultTransport})
	if err != nil {
		b.Fatal(err)
	}
	h := px.Wrap(func(*fasthttp.RequestCtx) {})
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("POST")
	ctx.Request.SetRequestURI("/api/sms/3/send")
	ctx.Request.SetBody([]byte(`{"jsonrpc":"2.0","method":"call","id":1,"params":{}}`))
	b.ReportAllocs()
	for b.Loop() {
		h(&ctx)
	}
}

// TestAuditReopen: after logrotate moved the file, Reopen writes to a new
// one at the same path; records are JSON lines.
func TestAuditReopen(t *testing.T) {
	path := t.TempDir() + "/audit.jsonl"
	a, err := OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Write(AuditRecord{Route: "/a", Outcome: OutcomeOK}); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := a.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := a.Write(AuditRecord{Route: "/b", Outcome: OutcomeTimeout}); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(old), `"route":"/a"`) || strings.Contains(string(old), "/b") || !strings.HasPrefix(string(cur), `{"time":`) || !strings.Contains(string(cur), `"route":"/b","service":"","upstream":"","request_bytes":0`) {
		t.Fatalf("rotated:\n%s\ncurrent:\n%s", old, cur)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("audit log mode: %v %v", st.Mode(), err)
	}
}
