package main

import (
	"context"
	"crypto/sha1" // #nosec G505 -- Odoo 19's hashed token (PROTOCOL §4.7)
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/iapd/iapd/rpc/admin"
)

// The acceptance test of the portal (issue 5): a real headless Chromium
// drives the pages of PROTOCOL §4.7 on a real iapd — the raw-token link
// of 16.0–18.0 and the hashed link of 19.0 (fixtures/odoo19/README.md),
// a voucher issued with "iapd vouchers create" and redeemed on the page,
// the history, the alert threshold, the overview and the SMS page — and
// saves a screenshot of each step.

// chromiumPath is Debian's chromium (.ci/run installs it). Its absence
// fails the test: the portal is not accepted without a browser run.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("IAPD_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	t.Fatal("chromium not found: install Debian's chromium (apt-get install -y chromium; .ci/run does) or set IAPD_CHROMIUM")
	return ""
}

// artifactsDir is where screenshots go: $IAPD_ARTIFACTS, else a temp dir.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("IAPD_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else {
		dir = filepath.Join(dir, "portal")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// browser starts a headless Chromium with a fresh profile (and the extra
// options, e.g. its language).
func browser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1100, 1400),
	}
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelCtx := chromedp.NewContext(actx)
	// The first call starts the browser, for the life of bctx (no
	// timeout on it); the steps are bounded by a derived context.
	if err := chromedp.Do(bctx); err != nil {
		cancelCtx()
		cancelAlloc()
		t.Fatalf("starting chromium: %v", err)
	}
	ctx, cancelTimeout := context.WithTimeout(bctx, 2*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	return ctx
}

func sha1Hex(s string) string {
	h := sha1.Sum([]byte(s)) // #nosec G401 -- protocol identifier
	return hex.EncodeToString(h[:])
}

func TestPortalInBrowser(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "iapd.yaml")
	src := `portal:
  shop_url: https://shop.example.com/iap?service={service}&pack={pack}&account={account_hash}
  packs:
    sms:
      - {name: Starter, credits: 100, price: 9.90, currency: EUR}
      - {name: Business, credits: 1000, price: 79, currency: EUR}
  price_description:
    sms: About 0.08 EUR per SMS in Europe.
`
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, map[string]string{"IAPD_ADMIN_TOKEN": testAdminToken}, "-config", cfg)
	hc := &http.Client{Timeout: 10 * time.Second}
	const token = "5d1c0e7f3a2b4c6d8e9f0a1b2c3d4e5f" // as Odoo makes them: uuid4().hex
	const dbuuid = "6b9f1f56-7c2e-4b1e-9a55-0c8b0c7f1d2e"

	// Odoo's first contact creates the account; the operator credits it;
	// a provider consumes some (authorize + capture, PROTOCOL §5).
	if _, err := rpcCall(hc, s.public, "/iap/1/balance", map[string]any{"dbuuid": dbuuid, "account_token": token, "service_name": "sms"}); err != nil {
		t.Fatal(err)
	}
	s.mustCLI(t, "", "credit", "sms", token, "10", "-ref", "order-1001", "-description", "Order 1001")
	s.mustCLI(t, "portal-test-sms-key-0123456789\n", "services", "rotate-key", "sms", "-key-stdin")
	for i, amount := range []string{"1.5", "0.5"} {
		raw, err := rpcCall(hc, s.public, "/iap/1/authorize", map[string]any{"account_token": token, "key": "portal-test-sms-key-0123456789",
			"credit": json.Number(amount), "description": fmt.Sprintf("Campaign %d", i+1), "dbuuid": dbuuid})
		if err != nil {
			t.Fatal(err)
		}
		var txn string
		_ = json.Unmarshal(raw, &txn)
		if _, err := rpcCall(hc, s.public, "/iap/1/capture", map[string]any{"token": txn, "key": "portal-test-sms-key-0123456789", "credit_to_capture": json.Number(amount)}); err != nil {
			t.Fatal(err)
		}
	}

	// Vouchers from the CLI: codes shown once.
	out := s.mustCLI(t, "", "vouchers", "create", "sms", "25", "-count", "2", "-expires", "30d", "-batch", "browser test", "-json")
	var issued admin.IssuedVouchers
	if err := json.Unmarshal([]byte(out), &issued); err != nil || len(issued.Vouchers) != 2 {
		t.Fatalf("vouchers create: %v\n%s", err, out)
	}
	code := issued.Vouchers[0].Code
	if out := s.mustCLI(t, "", "vouchers", "list", "-batch", "browser test"); strings.Contains(out, code) || strings.Count(out, "sms") != 2 {
		t.Fatalf("vouchers list shows codes or misses vouchers:\n%s", out)
	}

	shots := artifactsDir(t)
	ctx := browser(t)
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			buf, err := chromedp.FullScreenshot(100)(ctx, tg) // quality 100: PNG
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

	// 16.0–18.0: the raw-token link of the insufficient-credit dialog.
	rawLink := s.public + "/iap/1/credit?dbuuid=" + dbuuid + "&service_name=sms&account_token=" + token + "&credit=11&trial=False"
	if err := chromedp.Do(ctx, chromedp.Navigate(rawLink), chromedp.WaitVisible(chromedp.CSS("#available")), shot("1-credit-raw-token")); err != nil {
		t.Fatal(err)
	}
	if got := text("#available"); got != "8" {
		t.Fatalf("available %q, want 8 (10 - 1.5 - 0.5)", got)
	}
	if got := text("#missing"); !strings.Contains(got, "Odoo needed 3 credits more") {
		t.Fatalf("missing credit: %q", got)
	}
	if got := text("#packs"); !strings.Contains(got, "Business") || !strings.Contains(got, "79.00 EUR") {
		t.Fatalf("packs: %q", got)
	}

	// 19.0: the hashed link (SHA-1 of the token, hashed=1, no credit).
	hashed := s.public + "/iap/1/credit?dbuuid=" + dbuuid + "&service_name=sms&account_token=" + sha1Hex(token) + "&hashed=1"
	if err := chromedp.Do(ctx, chromedp.Navigate(hashed), chromedp.WaitVisible(chromedp.CSS("#available")), shot("2-credit-hashed-token")); err != nil {
		t.Fatal(err)
	}
	if got := text("#available"); got != "8" {
		t.Fatalf("hashed link: available %q", got)
	}
	if got := text("#entries"); !strings.Contains(got, "Campaign 1") || !strings.Contains(got, "\u22121.5") || !strings.Contains(got, "Order 1001") {
		t.Fatalf("history:\n%s", got)
	}

	// Redeem a voucher, typed as a user would (lower case, spaces).
	typed := strings.ToLower(strings.ReplaceAll(code, "-", " "))
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS("#code"), typed),
		chromedp.Click(chromedp.CSS("#redeem")),
		chromedp.WaitVisible(chromedp.CSS("#message")),
		shot("3-voucher-redeemed"),
	); err != nil {
		t.Fatal(err)
	}
	if got := text("#message"); !strings.Contains(got, "redeemed") {
		t.Fatalf("message %q", got)
	}
	if got := text("#available"); got != "33" {
		t.Fatalf("available after the voucher %q, want 33", got)
	}
	if got := text("#entries"); !strings.Contains(got, "voucher") || !strings.Contains(got, "+25") {
		t.Fatalf("redemption not in the history:\n%s", got)
	}
	// The same code again: refused, nothing credited.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(hashed),
		chromedp.WaitVisible(chromedp.CSS("#code")),
		chromedp.SendKeys(chromedp.CSS("#code"), code),
		chromedp.Click(chromedp.CSS("#redeem")),
		chromedp.WaitVisible(chromedp.CSS("#message")),
		shot("4-voucher-reused"),
	); err != nil {
		t.Fatal(err)
	}
	if got := text("#message"); !strings.Contains(got, "already redeemed") || text("#available") != "33" {
		t.Fatalf("second redemption: %q, available %q", got, text("#available"))
	}

	// Change the alert threshold and recipients.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(hashed),
		chromedp.WaitVisible(chromedp.CSS("#threshold")),
		chromedp.SetValue(chromedp.CSS("#threshold"), "12.5"),
		chromedp.SetValue(chromedp.CSS("#recipients"), "ops@example.com fr_FR"),
		chromedp.Click(chromedp.CSS("#enabled")),
		chromedp.Click(chromedp.CSS("#save-alerts")),
		chromedp.WaitVisible(chromedp.CSS("#message")),
		shot("5-alerts-saved"),
	); err != nil {
		t.Fatal(err)
	}
	if got := text("#message"); !strings.Contains(got, "saved") {
		t.Fatalf("alerts: %q", got)
	}
	out = s.mustCLI(t, "", "accounts", "show", "sms", token, "-json")
	var acct admin.Account
	if err := json.Unmarshal([]byte(out), &acct); err != nil {
		t.Fatal(err)
	}
	if !acct.Alerts.Enabled || acct.Alerts.Threshold.String() != "12.5" || len(acct.Alerts.Recipients) != 1 ||
		acct.Alerts.Recipients[0].Email != "ops@example.com" || acct.Alerts.Recipients[0].Lang != "fr_FR" || acct.Available.String() != "33" {
		t.Fatalf("account after the page: %+v", acct)
	}

	// History filtered by a period, then the overview pages and the SMS page.
	today := time.Now().UTC().Format(time.DateOnly)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(hashed+"&since=2001-01-01&until=2001-12-31"),
		chromedp.WaitVisible(chromedp.CSS("#entries")),
	); err != nil {
		t.Fatal(err)
	}
	if got := text("#entries"); !strings.Contains(got, "No operations in this period") {
		t.Fatalf("period filter:\n%s", got)
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(hashed+"&since="+today+"&until="+today),
		chromedp.WaitVisible(chromedp.CSS("#entries")),
		shot("6-history-today"),
	); err != nil {
		t.Fatal(err)
	}
	if got := text("#entries"); !strings.Contains(got, "Campaign 2") {
		t.Fatalf("history of today:\n%s", got)
	}
	for i, page := range []string{
		"/iap/1/all-in-app-services?db_uuid=" + dbuuid + "&hashed=1&account_tokens=" + sha1Hex(token),
		"/iap/1/my_account?dbuuid=" + dbuuid + "&service_name=sms&hashed=1&account_token=" + sha1Hex(token),
		"/iap/services?dbuuid=" + dbuuid + "&tokens=" + token,
	} {
		if err := chromedp.Do(ctx, chromedp.Navigate(s.public+page), chromedp.WaitVisible(chromedp.CSS("#accounts")), shot(fmt.Sprintf("7-overview-%d", i+1))); err != nil {
			t.Fatal(err)
		}
		if got := text("#accounts"); !strings.Contains(got, "33 Credits") {
			t.Fatalf("overview %s:\n%s", page, got)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(s.public+"/1/account?account_token="+token), chromedp.WaitVisible(chromedp.CSS("#state")), shot("8-sms-account")); err != nil {
		t.Fatal(err)
	}
	if got := text("#state"); got != "registered" {
		t.Fatalf("sms page state %q", got)
	}

	// A wrong token: the not-found page, in the browser too.
	if err := chromedp.Do(ctx, chromedp.Navigate(s.public+"/iap/1/credit?service_name=sms&hashed=1&account_token="+sha1Hex("nope")), chromedp.WaitVisible(chromedp.CSS("h1")), shot("9-not-found")); err != nil {
		t.Fatal(err)
	}
	if got := text("h1"); got != "Account not found" {
		t.Fatalf("wrong hash: %q", got)
	}
	// The token never reached the server's log.
	if strings.Contains(s.stderr.String(), token) || strings.Contains(s.stderr.String(), sha1Hex(token)) {
		t.Fatal("the token or its hash is in the server log")
	}
}

// Concurrent redemption of one voucher through the page, on the real
// server: it credits once.
func TestPortalConcurrentRedemption(t *testing.T) {
	s := startServer(t, map[string]string{"IAPD_ADMIN_TOKEN": testAdminToken})
	hc := &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	const token = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
	if _, err := rpcCall(hc, s.public, "/iap/1/balance", map[string]any{"dbuuid": "db", "account_token": token, "service_name": "sms"}); err != nil {
		t.Fatal(err)
	}
	var issued admin.IssuedVouchers
	if err := json.Unmarshal([]byte(s.mustCLI(t, "", "vouchers", "create", "sms", "7.25", "-json")), &issued); err != nil {
		t.Fatal(err)
	}
	link := s.public + "/iap/1/credit?service_name=sms&hashed=1&account_token=" + sha1Hex(token)
	code, body := get(t, link, "")
	if code != 200 {
		t.Fatalf("credit page: %d", code)
	}
	csrf := strings.SplitN(strings.SplitN(body, `name="csrf" value="`, 2)[1], `"`, 2)[0]
	const n = 24
	var wg sync.WaitGroup
	var mu sync.Mutex
	outcomes := map[string]int{}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			form := "action=redeem&service_name=sms&hashed=1&account_token=" + sha1Hex(token) + "&csrf=" + csrf + "&code=" + issued.Vouchers[0].Code
			resp, err := hc.Post(s.public+"/iap/1/credit/form", "application/x-www-form-urlencoded", strings.NewReader(form))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				outcomes[err.Error()]++
				return
			}
			resp.Body.Close()
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err != nil {
				outcomes[err.Error()]++
				return
			}
			outcomes[loc.Query().Get("msg")]++
		}()
	}
	wg.Wait()
	if outcomes["redeemed"] != 1 || outcomes["voucher-used"] != n-1 {
		t.Fatalf("outcomes %v", outcomes)
	}
	var acct admin.Account
	if err := json.Unmarshal([]byte(s.mustCLI(t, "", "accounts", "show", "sms", token, "-json")), &acct); err != nil {
		t.Fatal(err)
	}
	if acct.Available.String() != "7.25" {
		t.Fatalf("available %s, want 7.25 (credited once)", acct.Available)
	}
	out := s.mustCLI(t, "", "vouchers", "list", "-redeemed", "true", "-json")
	var l admin.VoucherList
	if err := json.Unmarshal([]byte(out), &l); err != nil || len(l.Vouchers) != 1 || l.Vouchers[0].RedeemedBy != token {
		t.Fatalf("vouchers list: %v\n%s", err, out)
	}
}

func TestParseExpiry(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                     {},
		"2027-01-31":           time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC), // the end of that day
		"2027-01-31T12:00:00Z": time.Date(2027, 1, 31, 12, 0, 0, 0, time.UTC),
		"90d":                  now.AddDate(0, 0, 90),
		"36h":                  now.Add(36 * time.Hour),
	} {
		got, err := parseExpiry(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseExpiry(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"soon", "-3d", "0d", "-1h", "2027-13-01"} {
		if _, err := parseExpiry(bad, now); err == nil {
			t.Errorf("parseExpiry(%q) accepted", bad)
		}
	}
}

// The admin API refuses bad voucher requests with a clear error, and the
// CLI prints the codes once.
func TestVouchersCLIErrors(t *testing.T) {
	s := startServer(t, map[string]string{"IAPD_ADMIN_TOKEN": testAdminToken})
	for _, args := range [][]string{
		{"vouchers", "create", "sms", "0"},
		{"vouchers", "create", "sms", "-5"},
		{"vouchers", "create", "SMS!", "5"},
		{"vouchers", "create", "sms", "5", "-count", "0"},
		{"vouchers", "create", "sms", "5", "-expires", "yesterday"},
		{"vouchers", "create", "nosuch", "5"},
		{"vouchers", "list", "-redeemed", "maybe"},
	} {
		if out, err := s.cli(t, "", args...); err == nil {
			t.Errorf("iapd %s accepted:\n%s", strings.Join(args, " "), out)
		}
	}
	out := s.mustCLI(t, "", "vouchers", "create", "sms", "2.5", "-count", "3")
	if n := len(regexp.MustCompile(`(?m)^[0-9A-Z]{5}-[0-9A-Z]{5}-[0-9A-Z]{5}-[0-9A-Z]{5}\s+sms\s+2\.5\b`).FindAllString(out, -1)); n != 3 {
		t.Fatalf("vouchers create printed %d codes:\n%s", n, out)
	}
	list := s.mustCLI(t, "", "vouchers", "list", "-redeemed", "false")
	if n := len(regexp.MustCompile(`(?m)^[0-9a-f]{16}\s+sms\s+2\.5\s`).FindAllString(list, -1)); n != 3 || regexp.MustCompile(`[0-9A-Z]{5}-[0-9A-Z]{5}`).MatchString(list) {
		t.Fatalf("vouchers list (3 unused, no codes):\n%s", list)
	}
}
