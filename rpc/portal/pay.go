package portal

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/url"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/providers/payments"
	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/rpc/limit"
	"github.com/iapd/iapd/storage"
)

// Online payment of packs (issue 17): the credit page's Buy buttons open
// the provider's payment page; the provider's webhook credits the account
// (webhook.go).

// BuyPath starts the payment of a pack: GET with the account's hashed
// link, pack= and csrf=; it answers 303 to the provider's payment page.
const BuyPath = "/iap/1/credit/buy"

// Payments is the seam to a payment provider (providers/payments/stripe
// is one). Every method is safe for concurrent use.
type Payments interface {
	// Name is the provider's name: the metric label, the prefix of the
	// ledger refs, and the webhook path /payments/<name>/webhook.
	Name() string
	// SignatureHeader names the header that signs a webhook delivery.
	SignatureHeader() string
	// Checkout creates a payment page for the order. payments.ErrInvalid
	// when the provider refuses the order; another error when it could
	// not be reached (try later).
	Checkout(ctx context.Context, o payments.Order) (payments.Checkout, error)
	// Session returns a session the provider made. payments.ErrNotFound
	// when there is none of that id.
	Session(ctx context.Context, id string) (payments.Session, error)
	// SessionOfPayment returns the session that made the payment
	// paymentID. payments.ErrNotFound when none did.
	SessionOfPayment(ctx context.Context, paymentID string) (payments.Session, error)
	// Refunds lists every refund of the payment paymentID, in any order.
	// payments.ErrInvalid when they cannot all be listed; another error
	// when the provider could not be reached (try later).
	Refunds(ctx context.Context, paymentID string) ([]payments.Refund, error)
	// Event verifies a webhook delivery (the body as received, the value
	// of SignatureHeader) and decodes it. payments.ErrSignature when it
	// is not signed right (or too old); another error when a signed body
	// cannot be decoded.
	Event(payload []byte, signature string) (payments.Event, error)
}

// Outcomes of iap_payments_total.
const (
	PayCheckout         = "checkout"        // a payment page was created
	PayCheckoutFailed   = "checkout_failed" // the provider refused or failed
	PayCredited         = "credited"        // a payment credited its pack
	PayDuplicate        = "duplicate"       // a re-delivered event: nothing changed
	PayUnpaid           = "unpaid"          // a completed session not paid yet (async)
	PayAmountMismatch   = "amount_mismatch" // paid amount or pack differs: not credited
	PayUnknownAccount   = "unknown_account" // a session iapd cannot map to an account
	PayReversed         = "reversed"        // a full refund or lost dispute debited the rest of the credit
	PayReversalShort    = "reversal_short"  // the account had less than the credit to debit, or the refunds make no sense
	PayPartialRefund    = "partial_refund"  // a partial refund debited its share of the credit
	PayIgnored          = "ignored"         // an event type iapd does not use
	PayBadSignature     = "bad_signature"   // refused with 400
	PayInvalid          = "invalid"         // a signed event iapd cannot read
	PayFailed           = "failed"          // ledger or provider failure: 5xx, retried
	paymentsMetricHelp  = "Online payments by provider and outcome (checkout, checkout_failed, credited, duplicate, unpaid, amount_mismatch, unknown_account, reversed, reversal_short, partial_refund, ignored, bad_signature, invalid, failed)."
	creditsSoldHelp     = "Credits added by online payments, by service (refunds are not subtracted)."
	maxWebhookBodyBytes = 256 << 10
)

var payOutcomes = []string{PayCheckout, PayCheckoutFailed, PayCredited, PayDuplicate, PayUnpaid, PayAmountMismatch,
	PayUnknownAccount, PayReversed, PayReversalShort, PayPartialRefund, PayIgnored, PayBadSignature, PayInvalid, PayFailed}

// payState is the portal's online payment: nil when none is configured.
type payState struct {
	prov     Payments
	seal     cipher.AEAD
	outcomes *prometheus.CounterVec
	sold     *prometheus.CounterVec
	// calls bounds the provider calls the portal's pages make (a Buy
	// creates a session, a return reads one), per account and in all
	// (key ""): anyone may invent an account and click, and each call
	// spends the operator's quota at the provider and up to 30 s of a
	// request.
	calls *limit.Table
	total *limit.Table
}

// Provider calls from the pages: per account, and all accounts together.
var (
	payCallsPerAccount = limit.Rate{Burst: 10, Per: time.Hour}
	payCallsTotal      = limit.Rate{Burst: 20, Per: time.Second}
)

// allowCall reports whether the page may call the provider for the
// account now: both buckets had a token (the account's is taken first).
func (ps *payState) allowCall(svc storage.ServiceName, tok storage.AccountToken, now time.Time) bool {
	return ps.calls.Allow(string(svc)+"\x00"+string(tok), now) && ps.total.Allow("", now)
}

func newPayState(prov Payments, secret []byte, reg prometheus.Registerer) (*payState, error) {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("iapd-portal-payment-reference"))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	ps := &payState{prov: prov, seal: aead,
		calls: limit.NewTable(4096, payCallsPerAccount), total: limit.NewTable(1, payCallsTotal),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "iap_payments_total", Help: paymentsMetricHelp}, []string{"provider", "outcome"}),
		sold:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "iap_credits_sold_total", Help: creditsSoldHelp}, []string{"service"}),
	}
	for _, o := range payOutcomes {
		ps.outcomes.WithLabelValues(prov.Name(), o)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{ps.outcomes, ps.sold} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return ps, nil
}

func (ps *payState) count(outcome string) { ps.outcomes.WithLabelValues(ps.prov.Name(), outcome).Inc() }

// reference seals the account's token (AES-GCM under a key derived from
// the portal secret, the service as associated data): what the payment
// carries instead of the token. Only this iapd can open it.
func (ps *payState) reference(svc storage.ServiceName, tok storage.AccountToken) (string, error) {
	nonce := make([]byte, ps.seal.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(ps.seal.Seal(nonce, nonce, []byte(tok), []byte(svc))), nil
}

// account opens a reference; false when it is not one this iapd sealed
// for svc.
func (ps *payState) account(svc storage.ServiceName, ref string) (storage.AccountToken, bool) {
	b, err := base64.RawURLEncoding.DecodeString(ref)
	n := ps.seal.NonceSize()
	if err != nil || len(b) < n+ps.seal.Overhead() {
		return "", false
	}
	tok, err := ps.seal.Open(nil, b[:n], b[n:], []byte(svc))
	if err != nil {
		return "", false
	}
	return storage.AccountToken(tok), true
}

// creditRef is the ledger ref of the credit of a session; reversalRef of
// the debit of what is left of it on a full refund or a lost dispute (one
// for both: a refunded payment later disputed is debited once); refundRef
// of the share of one partial refund.
func (ps *payState) creditRef(sessionID string) string { return ps.prov.Name() + ":" + sessionID }
func (ps *payState) refundRef(refundID string) string  { return ps.prov.Name() + ":" + refundID }
func (ps *payState) reversalRef(sessionID string) string {
	return ps.prov.Name() + ":" + sessionID + ":reversal"
}

// buyLink is a pack's Buy button: the hashed link, the pack and a CSRF
// token bound to the account.
func (r *request) buyLink(a storage.Account, pack int, dbuuid string) string {
	v := url.Values{"service_name": {string(a.Service)}, "account_token": {hashHex(a.Token)}, "hashed": {"1"},
		"pack": {strconv.Itoa(pack)}, "csrf": {r.p.csrf.token(a.Service, a.Token, r.now)}}
	if dbuuid != "" {
		v.Set("dbuuid", dbuuid)
	}
	return BuyPath + "?" + v.Encode()
}

// buy serves BuyPath: it creates the provider's payment page for the pack
// and sends the browser there (303). A stale CSRF token, an unknown pack
// or a provider failure bring the customer back to the credit page with a
// message.
func (r *request) buy() {
	ps := r.p.pay
	if !r.ctx.IsGet() { // HEAD (a link checker) creates no session
		r.ctx.Response.Header.Set("Allow", "GET")
		r.httpError("405 Method Not Allowed", fasthttp.StatusMethodNotAllowed)
		return
	}
	a, ok := r.account(r.query("service_name"), r.query("account_token"), isHashed(r.query("hashed")))
	if !ok {
		return
	}
	dbuuid := cleanDBUUID(r.query("dbuuid"))
	back := func(code string) {
		r.ctx.Response.Header.Set("Location", r.p.resultLink(a.Service, a.Token, dbuuid, code, r.now))
		r.ctx.SetStatusCode(fasthttp.StatusSeeOther)
	}
	if !r.p.csrf.valid(r.query("csrf"), a.Service, a.Token, r.now) {
		back("expired-form")
		return
	}
	if a.State == storage.Banned {
		back("registered-no")
		return
	}
	id, _ := strconv.Atoi(r.query("pack"))
	packs := r.p.cfg.PacksOf(a.Service)
	if id < 1 || id > len(packs) {
		r.httpError("400 Bad Request: unknown pack", fasthttp.StatusBadRequest)
		return
	}
	pk := packs[id-1]
	if !ps.allowCall(a.Service, a.Token, r.now) {
		r.p.refusals.Refuse("payment_calls", "portal: payment refused: too many payment pages asked", "service", a.Service, "client", limit.KeyString(r.client))
		back("payment-failed")
		return
	}
	ref, err := ps.reference(a.Service, a.Token)
	if err != nil {
		back("unavailable")
		return
	}
	page := r.p.origin + creditLink(a.Service, a.Token, dbuuid, nil)
	ctx, cancel := payContext()
	defer cancel()
	co, err := ps.prov.Checkout(ctx, payments.Order{
		Service: string(a.Service), Reference: ref, Pack: pk.ID, PackName: pk.Name, Credits: pk.Credits.String(),
		Price:      payments.Money{Value: int64(pk.Price), Currency: pk.Currency},
		SuccessURL: page + "&paid=" + payments.SessionPlaceholder,
		CancelURL:  r.p.origin + r.p.resultLink(a.Service, a.Token, dbuuid, "payment-cancelled", r.now),
	})
	if err != nil {
		ps.count(PayCheckoutFailed)
		r.p.log.Error("portal: creating a payment", "provider", ps.prov.Name(), "service", a.Service,
			"account", rpc.TokenRef(a.Token), "pack", pk.ID, "err", err)
		back("payment-failed")
		return
	}
	ps.count(PayCheckout)
	r.p.log.Info("portal: payment started", "provider", ps.prov.Name(), "service", a.Service,
		"account", rpc.TokenRef(a.Token), "pack", pk.ID, "session", co.ID)
	r.ctx.Response.Header.Set("Location", co.URL)
	r.ctx.SetStatusCode(fasthttp.StatusSeeOther)
}

// payMessage is the message of the credit page on the payment's return
// (SuccessURL), shown through the page's messages (flash.go) but trusted
// only when true for this account: paid=<session> shows "paid" once the
// ledger holds the session's credit, or the provider says the session,
// made for this account, is paid: it is credited now, exactly once as by
// the webhook. A session of another account or none shows nothing. (The
// cancelled and failed returns are ResultLinks, signed like the forms'.)
func (r *request) payMessage(a storage.Account, d *creditData) {
	ps := r.p.pay
	id := r.query("paid")
	if ps == nil || id == "" {
		return
	}
	if _, ok := r.findRef(a, ps.creditRef(id)); ok {
		d.show("paid")
		return
	}
	if !ps.allowCall(a.Service, a.Token, r.now) { // the webhook credits it meanwhile
		r.p.refusals.Refuse("payment_calls", "portal: payment lookup refused: too many asked", "service", a.Service, "client", limit.KeyString(r.client))
		d.show("payment-pending")
		return
	}
	ctx, cancel := payContext()
	defer cancel()
	s, err := ps.prov.Session(ctx, id)
	if err != nil {
		if !errors.Is(err, payments.ErrNotFound) {
			r.p.log.Warn("portal: reading a payment", "provider", ps.prov.Name(), "err", err)
		}
		return
	}
	tok, ok := ps.account(storage.ServiceName(s.Service), s.Reference)
	if !ok || s.Service != string(a.Service) || subtle.ConstantTimeCompare([]byte(tok), []byte(a.Token)) != 1 {
		return
	}
	if !s.Paid {
		d.show("payment-pending")
		return
	}
	outcome, _, err := r.p.credit(ctx, s)
	switch {
	case err != nil:
		d.show("payment-pending")
	case outcome == PayCredited || outcome == PayDuplicate:
		if outcome == PayCredited { // before its webhook: counted once, here
			ps.count(PayCredited)
		}
		d.show("paid")
		if acct, err := r.p.ledger.LookupAccount(r.context(), a.Service, a.Token); err == nil {
			d.Account = acct
		}
	default:
		d.show("payment-check")
	}
}

// findRef looks for the entry with ref among the newest entries of the
// account (a payment just made is among them).
func (r *request) findRef(a storage.Account, ref string) (storage.Entry, bool) {
	es, err := r.p.ledger.History(r.context(), a.Service, a.Token, storage.HistoryQuery{Limit: 200})
	if err != nil {
		return storage.Entry{}, false
	}
	for _, e := range es {
		if e.Ref == ref {
			return e, true
		}
	}
	return storage.Entry{}, false
}

// payPage fills the credit page's online payment: a Buy link per pack and
// the message after a payment (payMessage).
func (r *request) payPage(a storage.Account, d *creditData) {
	if r.p.pay == nil {
		return
	}
	d.Pay = len(d.Packs) > 0
	for i := range d.Packs {
		d.Packs[i].Buy = r.buyLink(a, d.Packs[i].ID, d.DBUUID)
	}
	r.payMessage(a, d)
}
