package portal

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"sort"

	"github.com/iapd/iapd/providers/payments"
	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/storage"
)

// Refunds and lost disputes (issue 17): what a payment's refunds take back
// of the pack it credited is a pure function of the refund list, so that
// any delivery, in any order, repeated or concurrent, writes the same
// ledger entries under the same refs, each once (the ledger's ref is the
// idempotency key).

// takeBackDebit is one debit a refunded or disputed payment owes.
type takeBackDebit struct {
	ref    string
	amount storage.Credits // > 0
	refund string          // the refund's id; empty for the rest
}

// takeBackPlan returns the debits of a payment of paid that credited
// credits, given its refunds and whether a dispute on it was lost:
//   - each returned refund of less than paid: floor(credits × refund ÷
//     paid), ref refundRef(refund id) — rounded down, so the shares never
//     add up to more than the refunded part;
//   - once the returned refunds add up to paid, or the dispute is lost:
//     the rest, credits minus those shares, ref reversalRef(session) (a
//     single refund of all of paid is this rest: credits).
//
// Failed and cancelled refunds count for nothing. An error when the
// refunds are in another currency or add up to more than paid (Stripe
// allows neither): nothing is to be debited then.
func takeBackPlan(ps *payState, session string, credits storage.Credits, paid payments.Money,
	refunds []payments.Refund, disputeLost bool) ([]takeBackDebit, error) {
	if paid.Value <= 0 || credits < 0 {
		return nil, fmt.Errorf("payment of %s for %s credits", paid, credits)
	}
	var plan []takeBackDebit
	var total int64
	shares := storage.Credits(0)
	for _, r := range refunds {
		if !r.Returned {
			continue
		}
		if r.Amount.Currency != paid.Currency || r.Amount.Value <= 0 || r.Amount.Value > paid.Value-total {
			return nil, fmt.Errorf("refund %s of %s does not fit a payment of %s (%d refunded before it)", r.ID, r.Amount, paid, total)
		}
		total += r.Amount.Value
		if r.Amount.Value == paid.Value {
			continue // the whole payment: the rest below
		}
		hi, lo := bits.Mul64(uint64(credits), uint64(r.Amount.Value))
		q, _ := bits.Div64(hi, lo, uint64(paid.Value)) // < credits: refund < paid
		if q > 0 {
			plan = append(plan, takeBackDebit{ref: ps.refundRef(r.ID), amount: storage.Credits(q), refund: r.ID})
			shares += storage.Credits(q)
		}
	}
	sort.Slice(plan, func(i, j int) bool { return plan[i].ref < plan[j].ref })
	if (total == paid.Value || disputeLost) && credits-shares > 0 {
		plan = append(plan, takeBackDebit{ref: ps.reversalRef(session), amount: credits - shares})
	}
	return plan, nil
}

// takeBack debits what a refund (ev.Kind Refunded) or a lost dispute
// (Reversed) of a payment takes back: the session's credit is made sure
// of first (events may come out of order), then every debit of
// takeBackPlan over the refunds the provider lists now (an error when
// they add up to less than ev.Refunded: the list is behind), each at most once
// (a debit the account cannot cover takes what is available; the rest is
// logged). Outcome: PayReversed when the rest was debited, PayPartialRefund
// when only shares were, PayReversalShort when a debit fell short (or the
// refunds make no sense), PayDuplicate when every debit was there before,
// PayIgnored when none is owed; the outcomes of credit when the payment
// was not credited. err is a ledger or provider failure (the provider
// delivers again).
func (p *Portal) takeBack(ctx context.Context, ev payments.Event) (string, error) {
	ps := p.pay
	s, err := ps.prov.SessionOfPayment(ctx, ev.PaymentID)
	if errors.Is(err, payments.ErrNotFound) {
		return PayIgnored, nil // a payment not made through iapd
	}
	if err != nil {
		return "", err
	}
	outcome, credit, err := p.credit(ctx, s)
	if err != nil || (outcome != PayCredited && outcome != PayDuplicate) {
		return outcome, err
	}
	svc := storage.ServiceName(s.Service)
	tok, _ := ps.account(svc, s.Reference)
	logArgs := []any{"provider", ps.prov.Name(), "event", ev.ID, "type", ev.Type, "session", s.ID, "service", svc,
		"account", rpc.TokenRef(tok)}
	refunds, err := ps.prov.Refunds(ctx, ev.PaymentID)
	if err == nil && ev.Kind == payments.Refunded {
		// Refunds never vanish nor change amount: a list adding up to
		// less than the event's total is behind it; the provider
		// delivers again later.
		var listed int64
		for _, r := range refunds {
			listed += r.Amount.Value
		}
		if listed < ev.Refunded.Value {
			return "", fmt.Errorf("the refunds listed add up to %s, the event says %s refunded: the list is behind",
				payments.Money{Value: listed, Currency: ev.Refunded.Currency}, ev.Refunded)
		}
	}
	var plan []takeBackDebit
	if err == nil {
		plan, err = takeBackPlan(ps, s.ID, credit.DRecharged, s.Amount, refunds, ev.Kind == payments.Reversed)
		if err != nil {
			err = fmt.Errorf("%w: %v", payments.ErrInvalid, err)
		}
	}
	if errors.Is(err, payments.ErrInvalid) {
		p.log.Error("portal: the refunds of a payment cannot be taken back: adjust the account by hand (iapd credit -ref) if right",
			append(logArgs, "err", err)...)
		return PayReversalShort, nil
	}
	if err != nil {
		return "", err
	}
	if len(plan) == 0 {
		return PayIgnored, nil // nothing returned yet, or a share below 0.0001 credit
	}
	var fresh, short, rest bool
	for _, d := range plan {
		desc := "Refund " + d.refund + " (" + ev.Type + ")"
		if d.refund == "" {
			desc = "Payment reversed (" + ev.Type + ")"
		}
		debited, isNew, err := p.debitOnce(ctx, svc, tok, d.ref, desc, d.amount)
		if err != nil {
			return "", err
		}
		if !isNew {
			continue
		}
		fresh, rest = true, rest || d.refund == ""
		if debited < d.amount {
			short = true
			p.log.Error("portal: a refunded or disputed payment could not be debited in full: the account had spent the credit",
				append(logArgs, "ref", d.ref, "debited", debited.String(), "short", (d.amount-debited).String())...)
			continue
		}
		p.log.Info("portal: refunded or disputed credit debited", append(logArgs, "ref", d.ref, "debited", debited.String())...)
	}
	switch {
	case short:
		return PayReversalShort, nil
	case rest:
		return PayReversed, nil
	case fresh:
		return PayPartialRefund, nil
	}
	return PayDuplicate, nil
}

// debitOnce debits amount (> 0) from the account as an adjustment with
// ref, once: isNew is false when the ref was written before (whatever its
// amount) and nothing changed. When the account has less available,
// what it has is debited (debited < amount; debited 0 and nothing written
// when it has none: a later delivery tries again).
func (p *Portal) debitOnce(ctx context.Context, svc storage.ServiceName, tok storage.AccountToken, ref, desc string,
	amount storage.Credits) (debited storage.Credits, isNew bool, err error) {
	a, err := p.ledger.LookupAccount(ctx, svc, tok)
	if err != nil {
		return 0, false, err
	}
	debit := func(c storage.Credits) (storage.Entry, error) {
		return p.ledger.Recharge(ctx, storage.RechargeRequest{Service: svc, Account: tok, Amount: -c,
			Kind: storage.EntryAdjustment, Ref: ref, Description: desc})
	}
	// The whole amount first: a debit made before is found by its ref
	// whatever the balance now.
	debited = amount
	e, err := debit(debited)
	if storage.Is(err, storage.InsufficientCredit) {
		if debited = min(a.Available, amount); debited <= 0 {
			return 0, true, nil
		}
		e, err = debit(debited)
	}
	switch {
	case storage.Is(err, storage.Conflict):
		return 0, false, nil // debited before, in part
	case err != nil:
		return 0, false, err // InsufficientCredit: spent meanwhile; the re-delivery tries again
	case e.Seq <= a.Seq:
		return 0, false, nil
	}
	return debited, true, nil
}
