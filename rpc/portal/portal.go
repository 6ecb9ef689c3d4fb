package portal

import (
	"context"
	"crypto/sha1" // #nosec G505 -- Odoo 19's hashed token (PROTOCOL §4.7)
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/rpc/limit"
	"github.com/iapd/iapd/rpc/portal/voucher"
	"github.com/iapd/iapd/storage"
)

// Paths of the pages (PROTOCOL §4.7).
const (
	CreditPath      = "/iap/1/credit"
	FormPath        = "/iap/1/credit/form" // the credit page's forms post here
	HistoryCSVPath  = "/iap/1/credit/history.csv"
	MyAccountPath   = "/iap/1/my_account"
	ServicesPath    = "/iap/services"
	AllServicesPath = "/iap/1/all-in-app-services"
	SMSAccountPath  = "/1/account" // on sms.endpoint (§4.7, §6.2)
	StylePath       = "/iap/1/portal.css"
	LogoPath        = "/iap/1/logo" // the operator's logo (Config.LogoFile)
)

//go:embed assets
var assets embed.FS

// Deps are what the portal is built with.
type Deps struct {
	// Ledger is the credit ledger. Required.
	Ledger storage.Ledger
	// Vouchers redeems vouchers; nil hides the voucher form.
	Vouchers storage.Vouchers
	// Config is the portal section, validated.
	Config Config
	// Secret keys the CSRF tokens (LoadSecret); at least SecretSize bytes.
	Secret []byte
	// PublicURL is iapd's public URL: a form whose Origin is another is
	// refused.
	PublicURL string
	// Logger; nil discards. Tokens are never logged.
	Logger *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Refusals, if set, counts and logs the lookups refused by the
	// failed-lookup limits.
	Refusals *limit.Reporter
	// MaxAlertRecipients bounds the alert recipients of an account, as
	// on the rpc alert-settings routes; 0 is limit.DefaultAlertRecipients.
	MaxAlertRecipients int
	// Payments, if set, sells the packs online (pay.go): Buy buttons and
	// the provider's webhook. Registerer takes its metrics (optional).
	Payments   Payments
	Registerer prometheus.Registerer
}

// Portal serves the pages. Its handlers are safe for concurrent use.
type Portal struct {
	ledger   storage.Ledger
	vouchers storage.Vouchers
	cfg      Config
	csrf     csrf
	origin   string // scheme://host of PublicURL
	log      *slog.Logger
	now      func() time.Time
	index    *hashIndex
	limit    *limiter
	refusals *limit.Reporter
	// maxRecipients bounds the alert recipients of the settings form.
	maxRecipients int
	cat           catalogue
	tmpl          map[string]*template.Template // by language
	css           []byte
	logo          logo
	pay           *payState // nil: no online payment
}

// New builds the portal.
func New(d Deps) (*Portal, error) {
	if d.Ledger == nil {
		return nil, errors.New("portal: Ledger is required")
	}
	if len(d.Secret) < SecretSize {
		return nil, errors.New("portal: the secret is too short")
	}
	u, err := url.Parse(d.PublicURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("portal: PublicURL %q is not an absolute URL", d.PublicURL)
	}
	if d.Config.packs == nil {
		if err := d.Config.Validate(); err != nil {
			return nil, err
		}
	}
	p := &Portal{
		ledger:   d.Ledger,
		vouchers: d.Vouchers,
		cfg:      d.Config,
		csrf:     csrf{key: d.Secret},
		origin:   u.Scheme + "://" + u.Host,
		log:      d.Logger,
		now:      d.Now,
		index:    &hashIndex{ledger: d.Ledger},
		limit:    newLimiter(d.Config.FailedLookupsPerMinute, d.Config.FailedLookupsBurst, d.Config.FailedLookupsTotalPerMinute),
		refusals: d.Refusals,

		maxRecipients: d.MaxAlertRecipients,
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.maxRecipients <= 0 {
		p.maxRecipients = limit.DefaultAlertRecipients
	}
	if p.now == nil {
		p.now = time.Now
	}
	if d.Payments != nil {
		if p.pay, err = newPayState(d.Payments, d.Secret, d.Registerer); err != nil {
			return nil, fmt.Errorf("portal: payments: %w", err)
		}
	}
	if p.cat, err = loadCatalogue(localeFS); err != nil {
		return nil, fmt.Errorf("portal: locales: %w", err)
	}
	base, err := template.New("portal").Funcs(funcs).Funcs(langFuncs(translator{p.cat[DefaultLanguage], p.cat[DefaultLanguage]})).ParseFS(assets, "assets/*.html")
	if err != nil {
		return nil, fmt.Errorf("portal: templates: %w", err)
	}
	p.tmpl = map[string]*template.Template{}
	for lang, l := range p.cat {
		c, err := base.Clone()
		if err != nil {
			return nil, err
		}
		p.tmpl[lang] = c.Funcs(langFuncs(translator{l, p.cat[DefaultLanguage]}))
	}
	if d.Config.LogoFile != "" {
		if p.logo, err = loadLogo(d.Config.LogoFile); err != nil {
			return nil, err
		}
	}
	if p.css, err = assets.ReadFile("assets/portal.css"); err != nil {
		return nil, err
	}
	return p, nil
}

// Register adds the pages to s and makes get-accounts-information send
// the configured packs (PROTOCOL §4.4). The SMS account page is
// registered at SMSAccountPath (it replaces any earlier page there).
func (p *Portal) Register(s *rpc.Server) {
	s.HandlePage(CreditPath, p.page((*request).credit))
	s.HandlePage(FormPath, p.page((*request).creditPost))
	s.HandleGET(HistoryCSVPath, p.page((*request).historyCSV))
	s.HandleGET(MyAccountPath, p.page((*request).overviewHashed))
	s.HandleGET(AllServicesPath, p.page((*request).overviewHashed))
	s.HandleGET(ServicesPath, p.page((*request).overviewRaw))
	s.HandleGET(SMSAccountPath, p.page((*request).smsAccount))
	s.HandleGET(StylePath, p.style)
	if p.logo.body != nil {
		s.HandleGET(LogoPath, p.serveLogo)
	}
	s.SetServiceInfo(p.serviceInfo)
	if p.pay != nil {
		s.HandleGET(BuyPath, p.page((*request).buy))
		s.HandlePage(WebhookPath(p.pay.prov.Name()), p.webhook)
	}
}

func (p *Portal) serviceInfo(svc storage.ServiceName) (rpc.ServiceInfo, bool) {
	desc := string(svc)
	if s, err := p.ledger.Service(context.Background(), svc); err == nil && s.Description != "" {
		desc = s.Description
	}
	return p.cfg.ServiceInfo(svc, desc)
}

func (p *Portal) style(ctx *fasthttp.RequestCtx) {
	setSecurityHeaders(ctx)
	ctx.Response.Header.Set("Cache-Control", "public, max-age=3600")
	ctx.SetContentType("text/css; charset=utf-8")
	ctx.SetBody(p.css)
}

// page wraps a handler: security headers, methods, the rate limit of
// failed lookups.
func (p *Portal) page(h func(*request)) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		setSecurityHeaders(ctx)
		r := &request{ctx: ctx, p: p, client: clientKey(ctx, p.cfg.ClientIPHeader), now: p.now()}
		r.lang = p.cat.negotiate(string(ctx.Request.Header.Peek("Accept-Language")))
		r.tr = translator{p.cat[r.lang], p.cat[DefaultLanguage]}
		ctx.Response.Header.Set("Vary", "Accept-Language")
		ctx.Response.Header.Set("Content-Language", r.lang)
		// A page the client opened before stays open to it (GET only: a
		// form post may be a voucher guess).
		uri := string(ctx.RequestURI())
		get := ctx.IsGet() || ctx.IsHead()
		if blocked, wait, reason := p.limit.blocked(r.client, uri, r.now); blocked && (!get || !p.limit.isGood(r.client, uri, r.now)) {
			p.refusals.Refuse(reason, "portal: lookup refused: too many failed lookups", "path", string(ctx.Path()), "client", limit.KeyString(r.client))
			secs := int(wait/time.Second) + 1
			ctx.Response.Header.Set("Retry-After", strconv.Itoa(secs))
			r.render(fasthttp.StatusTooManyRequests, "limited", &limitedData{chrome: chrome{Title: "title.limited"}, Wait: storage.Credits(secs) * storage.Scale})
			return
		}
		h(r)
		if get && ctx.Response.StatusCode() == fasthttp.StatusOK {
			p.limit.found(r.client, uri, r.now)
		}
	}
}

// request is one page request being answered.
type request struct {
	ctx    *fasthttp.RequestCtx
	p      *Portal
	client string
	now    time.Time
	lang   string     // the page's language (Accept-Language)
	tr     translator // its texts
}

func (r *request) context() context.Context { return r.ctx }

func (r *request) query(name string) string { return string(r.ctx.QueryArgs().Peek(name)) }

// render writes a page in the request's language, with the operator's
// branding and the link back to Odoo.
func (r *request) render(status int, name string, data page) {
	c := data.base()
	c.Lang = r.lang
	c.BrandName = r.p.cfg.BrandName
	if c.BrandName == "" {
		c.BrandName = r.tr.T("brand.default")
	}
	c.Logo = r.p.logo.body != nil
	c.SupportEmail, c.SupportURL = r.p.cfg.SupportEmail, r.p.cfg.SupportURL
	c.Back, c.BackHost = r.backToOdoo()
	var b strings.Builder
	if err := r.p.tmpl[r.lang].ExecuteTemplate(&b, name, data); err != nil {
		r.p.log.Error("portal: rendering", "page", name, "err", err)
		r.httpError("500 Internal Server Error", fasthttp.StatusInternalServerError)
		return
	}
	r.ctx.SetStatusCode(status)
	r.ctx.SetContentType("text/html; charset=utf-8")
	r.ctx.SetBodyString(b.String())
}

// httpError answers a plain-text HTTP error (fasthttp's Error resets the
// headers: the security headers are set again).
func (r *request) httpError(msg string, status int) {
	r.ctx.Error(msg, status)
	setSecurityHeaders(r.ctx)
}

// notFound is the one answer to every unknown, wrong or malformed token
// or hash, whatever was wrong: it counts a failed lookup.
func (r *request) notFound() {
	r.p.limit.fail(r.client, r.now)
	r.render(fasthttp.StatusNotFound, "notfound", &chrome{Title: "title.notfound"})
}

// failure answers a ledger failure other than "not found".
func (r *request) failure(err error) {
	r.p.log.Error("portal: ledger", "path", string(r.ctx.Path()), "err", err)
	r.render(fasthttp.StatusServiceUnavailable, "error", &chrome{Title: "title.error"})
}

// resolve finds the account a link names: (svc, token) from a raw token
// (16.0–18.0, a "+suffix" ignored) or from the SHA-1 hex of the token
// with hashed=1 (19.0+). ok is false, whatever the reason, when there is
// no such account; err is a ledger failure.
func (r *request) resolve(svcParam, tokParam string, hashed bool) (storage.Account, bool, error) {
	if !storage.ValidServiceName(svcParam) {
		return storage.Account{}, false, nil
	}
	svc := storage.ServiceName(svcParam)
	tok, ok := r.token(tokParam, hashed)
	if !ok {
		return storage.Account{}, false, nil
	}
	a, err := r.p.ledger.LookupAccount(r.context(), svc, tok)
	if storage.Is(err, storage.NotFound) {
		return storage.Account{}, false, nil
	}
	if err != nil {
		return storage.Account{}, false, err
	}
	if subtle.ConstantTimeCompare([]byte(a.Token), []byte(tok)) != 1 {
		return storage.Account{}, false, nil
	}
	return a, true, nil
}

// account resolves the account a link names (resolve) and, when there is
// none to show, answers itself: the failure page for a ledger failure,
// else the not-found page; ok tells whether a was found.
func (r *request) account(svcParam, tokParam string, hashed bool) (a storage.Account, ok bool) {
	a, ok, err := r.resolve(svcParam, tokParam, hashed)
	switch {
	case err != nil:
		r.failure(err)
	case !ok:
		r.notFound()
	}
	return a, ok
}

// token returns the account token a link names, without telling whether
// any account has it.
func (r *request) token(tokParam string, hashed bool) (storage.AccountToken, bool) {
	if !hashed {
		tok, _, ok := storage.SplitToken(tokParam)
		return tok, ok
	}
	var h [sha1.Size]byte
	if len(tokParam) != 2*sha1.Size {
		return "", false
	}
	if _, err := hex.Decode(h[:], []byte(strings.ToLower(tokParam))); err != nil {
		return "", false
	}
	tok, ok := r.p.index.lookup(r.context(), h)
	if !ok {
		return "", false
	}
	sum := hashToken(tok)
	if subtle.ConstantTimeCompare(sum[:], h[:]) != 1 {
		return "", false
	}
	return tok, true
}

// isHashed reads the hashed param as Odoo sends it ("1"; any true-ish).
func isHashed(v string) bool {
	switch strings.ToLower(v) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

// hashHex is the hashed token in links: pages link to each other with it,
// never with the raw token.
func hashHex(tok storage.AccountToken) string {
	h := hashToken(tok)
	return hex.EncodeToString(h[:])
}

// creditLink is the credit page of an account, hashed form, with extra
// params.
func creditLink(svc storage.ServiceName, tok storage.AccountToken, dbuuid string, extra url.Values) string {
	v := url.Values{"service_name": {string(svc)}, "account_token": {hashHex(tok)}, "hashed": {"1"}}
	if dbuuid != "" {
		v.Set("dbuuid", dbuuid)
	}
	for k, vs := range extra {
		v[k] = vs
	}
	return CreditPath + "?" + v.Encode()
}

// services returns the services by name (for units and descriptions).
func (p *Portal) services(ctx context.Context) map[storage.ServiceName]storage.Service {
	m := map[storage.ServiceName]storage.Service{}
	list, err := p.ledger.Services(ctx)
	if err != nil {
		return m
	}
	for _, s := range list {
		m[s.Name] = s
	}
	return m
}

// messages are the outcomes a form (or a payment) redirects with: a
// closed list of codes, shown as the catalogue's "msg.<code>" text, so
// that no text of the URL is ever shown; true marks a success.
var messages = map[string]bool{
	"redeemed":          true,
	"voucher-bad":       false,
	"voucher-used":      false,
	"voucher-form":      false,
	"alerts-saved":      true,
	"alerts-bad":        false,
	"expired-form":      false,
	"unavailable":       false,
	"registered-no":     false,
	"paid":              true,
	"payment-cancelled": false,
	"payment-failed":    false, // the provider could not make the payment page
	"payment-pending":   true,  // paid=: the provider has not confirmed yet
	"payment-check":     false, // paid=: paid, but not credited (amount, account)
}

// redeem redeems a voucher code on the account and returns the message
// code to show.
func (r *request) redeem(a storage.Account, typed string) string {
	if r.p.vouchers == nil {
		return "unavailable"
	}
	h, err := voucher.Hash(typed)
	if err != nil {
		return "voucher-form"
	}
	v, e, err := r.p.vouchers.RedeemVoucher(r.context(), h, a.Service, a.Token, r.now)
	switch {
	case err == nil:
		r.p.log.Info("portal: voucher redeemed", "service", a.Service, "account", rpc.TokenRef(a.Token),
			"amount", v.Amount.String(), "seq", e.Seq)
		return "redeemed"
	case storage.Is(err, storage.NotFound):
		r.p.limit.fail(r.client, r.now) // guessing codes is a failed lookup
		return "voucher-bad"
	case storage.Is(err, storage.Conflict):
		return "voucher-used"
	default:
		r.p.log.Error("portal: redeeming a voucher", "service", a.Service, "account", rpc.TokenRef(a.Token), "err", err)
		return "unavailable"
	}
}
