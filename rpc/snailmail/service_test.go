package snailmail

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
	"go.yaml.in/yaml/v3"

	"github.com/iapd/iapd/providers"
	_ "github.com/iapd/iapd/providers/pingen"
	"github.com/iapd/iapd/providers/pingen/pingentest"
	"github.com/iapd/iapd/providers/providertest"
	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/rpc/rpctest"
	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

// fakeSender is a scriptable letter provider: each call takes the next
// outcome of its script (none left: accepted).
type fakeSender struct {
	name string
	mu   sync.Mutex
	plan []providers.Kind
	sent []providers.Letter
	n    int
}

func (f *fakeSender) Name() string { return f.name }
func (f *fakeSender) Type() string { return "fake" }
func (f *fakeSender) Close() error { return nil }

func (f *fakeSender) SendLetter(_ context.Context, l providers.Letter) (providers.LetterResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	var k providers.Kind
	if len(f.plan) > 0 {
		k, f.plan = f.plan[0], f.plan[1:]
	}
	if k != 0 {
		return providers.LetterResult{}, providers.Errorf(f.name, k, "scripted %s", k)
	}
	f.sent = append(f.sent, l)
	return providers.LetterResult{ProviderID: fmt.Sprintf("%s-%d", strings.ToUpper(f.name), f.n), Status: providers.LetterAccepted}, nil
}

func (f *fakeSender) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func (f *fakeSender) script(ks ...providers.Kind) {
	f.mu.Lock()
	f.plan = ks
	f.mu.Unlock()
}

type env struct {
	t      *testing.T
	ledger *badger.Ledger
	svc    *Service
	h      fasthttp.RequestHandler
}

func newEnv(t *testing.T, settings Settings, senders ...providers.LetterSender) *env {
	t.Helper()
	l, err := badger.Open(badger.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ctx := context.Background()
	if _, err := l.EnsureService(ctx, storage.Service{Name: storage.Snailmail, AutoRegister: true, UnitName: "Stamps"}); err != nil {
		t.Fatal(err)
	}
	srv, err := rpc.New(rpc.Config{Ledger: l, PublicURL: "https://iap.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]providers.LetterSender{}
	for _, s := range senders {
		m[s.Name()] = s
	}
	if len(settings.Providers) == 0 && len(senders) > 0 {
		settings.Providers = []string{senders[0].Name()}
	}
	svc, err := New(settings, Deps{Ledger: l, Records: l, Senders: m})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Register(ServiceName, svc, svc.Routes()); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ledger: l, svc: svc, h: srv.Handler()}
}

// do sends body to the print route through the real server and returns
// the HTTP status and the answer (safe from any goroutine).
func (e *env) do(body []byte) (int, []byte) {
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI("/iap/snailmail/1/print")
	req.Header.SetContentType("application/json")
	req.SetBody(body)
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	e.h(&ctx)
	return ctx.Response.StatusCode(), append([]byte(nil), ctx.Response.Body()...)
}

// post sends body and returns the envelope.
func (e *env) post(body []byte) map[string]json.RawMessage {
	e.t.Helper()
	return e.envelope(e.do(body))
}

func (e *env) envelope(status int, raw []byte) map[string]json.RawMessage {
	e.t.Helper()
	if status != 200 {
		e.t.Fatalf("HTTP %d: %s", status, raw)
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal(raw, &env); err != nil {
		e.t.Fatalf("not JSON: %s", raw)
	}
	return env
}

// result is the decoded result of a print call.
type result struct {
	RequestCode int             `json:"request_code"`
	TotalCost   json.Number     `json:"total_cost"`
	CreditError bool            `json:"credit_error"`
	Request     json.RawMessage `json:"request"`
	docs        []map[string]json.RawMessage
	options     json.RawMessage
	raw         json.RawMessage
}

func (e *env) print(body []byte) result {
	e.t.Helper()
	return e.parse(e.do(body))
}

// parse checks and decodes a print answer.
func (e *env) parse(status int, raw []byte) result {
	e.t.Helper()
	env := e.envelope(status, raw)
	if _, ok := env["error"]; ok {
		e.t.Fatalf("error answer: %s", env["error"])
	}
	var r result
	r.raw = env["result"]
	if err := json.Unmarshal(env["result"], &r); err != nil {
		e.t.Fatal(err)
	}
	var top map[string]json.RawMessage
	_ = json.Unmarshal(env["result"], &top)
	if got := sortedKeys(top); !slices.Equal(got, []string{"credit_error", "request", "request_code", "total_cost"}) {
		e.t.Errorf("result keys %v", got)
	}
	var req struct {
		Documents []map[string]json.RawMessage `json:"documents"`
		Options   json.RawMessage              `json:"options"`
	}
	if err := json.Unmarshal(r.Request, &req); err != nil {
		e.t.Fatal(err)
	}
	r.docs, r.options = req.Documents, req.Options
	// PROTOCOL §7 / fixtures READMEs: a sent document is {letter_id,
	// sent: true, send_id}, a failed one {letter_id, sent: false, error}.
	for i, d := range r.docs {
		keys := sortedKeys(d)
		switch string(d["sent"]) {
		case "true":
			if !slices.Equal(keys, []string{"letter_id", "send_id", "sent"}) {
				e.t.Errorf("document %d: keys %v for a sent letter", i, keys)
			}
		case "false":
			if !slices.Equal(keys, []string{"error", "letter_id", "sent"}) {
				e.t.Errorf("document %d: keys %v for a failed letter", i, keys)
			}
		default:
			e.t.Errorf("document %d: sent = %s", i, d["sent"])
		}
	}
	return r
}

func sortedKeys(m map[string]json.RawMessage) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (r result) errorOf(i int) string {
	var s string
	_ = json.Unmarshal(r.docs[i]["error"], &s)
	return s
}

func (r result) sendID(i int) string {
	var s string
	_ = json.Unmarshal(r.docs[i]["send_id"], &s)
	return s
}

func (e *env) recharge(tok string, amount string) {
	e.t.Helper()
	c, err := storage.ParseCredits(amount)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.ledger.Recharge(context.Background(), storage.RechargeRequest{Service: storage.Snailmail, Account: storage.AccountToken(tok), Amount: c, Kind: storage.EntryRecharge}); err != nil {
		e.t.Fatal(err)
	}
}

// account returns the account and checks the ledger invariant
// recharged = available + held + captured.
func (e *env) account(tok string) storage.Account {
	e.t.Helper()
	a, err := e.ledger.LookupAccount(context.Background(), storage.Snailmail, storage.AccountToken(tok))
	if err != nil {
		e.t.Fatal(err)
	}
	if a.Recharged != a.Available+a.Held+a.Captured {
		e.t.Fatalf("invariant broken: %+v", a)
	}
	return a
}

func (e *env) want(tok string, available, held, captured string) {
	e.t.Helper()
	a := e.account(tok)
	p := func(s string) storage.Credits {
		c, err := storage.ParseCredits(s)
		if err != nil {
			e.t.Fatal(err)
		}
		return c
	}
	if a.Available != p(available) || a.Held != p(held) || a.Captured != p(captured) {
		e.t.Fatalf("account: available %s held %s captured %s; want %s %s %s", a.Available, a.Held, a.Captured, available, held, captured)
	}
}

// TestFixtures replays every snailmail request a real Odoo 16, 17, 18 and 19
// sent, byte for byte, once with credit and once without, and checks the
// answers the fixtures READMEs show Odoo accepting: the letter sent with a
// send_id and charged; without credit, CREDIT_ERROR in-band and nothing
// charged or sent.
func TestFixtures(t *testing.T) {
	n := 0
	for _, v := range rpctest.Versions {
		for _, req := range rpctest.Load(t, v, func(r *rpctest.Request) bool { return r.Path == "/iap/snailmail/1/print" }) {
			n++
			tok, _ := req.Params(t)["account_token"].(string)
			for _, credit := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/%s/credit=%v", v, req.Name, credit), func(t *testing.T) {
					fake := &fakeSender{name: "fake"}
					e := newEnv(t, Settings{}, fake)
					if credit {
						e.recharge(tok, "10")
					} else {
						e.recharge(tok, "0.5") // less than a stamp
					}
					r := e.print(req.Wire(t))
					if r.RequestCode != 200 || len(r.docs) != 1 {
						t.Fatalf("result %s", r.raw)
					}
					wantLetter := req.Params(t)["documents"].([]any)[0].(map[string]any)["letter_id"]
					if string(r.docs[0]["letter_id"]) != fmt.Sprint(wantLetter) {
						t.Errorf("letter_id %s, want %v", r.docs[0]["letter_id"], wantLetter)
					}
					var opts map[string]any
					if json.Unmarshal(r.options, &opts) != nil || opts["currency_name"] != "EUR" {
						t.Errorf("options not echoed: %s", r.options)
					}
					if credit {
						if string(r.docs[0]["sent"]) != "true" || r.sendID(0) != "FAKE-1" || r.CreditError || r.TotalCost != "1" {
							t.Fatalf("result %s", r.raw)
						}
						if fake.sent[0].Pages != 1 || !fake.sent[0].Color || fake.sent[0].To.City != "Brussels" || fake.sent[0].Country != "BE" {
							t.Errorf("letter handed over: %+v", fake.sent[0].To)
						}
						e.want(tok, "9", "0", "1")
					} else {
						if r.errorOf(0) != codeCredit || !r.CreditError || r.TotalCost != "0" || fake.calls() != 0 {
							t.Fatalf("result %s, %d provider calls", r.raw, fake.calls())
						}
						e.want(tok, "0.5", "0", "0")
						// Recharged, Odoo's cron retries: now it goes.
						e.recharge(tok, "1")
						if r := e.print(req.Wire(t)); string(r.docs[0]["sent"]) != "true" {
							t.Fatalf("retry after recharge: %s", r.raw)
						}
						e.want(tok, "0.5", "0", "1")
					}
				})
			}
		}
	}
	if n < 7 {
		t.Fatalf("only %d snailmail fixtures", n)
	}
}

// doc builds a document as Odoo sends it.
func doc(letterID, resID int, country string, pdf []byte) map[string]any {
	d := map[string]any{
		"letter_id": letterID, "res_model": "res.partner", "res_id": resID,
		"contact_address": "Letter Target\nRue Test 1\n1000 Brussels",
		"address": map[string]any{"name": "Letter Target", "street": "Rue Test 1", "street2": false,
			"zip": "1000", "state": false, "city": "Brussels", "country_code": country},
		"return_address": map[string]any{"name": "My Company", "street": "Chaussee de Namur 40", "street2": false,
			"zip": "1367", "state": false, "city": "Ramillies", "country_code": "BE"},
		"company_logo": false, "pages": false,
	}
	if pdf != nil {
		d["pdf_bin"] = base64.StdEncoding.EncodeToString(pdf)
	} else {
		d["pdf_bin"] = false
	}
	return d
}

func body(tok string, batch bool, opts map[string]any, docs ...map[string]any) []byte {
	if opts == nil {
		opts = map[string]any{"color": false, "cover": false, "duplex": false, "currency_name": "EUR"}
	}
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": "0123456789abcdef0123456789abcdef",
		"params": map[string]any{"account_token": tok, "dbuuid": "3006f880-ead1-11f1-9ec2-02fc00000001", "batch": batch, "options": opts, "documents": docs}})
	return b
}

const tok = "0788f60316f5425eae8d0f7d2bc2be31"

// TestBatchPerDocument: each document of a call gets its own in-band
// answer, in order, and only the sent ones are charged.
func TestBatchPerDocument(t *testing.T) {
	fake := &fakeSender{name: "fake"}
	one := Price{Credits: storage.Scale}
	e := newEnv(t, Settings{Prices: Prices{Countries: map[string]Price{"BE": one, "fr": {Credits: 2 * storage.Scale}}}}, fake)
	e.recharge(tok, "3")
	noStreet := doc(3, 12, "BE", providertest.OnePagePDF)
	noStreet["address"].(map[string]any)["street"] = false
	badType := doc(7, 16, "BE", providertest.OnePagePDF)
	badType["address"] = "not an object"
	r := e.print(body(tok, true, nil,
		doc(1, 10, "BE", providertest.OnePagePDF),    // sent: 1
		doc(2, 11, "BE", []byte("%PDF-1.4 garbage")), // unreadable
		noStreet, // missing street
		doc(4, 13, "US", providertest.OnePagePDF), // not priced
		doc(5, 14, "FR", providertest.OnePagePDF), // sent: 2 (lower-case key in the settings)
		doc(6, 15, "BE", providertest.OnePagePDF), // no credit left
		badType,               // malformed
		doc(8, 17, "BE", nil), // no PDF
		doc(9, 18, "B1", providertest.OnePagePDF), // not a country code
	))
	want := []string{"", codeFormat, codeMissingFields, codeNoPrice, "", codeCredit, codeFormat, codeFormat, codeNoPrice}
	for i, w := range want {
		if got := r.errorOf(i); got != w {
			t.Errorf("document %d: error %q, want %q", i+1, got, w)
		}
		if string(r.docs[i]["letter_id"]) != fmt.Sprint(i+1) {
			t.Errorf("document %d: letter_id %s", i+1, r.docs[i]["letter_id"])
		}
	}
	if r.TotalCost != "3" || !r.CreditError || fake.calls() != 2 {
		t.Errorf("total_cost %s credit_error %v, %d provider calls", r.TotalCost, r.CreditError, fake.calls())
	}
	e.want(tok, "0", "0", "3")
}

// TestBatchFalse: without batch the real service raises
// InsufficientCreditError (the client's comment, PROTOCOL §7).
func TestBatchFalse(t *testing.T) {
	e := newEnv(t, Settings{}, &fakeSender{name: "fake"})
	env := e.post(body(tok, false, nil, doc(1, 10, "BE", providertest.OnePagePDF)))
	var er struct {
		Data struct{ Name, Message string } `json:"data"`
	}
	if err := json.Unmarshal(env["error"], &er); err != nil || !strings.HasSuffix(er.Data.Name, ".InsufficientCreditError") {
		t.Fatalf("answer %v", env)
	}
	var payload map[string]any
	if err := json.Unmarshal([]byte(er.Data.Message), &payload); err != nil || payload["service_name"] != "snailmail" {
		t.Errorf("InsufficientCreditError message %q", er.Data.Message)
	}
	e.want(tok, "0", "0", "0")
}

// TestRetryNotChargedTwice: Odoo's cron or a user resending the same
// document gets the first answer back; nothing is posted or charged again.
// Another document (or the same to another address) is a new letter.
func TestRetryNotChargedTwice(t *testing.T) {
	fake := &fakeSender{name: "fake"}
	e := newEnv(t, Settings{}, fake)
	e.recharge(tok, "10")
	first := e.print(body(tok, true, nil, doc(1, 10, "BE", providertest.OnePagePDF)))
	again := e.print(body(tok, true, nil, doc(1, 10, "BE", providertest.OnePagePDF)))
	if first.sendID(0) == "" || again.sendID(0) != first.sendID(0) || again.TotalCost != "0" || fake.calls() != 1 {
		t.Fatalf("first %s, again %s, %d calls", first.raw, again.raw, fake.calls())
	}
	e.want(tok, "9", "0", "1")
	moved := doc(1, 10, "BE", providertest.OnePagePDF)
	moved["address"].(map[string]any)["street"] = "Rue Autre 2"
	if r := e.print(body(tok, true, nil, moved)); r.sendID(0) == first.sendID(0) || fake.calls() != 2 {
		t.Fatalf("new address answered %s", r.raw)
	}
	e.want(tok, "8", "0", "2")
}

// TestProviderOutcomes: the hold's fate for each provider outcome.
func TestProviderOutcomes(t *testing.T) {
	d := doc(1, 10, "BE", providertest.OnePagePDF)
	t.Run("invalid: released, FORMAT_ERROR, may be sent again", func(t *testing.T) {
		fake := &fakeSender{name: "fake"}
		e := newEnv(t, Settings{}, fake)
		e.recharge(tok, "5")
		fake.script(providers.Invalid)
		if r := e.print(body(tok, true, nil, d)); r.errorOf(0) != codeFormat {
			t.Fatalf("%s", r.raw)
		}
		e.want(tok, "5", "0", "0")
		if r := e.print(body(tok, true, nil, d)); r.sendID(0) == "" || fake.calls() != 2 {
			t.Fatalf("retry: %s", r.raw)
		}
		e.want(tok, "4", "0", "1")
	})
	t.Run("unavailable: released, UNKNOWN_ERROR, may be sent again", func(t *testing.T) {
		fake := &fakeSender{name: "fake"}
		e := newEnv(t, Settings{}, fake)
		e.recharge(tok, "5")
		fake.script(providers.Unavailable)
		if r := e.print(body(tok, true, nil, d)); r.errorOf(0) != codeUnknown {
			t.Fatalf("%s", r.raw)
		}
		e.want(tok, "5", "0", "0")
		if r := e.print(body(tok, true, nil, d)); r.sendID(0) == "" {
			t.Fatalf("retry: %s", r.raw)
		}
		e.want(tok, "4", "0", "1")
	})
	t.Run("unavailable: fails over to the next provider", func(t *testing.T) {
		down, up := &fakeSender{name: "down"}, &fakeSender{name: "up"}
		down.script(providers.Unavailable)
		e := newEnv(t, Settings{Providers: []string{"down", "up"}}, down, up)
		e.recharge(tok, "5")
		if r := e.print(body(tok, true, nil, d)); r.sendID(0) != "UP-1" {
			t.Fatalf("%s", r.raw)
		}
		e.want(tok, "4", "0", "1")
	})
	t.Run("indeterminate: held, UNKNOWN_ERROR, never sent again", func(t *testing.T) {
		first, second := &fakeSender{name: "first"}, &fakeSender{name: "second"}
		first.script(providers.Indeterminate)
		e := newEnv(t, Settings{Providers: []string{"first", "second"}}, first, second)
		e.recharge(tok, "5")
		if r := e.print(body(tok, true, nil, d)); r.errorOf(0) != codeUnknown {
			t.Fatalf("%s", r.raw)
		}
		e.want(tok, "4", "1", "0")
		if r := e.print(body(tok, true, nil, d)); r.errorOf(0) != codeUnknown {
			t.Fatalf("retry: %s", r.raw)
		}
		if first.calls() != 1 || second.calls() != 0 {
			t.Fatalf("provider calls %d, %d; want 1, 0 (no failover, no resend)", first.calls(), second.calls())
		}
		e.want(tok, "4", "1", "0")
	})
}

// TestRefusals: unregistered, banned and "+disabled" accounts get
// TRIAL_ERROR and are never charged (PROTOCOL §3, §7).
func TestRefusals(t *testing.T) {
	fake := &fakeSender{name: "fake"}
	e := newEnv(t, Settings{}, fake)
	e.recharge(tok, "5")
	if r := e.print(body(tok+"+disabled", true, nil, doc(1, 10, "BE", providertest.OnePagePDF))); r.errorOf(0) != codeTrial {
		t.Fatalf("disabled: %s", r.raw)
	}
	banned := storage.Banned
	if _, err := e.ledger.UpdateAccount(context.Background(), storage.Snailmail, tok, storage.AccountUpdate{State: &banned}); err != nil {
		t.Fatal(err)
	}
	if r := e.print(body(tok, true, nil, doc(1, 10, "BE", providertest.OnePagePDF), doc(2, 11, "BE", providertest.OnePagePDF))); r.errorOf(0) != codeTrial || r.errorOf(1) != codeTrial {
		t.Fatalf("banned: %s", r.raw)
	}
	e.want(tok, "5", "0", "0")
	if _, err := e.ledger.EnsureService(context.Background(), storage.Service{Name: storage.Snailmail, AutoRegister: false, UnitName: "Stamps"}); err != nil {
		t.Fatal(err)
	}
	const newTok = "11112222333344445555666677778888"
	if r := e.print(body(newTok, true, nil, doc(1, 10, "BE", providertest.OnePagePDF))); r.errorOf(0) != codeTrial {
		t.Fatalf("unregistered: %s", r.raw)
	}
	if a := e.account(newTok); a.State != storage.Unregistered || a.Captured != 0 {
		t.Fatalf("unregistered account %+v", a)
	}
	if fake.calls() != 0 {
		t.Fatalf("%d letters posted for refused accounts", fake.calls())
	}
}

// TestPricing: base price by country, colour, duplex/simplex and extra
// pages, the pages read from the PDF (3, in object streams) plus the
// cover.
func TestPricing(t *testing.T) {
	three, err := os.ReadFile("pdf/testdata/pages3_objstm.pdf")
	if err != nil {
		t.Fatal(err)
	}
	var s Settings
	y := `
prices:
  default: 1
  countries: {ch: 1.5}
  color: 0.5
  duplex: 0.05
  simplex: 0.01
  included_pages: 2
  extra_page: 0.1
max_pages: 4
`
	dec := yaml.NewDecoder(strings.NewReader(y))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		t.Fatal(err)
	}
	fake := &fakeSender{name: "fake"}
	e := newEnv(t, s, fake)
	e.recharge(tok, "100")
	opts := map[string]any{"color": true, "cover": true, "duplex": true, "currency_name": "EUR"}
	// CH: 1.5 + 0.5 colour + 0.05 duplex + (3+1-2) × 0.1 = 2.25
	r := e.print(body(tok, true, opts, doc(1, 10, "CH", three)))
	if r.TotalCost != "2.25" || fake.sent[0].Pages != 4 || !fake.sent[0].Cover {
		t.Fatalf("total_cost %s, pages %d", r.TotalCost, fake.sent[0].Pages)
	}
	// BE (default): 1 + 0.01 simplex, one page.
	r = e.print(body(tok, true, nil, doc(2, 11, "BE", providertest.OnePagePDF)))
	if r.TotalCost != "1.01" {
		t.Fatalf("total_cost %s", r.TotalCost)
	}
	// 3 pages + cover + … over max_pages 4? 4 is allowed; 6 pages are not.
	six, _ := os.ReadFile("pdf/testdata/pages6_classic.pdf")
	if r := e.print(body(tok, true, nil, doc(3, 12, "BE", six))); r.errorOf(0) != codeFormat {
		t.Fatalf("6 pages: %s", r.raw)
	}
	e.want(tok, "96.74", "0", "3.26")
}

func TestSettingsValidate(t *testing.T) {
	for name, y := range map[string]string{
		"negative":       "prices: {default: -1}",
		"bad country":    "prices: {countries: {BEL: 1}}",
		"same country":   "prices: {countries: {be: 1, BE: 2}}",
		"huge":           "prices: {extra_page: 10000000}",
		"pages":          "max_pages: 100000",
		"timeout":        "send_timeout: 40s",
		"provider twice": "providers: [a, a]",
		"included":       "prices: {included_pages: -1}",
	} {
		var s Settings
		if err := yaml.Unmarshal([]byte(y), &s); err != nil {
			continue // refused while decoding (a negative price)
		}
		if err := s.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	var s Settings
	dec := yaml.NewDecoder(strings.NewReader("price: 1"))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err == nil {
		t.Error("unknown key accepted")
	}
	d := Settings{}.withDefaults()
	if p, ok := d.Prices.price("JP", true, true, 9); !ok || p != storage.Scale || d.Providers[0] != "folder" {
		t.Errorf("defaults: %v %v %v", p, ok, d.Providers)
	}
	only := Settings{Prices: Prices{Countries: map[string]Price{"BE": {Credits: 7}}}}.withDefaults()
	if _, ok := only.Prices.price("FR", false, false, 1); ok {
		t.Error("a country not listed has a price without a default")
	}
}

// TestStatusSink: reports from a provider's webhooks are kept per letter.
func TestStatusSink(t *testing.T) {
	e := newEnv(t, Settings{}, &fakeSender{name: "fake"})
	e.svc.Sink()(context.Background(), "pingen", []providers.LetterReport{{ProviderID: "L-1", Status: providers.LetterUndeliverable, Code: "moved"}})
	st, code, err := e.svc.LetterStatus(context.Background(), "pingen", "L-1")
	if err != nil || st != providers.LetterUndeliverable || code != "moved" {
		t.Fatalf("%v %v %v", st, code, err)
	}
	if _, _, err := e.svc.LetterStatus(context.Background(), "pingen", "L-2"); !storage.Is(err, storage.NotFound) {
		t.Fatalf("unknown letter: %v", err)
	}
}

// TestPingenHoldFate: the hold's fate through the real pingen adapter
// against a local server speaking Pingen's API.
func TestPingenHoldFate(t *testing.T) {
	s := pingentest.New(t)
	var node yaml.Node
	cfg := fmt.Sprintf("client_id: %s\nclient_secret: %s\norganisation_id: %s\napi_url: %s\nidentity_url: %s\ntimeout: 300ms\n",
		pingentest.ClientID, pingentest.ClientSecret, pingentest.Organisation, s.URL, s.URL)
	if err := yaml.Unmarshal([]byte(cfg), &node); err != nil {
		t.Fatal(err)
	}
	p, err := providers.Builtin.New(providers.Config{Name: "pingen", Type: "pingen", Settings: *node.Content[0]}, providers.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Settings{}, p.(providers.LetterSender))
	e.recharge(tok, "10")
	letter := func(i int) []byte { return body(tok, true, nil, doc(i, 100+i, "BE", providertest.OnePagePDF)) }

	r := e.print(letter(1))
	if got := s.Letters(); len(got) != 1 || r.sendID(0) != got[0].ID {
		t.Fatalf("sent: %s; Pingen holds %d letters", r.raw, len(got))
	}
	e.want(tok, "9", "0", "1") // captured

	letterSize := doc(2, 102, "BE", bytes.Replace(providertest.OnePagePDF, []byte("595 842"), []byte("612 792"), 1))
	if r := e.print(body(tok, true, nil, letterSize)); r.errorOf(0) != codeFormat {
		t.Fatalf("422: %s", r.raw)
	}
	e.want(tok, "9", "0", "1") // released

	for _, m := range []pingentest.Mode{pingentest.Throttled, pingentest.CreateDown, pingentest.UploadDown} {
		s.SetMode(m)
		if r := e.print(letter(3)); r.errorOf(0) != codeUnknown {
			t.Fatalf("%s: %s", m, r.raw)
		}
		e.want(tok, "9", "0", "1") // released
	}
	s.SetMode(pingentest.OK)
	if r := e.print(letter(3)); r.sendID(0) == "" {
		t.Fatalf("after recovery: %s", r.raw)
	}
	e.want(tok, "8", "0", "2")

	for i, m := range []pingentest.Mode{pingentest.CreateFailed, pingentest.Hang} {
		s.SetMode(m)
		if r := e.print(letter(4 + i)); r.errorOf(0) != codeUnknown {
			t.Fatalf("%s: %s", m, r.raw)
		}
	}
	e.want(tok, "6", "2", "2") // both kept on hold for reconciliation
	s.SetMode(pingentest.OK)
	calls := s.CreateCalls()
	if r := e.print(letter(4)); r.errorOf(0) != codeUnknown || s.CreateCalls() != calls {
		t.Fatalf("a retry of an indeterminate letter was posted again: %s", r.raw)
	}
	e.want(tok, "6", "2", "2")
}

// TestConcurrentRetries: the same document printed by several requests
// at once is posted and charged once; the others are answered with the
// letter sent or UNKNOWN_ERROR (being sent), never a second letter.
func TestConcurrentRetries(t *testing.T) {
	fake := &fakeSender{name: "fake"}
	e := newEnv(t, Settings{}, fake)
	e.recharge(tok, "10")
	b := body(tok, true, nil, doc(1, 10, "BE", providertest.OnePagePDF))
	const n = 8
	type answer struct {
		status int
		raw    []byte
	}
	answers := make(chan answer, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, raw := e.do(b)
			answers <- answer{st, raw}
		}()
	}
	wg.Wait()
	close(answers)
	sent := 0
	for a := range answers {
		r := e.parse(a.status, a.raw)
		switch {
		case r.sendID(0) == "FAKE-1":
			sent++
		case r.errorOf(0) == codeUnknown:
		default:
			t.Errorf("answer %s", r.raw)
		}
	}
	if fake.calls() != 1 || sent == 0 {
		t.Fatalf("%d provider calls, %d answered sent; want 1 call", fake.calls(), sent)
	}
	e.want(tok, "9", "0", "1")
}
