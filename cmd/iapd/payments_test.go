package main

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/iapd/iapd/providers/payments/stripe/stripetest"
)

// The acceptance test of online payment (issue 17): a real headless
// Chromium on a real iapd configured with payments.stripe, against
// stripetest (Stripe's Checkout Session API and signed events, local):
// the credit page → Buy → the checkout page → Pay (the webhook is
// delivered, signed) → back on the credit page, which shows the payment
// and the new balance. Then a refund event takes the credit back.
func TestStripePaymentInBrowser(t *testing.T) {
	const (
		key    = "sk_test_browser_0123456789abcdef"
		secret = "whsec_browser_fedcba9876543210"
		token  = "7c1d0e7f3a2b4c6d8e9f0a1b2c3d4e5f"
		dbuuid = "0b9f1f56-7c2e-4b1e-9a55-0c8b0c7f1d2e"
	)
	fake := stripetest.New(key, secret)
	defer fake.Close()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "stripe.key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "iapd.yaml")
	src := `portal:
  packs:
    sms:
      - {name: Starter, credits: 100, price: 9.90, currency: EUR}
      - {name: Business, credits: 1000, price: 79, currency: EUR}
payments:
  stripe:
    secret_key_file: ` + keyFile + `
    webhook_secret: ${STRIPE_WEBHOOK_SECRET}
    api_url: ` + fake.URL + `
`
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, map[string]string{"IAPD_ADMIN_TOKEN": testAdminToken, "STRIPE_WEBHOOK_SECRET": secret}, "-config", cfg)
	fake.SetWebhook(s.public + "/payments/stripe/webhook")
	hc := &http.Client{Timeout: 10 * time.Second}
	if _, err := rpcCall(hc, s.public, "/iap/1/balance", map[string]any{"dbuuid": dbuuid, "account_token": token, "service_name": "sms"}); err != nil {
		t.Fatal(err)
	}
	s.mustCLI(t, "", "credit", "sms", token, "2", "-ref", "order-1")

	shots := artifactsDir(t)
	ctx := browser(t)
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			buf, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o600)
		})
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return strings.TrimSpace(v)
	}
	// Odoo 19's hashed link; Buy on the Business pack.
	link := s.public + "/iap/1/credit?dbuuid=" + dbuuid + "&service_name=sms&account_token=" + sha1Hex(token) + "&hashed=1"
	if err := chromedp.Do(ctx, chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("#buy-2")), shot("pay-1-credit-page")); err != nil {
		t.Fatal(err)
	}
	if got := text("#available"); got != "2" {
		t.Fatalf("available %q before payment", got)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#buy-2")), chromedp.WaitVisible(chromedp.CSS("#pay")), shot("pay-2-checkout")); err != nil {
		t.Fatal(err)
	}
	if got := text("#amount"); got != "7900 EUR" {
		t.Fatalf("checkout page amount %q (minor units)", got)
	}
	sessions := fake.Sessions()
	if len(sessions) != 1 || strings.Contains(strings.Join(mapValues(sessions[0].Metadata), " "), token) {
		t.Fatalf("sessions %+v", sessions)
	}
	// Pay: the fake delivers checkout.session.completed, signed, then
	// sends the browser back to the success URL.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#pay")), chromedp.WaitVisible(chromedp.CSS("#message")), shot("pay-3-returned")); err != nil {
		t.Fatal(err)
	}
	if got := text("#message"); got != "Thank you: the payment was received and its credit is on the account." {
		t.Fatalf("message %q", got)
	}
	if got := text("#available"); got != "1002" {
		t.Fatalf("available %q after payment, want 1002", got)
	}
	// The webhook credited it (not the return page): the session's ref is
	// in the ledger and the metric says credited once.
	x, _ := fake.Session(sessions[0].ID)
	if x.PaymentStatus != "paid" {
		t.Fatalf("session %+v", x)
	}
	mf := scrapeMetrics(t, s.ops)
	if v := seriesValue(t, mf, "iap_payments_total", "provider", "stripe", "outcome", "credited"); v != 1 {
		t.Fatalf("iap_payments_total{outcome=credited} = %v", v)
	}
	if v := seriesValue(t, mf, "iap_credits_sold_total", "service", "sms"); v != 1000 {
		t.Fatalf("iap_credits_sold_total{service=sms} = %v", v)
	}
	// A re-delivery changes nothing; a quarter refunded debits a quarter
	// of the pack, the rest refunded the rest.
	ev, err := fake.SessionEvent("checkout.session.completed", x.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := fake.Deliver(ev); err != nil || st != 200 {
		t.Fatalf("re-delivery: %d %v", st, err)
	}
	quarter, err := fake.Refund(x.ID, x.AmountTotal/4)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := fake.Deliver(quarter); err != nil || st != 200 {
		t.Fatalf("partial refund: %d %v", st, err)
	}
	mf = scrapeMetrics(t, s.ops)
	if v := seriesValue(t, mf, "iap_payments_total", "provider", "stripe", "outcome", "partial_refund"); v != 1 {
		t.Fatalf("iap_payments_total{outcome=partial_refund} = %v", v)
	}
	refund, err := fake.Refund(x.ID, x.AmountTotal-x.AmountTotal/4)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := fake.Deliver(refund); err != nil || st != 200 {
		t.Fatalf("refund: %d %v", st, err)
	}
	if st, err := fake.DeliverSigned(refund, stripetest.Sign(refund, "whsec_forged", time.Now())); err != nil || st != 400 {
		t.Fatalf("forged: %d %v", st, err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("#available")), shot("pay-4-refunded")); err != nil {
		t.Fatal(err)
	}
	if got := text("#available"); got != "2" {
		t.Fatalf("available %q after the refund, want 2", got)
	}
	logs := s.stderr.String() + s.stdout.String()
	for _, sec := range []string{key, secret, token, sha1Hex(token)} {
		if strings.Contains(logs, sec) {
			t.Fatalf("the logs hold a secret (%.10s…)", sec)
		}
	}
	if !strings.Contains(s.stdout.String()+s.stderr.String(), "/payments/stripe/webhook") {
		t.Errorf("the startup report does not name the webhook URL")
	}
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// Air-gapped mode reaches Stripe only through upstream.outbound_allow:
// payments.stripe.api_url is not allowed by itself. Refused, Buy brings
// the customer back with the payment-failed message and no session is
// made; allowed, Buy goes to the payment page.
func TestStripeAirGapped(t *testing.T) {
	const (
		key    = "sk_test_airgap_0123456789abcdef"
		secret = "whsec_airgap_fedcba9876543210"
		token  = "5a1d0e7f3a2b4c6d8e9f0a1b2c3d4e5f"
	)
	fake := stripetest.New(key, secret)
	defer fake.Close()
	fakeHost := strings.TrimPrefix(fake.URL, "http://")
	fakeHost = fakeHost[:strings.LastIndexByte(fakeHost, ':')]
	hc := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	buyRE := regexp.MustCompile(`id="buy-1" href="([^"]+)"`)
	for _, allow := range []bool{false, true} {
		dir := t.TempDir()
		src := `air_gapped: true
portal:
  packs:
    sms:
      - {name: Starter, credits: 100, price: 9.90, currency: EUR}
payments:
  stripe:
    secret_key: ` + key + `
    webhook_secret: ` + secret + `
    api_url: ` + fake.URL + `
`
		if allow {
			src += "upstream:\n  outbound_allow: [\"" + fakeHost + "\"]\n"
		}
		cfg := filepath.Join(dir, "iapd.yaml")
		if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		s := startServer(t, map[string]string{"IAPD_ADMIN_TOKEN": testAdminToken}, "-config", cfg)
		if _, err := rpcCall(hc, s.public, "/iap/1/balance", map[string]any{"account_token": token, "service_name": "sms"}); err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Get(s.public + "/iap/1/credit?service_name=sms&account_token=" + token)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := buyRE.FindSubmatch(page)
		if m == nil {
			t.Fatalf("allow=%v: no Buy button:\n%s", allow, page)
		}
		resp, err = hc.Get(s.public + html.UnescapeString(string(m[1])))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		mf := scrapeMetrics(t, s.ops)
		failed := seriesValue(t, mf, "iap_payments_total", "provider", "stripe", "outcome", "checkout_failed")
		switch {
		case resp.StatusCode != http.StatusSeeOther:
			t.Fatalf("allow=%v: Buy answered %d", allow, resp.StatusCode)
		case !allow && (loc.Query().Get("msg") != "payment-failed" || failed != 1 || len(fake.Sessions()) != 0):
			t.Fatalf("air-gapped without outbound_allow: Location %s, checkout_failed %v, sessions %d", loc, failed, len(fake.Sessions()))
		case allow && (!strings.HasPrefix(loc.String(), fake.URL) || failed != 0 || len(fake.Sessions()) != 1):
			t.Fatalf("air-gapped with %s allowed: Location %s, checkout_failed %v, sessions %d", fakeHost, loc, failed, len(fake.Sessions()))
		}
	}
}
