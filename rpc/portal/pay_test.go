package portal

import (
	"bytes"
	"context"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/iapd/iapd/providers/payments"
	"github.com/iapd/iapd/providers/payments/stripe"
	"github.com/iapd/iapd/providers/payments/stripe/stripetest"
	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

// Online payment of packs (issue 17) against the real Badger ledger, the
// real stripe adapter and stripetest, a local server speaking Stripe's
// Checkout Session and event shapes with real signatures.

const (
	payKey    = "sk_test_portal0123456789"
	paySecret = "whsec_portal_9876543210"
)

type payEnv struct {
	*env
	fake *stripetest.Server
	reg  *prometheus.Registry
}

func payConfig() Config {
	return Config{Packs: map[string][]PackConfig{"sms": {
		{Name: "100 SMS", Credits: "100", Price: "10", Currency: "EUR"},
		{Name: "1000 SMS", Credits: "1000", Price: "79.90", Currency: "EUR"},
	}}}
}

func newPayEnv(t testing.TB) *payEnv {
	t.Helper()
	l, err := badger.Open(badger.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if _, err := l.EnsureService(context.Background(), storage.Service{Name: storage.SMS, AutoRegister: true, UnitName: "Credits"}); err != nil {
		t.Fatal(err)
	}
	fake := stripetest.New(payKey, paySecret)
	t.Cleanup(fake.Close)
	prov, err := stripe.New(stripe.Config{SecretKey: payKey, WebhookSecret: paySecret, APIURL: fake.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	srv, err := rpc.New(rpc.Config{Ledger: l, PublicURL: base})
	if err != nil {
		t.Fatal(err)
	}
	cfg := payConfig()
	cfg.ClientIPHeader = "X-Test-IP"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	logs, mu := &bytes.Buffer{}, &sync.Mutex{}
	p, err := New(Deps{Ledger: l, Vouchers: l, Config: cfg, Secret: bytes.Repeat([]byte{9}, SecretSize), PublicURL: base,
		Logger:   slog.New(slog.NewTextHandler(lockedBuffer{mu, logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Payments: prov, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	p.Register(srv)
	hs := rpc.NewHTTPServer(srv.Front(srv.Handler()), nil)
	go hs.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = hs.Shutdown() })
	fake.SetWebhook(base + WebhookPath("stripe"))
	e := &env{t: t, ledger: l, portal: p, base: base, logs: logs, logMu: mu,
		hc: &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	e.account(storage.SMS, tokA, "5")
	return &payEnv{env: e, fake: fake, reg: reg}
}

var buyRE = regexp.MustCompile(`id="buy-(\d)" href="([^"]+)"`)

// buy opens the credit page, follows pack's Buy link and returns the
// Checkout Session it created.
func (e *payEnv) buy(tok string, pack int) stripetest.Session {
	e.t.Helper()
	st, page := e.get(hashedLink("sms", tok))
	if st != 200 {
		e.t.Fatalf("credit page: %d", st)
	}
	for _, m := range buyRE.FindAllStringSubmatch(page, -1) {
		if m[1] != string(rune('0'+pack)) {
			continue
		}
		st, h, _ := e.do("GET", strings.ReplaceAll(m[2], "&amp;", "&"), nil, nil)
		if st != http.StatusSeeOther {
			e.t.Fatalf("buy: %d", st)
		}
		id := strings.TrimPrefix(h.Get("Location"), e.fake.URL+"/pay/")
		s, ok := e.fake.Session(id)
		if !ok {
			e.t.Fatalf("buy sent the browser to %s", h.Get("Location"))
		}
		return s
	}
	e.t.Fatalf("no Buy link for pack %d in the page:\n%s", pack, page)
	return stripetest.Session{}
}

func (e *payEnv) available(tok string) storage.Credits {
	e.t.Helper()
	a, err := e.ledger.LookupAccount(context.Background(), storage.SMS, storage.AccountToken(tok))
	if err != nil {
		e.t.Fatal(err)
	}
	return a.Available
}

func (e *payEnv) deliver(payload []byte, err error) int {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
	st, err := e.fake.Deliver(payload)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

func (e *payEnv) outcome(o string) float64 {
	return testutil.ToFloat64(e.portal.pay.outcomes.WithLabelValues("stripe", o))
}

func (e *payEnv) noSecretsLogged() {
	e.t.Helper()
	e.logMu.Lock()
	defer e.logMu.Unlock()
	for _, s := range []string{tokA, tokB, payKey, paySecret, hashHex(tokA)} {
		if strings.Contains(e.logs.String(), s) {
			e.t.Fatalf("the log holds a secret %q:\n%s", s, e.logs.String())
		}
	}
}

func credits(s string) storage.Credits {
	c, err := storage.ParseCredits(s)
	if err != nil {
		panic(err)
	}
	return c
}

// Buy creates a Checkout Session of the pack's price for the account,
// whose metadata names the account without its token (raw or hashed).
func TestBuyCreatesCheckoutSession(t *testing.T) {
	e := newPayEnv(t)
	s := e.buy(tokA, 2)
	if s.AmountTotal != 7990 || s.Currency != "eur" || s.ProductName != "1000 SMS" || s.Metadata["iapd_pack"] != "2" ||
		s.Metadata["iapd_credits"] != "1000" || s.Metadata["iapd_service"] != "sms" {
		t.Fatalf("session %+v", s)
	}
	for k, v := range s.Metadata {
		if strings.Contains(v, tokA) || strings.Contains(v, hashHex(tokA)) {
			t.Fatalf("metadata %s holds the token: %s", k, v)
		}
	}
	if !strings.HasPrefix(s.SuccessURL, e.base+CreditPath+"?") || !strings.HasSuffix(s.SuccessURL, "&paid={CHECKOUT_SESSION_ID}") ||
		strings.Contains(s.SuccessURL, tokA) || strings.Contains(s.CancelURL, tokA) {
		t.Fatalf("return URLs %s %s", s.SuccessURL, s.CancelURL)
	}
	// A Buy link without a valid CSRF token goes back to the page.
	link := BuyPath + "?service_name=sms&hashed=1&pack=1&account_token=" + hashHex(tokA)
	st, h, _ := e.do("GET", link+"&csrf=forged", nil, nil)
	if st != http.StatusSeeOther || msgOf(t, h) != "expired-form" || e.fake.Creates() != 1 {
		t.Fatalf("forged csrf: %d %s, %d sessions", st, h.Get("Location"), e.fake.Creates())
	}
	m := buyRE.FindStringSubmatch(func() string { _, p := e.get(hashedLink("sms", tokA)); return p }())
	if st, _, _ := e.do("GET", strings.ReplaceAll(strings.Replace(m[2], "pack=1", "pack=9", 1), "&amp;", "&"), nil, nil); st != http.StatusBadRequest {
		t.Fatalf("unknown pack: %d", st)
	}
	if st, _, _ := e.do("HEAD", strings.ReplaceAll(m[2], "&amp;", "&"), nil, nil); st != http.StatusMethodNotAllowed || e.fake.Creates() != 1 {
		t.Fatalf("HEAD on Buy: %d, %d sessions", st, e.fake.Creates())
	}
	if e.outcome(PayCheckout) != 1 {
		t.Fatalf("checkouts counted: %v", e.outcome(PayCheckout))
	}
	e.noSecretsLogged()
}

// The webhook credits a paid session once, however often it is
// delivered; the credit page then says so (from the ledger, not the URL).
func TestWebhookCreditsOnce(t *testing.T) {
	e := newPayEnv(t)
	s := e.buy(tokA, 1)
	ev, err := e.fake.Pay(s.ID)
	for i := range 3 {
		if st := e.deliver(ev, err); st != 200 {
			t.Fatalf("delivery %d: %d", i, st)
		}
	}
	if got := e.available(tokA); got != credits("105") {
		t.Fatalf("available %s, want 105", got)
	}
	if e.outcome(PayCredited) != 1 || e.outcome(PayDuplicate) != 2 {
		t.Fatalf("outcomes credited %v duplicate %v", e.outcome(PayCredited), e.outcome(PayDuplicate))
	}
	if v := testutil.ToFloat64(e.portal.pay.sold.WithLabelValues("sms")); v != 100 {
		t.Fatalf("credits sold %v", v)
	}
	st, page := e.get(hashedLink("sms", tokA) + "&paid=" + s.ID)
	if st != 200 || message(t, page) != msgText(t, "paid") || field(t, page, "available") != "105" {
		t.Fatalf("return page: %d\n%s", st, page)
	}
	e.noSecretsLogged()
}

// Concurrent deliveries of one event credit once.
func TestWebhookConcurrentDeliveries(t *testing.T) {
	e := newPayEnv(t)
	s := e.buy(tokA, 1)
	ev, err := e.fake.Pay(s.ID)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if st, err := e.fake.Deliver(ev); err != nil || st != 200 {
				t.Errorf("delivery: %d %v", st, err)
			}
		})
	}
	wg.Wait()
	if got := e.available(tokA); got != credits("105") {
		t.Fatalf("available %s, want 105", got)
	}
}

// A forged, stale or missing signature is 400 and credits nothing; so is
// a body over the limit (413).
func TestWebhookRefusesForgedEvents(t *testing.T) {
	e := newPayEnv(t)
	s := e.buy(tokA, 1)
	ev, err := e.fake.Pay(s.ID)
	if err != nil {
		t.Fatal(err)
	}
	for name, sig := range map[string]string{
		"none":     "",
		"forged":   stripetest.Sign(ev, "whsec_attacker", time.Now()),
		"replayed": stripetest.Sign(ev, paySecret, time.Now().Add(-10*time.Minute)),
	} {
		st, err := e.fake.DeliverSigned(ev, sig)
		if err != nil || st != http.StatusBadRequest {
			t.Errorf("%s: %d %v", name, st, err)
		}
	}
	big := append(append([]byte{}, ev[:len(ev)-1]...), []byte(`,"pad":"`+strings.Repeat("x", maxWebhookBodyBytes)+`"}`)...)
	if st, _ := e.fake.Deliver(big); st != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized: %d", st)
	}
	if st, _, _ := e.do("GET", WebhookPath("stripe"), nil, nil); st != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", st)
	}
	if got := e.available(tokA); got != credits("5") || e.outcome(PayBadSignature) != 3 {
		t.Fatalf("available %s, bad signatures %v", got, e.outcome(PayBadSignature))
	}
	// A paid= link of an uncredited session of another account shows
	// nothing and credits nothing.
	e.account(storage.SMS, tokB, "")
	_, page := e.get(hashedLink("sms", tokB) + "&paid=" + s.ID)
	if strings.Contains(page, `id="message"`) {
		t.Fatalf("another account's session shows a message:\n%s", page)
	}
	if got := e.available(tokA); got != credits("5") {
		t.Fatalf("a paid= link on another account credited %s", got)
	}
}

// A paid amount that does not match the pack is not credited, counted and
// logged without secrets.
func TestWebhookAmountMismatch(t *testing.T) {
	e := newPayEnv(t)
	ref, err := e.portal.pay.reference(storage.SMS, tokA)
	if err != nil {
		t.Fatal(err)
	}
	prov := e.portal.pay.prov
	co, err := prov.Checkout(context.Background(), payments.Order{Service: "sms", Reference: ref, Pack: 2, PackName: "1000 SMS",
		Credits: "1000", Price: payments.Money{Value: 10000, Currency: "EUR"}, // 1 EUR, not 79.90
		SuccessURL: e.base + "/x", CancelURL: e.base + "/y"})
	if err != nil {
		t.Fatal(err)
	}
	if st := e.deliver(e.fake.Pay(co.ID)); st != 200 {
		t.Fatalf("delivery: %d", st)
	}
	if got := e.available(tokA); got != credits("5") || e.outcome(PayAmountMismatch) != 1 {
		t.Fatalf("available %s, mismatches %v", got, e.outcome(PayAmountMismatch))
	}
	_, page := e.get(hashedLink("sms", tokA) + "&paid=" + co.ID)
	if field(t, page, "available") != "5" || message(t, page) != msgText(t, "payment-check") {
		t.Fatalf("return page after a mismatch:\n%s", page)
	}
	e.logMu.Lock()
	logged := strings.Contains(e.logs.String(), "does not match its pack")
	e.logMu.Unlock()
	if !logged {
		t.Fatal("the mismatch is not logged")
	}
	e.noSecretsLogged()
}

// Events out of order: a refund before the completed event credits then
// debits; the late completed event changes nothing. A session completed
// unpaid (async method) is credited by async_payment_succeeded.
func TestEventsOutOfOrder(t *testing.T) {
	e := newPayEnv(t)
	s := e.buy(tokA, 1)
	completed, err := e.fake.Pay(s.ID)
	if err != nil {
		t.Fatal(err)
	}
	s, _ = e.fake.Session(s.ID)
	e.deliver(e.fake.Refund(s.ID, s.AmountTotal))
	e.deliver(completed, nil)
	if got := e.available(tokA); got != credits("5") {
		t.Fatalf("refund before completion: available %s", got)
	}

	s2 := e.buy(tokA, 2)
	pending, err := e.fake.SessionEvent("checkout.session.completed", s2.ID) // unpaid yet
	e.deliver(pending, err)
	if got := e.available(tokA); got != credits("5") || e.outcome(PayUnpaid) != 1 {
		t.Fatalf("unpaid completion credited: %s", got)
	}
	if _, err := e.fake.Pay(s2.ID); err != nil {
		t.Fatal(err)
	}
	e.deliver(e.fake.SessionEvent("checkout.session.async_payment_succeeded", s2.ID))
	if got := e.available(tokA); got != credits("1005") {
		t.Fatalf("async success: available %s", got)
	}
	if st := e.deliver(stripetest.Event("customer.created", map[string]any{"id": "cus_1", "object": "customer"}), nil); st != 200 || e.outcome(PayIgnored) != 1 {
		t.Fatalf("unknown event: %d", st)
	}
}

// The return page credits a paid session whose webhook has not come yet
// (exactly once with the webhook after it); the cancel URL is a
// ResultLink, signed for this account: the same link for another account,
// or a changed code, shows nothing.
func TestReturnPages(t *testing.T) {
	e := newPayEnv(t)
	s := e.buy(tokA, 1)
	_, page := e.get(hashedLink("sms", tokA) + "&paid=" + s.ID)
	if message(t, page) != msgText(t, "payment-pending") || field(t, page, "available") != "5" {
		t.Fatalf("unpaid session:\n%s", page)
	}
	ev, err := e.fake.Pay(s.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, page = e.get(hashedLink("sms", tokA) + "&paid=" + s.ID)
	if message(t, page) != msgText(t, "paid") || field(t, page, "available") != "105" {
		t.Fatalf("paid session, no webhook yet:\n%s", page)
	}
	e.deliver(ev, nil)
	if got := e.available(tokA); got != credits("105") || e.outcome(PayCredited) != 1 || e.outcome(PayDuplicate) != 1 {
		t.Fatalf("webhook after the return page: %s, credited %v, duplicate %v", got, e.outcome(PayCredited), e.outcome(PayDuplicate))
	}
	if v := testutil.ToFloat64(e.portal.pay.sold.WithLabelValues("sms")); v != 100 {
		t.Fatalf("credits sold %v", v)
	}
	for _, q := range []string{"&paid=cs_test_forged", "&paid=../../x", "&checkout=cancelled", "&msg=payment-cancelled",
		"&msg=paid", "&msg=paid&mt=1&ms=abc"} {
		if _, page := e.get(hashedLink("sms", tokA) + q); strings.Contains(page, `id="message"`) {
			t.Fatalf("%s shows a message", q)
		}
	}
	u, _ := url.Parse(s.CancelURL)
	_, page = e.get(u.RequestURI())
	if message(t, page) != msgText(t, "payment-cancelled") {
		t.Fatalf("cancel page:\n%s", page)
	}
	if strings.Contains(s.CancelURL, tokA) || u.Query().Get("ms") == "" {
		t.Fatalf("cancel URL %s", s.CancelURL)
	}
	for name, edit := range map[string]func(url.Values){
		"another account": func(q url.Values) { q.Set("account_token", hashHex(tokB)) },
		"another code":    func(q url.Values) { q.Set("msg", "paid") },
	} {
		q := u.Query()
		edit(q)
		if _, page := e.get(CreditPath + "?" + q.Encode()); strings.Contains(page, `id="message"`) {
			t.Fatalf("cancel URL with %s shows a message", name)
		}
	}
}

// msgText is the English text of message code.
func msgText(t *testing.T, code string) string {
	t.Helper()
	cat, err := loadCatalogue(localeFS)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := cat[DefaultLanguage].msgs["msg."+code]
	if !ok {
		t.Fatalf("no message %q", code)
	}
	return m.other
}

var messageRE = regexp.MustCompile(`id="message"[^>]*>([^<]*)<`)

// message is the page's #message text.
func message(t *testing.T, page string) string {
	t.Helper()
	m := messageRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no #message in the page:\n%s", page)
	}
	return m[1]
}

// FuzzPaymentReference: a reference read back from a provider opens only
// to what this iapd sealed, for that service; nothing else panics or
// opens. (Each fuzz worker seals its own good reference: the nonce is
// random, so the check is on what opens, not on the text.)
func FuzzPaymentReference(f *testing.F) {
	ps, err := newPayState(fakeName("stripe"), bytes.Repeat([]byte{3}, SecretSize), nil)
	if err != nil {
		f.Fatal(err)
	}
	good, _ := ps.reference(storage.SMS, tokA)
	f.Add("sms", good)
	f.Add("snailmail", good)
	f.Add("sms", good[:len(good)-2]+"AA")
	if tok, ok := ps.account(storage.SMS, good); !ok || tok != tokA {
		f.Fatal("the reference does not open")
	}
	if _, ok := ps.account(storage.Snailmail, good); ok {
		f.Fatal("the reference opens for another service")
	}
	f.Add("sms", "")
	f.Fuzz(func(t *testing.T, svc, ref string) {
		tok, ok := ps.account(storage.ServiceName(svc), ref)
		if ok && (svc != "sms" || tok != tokA) {
			t.Fatalf("%q/%q opened as %q", svc, ref, tok)
		}
	})
}

// fakeName is a Payments of which only Name is used.
type fakeName string

func (f fakeName) Name() string            { return string(f) }
func (f fakeName) SignatureHeader() string { return "X-Signature" }
func (fakeName) Checkout(context.Context, payments.Order) (payments.Checkout, error) {
	return payments.Checkout{}, payments.ErrInvalid
}
func (fakeName) Session(context.Context, string) (payments.Session, error) {
	return payments.Session{}, payments.ErrNotFound
}
func (fakeName) SessionOfPayment(context.Context, string) (payments.Session, error) {
	return payments.Session{}, payments.ErrNotFound
}
func (fakeName) Refunds(context.Context, string) ([]payments.Refund, error) {
	return nil, payments.ErrNotFound
}
func (fakeName) Event([]byte, string) (payments.Event, error) {
	return payments.Event{}, payments.ErrSignature
}

// Stripe unreachable: Buy brings the customer back with a message that
// only this iapd can make for this account.
func TestBuyWhenStripeFails(t *testing.T) {
	e := newPayEnv(t)
	_, page := e.get(hashedLink("sms", tokA))
	m := buyRE.FindStringSubmatch(page)
	e.fake.Close()
	st, h, _ := e.do("GET", strings.ReplaceAll(m[2], "&amp;", "&"), nil, nil)
	loc, _ := url.Parse(h.Get("Location"))
	if st != http.StatusSeeOther || loc.Path != CreditPath || loc.Query().Get("msg") != "payment-failed" || strings.Contains(loc.RawQuery, tokA) {
		t.Fatalf("buy with Stripe down: %d %s", st, loc)
	}
	_, page = e.get(loc.RequestURI())
	if message(t, page) != msgText(t, "payment-failed") || e.outcome(PayCheckoutFailed) != 1 {
		t.Fatalf("failure page:\n%s", page)
	}
	e.account(storage.SMS, tokB, "")
	q := loc.Query()
	q.Set("account_token", hashHex(tokB))
	if _, page := e.get(CreditPath + "?" + q.Encode()); strings.Contains(page, `id="message"`) {
		t.Fatal("another account's failure link shows the message")
	}
	e.noSecretsLogged()
}

// BenchmarkWebhookCredit: one signed checkout.session.completed delivered
// over loopback HTTP and credited (a new session each time), Badger in
// memory.
func BenchmarkWebhookCredit(b *testing.B) {
	e := newPayEnv(b)
	ref, err := e.portal.pay.reference(storage.SMS, tokA)
	if err != nil {
		b.Fatal(err)
	}
	events := make([][]byte, b.N)
	for i := range events {
		co, err := e.portal.pay.prov.Checkout(context.Background(), payments.Order{Service: "sms", Reference: ref, Pack: 1,
			PackName: "100 SMS", Credits: "100", Price: payments.Money{Value: 100000, Currency: "EUR"},
			SuccessURL: e.base + "/x", CancelURL: e.base + "/y"})
		if err != nil {
			b.Fatal(err)
		}
		if events[i], err = e.fake.Pay(co.ID); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := range b.N {
		if st, err := e.fake.Deliver(events[i]); err != nil || st != 200 {
			b.Fatalf("delivery: %d %v", st, err)
		}
	}
	b.StopTimer()
	if got := e.available(tokA); got != credits("5")+storage.Credits(b.N)*credits("100") {
		b.Fatalf("available %s after %d payments", got, b.N)
	}
}

// The cancel URL is made with the payment page, and the customer may
// cancel there until it expires (Stripe: 24 hours): its message outlives
// flashFor; the other codes' do not.
func TestPaymentCancelledOutlivesTheFlash(t *testing.T) {
	c := csrf{key: bytes.Repeat([]byte{9}, SecretSize)}
	made := time.Unix(1_700_000_000, 0)
	for _, x := range []struct {
		code  string
		after time.Duration
		shown bool
	}{
		{"payment-cancelled", 23 * time.Hour, true},
		{"payment-cancelled", 26 * time.Hour, false},
		{"payment-failed", 5 * time.Minute, true},
		{"payment-failed", flashFor + time.Minute, false},
		{"paid", flashFor + time.Minute, false},
	} {
		q := c.flashParams(storage.SMS, tokA, x.code, made)
		got := c.flash(storage.SMS, tokA, x.code, q.Get("mt"), q.Get("ms"), made.Add(x.after))
		if (got == x.code) != x.shown {
			t.Errorf("%s after %s: shown %q, want shown=%v", x.code, x.after, got, x.shown)
		}
	}
}

// The payment's texts are the catalogue's, in the customer's language:
// the Buy buttons, the hint under the packs, and the messages of the
// return pages (a French browser here).
func TestPaymentTextsInTheCustomersLanguage(t *testing.T) {
	e := newPayEnv(t)
	cat, err := loadCatalogue(localeFS)
	if err != nil {
		t.Fatal(err)
	}
	fr := cat["fr"]
	text := func(key string) string { return template.HTMLEscapeString(fr.msgs[key].other) }
	hdr := map[string]string{"Accept-Language": "fr-BE,fr;q=0.9"}
	_, page := e.getWith(hashedLink("sms", tokA), hdr)
	if !strings.Contains(page, `id="buy-1" href=`) || !strings.Contains(page, ">"+text("packs.buy")+"</a>") ||
		!strings.Contains(page, text("packs.online")) || strings.Contains(page, text("packs.after")) {
		t.Fatalf("French credit page with payments:\n%s", page)
	}
	s := e.buy(tokA, 1)
	u, _ := url.Parse(s.CancelURL)
	if _, page := e.getWith(u.RequestURI(), hdr); !strings.Contains(page, ">"+text("msg.payment-cancelled")+"<") {
		t.Fatalf("French cancel page:\n%s", page)
	}
	if _, err := e.fake.Pay(s.ID); err != nil {
		t.Fatal(err)
	}
	if _, page := e.getWith(hashedLink("sms", tokA)+"&paid="+s.ID, hdr); !strings.Contains(page, ">"+text("msg.paid")+"<") {
		t.Fatalf("French return page:\n%s", page)
	}
}

// Anyone may invent an account and click Buy: the provider calls the
// pages make are bounded per account (payCallsPerAccount), so a loop of
// Buys spends neither the operator's quota at the provider nor its
// requests' time; another account still buys.
func TestBuyBoundedPerAccount(t *testing.T) {
	e := newPayEnv(t)
	for range payCallsPerAccount.Burst {
		e.buy(tokA, 1)
	}
	m := buyRE.FindStringSubmatch(func() string { _, p := e.get(hashedLink("sms", tokA)); return p }())
	st, h, _ := e.do("GET", strings.ReplaceAll(m[2], "&amp;", "&"), nil, nil)
	if st != http.StatusSeeOther || msgOf(t, h) != "payment-failed" || e.fake.Creates() != payCallsPerAccount.Burst {
		t.Fatalf("Buy over the bound: %d %s, %d sessions", st, h.Get("Location"), e.fake.Creates())
	}
	// A return page of a paid session the account has exhausted its
	// calls for reads nothing at the provider: "pending" until the
	// webhook credits it.
	if _, page := e.get(hashedLink("sms", tokA) + "&paid=cs_test_unknown"); message(t, page) != msgText(t, "payment-pending") {
		t.Fatalf("return page over the bound: %q", message(t, page))
	}
	e.account(storage.SMS, tokB, "5")
	if s := e.buy(tokB, 1); s.ID == "" || e.fake.Creates() != payCallsPerAccount.Burst+1 {
		t.Fatalf("another account's Buy: %+v, %d sessions", s, e.fake.Creates())
	}
}
