package portal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/rpc/portal/voucher"
	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

// Tests of the pages of PROTOCOL §4.7 against the real Badger ledger and
// the real rpc.Server, over HTTP.

const (
	tokA = "0123456789abcdef0123456789abcdef" // an Odoo token: uuid4().hex
	tokB = "fedcba9876543210fedcba9876543210"
)

type env struct {
	t      testing.TB
	ledger *badger.Ledger
	portal *Portal
	base   string
	hc     *http.Client
	logs   *bytes.Buffer
	logMu  *sync.Mutex
}

type lockedBuffer struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func newEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	l, err := badger.Open(badger.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ctx := context.Background()
	for _, s := range []storage.Service{
		{Name: storage.SMS, AutoRegister: true, UnitName: "Credits", Description: "Send SMS"},
		{Name: storage.Snailmail, AutoRegister: true, UnitName: "Stamps", Description: "Send letters by post"},
	} {
		if _, err := l.EnsureService(ctx, s); err != nil {
			t.Fatal(err)
		}
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
	if cfg.ClientIPHeader == "" {
		cfg.ClientIPHeader = "X-Test-IP"
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs, mu := &bytes.Buffer{}, &sync.Mutex{}
	p, err := New(Deps{Ledger: l, Vouchers: l, Config: cfg, Secret: bytes.Repeat([]byte{7}, SecretSize), PublicURL: base,
		Logger: slog.New(slog.NewTextHandler(lockedBuffer{mu, logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	p.Register(srv)
	hs := rpc.NewHTTPServer(srv.Front(srv.Handler()), nil)
	go hs.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = hs.Shutdown() })
	return &env{t: t, ledger: l, portal: p, base: base, logs: logs, logMu: mu,
		hc: &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (e *env) account(svc storage.ServiceName, tok string, credit string) {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.ledger.Account(ctx, svc, storage.AccountToken(tok), storage.FirstSight{DBUUID: "db-1"}); err != nil {
		e.t.Fatal(err)
	}
	if credit != "" {
		c, _ := storage.ParseCredits(credit)
		if _, err := e.ledger.Recharge(ctx, storage.RechargeRequest{Service: svc, Account: storage.AccountToken(tok), Amount: c, Kind: storage.EntryRecharge, Description: "initial"}); err != nil {
			e.t.Fatal(err)
		}
	}
}

// consume captures amount with a description (a real authorize + capture).
func (e *env) consume(svc storage.ServiceName, tok, amount, desc string) {
	e.t.Helper()
	ctx := context.Background()
	c, _ := storage.ParseCredits(amount)
	tx, err := e.ledger.Authorize(ctx, storage.AuthorizeRequest{Service: svc, Account: storage.AccountToken(tok), Amount: c, Description: desc, TTL: time.Hour})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.ledger.Capture(ctx, storage.CaptureRequest{Service: svc, Transaction: tx.Token}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) do(method, path string, form url.Values, hdr map[string]string) (int, http.Header, string) {
	e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, e.base+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("X-Test-IP", "192.0.2.1")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func (e *env) get(path string) (int, string) {
	st, _, b := e.do("GET", path, nil, nil)
	return st, b
}

func rawLink(svc, tok string, extra string) string {
	return CreditPath + "?dbuuid=db-1&service_name=" + svc + "&account_token=" + url.QueryEscape(tok) + extra
}

func hashedLink(svc, tok string) string {
	return CreditPath + "?dbuuid=db-1&service_name=" + svc + "&account_token=" + hashHex(storage.AccountToken(tok)) + "&hashed=1"
}

var idValue = func(id string) *regexp.Regexp {
	return regexp.MustCompile(`id="` + id + `">([^<]*)<`)
}

func field(t *testing.T, page, id string) string {
	t.Helper()
	m := idValue(id).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no #%s in the page:\n%s", id, page)
	}
	return m[1]
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func TestCreditPageRawAndHashed(t *testing.T) {
	e := newEnv(t, Config{})
	e.account(storage.SMS, tokA, "42.5")
	e.consume(storage.SMS, tokA, "2.5", "SMS to +32 470 …")
	// 16.0–18.0: raw token, with the missing credit Odoo computed and a
	// neutralised database's +disabled suffix.
	for _, link := range []string{rawLink("sms", tokA, "&credit=0"), rawLink("sms", tokA+"+disabled", ""), rawLink("sms", tokA, "&credit=3&trial=1")} {
		st, page := e.get(link)
		if st != 200 || field(t, page, "available") != "40" || field(t, page, "captured") != "2.5" {
			t.Fatalf("%s: %d available %q", link, st, field(t, page, "available"))
		}
		if strings.Contains(page, tokA) {
			t.Fatal("the page echoes the raw token")
		}
		if !strings.Contains(page, "SMS to &#43;32 470") || !strings.Contains(page, "<svg") {
			t.Fatal("no history or chart on the page")
		}
	}
	// The banner says how much more than the balance the operation
	// needed (PROTOCOL §1.5: credit is what it needed), and only while the
	// balance is in fact short.
	_, page := e.get(rawLink("sms", tokA, "&credit=45&trial=1"))
	if !strings.Contains(page, `id="missing">Odoo needed 5 credits more than the account had.`) || !strings.Contains(page, "trial") {
		t.Fatalf("missing credit not shown:\n%s", page)
	}
	_, page = e.get(rawLink("sms", tokA, "&credit=41"))
	if !strings.Contains(page, `id="missing">Odoo needed 1 credit more than the account had.`) {
		t.Fatalf("singular shortfall:\n%s", page)
	}
	if _, page = e.get(rawLink("sms", tokA, "&credit=3")); strings.Contains(page, `id="missing"`) {
		t.Fatalf("a shortfall banner while the balance covers the need:\n%s", page)
	}
	// 19.0: SHA-1 of the token, hashed=1, no credit (fixtures/odoo19/README.md).
	st, page := e.get(hashedLink("sms", tokA))
	if st != 200 || field(t, page, "available") != "40" {
		t.Fatalf("hashed link: %d", st)
	}
	// Upper-case hex reads the same.
	if st, _ := e.get(strings.Replace(hashedLink("sms", tokA), hashHex(tokA), strings.ToUpper(hashHex(tokA)), 1)); st != 200 {
		t.Fatalf("upper-case hash: %d", st)
	}
}

func TestHashedLinkOfAnAccountCreatedLater(t *testing.T) {
	e := newEnv(t, Config{})
	if st, _ := e.get(hashedLink("sms", tokB)); st != 404 {
		t.Fatalf("hashed link before the account exists: %d", st)
	}
	// Created by Odoo's first call: its hashed link works at once (the
	// ledger indexes it with the account; nothing to rebuild).
	e.account(storage.SMS, tokB, "1")
	if st, _ := e.get(hashedLink("sms", tokB)); st != 200 {
		t.Fatalf("hashed link of a new account: %d", st)
	}
	if st, _ := e.get(hashedLink("sms", "99999999999999999999999999999999")); st != 404 {
		t.Fatalf("unknown hash: %d", st)
	}
}

// Every wrong link gets the very same answer as an unknown one (no
// enumeration), and the raw token never reaches the logs.
func TestNoEnumeration(t *testing.T) {
	e := newEnv(t, Config{FailedLookupsBurst: 1000})
	e.account(storage.SMS, tokA, "5")
	const unknown = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	links := []string{
		rawLink("sms", unknown, ""),
		rawLink("sms", tokA[:31], ""),   // a prefix of a real token
		rawLink("snailmail", tokA, ""),  // the right token, another service
		rawLink("nosuch", tokA, ""),     // no such service
		rawLink("sms", "", ""),          // empty
		rawLink("sms", "bad token", ""), // malformed
		rawLink("SMS!", tokA, ""),       // malformed service
		hashedLink("sms", unknown),      // unknown hash
		hashedLink("snailmail", tokA),   // right hash, another service
		CreditPath + "?service_name=sms&hashed=1&account_token=" + hashHex(tokA)[:39] + "x", // malformed hash
		CreditPath + "?service_name=sms&hashed=1&account_token=" + tokA,                     // raw token sent as a hash
		SMSAccountPath + "?account_token=" + unknown,
		MyAccountPath + "?hashed=1&account_token=" + hashHex(unknown),
		AllServicesPath + "?hashed=1&account_tokens=" + hashHex(unknown) + "," + hashHex(tokB),
		ServicesPath + "?dbuuid=db-1", // a database uuid alone is no credential
		ServicesPath + "?tokens=" + unknown,
		HistoryCSVPath + "?service_name=sms&hashed=1&account_token=" + hashHex(unknown),
	}
	_, want := e.get(links[0])
	for _, l := range links {
		st, h, body := e.do("GET", l, nil, nil)
		if st != 404 || body != want {
			t.Errorf("%s: %d, body differs from the unknown-token page: %v", l, st, body != want)
		}
		if h.Get("Content-Security-Policy") == "" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: security headers missing", l)
		}
	}
	// A POST naming a wrong account: the same page.
	st, _, body := e.do("POST", FormPath, url.Values{"service_name": {"sms"}, "account_token": {hashHex(unknown)}, "hashed": {"1"},
		"action": {"redeem"}, "code": {"7K3QF-9ZC1M-T4WXA-0B8RD"}}, nil)
	if st != 404 || body != want {
		t.Errorf("POST with a wrong account: %d", st)
	}
	e.logMu.Lock()
	logs := e.logs.String()
	e.logMu.Unlock()
	for _, secret := range []string{tokA, hashHex(tokA), unknown} {
		if strings.Contains(logs, secret) {
			t.Fatalf("a token or its hash is in the logs:\n%s", logs)
		}
	}
}

func TestFailedLookupsAreRateLimited(t *testing.T) {
	e := newEnv(t, Config{FailedLookupsPerMinute: 1, FailedLookupsBurst: 3})
	e.account(storage.SMS, tokA, "5")
	for i := range 3 {
		if st, _ := e.get(hashedLink("sms", fmt.Sprintf("%032x", i+1))); st != 404 {
			t.Fatalf("failure %d: %d", i, st)
		}
	}
	// Out of failed lookups: wrong and right links alike wait.
	for _, l := range []string{hashedLink("sms", "ffffffffffffffffffffffffffffffff"), hashedLink("sms", tokA)} {
		st, h, _ := e.do("GET", l, nil, nil)
		if st != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
			t.Fatalf("%s after the burst: %d, Retry-After %q", l, st, h.Get("Retry-After"))
		}
	}
	// Another client is not affected; an IPv6 client is limited by its /64.
	if st, _, _ := e.do("GET", hashedLink("sms", tokA), nil, map[string]string{"X-Test-IP": "198.51.100.7"}); st != 200 {
		t.Fatalf("another client: %d", st)
	}
	for i := range 3 {
		e.do("GET", hashedLink("sms", "ffffffffffffffffffffffffffffffff"), nil, map[string]string{"X-Test-IP": fmt.Sprintf("2001:db8::%x", i+1)})
	}
	if st, _, _ := e.do("GET", hashedLink("sms", tokA), nil, map[string]string{"X-Test-IP": "2001:db8::ffff"}); st != 429 {
		t.Fatalf("same /64: %d", st)
	}
}

func (e *env) csrfFor(link string) string {
	e.t.Helper()
	st, page := e.get(link)
	if st != 200 {
		e.t.Fatalf("%s: %d", link, st)
	}
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		e.t.Fatal("no csrf field")
	}
	return m[1]
}

func (e *env) createVoucher(svc storage.ServiceName, amount string, expires time.Time) string {
	e.t.Helper()
	code, err := voucher.New()
	if err != nil {
		e.t.Fatal(err)
	}
	h, _ := voucher.Hash(code)
	a, _ := storage.ParseCredits(amount)
	if err := e.ledger.CreateVouchers(context.Background(), []storage.Voucher{{CodeHash: h, Service: svc, Amount: a, ExpiresAt: expires}}); err != nil {
		e.t.Fatal(err)
	}
	return code
}

func redeemForm(tok, csrf, code string) url.Values {
	return url.Values{"action": {"redeem"}, "service_name": {"sms"}, "account_token": {hashHex(storage.AccountToken(tok))},
		"hashed": {"1"}, "dbuuid": {"db-1"}, "csrf": {csrf}, "code": {code}}
}

func msgOf(t *testing.T, h http.Header) string {
	t.Helper()
	u, err := url.Parse(h.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("msg")
}

// Many concurrent redemptions of one voucher through the page credit it
// once.
func TestConcurrentRedemptionCreditsOnce(t *testing.T) {
	e := newEnv(t, Config{})
	e.account(storage.SMS, tokA, "1")
	e.account(storage.SMS, tokB, "")
	code := e.createVoucher(storage.SMS, "25", time.Time{})
	csrfA, csrfB := e.csrfFor(hashedLink("sms", tokA)), e.csrfFor(hashedLink("sms", tokB))
	const n = 32
	var wg sync.WaitGroup
	results := make(chan string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, csrf := tokA, csrfA
			if i%2 == 1 {
				tok, csrf = tokB, csrfB
			}
			st, h, _ := e.do("POST", FormPath, redeemForm(tok, csrf, strings.ToLower(code)), map[string]string{"Origin": e.base})
			if st != http.StatusSeeOther {
				results <- fmt.Sprintf("status %d", st)
				return
			}
			results <- msgOf(t, h)
		}()
	}
	wg.Wait()
	close(results)
	count := map[string]int{}
	for r := range results {
		count[r]++
	}
	if count["redeemed"] != 1 || count["voucher-used"] != n-1 {
		t.Fatalf("outcomes %v: want one redeemed", count)
	}
	ctx := context.Background()
	a, _ := e.ledger.LookupAccount(ctx, storage.SMS, tokA)
	b, _ := e.ledger.LookupAccount(ctx, storage.SMS, tokB)
	if a.Available+b.Available != 26*storage.Scale {
		t.Fatalf("credited %s + %s, want 25 once (+1)", a.Available, b.Available)
	}
	// The redemption is in the history of the account that won.
	winner := tokA
	if b.Available > 0 {
		winner = tokB
	}
	_, page := e.get(hashedLink("sms", winner))
	if !strings.Contains(page, `<td class="what">Recharge: voucher</td>`) || !strings.Contains(page, "&#43;25") {
		t.Fatalf("redemption not in the history:\n%s", page)
	}
}

func TestVoucherOutcomes(t *testing.T) {
	e := newEnv(t, Config{})
	e.account(storage.SMS, tokA, "")
	csrf := e.csrfFor(hashedLink("sms", tokA))
	post := func(code string) string {
		st, h, _ := e.do("POST", FormPath, redeemForm(tokA, csrf, code), nil)
		if st != http.StatusSeeOther {
			t.Fatalf("redeem: %d", st)
		}
		return msgOf(t, h)
	}
	expired := e.createVoucher(storage.SMS, "5", time.Now().Add(-time.Second+time.Millisecond))
	other := e.createVoucher(storage.Snailmail, "5", time.Time{})
	time.Sleep(2 * time.Millisecond) // let the expiry pass on the real clock
	for code, want := range map[string]string{
		"not a code":              "voucher-form",
		"00000-00000-00000-00000": "voucher-bad",
		other:                     "voucher-bad", // another service's: the same answer as none
		expired:                   "voucher-used",
	} {
		if got := post(code); got != want {
			t.Errorf("%q: %s, want %s", code, got, want)
		}
	}
	// The message the redirect names is shown, from a closed list.
	st, h, _ := e.do("POST", FormPath, redeemForm(tokA, csrf, "x"), nil)
	_, page := e.get(h.Get("Location"))
	if st != 303 || !strings.Contains(page, `id="message"`) {
		t.Fatalf("no message shown after the redirect")
	}
	_, page = e.get(hashedLink("sms", tokA) + "&msg=%3Cscript%3E")
	if strings.Contains(page, `id="message"`) || strings.Contains(page, "<script>") {
		t.Fatal("an unknown msg is shown")
	}
}

func TestFormsNeedCSRFAndSameOrigin(t *testing.T) {
	e := newEnv(t, Config{})
	e.account(storage.SMS, tokA, "")
	e.account(storage.SMS, tokB, "")
	code := e.createVoucher(storage.SMS, "5", time.Time{})
	csrfB := e.csrfFor(hashedLink("sms", tokB))
	for name, f := range map[string]url.Values{
		"no csrf":                 redeemForm(tokA, "", code),
		"another account's token": redeemForm(tokA, csrfB, code),
		"garbage":                 redeemForm(tokA, "AAAA", code),
	} {
		st, h, _ := e.do("POST", FormPath, f, nil)
		if st != 303 || msgOf(t, h) != "expired-form" {
			t.Errorf("%s: %d %s", name, st, h.Get("Location"))
		}
	}
	csrfA := e.csrfFor(hashedLink("sms", tokA))
	if st, _, _ := e.do("POST", FormPath, redeemForm(tokA, csrfA, code), map[string]string{"Origin": "https://evil.example"}); st != 403 {
		t.Errorf("cross-origin form: %d", st)
	}
	if st, _, _ := e.do("POST", FormPath, redeemForm(tokA, csrfA, code), map[string]string{"Sec-Fetch-Site": "cross-site"}); st != 403 {
		t.Errorf("cross-site form: %d", st)
	}
	a, _ := e.ledger.LookupAccount(context.Background(), storage.SMS, tokA)
	if a.Available != 0 {
		t.Fatalf("a refused form credited %s", a.Available)
	}
	// The CSRF token of a window ago is still good; of two windows ago not.
	c := csrf{key: bytes.Repeat([]byte{7}, SecretSize)}
	now := time.Now()
	if !c.valid(c.token(storage.SMS, tokA, now.Add(-csrfWindow)), storage.SMS, tokA, now) ||
		c.valid(c.token(storage.SMS, tokA, now.Add(-2*csrfWindow)), storage.SMS, tokA, now) {
		t.Fatal("csrf windows")
	}
}

func TestAlertSettingsForm(t *testing.T) {
	e := newEnv(t, Config{})
	e.account(storage.SMS, tokA, "")
	csrf := e.csrfFor(hashedLink("sms", tokA))
	form := func(th, rcpt string) url.Values {
		return url.Values{"action": {"alerts"}, "service_name": {"sms"}, "account_token": {hashHex(tokA)}, "hashed": {"1"},
			"csrf": {csrf}, "enabled": {"1"}, "threshold": {th}, "recipients": {rcpt}}
	}
	st, h, _ := e.do("POST", FormPath, form("12.5", "ana@example.com fr_FR\r\nbob@example.org"), nil)
	if st != 303 || msgOf(t, h) != "alerts-saved" {
		t.Fatalf("save: %d %s", st, h.Get("Location"))
	}
	a, _ := e.ledger.LookupAccount(context.Background(), storage.SMS, tokA)
	want := []storage.Recipient{{Email: "ana@example.com", Lang: "fr_FR"}, {Email: "bob@example.org"}}
	if !a.Alerts.Enabled || a.Alerts.Threshold != 125000 || fmt.Sprint(a.Alerts.Recipients) != fmt.Sprint(want) {
		t.Fatalf("alerts %+v", a.Alerts)
	}
	_, page := e.get(hashedLink("sms", tokA))
	if !strings.Contains(page, `value="12.5"`) || !strings.Contains(page, "ana@example.com fr_FR") {
		t.Fatal("saved settings not shown")
	}
	for _, bad := range [][2]string{{"-1", ""}, {"abc", ""}, {"1", "not an address"}, {"1", "a@b.c xx-YY-zz"}, {"1", strings.Repeat("a@b.co\n", 21)}} {
		st, h, _ := e.do("POST", FormPath, form(bad[0], bad[1]), nil)
		if st != 303 || msgOf(t, h) != "alerts-bad" {
			t.Errorf("%q: %s", bad, h.Get("Location"))
		}
	}
	a2, _ := e.ledger.LookupAccount(context.Background(), storage.SMS, tokA)
	if fmt.Sprint(a2.Alerts) != fmt.Sprint(a.Alerts) {
		t.Fatal("a refused form changed the settings")
	}
}

func TestHistoryPagesPeriodCSVChart(t *testing.T) {
	e := newEnv(t, Config{HistoryPageSize: 5})
	e.account(storage.SMS, tokA, "100")
	for i := range 12 {
		e.consume(storage.SMS, tokA, "1.5", fmt.Sprintf("batch %02d", i))
	}
	// 1 recharge + 12 × (hold, capture) = 25 entries, 13 operations: a
	// hold and its capture are one row.
	link := hashedLink("sms", tokA)
	seen := 0
	for page := 0; link != ""; page++ {
		_, body := e.get(link)
		seen += strings.Count(body, "<tr class=\"op ")
		m := regexp.MustCompile(`href="([^"]+)" id="older"`).FindStringSubmatch(body)
		link = ""
		if m != nil {
			link = strings.ReplaceAll(m[1], "&amp;", "&")
		}
		if page > 10 {
			t.Fatal("pagination does not end")
		}
	}
	if seen != 13 {
		t.Fatalf("%d rows over the pages, want 13", seen)
	}
	// CSV: every entry, with descriptions.
	st, h, csvBody := e.do("GET", HistoryCSVPath+"?service_name=sms&hashed=1&account_token="+hashHex(tokA), nil, nil)
	if st != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/csv") || strings.Count(csvBody, "\n") != 26 ||
		!strings.Contains(csvBody, ",capture,-1.5,") || !strings.Contains(csvBody, "batch 11") {
		t.Fatalf("csv %d:\n%s", st, csvBody)
	}
	// A period without entries.
	_, body := e.get(hashedLink("sms", tokA) + "&since=2001-01-01&until=2001-01-31")
	if !strings.Contains(body, "No operations in this period.") {
		t.Fatal("period filter")
	}
	_, _, csvOld := e.do("GET", HistoryCSVPath+"?service_name=sms&hashed=1&until=2001-01-31&account_token="+hashHex(tokA), nil, nil)
	if strings.Count(csvOld, "\n") != 1 {
		t.Fatalf("csv of an empty period:\n%s", csvOld)
	}
	// Today's bar is the 18 consumed today.
	_, body = e.get(hashedLink("sms", tokA))
	today := time.Now().UTC().Format(time.DateOnly)
	if !strings.Contains(body, "<title>"+today+": 18</title>") || !strings.Contains(body, "18 credits consumed") {
		t.Fatalf("chart of today:\n%s", body)
	}
}

func TestCSVDefusesFormulas(t *testing.T) {
	if csvText("=HYPERLINK(1)") != "'=HYPERLINK(1)" || csvText("SMS") != "SMS" {
		t.Fatal("csvText")
	}
}

func TestOverviewAndSMSPages(t *testing.T) {
	e := newEnv(t, Config{})
	e.account(storage.SMS, tokA, "3")
	e.account(storage.Snailmail, tokA, "4")
	e.account(storage.SMS, tokB, "7")
	sender := "ACME"
	if _, err := e.ledger.UpdateAccount(context.Background(), storage.SMS, tokA, storage.AccountUpdate{SenderName: &sender}); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{
		MyAccountPath + "?dbuuid=db-1&service_name=sms&hashed=1&account_token=" + hashHex(tokA),
		AllServicesPath + "?db_uuid=db-1&hashed=1&account_tokens=" + hashHex(tokA) + "," + hashHex(tokB),
		ServicesPath + "?dbuuid=db-1&tokens=" + tokA + "&tokens=" + tokB,
	} {
		st, body := e.get(l)
		if st != 200 || !strings.Contains(body, "Send SMS") || !strings.Contains(body, "Send letters by post") || !strings.Contains(body, `balance">4</span> <span class="unit">Stamps`) {
			t.Fatalf("%s: %d\n%s", l, st, body)
		}
		if strings.Contains(l, tokB) || strings.Contains(l, hashHex(tokB)) {
			if !strings.Contains(body, `balance">7</span> <span class="unit">Credits`) {
				t.Fatalf("%s: the second token's account is missing", l)
			}
		}
		if strings.Contains(body, tokA) {
			t.Fatal("a raw token in an overview page")
		}
	}
	st, body := e.get(SMSAccountPath + "?account_token=" + tokA)
	if st != 200 || field(t, body, "state") != "registered" || field(t, body, "sender") != "ACME" || field(t, body, "available") != "3" {
		t.Fatalf("sms page %d:\n%s", st, body)
	}
}

func TestSecurityHeadersAndStyle(t *testing.T) {
	e := newEnv(t, Config{})
	e.account(storage.SMS, tokA, "1")
	_, h, page := e.do("GET", hashedLink("sms", tokA), nil, nil)
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "form-action 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %s", csp, want)
		}
	}
	if h.Get("Referrer-Policy") != "no-referrer" || h.Get("X-Frame-Options") != "DENY" || h.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", h)
	}
	// No external asset, no script.
	if strings.Contains(page, "<script") || regexp.MustCompile(`(src|href)="https?://`).MatchString(page) {
		t.Fatal("the page loads something from elsewhere or runs a script")
	}
	st, h, css := e.do("GET", StylePath, nil, nil)
	if st != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/css") || !strings.Contains(css, "body") {
		t.Fatalf("style: %d", st)
	}
	// A form needs a form body.
	if st, _, _ := e.do("POST", FormPath, nil, map[string]string{"Content-Type": "application/json"}); st != 415 {
		t.Fatalf("JSON POST: %d", st)
	}
}

func TestPacksShopLinkAndServiceInfo(t *testing.T) {
	cfg := Config{
		ShopURL: "https://shop.example.com/buy?svc={service}&pack={pack}&name={pack_name}&acct={account_hash}&db={dbuuid}",
		Packs: map[string][]PackConfig{"sms": {
			{Name: "Starter", Credits: "100", Price: "9.9", Currency: "EUR"},
			{Name: "Pro & more", Credits: "1000", Price: "79", Currency: "EUR"},
		}},
		PriceDescription: map[string]string{"sms": "About 0.08 EUR per SMS"},
	}
	e := newEnv(t, cfg)
	e.account(storage.SMS, tokA, "1")
	_, page := e.get(rawLink("sms", tokA, ""))
	for _, want := range []string{"Starter", "9.90 EUR", "79.00 EUR", "About 0.08 EUR per SMS",
		`href="https://shop.example.com/buy?svc=sms&amp;pack=2&amp;name=Pro&#43;%26&#43;more&amp;acct=` + hashHex(tokA) + `&amp;db=db-1"`,
		`rel="noopener noreferrer"`} {
		if !strings.Contains(page, want) {
			t.Fatalf("the page lacks %s:\n%s", want, page)
		}
	}
	if strings.Contains(page, "shop.example.com/buy?svc=sms&amp;pack=1&amp;name=Starter&amp;acct="+tokA) {
		t.Fatal("raw token in a shop link")
	}
	// get-accounts-information carries the packs for post-19.0 clients (§4.4).
	body := `{"jsonrpc":"2.0","method":"call","id":"1","params":{"dbuuid":"db-1","iap_accounts":[{"token":"` + tokA + `","service":"sms"}]}}`
	resp, err := http.Post(e.base+"/iap/1/get-accounts-information", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Result map[string]map[string]json.RawMessage
	}
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	got := string(out.Result[tokA]["service"])
	want := `{"description":"Send SMS","price_description":"About 0.08 EUR per SMS","packs":[{"id":1,"name":"Starter","credit":100,"price":9.9},{"id":2,"name":"Pro \u0026 more","credit":1000,"price":79}]}`
	if got != want {
		t.Fatalf("service %s\nwant    %s\n(%s)", got, want, raw)
	}
}

func TestServiceInfoOnlyWhenConfigured(t *testing.T) {
	c := Config{}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.ServiceInfo(storage.SMS, "Send SMS"); ok {
		t.Fatal("a service without packs sends a service object (the 18.0 fixtures' key set must stay)")
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{ShopURL: "https://s.example/{service}", Packs: map[string][]PackConfig{"sms": {{Name: "A", Credits: "1", Price: "0.5", Currency: "USD"}}}}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	if good.FailedLookupsBurst != DefaultFailedLookupsBurst || good.HistoryPageSize != DefaultHistoryPageSize || len(good.PacksOf(storage.SMS)) != 1 {
		t.Fatalf("defaults %+v", good)
	}
	for name, c := range map[string]Config{
		"token placeholder": {ShopURL: "https://s.example/?t={token}"},
		"relative shop":     {ShopURL: "/shop"},
		"javascript shop":   {ShopURL: "javascript:alert(1)"},
		"bad service":       {Packs: map[string][]PackConfig{"SMS!": {{Name: "A", Credits: "1", Price: "1", Currency: "EUR"}}}},
		"zero credits":      {Packs: map[string][]PackConfig{"sms": {{Name: "A", Credits: "0", Price: "1", Currency: "EUR"}}}},
		"float price":       {Packs: map[string][]PackConfig{"sms": {{Name: "A", Credits: "1", Price: "0.123456", Currency: "EUR"}}}},
		"currency":          {Packs: map[string][]PackConfig{"sms": {{Name: "A", Credits: "1", Price: "1", Currency: "euro"}}}},
		"no name":           {Packs: map[string][]PackConfig{"sms": {{Credits: "1", Price: "1", Currency: "EUR"}}}},
		"page size":         {HistoryPageSize: 100000},
		"header":            {ClientIPHeader: "X Real IP"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLoadSecret(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadSecret(dir)
	if err != nil || len(a) != SecretSize {
		t.Fatal(err)
	}
	b, err := LoadSecret(dir)
	if err != nil || !bytes.Equal(a, b) {
		t.Fatal("the secret changed between loads")
	}
}

// A JSON-RPC POST to the page's path is no form: it gets the router's
// NotFound envelope like any unknown route (the page answers GET only).
func TestJSONRPCPostToCreditPageIsNotFound(t *testing.T) {
	e := newEnv(t, Config{})
	st, _, body := e.do("POST", CreditPath, nil, map[string]string{"Content-Type": "application/json"})
	if st != 200 || !strings.Contains(body, `"error"`) || !strings.Contains(body, `"code":404`) {
		t.Fatalf("%d %s", st, body)
	}
	if st, h, _ := e.do("GET", FormPath, nil, nil); st != 405 || h.Get("Allow") != "POST" {
		t.Fatalf("GET of the form path: %d", st)
	}
}

// BenchmarkCreditPage measures one hashed credit page (50 entries of
// history and the 30-day chart of 200 captures) over HTTP.
func BenchmarkCreditPage(b *testing.B) {
	e := newEnv(b, Config{})
	e.account(storage.SMS, tokA, "1000")
	for i := range 100 {
		e.consume(storage.SMS, tokA, "1", fmt.Sprintf("SMS %d", i))
	}
	link := hashedLink("sms", tokA)
	for b.Loop() {
		if st, _ := e.get(link); st != 200 {
			b.Fatal(st)
		}
	}
}
