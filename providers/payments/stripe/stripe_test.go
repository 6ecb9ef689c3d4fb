package stripe

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/iapd/iapd/providers/payments"
	"github.com/iapd/iapd/providers/payments/stripe/stripetest"
)

const (
	testKey    = "sk_test_0123456789abcdef"
	testSecret = "whsec_test_fedcba9876543210"
)

func newProvider(t *testing.T) (*Provider, *stripetest.Server) {
	t.Helper()
	fake := stripetest.New(testKey, testSecret)
	t.Cleanup(fake.Close)
	p, err := New(Config{SecretKey: testKey, WebhookSecret: testSecret, APIURL: fake.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p, fake
}

func order() payments.Order {
	return payments.Order{Service: "sms", Reference: "sealed-ref", Pack: 2, PackName: "1000 SMS", Credits: "1000",
		Price:      payments.Money{Value: 455000, Currency: "EUR"}, // 45.50 EUR
		SuccessURL: "https://iap.example.com/iap/1/credit?x=1&paid=" + payments.SessionPlaceholder,
		CancelURL:  "https://iap.example.com/iap/1/credit?x=1"}
}

// Checkout sends Stripe's form-encoded create and reads its JSON answer;
// Session and SessionOfPayment read it back with the metadata.
func TestCheckoutSessionRoundTrip(t *testing.T) {
	p, fake := newProvider(t)
	ctx := context.Background()
	co, err := p.Checkout(ctx, order())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(co.ID, "cs_test_") || co.URL != fake.URL+"/pay/"+co.ID {
		t.Fatalf("checkout %+v", co)
	}
	x, _ := fake.Session(co.ID)
	if x.AmountTotal != 4550 || x.Currency != "eur" || x.ProductName != "1000 SMS" || x.SuccessURL != order().SuccessURL ||
		x.Metadata["iapd_service"] != "sms" || x.Metadata["iapd_account"] != "sealed-ref" || x.Metadata["iapd_pack"] != "2" || x.Metadata["iapd_credits"] != "1000" {
		t.Fatalf("Stripe got %+v", x)
	}
	s, err := p.Session(ctx, co.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := payments.Session{ID: co.ID, Service: "sms", Reference: "sealed-ref", Pack: 2, Credits: "1000", Amount: payments.Money{Value: 455000, Currency: "EUR"}}
	if s != want {
		t.Fatalf("session %+v, want %+v", s, want)
	}
	if _, err := fake.Pay(co.ID); err != nil {
		t.Fatal(err)
	}
	paid, _ := fake.Session(co.ID)
	s, err = p.SessionOfPayment(ctx, paid.PaymentIntent)
	if err != nil || !s.Paid || s.ID != co.ID || s.PaymentID != paid.PaymentIntent {
		t.Fatalf("SessionOfPayment: %+v %v", s, err)
	}
	if _, err := p.SessionOfPayment(ctx, "pi_unknown"); !errors.Is(err, payments.ErrNotFound) {
		t.Fatalf("unknown payment: %v", err)
	}
	if _, err := p.Session(ctx, "cs_test_nope"); !errors.Is(err, payments.ErrNotFound) {
		t.Fatalf("unknown session: %v", err)
	}
	if _, err := p.Session(ctx, "../v1/charges"); !errors.Is(err, payments.ErrNotFound) {
		t.Fatalf("a path as id: %v", err)
	}
}

func TestCheckoutRefusals(t *testing.T) {
	p, fake := newProvider(t)
	ctx := context.Background()
	o := order()
	o.Price = payments.Money{Value: 455050, Currency: "EUR"} // 45.505: no such cent
	if _, err := p.Checkout(ctx, o); !errors.Is(err, payments.ErrInvalid) {
		t.Fatalf("sub-cent price: %v", err)
	}
	o = order()
	o.Price = payments.Money{Value: 5000000, Currency: "JPY"}
	if _, err := p.Checkout(ctx, o); err != nil {
		t.Fatal(err)
	}
	if got := fake.Sessions()[0]; got.AmountTotal != 500 || got.Currency != "jpy" {
		t.Fatalf("JPY is zero-decimal: %+v", got)
	}
	bad, err := New(Config{SecretKey: "sk_test_wrong", WebhookSecret: testSecret, APIURL: fake.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.Checkout(ctx, order())
	if !errors.Is(err, payments.ErrInvalid) || strings.Contains(err.Error(), "sk_test") {
		t.Fatalf("wrong key: %v", err)
	}
	dead, _ := New(Config{SecretKey: testKey, WebhookSecret: testSecret, APIURL: "http://127.0.0.1:1"}, nil)
	if _, err := dead.Checkout(ctx, order()); err == nil || errors.Is(err, payments.ErrInvalid) {
		t.Fatalf("unreachable Stripe: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{WebhookSecret: "w"},
		{SecretKey: "k"},
		{SecretKey: "k", WebhookSecret: "w", APIURL: "ftp://x"},
		{SecretKey: "k", WebhookSecret: "w", APIURL: "https://u:p@api.stripe.com"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		} else if strings.Contains(err.Error(), "k\"") {
			t.Errorf("the error names a secret: %v", err)
		}
	}
	c := Config{SecretKey: "k", WebhookSecret: "w"}
	if err := c.Validate(); err != nil || c.APIURL != DefaultAPIURL {
		t.Fatalf("%v %q", err, c.APIURL)
	}
}

// Events: Stripe's signature scheme (t=…,v1=HMAC-SHA256), 5 minutes of
// tolerance, and the types iapd uses decoded.
func TestEvents(t *testing.T) {
	p, fake := newProvider(t)
	co, err := p.Checkout(context.Background(), order())
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := fake.Pay(co.ID)
	now := time.Now()
	got, err := p.Event(ev, stripetest.Sign(ev, testSecret, now))
	if err != nil || got.Kind != payments.Paid || got.Type != "checkout.session.completed" || got.Session.ID != co.ID ||
		!got.Session.Paid || got.Session.Reference != "sealed-ref" || got.Session.Amount.Value != 455000 {
		t.Fatalf("completed: %+v %v", got, err)
	}
	for name, sig := range map[string]string{
		"none":        "",
		"garbage":     "v1=zz",
		"other key":   stripetest.Sign(ev, "whsec_other", now),
		"too old":     stripetest.Sign(ev, testSecret, now.Add(-301*time.Second)),
		"body edited": stripetest.Sign(append([]byte(" "), ev...), testSecret, now),
	} {
		if _, err := p.Event(ev, sig); !errors.Is(err, payments.ErrSignature) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := p.Event(ev, stripetest.Sign(ev, testSecret, now.Add(-299*time.Second))); err != nil {
		t.Errorf("within tolerance: %v", err)
	}
	x, _ := fake.Session(co.ID)
	part, _ := fake.Refund(co.ID, 100)
	full, _ := fake.Refund(co.ID, x.AmountTotal-100)
	lost, _ := fake.Dispute(co.ID, "lost")
	won, _ := fake.Dispute(co.ID, "won")
	other := stripetest.Event("invoice.paid", map[string]any{"id": "in_1", "object": "invoice"})
	for name, c := range map[string]struct {
		payload  []byte
		kind     payments.EventKind
		pi       string
		refunded int64 // ten-thousandths of EUR
	}{
		"full refund":  {full, payments.Refunded, x.PaymentIntent, 455000},
		"part refund":  {part, payments.Refunded, x.PaymentIntent, 10000},
		"dispute lost": {lost, payments.Reversed, x.PaymentIntent, 0},
		"dispute won":  {won, payments.Ignored, "", 0},
		"other type":   {other, payments.Ignored, "", 0},
	} {
		got, err := p.Event(c.payload, stripetest.Sign(c.payload, testSecret, now))
		if err != nil || got.Kind != c.kind || got.PaymentID != c.pi || got.Refunded.Value != c.refunded ||
			(c.refunded != 0 && got.Refunded.Currency != "EUR") {
			t.Errorf("%s: %+v %v", name, got, err)
		}
	}
	bad := []byte(`{"id":"evt_1","object":"event","type":"checkout.session.completed","data":{"object":{"amount_total":"x"}}}`)
	if _, err := p.Event(bad, stripetest.Sign(bad, testSecret, now)); err == nil || errors.Is(err, payments.ErrSignature) {
		t.Errorf("a signed but unreadable event: %v", err)
	}
}

// Refunds reads every page of GET /v1/refunds?payment_intent=… (Stripe
// lists 100 a page): 150 refunds come back with their amounts, a failed
// one not Returned; another payment's refunds are not among them.
func TestRefundsListed(t *testing.T) {
	p, fake := newProvider(t)
	ctx := context.Background()
	pay := func() stripetest.Session {
		co, err := p.Checkout(ctx, order())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fake.Pay(co.ID); err != nil {
			t.Fatal(err)
		}
		x, _ := fake.Session(co.ID)
		return x
	}
	x, y := pay(), pay()
	for i := range 150 {
		if _, err := fake.Refund(x.ID, int64(1+i%2)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fake.Refund(y.ID, 500); err != nil {
		t.Fatal(err)
	}
	failed := fake.Refunds(x.PaymentIntent)[7].ID
	fake.SetRefundStatus(failed, "failed")
	got, err := p.Refunds(ctx, x.PaymentIntent)
	if err != nil || len(got) != 150 {
		t.Fatalf("%d refunds, %v", len(got), err)
	}
	var sum int64
	seen := map[string]bool{}
	for _, r := range got {
		if seen[r.ID] || r.Amount.Currency != "EUR" || r.Returned != (r.ID != failed) {
			t.Fatalf("refund %+v (seen %v)", r, seen[r.ID])
		}
		seen[r.ID] = true
		sum += r.Amount.Value
	}
	if sum != 225*100 { // 75×1 + 75×2 cents
		t.Fatalf("refunds add up to %d ten-thousandths", sum)
	}
	if _, err := p.Refunds(ctx, "../v1/charges"); !errors.Is(err, payments.ErrNotFound) {
		t.Fatalf("a path as id: %v", err)
	}
	if got, err := p.Refunds(ctx, "pi_none"); err != nil || len(got) != 0 {
		t.Fatalf("a payment without refunds: %v %v", got, err)
	}
}

func TestMinorUnits(t *testing.T) {
	for _, c := range []struct {
		m     payments.Money
		minor int64
		ok    bool
	}{
		{payments.Money{Value: 199000, Currency: "EUR"}, 1990, true},
		{payments.Money{Value: 10000, Currency: "JPY"}, 1, true},
		{payments.Money{Value: 5000, Currency: "JPY"}, 0, false},
		{payments.Money{Value: 12340, Currency: "KWD"}, 1234, true},
		{payments.Money{Value: 1, Currency: "USD"}, 0, false},
	} {
		got, err := payments.MinorUnits(c.m)
		if (err == nil) != c.ok || (c.ok && got != c.minor) {
			t.Errorf("%s: %d %v", c.m, got, err)
		}
		if c.ok && payments.FromMinorUnits(got, c.m.Currency) != c.m {
			t.Errorf("%s: not a round trip", c.m)
		}
	}
}

// FuzzEvent: any signed payload decodes or fails with an error, never a
// panic; a Reversed or Refunded event names a payment.
func FuzzEvent(f *testing.F) {
	p, err := New(Config{SecretKey: testKey, WebhookSecret: testSecret, APIURL: "http://127.0.0.1:1"}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"id":"evt_1","object":"event","type":"charge.refunded","data":{"object":{"refunded":true,"payment_intent":"pi_1"}}}`))
	f.Add([]byte(`{"id":"evt_2","object":"event","type":"checkout.session.completed","data":{"object":{"id":"cs_1","metadata":{"iapd_pack":"x"},"amount_total":-5,"currency":"jpy"}}}`))
	f.Add([]byte(`{"id":"evt_3","object":"event","type":"charge.dispute.closed","data":{"object":{"status":"lost","payment_intent":{"id":"pi_2"}}}}`))
	f.Add([]byte(`{"type":"charge.refunded","data":null}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		ev, err := p.Event(payload, stripetest.Sign(payload, testSecret, time.Now()))
		if err != nil {
			if errors.Is(err, payments.ErrSignature) {
				t.Fatalf("a signed payload refused as unsigned: %v", err)
			}
			return
		}
		if (ev.Kind == payments.Reversed || ev.Kind == payments.Refunded) && ev.PaymentID == "" {
			t.Fatalf("%+v names no payment", ev)
		}
		if ev.Kind == payments.Paid && ev.Session.Pack < 0 {
			t.Fatalf("negative pack %+v", ev)
		}
	})
}
