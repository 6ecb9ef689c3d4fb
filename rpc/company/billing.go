package company

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/storage"
)

// biller holds, captures and releases one service's credit around a
// provider call: hold before calling (the most the call may cost, or the
// available credit when that is less), capture what was found (partial
// capture), cancel when nothing was found or on a definite failure, keep
// the hold when the provider's answer is indeterminate (it expires after
// the ttl and the credit goes back to the customer).
type biller struct {
	ledger storage.Ledger
	svc    storage.ServiceName
	ttl    time.Duration
	log    *slog.Logger
}

// admit reads the account of a token param, creating it on first sight,
// and refuses a neutralised database ("+disabled"), an unregistered or a
// banned account (Forbidden: AccessError on the wire) before anything is
// held or asked.
func (b *biller) admit(ctx context.Context, op, raw, dbuuid string) (storage.Account, error) {
	tok, disabled, err := rpc.ParseAccountToken(op, "account_token", raw)
	if err != nil {
		return storage.Account{}, err
	}
	if disabled {
		return storage.Account{}, storage.E(op, storage.Forbidden, "This database is neutralised (its account token is disabled): paid services are refused.")
	}
	acct, err := b.ledger.Account(ctx, b.svc, tok, storage.FirstSight{DBUUID: dbuuid})
	if err != nil {
		return storage.Account{}, err
	}
	switch acct.State {
	case storage.Banned:
		return acct, storage.E(op, storage.Forbidden, "This account is banned from this service.")
	case storage.Unregistered:
		return acct, storage.E(op, storage.Forbidden, "This account is not registered for this service.")
	}
	return acct, nil
}

// hold is credit held for one request.
type hold struct {
	txn    string
	amount storage.Credits
}

// maxHoldAttempts bounds the retries when the available credit changed
// between reading it and holding it.
const maxHoldAttempts = 3

// hold holds min(most, available) of acct's credit, at least unit; nil
// (nothing held) when most is zero. Too little credit is an
// InsufficientCredit error asking for most.
func (b *biller) hold(ctx context.Context, op string, acct storage.Account, most, unit storage.Credits) (*hold, error) {
	if most <= 0 {
		return nil, nil
	}
	unit = min(max(unit, 1), most)
	for attempt := 1; ; attempt++ {
		amount := min(most, acct.Available)
		if amount < unit {
			return nil, b.insufficient(op, most)
		}
		txn, err := b.ledger.Authorize(ctx, storage.AuthorizeRequest{
			Service: b.svc, Account: acct.Token, Amount: amount, Description: op, TTL: b.ttl,
			FirstSight: storage.FirstSight{DBUUID: acct.DBUUID},
		})
		if err == nil {
			return &hold{txn: txn.Token, amount: amount}, nil
		}
		if !storage.Is(err, storage.InsufficientCredit) || attempt == maxHoldAttempts {
			if storage.Is(err, storage.InsufficientCredit) {
				return nil, b.insufficient(op, most)
			}
			return nil, err
		}
		if acct, err = b.ledger.LookupAccount(ctx, b.svc, acct.Token); err != nil {
			return nil, err
		}
	}
}

// insufficient is the InsufficientCredit error asking for credit.
func (b *biller) insufficient(op string, credit storage.Credits) error {
	return &storage.Error{Op: op, Kind: storage.InsufficientCredit, Service: b.svc, Credit: credit,
		Msg: "You don't have enough credits on your account to use this service."}
}

// settle captures cost (at most the held amount) or, when cost is zero,
// releases the hold. A nil hold needs nothing.
func (b *biller) settle(ctx context.Context, op string, h *hold, cost storage.Credits) error {
	if h == nil {
		return nil
	}
	if cost <= 0 {
		b.release(ctx, op, h)
		return nil
	}
	cost = min(cost, h.amount)
	if _, err := b.ledger.Capture(ctx, storage.CaptureRequest{Service: b.svc, Transaction: h.txn, Amount: &cost}); err != nil {
		b.log.Error("capture failed; the hold stays until it expires", "op", op, "hold", holdRef(h.txn), "err", err)
		return err
	}
	return nil
}

// holdRef names a hold in logs without its token (a bearer of the hold):
// the first 12 hex digits of its SHA-256.
func holdRef(txn string) string {
	sum := sha256.Sum256([]byte(txn))
	return hex.EncodeToString(sum[:6])
}

// release cancels a hold (a definite failure, or nothing found).
func (b *biller) release(ctx context.Context, op string, h *hold) {
	if h == nil {
		return
	}
	if _, err := b.ledger.Cancel(ctx, b.svc, h.txn); err != nil {
		b.log.Error("cancel failed; the hold stays until it expires", "op", op, "hold", holdRef(h.txn), "err", err)
	}
}

// fail ends a request whose provider failed: an indeterminate answer
// keeps the hold for reconciliation, anything else releases it. It
// returns the error to answer: Unavailable, with a message the user may
// see on old clients.
func (b *biller) fail(ctx context.Context, op string, h *hold, err error) error {
	if providers.KindOf(err) == providers.Indeterminate {
		if h != nil {
			b.log.Warn("provider answer indeterminate: hold kept for reconciliation", "op", op, "hold", holdRef(h.txn), "amount", h.amount.String())
		}
	} else {
		b.release(ctx, op, h)
	}
	return &storage.Error{Op: op, Kind: storage.Unavailable, Msg: "The company data provider is temporarily unavailable.", Err: err}
}
