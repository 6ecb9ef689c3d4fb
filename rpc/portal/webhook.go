package portal

import (
	"context"
	"errors"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/providers/payments"
	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/storage"
)

// payTimeout bounds what one page or webhook request asks of the
// provider and the ledger.
const payTimeout = 30 * time.Second

// payContext is the context of the provider's calls: not the
// fasthttp.RequestCtx, which the HTTP client's goroutines could still
// read after the handler returned and fasthttp reused it.
func payContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), payTimeout)
}

// WebhookPath is where a provider delivers its events
// (/payments/stripe/webhook).
func WebhookPath(provider string) string { return "/payments/" + provider + "/webhook" }

// webhook serves WebhookPath: a signed event credits a paid pack once
// (keyed on the session id), debits each refund's share and the rest on a
// full refund or a lost dispute (refund.go), and is otherwise ignored. Answers: 200 when done or nothing is to be done
// (the provider stops re-delivering), 400 for a bad signature or an
// unreadable event, 413 for a body over 256 KiB, 503 when the ledger or
// the provider failed (the provider delivers again later).
func (p *Portal) webhook(ctx *fasthttp.RequestCtx) {
	ps := p.pay
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		ctx.Error("405 Method Not Allowed", fasthttp.StatusMethodNotAllowed)
		return
	}
	body := ctx.PostBody()
	if len(body) > maxWebhookBodyBytes {
		ps.count(PayInvalid)
		ctx.Error("413 Request Entity Too Large", fasthttp.StatusRequestEntityTooLarge)
		return
	}
	ev, err := ps.prov.Event(body, string(ctx.Request.Header.Peek(ps.prov.SignatureHeader())))
	if err != nil {
		outcome := PayInvalid
		if errors.Is(err, payments.ErrSignature) {
			outcome = PayBadSignature
		}
		ps.count(outcome)
		p.log.Warn("portal: webhook refused", "provider", ps.prov.Name(), "outcome", outcome)
		ctx.Error("400 Bad Request", fasthttp.StatusBadRequest)
		return
	}
	rctx, cancel := payContext()
	defer cancel()
	var outcome string
	switch ev.Kind {
	case payments.Paid:
		outcome, _, err = p.credit(rctx, ev.Session)
	case payments.Refunded, payments.Reversed:
		outcome, err = p.takeBack(rctx, ev)
	default:
		outcome = PayIgnored
	}
	if err != nil {
		ps.count(PayFailed)
		p.log.Error("portal: webhook failed: the provider will deliver it again", "provider", ps.prov.Name(),
			"event", ev.ID, "type", ev.Type, "err", err)
		ctx.Error("503 Service Unavailable", fasthttp.StatusServiceUnavailable)
		return
	}
	ps.count(outcome)
	p.log.Debug("portal: webhook", "provider", ps.prov.Name(), "event", ev.ID, "type", ev.Type, "outcome", outcome)
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"received":true}`)
}

// credit credits a paid session's pack once (ledger ref <provider>:<id>)
// and returns the outcome: PayCredited, PayDuplicate (already credited:
// nothing changed), PayUnpaid, PayUnknownAccount or PayAmountMismatch
// (not credited, logged for the operator). err is a ledger failure.
func (p *Portal) credit(ctx context.Context, s payments.Session) (string, storage.Entry, error) {
	ps := p.pay
	svc := storage.ServiceName(s.Service)
	tok, ok := ps.account(svc, s.Reference)
	if !ok || !storage.ValidServiceName(s.Service) {
		p.log.Warn("portal: a payment names no account of this server: not credited", "provider", ps.prov.Name(), "session", s.ID)
		return PayUnknownAccount, storage.Entry{}, nil
	}
	if !s.Paid {
		return PayUnpaid, storage.Entry{}, nil
	}
	packs := p.cfg.PacksOf(svc)
	var want payments.Money
	var pk Pack
	if s.Pack >= 1 && s.Pack <= len(packs) {
		pk = packs[s.Pack-1]
		want = payments.Money{Value: int64(pk.Price), Currency: pk.Currency}
	}
	if pk.ID == 0 || s.Credits != pk.Credits.String() || s.Amount != want {
		p.log.Error("portal: a payment does not match its pack: not credited; credit the account by hand (iapd credit -ref) if it is right",
			"provider", ps.prov.Name(), "session", s.ID, "service", svc, "account", rpc.TokenRef(tok),
			"pack", s.Pack, "paid", s.Amount.String(), "expected", want.String(), "credits", s.Credits)
		return PayAmountMismatch, storage.Entry{}, nil
	}
	before := uint64(0)
	if a, err := p.ledger.LookupAccount(ctx, svc, tok); err == nil {
		before = a.Seq
	}
	e, err := p.ledger.Recharge(ctx, storage.RechargeRequest{
		Service: svc, Account: tok, Amount: pk.Credits, Kind: storage.EntryRecharge,
		Ref: ps.creditRef(s.ID), Description: "Online payment: " + pk.Name,
	})
	if err != nil {
		return "", storage.Entry{}, err
	}
	if e.Seq <= before {
		return PayDuplicate, e, nil
	}
	ps.sold.WithLabelValues(string(svc)).Add(pk.Credits.Float64())
	p.log.Info("portal: payment credited", "provider", ps.prov.Name(), "session", s.ID, "service", svc,
		"account", rpc.TokenRef(tok), "credits", pk.Credits.String(), "paid", s.Amount.String(), "seq", e.Seq)
	return PayCredited, e, nil
}
