package portal

import (
	"bytes"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/storage"
)

// packView is a pack as the page shows it.
type packView struct {
	Pack
	Link string
	Buy  string // online payment (pay.go)
}

// creditData is what the credit page shows.
type creditData struct {
	chrome
	Account      storage.Account
	Service      storage.Service
	Unit         string
	Missing      storage.Credits // what the operation Odoo tried needed (16.0–18.0 credit=)
	Short        storage.Credits // Missing less the available credit, when positive
	Pending      []pendingRow    // holds in progress
	Trial        bool
	Message      string
	MessageOK    bool
	Packs        []packView
	PriceDesc    string
	ShopLink     string
	Vouchers     bool
	CSRF         string
	Hash         string
	DBUUID       string
	Recipients   string
	History      historyPage
	CanRecharge  bool
	Self         string // this page, hashed form, without filters
	ChartEntries int
	Pay          bool // online payment of packs (pay.go)
}

// credit serves /iap/1/credit (GET): the account, how to recharge, the
// history and the alert settings. Its forms post to FormPath; a POST here
// (a JSON-RPC client, never Odoo) gets the router's NotFound envelope, as
// for an unknown route.
func (r *request) credit() {
	if r.ctx.IsPost() {
		rpc.AnswerNotFound(r.ctx)
		return
	}
	hashed := isHashed(r.query("hashed"))
	a, ok := r.account(r.query("service_name"), r.query("account_token"), hashed)
	if !ok {
		return
	}
	d := creditData{chrome: chrome{Title: "title.credit"}, Account: a, DBUUID: cleanDBUUID(r.query("dbuuid")), Hash: hashHex(a.Token)}
	d.Service = r.p.services(r.context())[a.Service]
	d.Unit = unitOf(d.Service)
	if !hashed {
		// 16.0–18.0 say what the refused operation needed (the
		// InsufficientCredit payload's credit, PROTOCOL §1.5); 19.0 sends
		// no credit. The banner shows only while the balance is short.
		if c, err := storage.ParseCredits(strings.TrimSpace(r.query("credit"))); err == nil {
			d.Missing = c
			if c > a.Available {
				d.Short = c - a.Available
			}
		}
		d.Trial = isHashed(r.query("trial"))
	}
	if code := r.p.csrf.flash(a.Service, a.Token, r.query("msg"), r.query("mt"), r.query("ms"), r.now); code != "" {
		d.show(code)
	}
	d.CanRecharge = a.State != storage.Banned
	for _, pk := range r.p.cfg.PacksOf(a.Service) {
		d.Packs = append(d.Packs, packView{Pack: pk, Link: r.p.cfg.shopLink(a.Service, &pk, d.Hash, d.DBUUID)})
	}
	r.payPage(a, &d)
	d.PriceDesc = r.p.cfg.PriceDescription[string(a.Service)]
	d.ShopLink = r.p.cfg.shopLink(a.Service, nil, d.Hash, d.DBUUID)
	d.Vouchers = r.p.vouchers != nil
	d.CSRF = r.p.csrf.token(a.Service, a.Token, r.now)
	d.Recipients = formatRecipients(a.Alerts.Recipients)
	d.Self = creditLink(a.Service, a.Token, d.DBUUID, nil)
	hp, err := r.history(a, d.DBUUID)
	if err != nil {
		r.failure(err)
		return
	}
	d.History = hp
	if d.Pending, err = r.pending(a); err != nil {
		r.failure(err)
		return
	}
	r.render(fasthttp.StatusOK, "credit", &d)
}

// creditPost serves FormPath: it runs a form of the credit page (redeem
// a voucher, save the alert settings) and redirects back to the page.
// Only POST; JSON-RPC clients posting to /iap/1/credit get the router's
// NotFound, as for any unknown route.
func (r *request) creditPost() {
	if !r.ctx.IsPost() {
		r.httpError("405 Method Not Allowed", fasthttp.StatusMethodNotAllowed)
		r.ctx.Response.Header.Set("Allow", "POST")
		return
	}
	if !bytes.HasPrefix(r.ctx.Request.Header.ContentType(), []byte("application/x-www-form-urlencoded")) {
		r.httpError("415 Unsupported Media Type", fasthttp.StatusUnsupportedMediaType)
		return
	}
	// A browser says where a form comes from: only this site may post
	// (the CSRF token is the guarantee; this refuses early). Under
	// Referrer-Policy no-referrer a browser sends "Origin: null" for its
	// own forms, so Sec-Fetch-Site decides when present.
	if s := string(r.ctx.Request.Header.Peek("Sec-Fetch-Site")); s != "" {
		if s != "same-origin" && s != "none" {
			r.httpError("403 Forbidden: cross-site form", fasthttp.StatusForbidden)
			return
		}
	} else if o := string(r.ctx.Request.Header.Peek("Origin")); o != "" && o != "null" && o != r.p.origin {
		r.httpError("403 Forbidden: cross-origin form", fasthttp.StatusForbidden)
		return
	}
	f := r.ctx.PostArgs()
	form := func(k string) string { return string(f.Peek(k)) }
	a, ok := r.account(form("service_name"), form("account_token"), isHashed(form("hashed")))
	if !ok {
		return
	}
	msg := "expired-form"
	if r.p.csrf.valid(form("csrf"), a.Service, a.Token, r.now) {
		switch form("action") {
		case "redeem":
			msg = "registered-no"
			if a.State != storage.Banned {
				msg = r.redeem(a, form("code"))
			}
		case "alerts":
			msg = r.saveAlerts(a, form("enabled") != "", form("threshold"), form("recipients"))
		default:
			r.httpError("400 Bad Request: unknown action", fasthttp.StatusBadRequest)
			return
		}
	}
	dbuuid := cleanDBUUID(form("dbuuid"))
	// Post/redirect/get: reloading the page does not post again.
	r.ctx.Response.Header.Set("Location", r.p.resultLink(a.Service, a.Token, dbuuid, msg, r.now))
	r.ctx.SetStatusCode(fasthttp.StatusSeeOther)
}

// Bounds of the alert settings form.
const maxEmail = 254

var langRE = regexp.MustCompile(`^[a-z]{2,3}(_[A-Z]{2})?(@[a-z]+)?$`)

// saveAlerts stores the alert settings edited on the page (the same
// settings Odoo pushes, PROTOCOL §4.3, §4.5).
func (r *request) saveAlerts(a storage.Account, enabled bool, threshold, recipients string) string {
	th := storage.Credits(0)
	if t := strings.TrimSpace(threshold); t != "" {
		c, err := storage.ParseCredits(t)
		if err != nil {
			return "alerts-bad"
		}
		th = c
	}
	rs, ok := parseRecipients(recipients, r.p.maxRecipients)
	if !ok {
		return "alerts-bad"
	}
	al := storage.Alerts{Enabled: enabled, Threshold: th, Recipients: rs}
	if _, err := r.p.ledger.UpdateAccount(r.context(), a.Service, a.Token, storage.AccountUpdate{Alerts: &al}); err != nil {
		r.p.log.Error("portal: saving alert settings", "service", a.Service, "account", rpc.TokenRef(a.Token), "err", err)
		return "unavailable"
	}
	r.p.log.Info("portal: alert settings saved", "service", a.Service, "account", rpc.TokenRef(a.Token))
	return "alerts-saved"
}

// parseRecipients reads one recipient per line (or comma): an e-mail
// address, optionally followed by a language code ("ana@example.com
// fr_FR"); at most maxRecipients.
func parseRecipients(text string, maxRecipients int) ([]storage.Recipient, bool) {
	var out []storage.Recipient
	for _, line := range strings.FieldsFunc(text, func(r rune) bool { return r == '\n' || r == '\r' || r == ',' || r == ';' }) {
		fs := strings.Fields(line)
		if len(fs) == 0 {
			continue
		}
		if len(fs) > 2 || len(fs[0]) > maxEmail {
			return nil, false
		}
		addr, err := mail.ParseAddress(fs[0])
		if err != nil || addr.Address != fs[0] {
			return nil, false
		}
		rc := storage.Recipient{Email: addr.Address}
		if len(fs) == 2 {
			if !langRE.MatchString(fs[1]) {
				return nil, false
			}
			rc.Lang = fs[1]
		}
		out = append(out, rc)
	}
	if len(out) > maxRecipients {
		return nil, false
	}
	return out, true
}

func formatRecipients(rs []storage.Recipient) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString(r.Email)
		if r.Lang != "" {
			b.WriteString(" " + r.Lang)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// unitOf is the service's unit as configured; "" is the default unit
// (credits, translated).
func unitOf(s storage.Service) string { return s.UnitName }

// overviewData is what an overview shows.
type overviewData struct {
	chrome
	Rows []overviewRow
}

// overviewRow is one account in an overview.
type overviewRow struct {
	Account storage.Account
	Service storage.Service
	Unit    string
	Link    string
	Chart   chart
}

// overview renders the accounts of the tokens (at least one found, else
// the not-found page).
func (r *request) overview(toks []storage.AccountToken, dbuuid string) {
	svcs := r.p.services(r.context())
	var rows []overviewRow
	seen := map[storage.AccountToken]bool{}
	for _, tok := range toks {
		if seen[tok] {
			continue
		}
		seen[tok] = true
		accts, err := r.p.ledger.AccountsByToken(r.context(), tok)
		if err != nil {
			r.failure(err)
			return
		}
		for _, a := range accts {
			ch, _, err := r.dailyChart(a, time.Time{}, time.Time{})
			if err != nil {
				r.failure(err)
				return
			}
			rows = append(rows, overviewRow{Account: a, Service: svcs[a.Service], Unit: unitOf(svcs[a.Service]),
				Link: creditLink(a.Service, a.Token, dbuuid, nil), Chart: ch})
		}
	}
	if len(rows) == 0 {
		r.notFound()
		return
	}
	r.render(fasthttp.StatusOK, "overview", &overviewData{chrome: chrome{Title: "title.overview"}, Rows: rows})
}

// maxOverviewTokens bounds the tokens of one overview link (a database
// has one per service and company: a handful).
const maxOverviewTokens = 50

// overviewHashed serves /iap/1/my_account (one hashed token,
// account_token) and /iap/1/all-in-app-services (account_tokens,
// comma-joined hashes), both with hashed=1.
func (r *request) overviewHashed() {
	raw := r.query("account_tokens")
	if raw == "" {
		raw = r.query("account_token")
	}
	parts := strings.Split(raw, ",")
	if len(parts) > maxOverviewTokens {
		r.notFound()
		return
	}
	var toks []storage.AccountToken
	for _, h := range parts {
		if tok, ok := r.token(strings.TrimSpace(h), true); ok {
			toks = append(toks, tok)
		}
	}
	if len(toks) < len(parts) {
		r.p.limit.fail(r.client, r.now) // a wrong hash among them
	}
	dbuuid := r.query("db_uuid")
	if dbuuid == "" {
		dbuuid = r.query("dbuuid")
	}
	r.overview(toks, cleanDBUUID(dbuuid))
}

// overviewRaw serves Odoo 16.0's /iap/services: repeated tokens= (raw).
// The early 16.0 form with only dbuuid= names no account: a database's
// uuid is sent to every IAP service and is no credential, so it gets the
// not-found page.
func (r *request) overviewRaw() {
	vals := r.ctx.QueryArgs().PeekMulti("tokens")
	if len(vals) > maxOverviewTokens {
		r.notFound()
		return
	}
	var toks []storage.AccountToken
	for _, v := range vals {
		if tok, _, ok := storage.SplitToken(string(v)); ok {
			toks = append(toks, tok)
		}
	}
	if len(toks) < len(vals) {
		r.p.limit.fail(r.client, r.now)
	}
	r.overview(toks, cleanDBUUID(r.query("dbuuid")))
}

// smsData is what the SMS account page shows.
type smsData struct {
	chrome
	Account storage.Account
	Unit    string
	Link    string
}

// smsAccount serves <sms.endpoint>/1/account?account_token=… (the
// "Register now." link of 17.0+, PROTOCOL §4.7, §6.2): the SMS account's
// registration state and sender name. It never creates an account.
func (r *request) smsAccount() {
	a, ok := r.account(string(storage.SMS), r.query("account_token"), isHashed(r.query("hashed")))
	if !ok {
		return
	}
	svc := r.p.services(r.context())[a.Service]
	r.render(fasthttp.StatusOK, "sms", &smsData{chrome: chrome{Title: "title.sms"}, Account: a, Unit: unitOf(svc),
		Link: creditLink(a.Service, a.Token, cleanDBUUID(r.query("dbuuid")), nil)})
}

// parseDay reads a YYYY-MM-DD date (UTC); zero when empty or invalid.
func parseDay(s string) time.Time {
	t, err := time.Parse(time.DateOnly, strings.TrimSpace(s))
	if err != nil {
		return time.Time{}
	}
	return t
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

var dbuuidRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

// cleanDBUUID keeps a database uuid param only if it looks like one (it
// is carried into links and the shop URL).
func cleanDBUUID(s string) string {
	if dbuuidRE.MatchString(s) {
		return s
	}
	return ""
}
