package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/iapd/iapd/providers/payments/stripe/stripetest"
)

// The portal as a customer sees it (issue 17): every page at phone width
// (390 px, mobile emulation) and at desktop width (1280 px) in headless
// Chromium, with the operator's branding and the link back to the Odoo
// the customer came from. For each page and width the test asserts that
// nothing scrolls sideways (document.scrollingElement.scrollWidth ≤
// innerWidth) and that the figures that matter — balances, links, the
// Credits column of the history — are on screen, and saves a screenshot.

// layoutReport is what the page reports about itself.
type layoutReport struct {
	ScrollWidth int      `json:"scrollWidth"`
	InnerWidth  int      `json:"innerWidth"`
	Hidden      []string `json:"hidden"` // required elements not fully on screen
	Missing     []string `json:"missing"`
	Wide        []string `json:"wide"` // elements reaching past the viewport's width
	LogoLoaded  bool     `json:"logoLoaded"`
	Lang        string   `json:"lang"` // the page's <html lang>
}

// layoutJS checks the selectors (a JSON list): every element they match
// must have a size and lie within the viewport's width.
const layoutJS = `(() => {
  const sels = %s, vw = %d, hidden = [], missing = [], wide = [];
  document.querySelectorAll('body *').forEach(e => {
    const r = e.getBoundingClientRect();
    if (r.right > vw + 0.5 && wide.length < 8) wide.push(e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className + ' ' + Math.round(r.right));
  });
  for (const sel of sels) {
    const els = document.querySelectorAll(sel);
    if (els.length === 0) { missing.push(sel); continue; }
    els.forEach((e, i) => {
      const r = e.getBoundingClientRect(), st = getComputedStyle(e);
      // Off screen, empty, hidden, or its text cut by its own box.
      if (r.width <= 0 || r.height <= 0 || r.left < -0.5 || r.right > vw + 0.5 || st.visibility === 'hidden' || st.display === 'none' ||
          e.scrollWidth > e.clientWidth + 1)
        hidden.push(sel + '[' + i + '] ' + Math.round(r.left) + '..' + Math.round(r.right) + ' of ' + vw);
    });
  }
  const logo = document.querySelector('img.logo');
  return {scrollWidth: document.scrollingElement.scrollWidth, innerWidth: window.innerWidth, hidden, missing, wide, lang: document.documentElement.lang,
          logoLoaded: !!logo && logo.complete && logo.naturalWidth > 0};
})()`

func TestPortalAtPhoneAndDesktopWidth(t *testing.T) {
	dir := t.TempDir()
	logo := filepath.Join(dir, "logo.png")
	writeTestLogo(t, logo)
	cfg := filepath.Join(dir, "iapd.yaml")
	src := `portal:
  shop_url: https://shop.example.com/iap?service={service}&pack={pack}&account={account_hash}
  brand_name: Example Telecom Credits
  logo_file: ` + logo + `
  support_email: support@example.com
  support_url: https://help.example.com/iap
  packs:
    sms:
      - {name: Starter pack for small teams, credits: 100, price: 9.90, currency: EUR}
      - {name: Business, credits: 100000, price: 7900, currency: EUR}
  price_description:
    sms: About 0.08 EUR per SMS in Europe, 0.12 EUR elsewhere; letters are billed per stamp.
`
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, map[string]string{"IAPD_ADMIN_TOKEN": testAdminToken}, "-config", cfg)
	hc := &http.Client{Timeout: 30 * time.Second}
	const token = "7e2d0c1b3a4f5e6d7c8b9a0f1e2d3c4b"
	const dbuuid = "0f3e9a8b-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
	const key = "portal-width-sms-key-0123456789"
	if _, err := rpcCall(hc, s.public, "/iap/1/balance", map[string]any{"dbuuid": dbuuid, "account_token": token, "service_name": "sms"}); err != nil {
		t.Fatal(err)
	}
	s.mustCLI(t, "", "credit", "sms", token, "1234567.5", "-ref", "order-2024-000123", "-description", "Order 2024-000123 (bank transfer, reference INV/2024/000123)")
	s.mustCLI(t, key+"\n", "services", "rotate-key", "sms", "-key-stdin")
	hold := func(amount, desc string, capture bool) {
		t.Helper()
		raw, err := rpcCall(hc, s.public, "/iap/1/authorize", map[string]any{"account_token": token, "key": key,
			"credit": json.Number(amount), "description": desc, "dbuuid": dbuuid})
		if err != nil {
			t.Fatal(err)
		}
		var txn string
		_ = json.Unmarshal(raw, &txn)
		if capture {
			if _, err := rpcCall(hc, s.public, "/iap/1/capture", map[string]any{"token": txn, "key": key, "credit_to_capture": json.Number(amount)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	hold("3", "SMS: 3 messages", true)
	hold("123456.75", "SMS: a campaign with a rather long name to +32470123456, +32470123457, +32470123458 and 123453 others", true)
	hold("2", "SMS: 2 messages (sending)", false)

	// The customer's Odoo, on another origin, links to the credit page as
	// Odoo's "Buy credits" button does.
	credit := s.public + "/iap/1/credit?dbuuid=" + dbuuid + "&service_name=sms&account_token=" + token + "&credit=1300000"
	odoo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!DOCTYPE html><title>Odoo</title><a id="buy" href="%s">Buy credits</a>`, credit)
	}))
	t.Cleanup(odoo.Close)
	odooURL := strings.Replace(odoo.URL, "127.0.0.1", "localhost", 1)

	pages := []struct {
		name, url string
		need      []string
	}{
		{"credit", credit, []string{"#available", "#held", "#captured", "#missing", "#credits-heading", "#entries td.amount",
			"#packs a", "#redeem", "#pending-entries td.num", "#csv", "#save-alerts", "#back", "#support-email", "#brand"}},
		{"credit-hashed", s.public + "/iap/1/credit?dbuuid=" + dbuuid + "&service_name=sms&hashed=1&account_token=" + sha1Hex(token),
			[]string{"#available", "#credits-heading", "#entries td.amount", "#packs a", "#back"}},
		{"services", s.public + "/iap/services?dbuuid=" + dbuuid + "&tokens=" + token, []string{".balance", "a.details", "#back"}},
		{"my-account", s.public + "/iap/1/my_account?dbuuid=" + dbuuid + "&service_name=sms&hashed=1&account_token=" + sha1Hex(token),
			[]string{".balance", "a.details"}},
		{"all-services", s.public + "/iap/1/all-in-app-services?db_uuid=" + dbuuid + "&hashed=1&account_tokens=" + sha1Hex(token),
			[]string{".balance", "a.details"}},
		{"sms", s.public + "/1/account?account_token=" + token, []string{"#available", "#state"}},
		{"not-found", s.public + "/iap/1/credit?service_name=sms&hashed=1&account_token=" + sha1Hex("nope"), []string{"h1", "#support-url"}},
	}
	// The same portal selling its packs online (payments.stripe): a Buy
	// button per pack, against a local Stripe (no payment is made).
	fake := stripetest.New("sk_test_width_0123456789", "whsec_width_0123456789")
	t.Cleanup(fake.Close)
	payCfg := filepath.Join(dir, "iapd-pay.yaml")
	paySrc := src + `payments:
  stripe:
    secret_key: sk_test_width_0123456789
    webhook_secret: whsec_width_0123456789
    api_url: ` + fake.URL + `
`
	if err := os.WriteFile(payCfg, []byte(paySrc), 0o600); err != nil {
		t.Fatal(err)
	}
	sp := startServer(t, map[string]string{"IAPD_ADMIN_TOKEN": testAdminToken}, "-config", payCfg)
	if _, err := rpcCall(hc, sp.public, "/iap/1/balance", map[string]any{"dbuuid": dbuuid, "account_token": token, "service_name": "sms"}); err != nil {
		t.Fatal(err)
	}
	sp.mustCLI(t, "", "credit", "sms", token, "1234567.5", "-ref", "order-2024-000123")
	pages = append(pages, struct {
		name, url string
		need      []string
	}{"credit-pay", sp.public + "/iap/1/credit?dbuuid=" + dbuuid + "&service_name=sms&account_token=" + token + "&credit=1300000",
		[]string{"#available", "#missing", "#packs a.buy", "#buy-1", "#buy-2", "#packs td.num", "#redeem", "#entries td.amount"}})

	shots := artifactsDir(t)
	ctx := browser(t)
	// German has the longest words of the five languages.
	ctxDE := browser(t, chromedp.Flag("accept-lang", "de-DE,de"), chromedp.Flag("lang", "de-DE"))
	for _, w := range []struct {
		name          string
		width, height int64
		mobile        bool
		de            bool
	}{{"phone", 390, 844, true, false}, {"desktop", 1280, 900, false, false}, {"phone-de", 390, 844, true, true}} {
		ctx := ctx
		if w.de {
			ctx = ctxDE
		}
		opts := []chromedp.EmulateViewportOption{chromedp.EmulatePortrait}
		if w.mobile {
			opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateScale(3))
		}
		// Arrive from Odoo: the Referer names it; later pages remember it.
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(w.width, w.height, opts...),
			chromedp.Navigate(odooURL), chromedp.Click(chromedp.CSS("#buy")), chromedp.WaitVisible(chromedp.CSS("#available"))); err != nil {
			t.Fatal(err)
		}
		for i, pg := range pages {
			need, _ := json.Marshal(pg.need)
			name := fmt.Sprintf("%s-%d-%s", w.name, i+1, pg.name)
			rep, err := chromedp.Run(ctx, chromedp.Action[layoutReport](func(ctx context.Context, tg *chromedp.Target) (layoutReport, error) {
				if _, err := chromedp.Navigate(pg.url)(ctx, tg); err != nil {
					return layoutReport{}, err
				}
				if _, err := chromedp.WaitVisible(chromedp.CSS("h1"))(ctx, tg); err != nil {
					return layoutReport{}, err
				}
				buf, err := chromedp.FullScreenshot(100)(ctx, tg)
				if err != nil {
					return layoutReport{}, err
				}
				if err := os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o600); err != nil {
					return layoutReport{}, err
				}
				return chromedp.Evaluate[layoutReport](fmt.Sprintf(layoutJS, need, w.width))(ctx, tg)
			}))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			// A phone widens its layout viewport to content that does not
			// fit: innerWidth then exceeds the device's width.
			if rep.InnerWidth != int(w.width) || rep.ScrollWidth > rep.InnerWidth {
				t.Errorf("%s: scrolls sideways: %d px of content, viewport %d px, device %d px; too wide: %v",
					name, rep.ScrollWidth, rep.InnerWidth, w.width, rep.Wide)
			}
			if len(rep.Hidden) > 0 || len(rep.Missing) > 0 {
				t.Errorf("%s: not on screen %v, missing %v", name, rep.Hidden, rep.Missing)
			}
			if !rep.LogoLoaded {
				t.Errorf("%s: the operator's logo did not load", name)
			}
			if want := map[bool]string{false: "en", true: "de"}[w.de]; rep.Lang != want {
				t.Errorf("%s: page in %q, want %q", name, rep.Lang, want)
			}
		}
	}
	// The Buy buttons are the page's action style, and lead to Stripe.
	if err := chromedp.Do(ctx, chromedp.Navigate(pages[len(pages)-1].url), chromedp.WaitVisible(chromedp.CSS("#buy-2"))); err != nil {
		t.Fatal(err)
	}
	style, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`(() => {
	  const b = getComputedStyle(document.querySelector('#buy-2')), r = getComputedStyle(document.querySelector('#redeem'));
	  return [b.backgroundColor, r.backgroundColor, b.color, r.color, b.display];
	})()`))
	if err != nil || len(style) != 5 || style[0] != style[1] || style[2] != style[3] || style[4] != "inline-block" {
		t.Fatalf("Buy styled %v, want the Redeem button's colours (%v)", style, err)
	}
	// What the phone shows is the real thing: the figures and the row of
	// the capture with its hold.
	if err := chromedp.Do(ctx, chromedp.Navigate(credit), chromedp.WaitVisible(chromedp.CSS("#entries"))); err != nil {
		t.Fatal(err)
	}
	got, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#entries")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, "SMS: 3 messages") || !strings.Contains(got, "\u22123") || strings.Contains(got, "held") {
		t.Fatalf("history rows:\n%s", got)
	}
	back, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS("#back"), "href"))
	if err != nil || strings.TrimRight(back.Value, "/") != odooURL {
		t.Fatalf("back to Odoo: %q, want %s (%v)", back.Value, odooURL, err)
	}
	if strings.Contains(s.stderr.String(), token) {
		t.Fatal("the token is in the server log")
	}
}

// writeTestLogo writes a small PNG.
func writeTestLogo(t *testing.T, path string) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 96, 32))
	for x := range 96 {
		for y := range 32 {
			img.Set(x, y, color.RGBA{R: uint8(40 + x), G: 90, B: uint8(160 - y), A: 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}
