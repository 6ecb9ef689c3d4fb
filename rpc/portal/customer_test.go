package portal

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
)

// The portal as a customer reads it (issue 17): the language, the
// history, the messages after an action, the branding.

func (e *env) getWith(path string, hdr map[string]string) (int, string) {
	st, _, b := e.do("GET", path, nil, hdr)
	return st, b
}

// rowsOf returns the text of the rows of a table (tags stripped).
func rowsOf(t *testing.T, page, tableID string) []string {
	t.Helper()
	i := strings.Index(page, `id="`+tableID+`"`)
	if i < 0 {
		return nil
	}
	body := page[i:]
	body = body[:strings.Index(body, "</table>")]
	var out []string
	tags := regexp.MustCompile(`<[^>]*>`)
	for _, tr := range regexp.MustCompile(`(?s)<tr class="op[^"]*">(.*?)</tr>`).FindAllStringSubmatch(body, -1) {
		out = append(out, strings.Join(strings.Fields(tags.ReplaceAllString(tr[1], " ")), " "))
	}
	return out
}

// A hold and its capture are one row; a capture below its hold (the rest
// released) is one row; a cancelled hold is one row that consumed
// nothing; a hold in progress is listed apart, not in the history.
func TestHistoryOneRowPerOperation(t *testing.T) {
	e := newEnv(t, Config{})
	e.account(storage.SMS, tokA, "100")
	ctx := context.Background()
	e.consume(storage.SMS, tokA, "3", "SMS: 3 messages")
	c := func(s string) storage.Credits { v, _ := storage.ParseCredits(s); return v }
	// Held 5, captured 2: the rest goes back in the same step.
	tx, err := e.ledger.Authorize(ctx, storage.AuthorizeRequest{Service: storage.SMS, Account: tokA, Amount: c("5"), Description: "SMS: 5 messages, 3 failed", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	two := c("2")
	if _, err := e.ledger.Capture(ctx, storage.CaptureRequest{Service: storage.SMS, Transaction: tx.Token, Amount: &two}); err != nil {
		t.Fatal(err)
	}
	tx, err = e.ledger.Authorize(ctx, storage.AuthorizeRequest{Service: storage.SMS, Account: tokA, Amount: c("4"), Description: "Letter: cancelled", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ledger.Cancel(ctx, storage.SMS, tx.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ledger.Authorize(ctx, storage.AuthorizeRequest{Service: storage.SMS, Account: tokA, Amount: c("7"), Description: "SMS: 7 messages (sending)", TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	_, page := e.get(hashedLink("sms", tokA))
	got := rowsOf(t, page, "entries")
	// Newest first; the day and time are in each row.
	want := []string{"Letter: cancelled (cancelled, nothing consumed) 0", "SMS: 5 messages, 3 failed \u22122", "SMS: 3 messages \u22123", "Recharge: initial &#43;100"}
	if len(got) != len(want) {
		t.Fatalf("rows %q, want %d", got, len(want))
	}
	for i := range want {
		if !strings.HasSuffix(got[i], want[i]) {
			t.Errorf("row %d: %q, want …%q", i, got[i], want[i])
		}
	}
	pending := regexp.MustCompile(`(?s)id="pending-entries".*?</table>`).FindString(page)
	if !strings.Contains(pending, "SMS: 7 messages (sending)") || !strings.Contains(pending, "7 held") || strings.Contains(page[strings.Index(page, `id="entries"`):], "7 messages") {
		t.Fatalf("the hold in progress is not apart:\n%s", page)
	}
	// The CSV keeps every ledger entry: 1 + 2 + 3 + 2 + 1.
	_, _, csvBody := e.do("GET", HistoryCSVPath+"?service_name=sms&hashed=1&account_token="+hashHex(tokA), nil, nil)
	if n := strings.Count(csvBody, "\n") - 1; n != 9 {
		t.Fatalf("csv has %d entries, want 9", n)
	}
	// Pages of 2 rows: a capture and the release of its rest are never
	// split over two pages (no lone "cancelled" row for the rest).
	e2 := newEnv(t, Config{HistoryPageSize: 2})
	e2.account(storage.SMS, tokA, "100")
	for range 3 {
		tx, err := e2.ledger.Authorize(ctx, storage.AuthorizeRequest{Service: storage.SMS, Account: tokA, Amount: c("5"), Description: "partly used", TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e2.ledger.Capture(ctx, storage.CaptureRequest{Service: storage.SMS, Transaction: tx.Token, Amount: &two}); err != nil {
			t.Fatal(err)
		}
	}
	var all []string
	link := hashedLink("sms", tokA)
	for range 20 {
		_, body := e2.get(link)
		all = append(all, rowsOf(t, body, "entries")...)
		m := regexp.MustCompile(`href="([^"]+)" id="older"`).FindStringSubmatch(body)
		if m == nil {
			break
		}
		link = strings.ReplaceAll(m[1], "&amp;", "&")
	}
	if len(all) != 4 || strings.Contains(strings.Join(all, "|"), "cancelled") {
		t.Fatalf("rows over the pages: %q", all)
	}
}

// A message after an action is shown only from the server's own
// redirect: a crafted link shows nothing.
func TestForgedMessageLinkShowsNothing(t *testing.T) {
	e := newEnv(t, Config{})
	e.account(storage.SMS, tokA, "")
	e.account(storage.SMS, tokB, "")
	code := e.createVoucher(storage.SMS, "5", time.Time{})
	csrf := e.csrfFor(hashedLink("sms", tokA))
	st, h, _ := e.do("POST", FormPath, redeemForm(tokA, csrf, code), nil)
	loc := h.Get("Location")
	_, page := e.get(loc)
	if st != 303 || !strings.Contains(page, `id="message" class="msg ok" role="status">The voucher was redeemed`) {
		t.Fatalf("the real redirect shows no message: %d %s", st, loc)
	}
	u, _ := url.Parse(loc)
	q := u.Query()
	tamper := func(k, v string) string {
		q2 := url.Values{}
		for kk, vv := range q {
			q2[kk] = vv
		}
		if v == "" {
			q2.Del(k)
		} else {
			q2.Set(k, v)
		}
		return CreditPath + "?" + q2.Encode()
	}
	old := e.portal.csrf.flashParams(storage.SMS, tokA, "redeemed", time.Now().Add(-flashFor-time.Minute))
	forged := map[string]string{
		"msg only (the old link)":    hashedLink("sms", tokA) + "&msg=redeemed",
		"another message, same sig":  tamper("msg", "paid"),
		"no signature":               tamper("ms", ""),
		"another time":               tamper("mt", "1"),
		"another account":            strings.Replace(loc, hashHex(tokA), hashHex(tokB), 1),
		"expired":                    hashedLink("sms", tokA) + "&" + old.Encode(),
		"a signature of other bytes": tamper("ms", "AAAAAAAAAAAAAAAAAAAAAAAA"),
	}
	for name, l := range forged {
		st, page := e.get(l)
		if st != 200 || strings.Contains(page, `id="message"`) {
			t.Errorf("%s: %d, message shown", name, st)
		}
	}
	// The payments' return URL uses the same signature.
	if _, page := e.get(e.portal.ResultLink(storage.SMS, tokB, "db-1", "paid")); !strings.Contains(page, "the payment was received") {
		t.Fatal("ResultLink shows no message")
	}
}

// Pages and messages in the browser's language.
func TestPagesInTheBrowsersLanguage(t *testing.T) {
	e := newEnv(t, Config{})
	e.account(storage.SMS, tokA, "2.5")
	for _, c := range []struct{ header, lang, available, heading string }{
		{"fr-BE,fr;q=0.9,en;q=0.5", "fr", "Disponible", "Historique"},
		{"de-DE", "de", "Verfügbar", "Verlauf"},
		{"nl;q=0.9, en;q=0.1", "nl", "Beschikbaar", "Geschiedenis"},
		{"es-ES,es", "es", "Disponible", "Historial"},
		{"ja", "en", "Available", "History"},
	} {
		_, h, page := e.do("GET", rawLink("sms", tokA, "&credit=3"), nil, map[string]string{"Accept-Language": c.header})
		if !strings.Contains(page, `<html lang="`+c.lang+`">`) || !strings.Contains(page, c.available) || !strings.Contains(page, ">"+c.heading+"</h2>") ||
			h.Get("Content-Language") != c.lang || !strings.Contains(h.Get("Vary"), "Accept-Language") {
			t.Errorf("%s: not in %s:\n%s", c.header, c.lang, page)
		}
	}
	_, page := e.getWith(rawLink("sms", tokA, "&credit=3"), map[string]string{"Accept-Language": "fr"})
	if field(t, page, "available") != "2,5" || !strings.Contains(page, "Il manquait 0,5 crédit sur le compte") {
		t.Fatalf("French numbers and plurals:\n%s", page)
	}
	if _, page := e.getWith(hashedLink("sms", "ffffffffffffffffffffffffffffffff"), map[string]string{"Accept-Language": "de"}); !strings.Contains(page, "Konto nicht gefunden") {
		t.Fatal("the not-found page is not in German")
	}
}

// Branding: the name, the logo served by iapd itself, the support
// contact; the link back to the Odoo the customer came from.
func TestBrandingAndBackToOdoo(t *testing.T) {
	dir := t.TempDir()
	logo := filepath.Join(dir, "logo.svg")
	svg := `<svg xmlns="http://www.w3.org/2000/svg" width="80" height="20"><rect width="80" height="20" fill="#36c"/></svg>`
	if err := os.WriteFile(logo, []byte(svg), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Config{BrandName: "Acme <IAP>", LogoFile: logo, SupportEmail: "help@acme.example", SupportURL: "https://acme.example/help"})
	e.account(storage.SMS, tokA, "1")
	_, h, page := e.do("GET", hashedLink("sms", tokA), nil, map[string]string{"Referer": "https://mydb.odoo.example/odoo/action-123?debug=1"})
	for _, want := range []string{`id="brand">Acme &lt;IAP&gt;</span>`, `<img src="/iap/1/logo"`, `href="mailto:help@acme.example"`,
		`href="https://acme.example/help"`, `<a href="https://mydb.odoo.example" id="back"`, "Back to Odoo (mydb.odoo.example)"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if !strings.Contains(h.Get("Set-Cookie"), "iapd_odoo=https://mydb.odoo.example") || !strings.Contains(h.Get("Set-Cookie"), "HttpOnly") {
		t.Errorf("cookie %q", h.Get("Set-Cookie"))
	}
	// Later pages (no Referer: the portal sends none) keep the link.
	if _, page := e.getWith(hashedLink("sms", tokA), map[string]string{"Cookie": "iapd_odoo=https://mydb.odoo.example"}); !strings.Contains(page, `id="back"`) {
		t.Error("the back link is lost on the next page")
	}
	// Not from iapd itself, not a script, not with credentials.
	for _, ref := range []string{e.base + "/iap/1/credit", "javascript:alert(1)", "https://user:pw@evil.example/"} {
		if _, page := e.getWith(hashedLink("sms", tokA), map[string]string{"Referer": ref}); strings.Contains(page, `id="back"`) {
			t.Errorf("Referer %q gave a back link", ref)
		}
	}
	st, h, body := e.do("GET", LogoPath, nil, nil)
	if st != 200 || h.Get("Content-Type") != "image/svg+xml" || body != svg || !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("logo: %d %s", st, h.Get("Content-Type"))
	}
	// Bad configurations fail at start-up.
	bad := filepath.Join(dir, "logo.txt")
	_ = os.WriteFile(bad, []byte("not an image"), 0o600)
	if _, err := loadLogo(bad); err == nil {
		t.Error("a text file was accepted as a logo")
	}
	for _, c := range []Config{{SupportEmail: "not an address"}, {SupportURL: "javascript:alert(1)"}, {BrandName: "two\nlines"}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v validated", c)
		}
	}
}
