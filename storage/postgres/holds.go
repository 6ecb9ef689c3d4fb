package postgres

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iapd/iapd/storage"
)

const txnCols = "token, service, account, state, amount, captured, description, created_at, expires_at, ended_at"

func scanTxn(row pgx.Row) (storage.Transaction, error) {
	var t storage.Transaction
	var ended *time.Time
	err := row.Scan(&t.Token, &t.Service, &t.Account, &t.State, &t.Amount, &t.Captured, &t.Description, &t.CreatedAt, &t.ExpiresAt, &ended)
	t.CreatedAt, t.ExpiresAt = t.CreatedAt.UTC(), t.ExpiresAt.UTC()
	if ended != nil {
		t.EndedAt = ended.UTC()
	}
	return t, err
}

// newTxnToken draws a transaction token: 32 lowercase hex of the Unix
// time in milliseconds (6 bytes) then 10 bytes from crypto/rand, as
// storage/badger does (unique without a lookup; the primary key refuses
// the astronomically unlikely collision, which is then retried).
func newTxnToken(now time.Time) string {
	var id [16]byte
	binary.BigEndian.PutUint64(id[:8], uint64(max(now.UnixMilli(), 0))<<16)
	_, _ = rand.Read(id[6:])
	return hex.EncodeToString(id[:])
}

// validTxnToken: 32 lowercase hex.
func validTxnToken(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Authorize holds r.Amount of the account's available credit, as
// storage/badger's Authorize documents (the account created on first
// sight is kept when the hold is then refused). The hold, its entry and
// the account change are one transaction.
func (l *Ledger) Authorize(ctx context.Context, r storage.AuthorizeRequest) (storage.Transaction, error) {
	const op = "authorize"
	if err := l.enter(op, ctx); err != nil {
		return storage.Transaction{}, err
	}
	defer l.leave()
	if err := r.Check(op); err != nil {
		return storage.Transaction{}, err
	}
	if t, ok, err := l.fastAuthorize(ctx, r, l.clock()); err != nil {
		return storage.Transaction{}, l.wrap(op, err)
	} else if ok {
		return t, nil
	}
	var out storage.Transaction
	err := l.write(ctx, op, func(tx *wtx, now time.Time) (error, error) {
		a, created, err := accountForWrite(ctx, op, tx, r.Service, r.Account, r.FirstSight, now)
		if err != nil {
			return nil, err
		}
		if refusal := holdRefusal(op, &a, r.Service, r.Amount); refusal != nil {
			if !created {
				return nil, refusal
			}
			return refusal, putAccount(ctx, tx, &a, true) // keep the first sight
		}
		t, err := holdIn(ctx, tx, &a, r, now)
		if err != nil {
			return nil, err
		}
		out = t
		return nil, putAccount(ctx, tx, &a, true)
	})
	if err != nil {
		return storage.Transaction{}, err
	}
	return out, nil
}

// loadHold locks the account of a transaction, then the transaction (the
// order every writer of holds follows), in one round trip. NotFound if the
// token is absent or belongs to another service (svc "": any). With
// skip, a row another caller has locked is skipped: found false, no error
// (the expiry sweep).
func loadHold(ctx context.Context, op string, tx *wtx, svc storage.ServiceName, token string, skip bool) (t storage.Transaction, a acct, found bool, err error) {
	lock := " FOR UPDATE"
	if skip {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	var noAcct, noTxn bool
	err = tx.rows([]rowQuery{{
		sql:  "SELECT " + acctCols + " FROM iapd_accounts WHERE (service, token) = (SELECT service, account FROM iapd_transactions WHERE token = $1)" + lock,
		args: []any{token},
		scan: func(row pgx.Row) (err error) {
			a, err = scanAcct(row)
			if errors.Is(err, pgx.ErrNoRows) {
				noAcct, err = true, nil
			}
			return err
		},
	}, {
		sql:  "SELECT " + txnCols + " FROM iapd_transactions WHERE token = $1" + lock,
		args: []any{token},
		scan: func(row pgx.Row) (err error) {
			t, err = scanTxn(row)
			if errors.Is(err, pgx.ErrNoRows) {
				noTxn, err = true, nil
			}
			return err
		},
	}})
	switch {
	case err != nil:
		return t, a, false, err
	case skip && (noAcct || noTxn):
		return t, a, false, nil
	case noTxn || noAcct || svc != "" && t.Service != svc:
		return t, a, false, storage.E(op, storage.NotFound, "no such transaction")
	}
	return t, a, true, nil
}

// endHold closes an open hold: state, end time, the account's hold count
// and row. The caller has appended the entries to a.
func endHold(ctx context.Context, tx *wtx, t *storage.Transaction, a *acct, state storage.TransactionState, end time.Time) error {
	t.State = state
	t.EndedAt = end
	tx.queue(oneRow, "UPDATE iapd_transactions SET state = $2, captured = $3, ended_at = $4 WHERE token = $1 AND state = 'held'",
		t.Token, t.State, t.Captured, t.EndedAt)
	a.holds--
	return putAccount(ctx, tx, a, true)
}

// expireHold returns an open hold past its ExpiresAt to the account (an
// expiry entry). EndedAt is ExpiresAt: that is when the hold ended.
func expireHold(ctx context.Context, tx *wtx, t *storage.Transaction, a *acct, now time.Time) error {
	if _, err := appendEntry(ctx, tx, a, storage.Entry{
		Kind: storage.EntryExpiry, DAvailable: t.Amount, DHeld: -t.Amount,
		Transaction: t.Token, Description: t.Description,
	}, now); err != nil {
		return err
	}
	return endHold(ctx, tx, t, a, storage.Expired, t.ExpiresAt)
}

// Capture confirms a hold, as storage/badger's Capture documents:
// idempotent for the same amount; an over-capture draws from Available or
// fails leaving everything as it was; a hold past its ExpiresAt is expired
// by the call, which fails Conflict.
func (l *Ledger) Capture(ctx context.Context, r storage.CaptureRequest) (storage.Transaction, error) {
	const op = "capture"
	if err := l.enter(op, ctx); err != nil {
		return storage.Transaction{}, err
	}
	defer l.leave()
	if err := r.Check(op); err != nil {
		return storage.Transaction{}, err
	}
	if !validTxnToken(r.Transaction) {
		return storage.Transaction{}, storage.E(op, storage.NotFound, "no such transaction")
	}
	if t, ok, err := l.fastEnd(ctx, fastCaptureSQL, storage.Captured, r.Service, r.Transaction, r.Amount, l.clock()); err != nil {
		return storage.Transaction{}, l.wrap(op, err)
	} else if ok {
		return t, nil
	}
	var out storage.Transaction
	err := l.write(ctx, op, func(tx *wtx, now time.Time) (error, error) {
		t, a, _, err := loadHold(ctx, op, tx, r.Service, r.Transaction, false)
		out = t
		if err != nil {
			return nil, err
		}
		switch t.State {
		case storage.Captured:
			if r.Amount == nil || *r.Amount == t.Captured {
				return nil, nil
			}
			return nil, storage.E(op, storage.Conflict, "transaction captured for another amount")
		case storage.Cancelled:
			return nil, storage.E(op, storage.Conflict, "transaction was cancelled")
		case storage.Expired:
			return nil, storage.E(op, storage.Conflict, "transaction expired")
		}
		if !now.Before(t.ExpiresAt) {
			err := expireHold(ctx, tx, &t, &a, now)
			out = t
			return storage.E(op, storage.Conflict, "transaction expired"), err
		}
		es, c, refusal := storage.CaptureEntries(op, t, a.Account, r.Amount)
		if refusal != nil {
			return nil, refusal
		}
		for _, e := range es {
			if _, err := appendEntry(ctx, tx, &a, e, now); err != nil {
				return nil, err
			}
		}
		t.Captured = c
		err = endHold(ctx, tx, &t, &a, storage.Captured, now)
		out = t
		return nil, err
	})
	if err != nil {
		return storage.Transaction{}, err
	}
	return out, nil
}

// Cancel releases a hold (a release entry), as storage/badger's Cancel
// documents: idempotent; a hold whose ExpiresAt has come is expired
// instead, without error; Conflict if it was captured.
func (l *Ledger) Cancel(ctx context.Context, svc storage.ServiceName, txn string) (storage.Transaction, error) {
	const op = "cancel"
	if err := l.enter(op, ctx); err != nil {
		return storage.Transaction{}, err
	}
	defer l.leave()
	if !storage.ValidServiceName(string(svc)) {
		return storage.Transaction{}, storage.E(op, storage.Invalid, "invalid service name")
	}
	if !validTxnToken(txn) {
		return storage.Transaction{}, storage.E(op, storage.NotFound, "no such transaction")
	}
	if t, ok, err := l.fastEnd(ctx, fastCancelSQL, storage.Cancelled, svc, txn, nil, l.clock()); err != nil {
		return storage.Transaction{}, l.wrap(op, err)
	} else if ok {
		return t, nil
	}
	var out storage.Transaction
	err := l.write(ctx, op, func(tx *wtx, now time.Time) (error, error) {
		t, a, _, err := loadHold(ctx, op, tx, svc, txn, false)
		out = t
		if err != nil {
			return nil, err
		}
		switch t.State {
		case storage.Cancelled, storage.Expired:
			return nil, nil
		case storage.Captured:
			return nil, storage.E(op, storage.Conflict, "transaction was captured")
		}
		if !now.Before(t.ExpiresAt) {
			err := expireHold(ctx, tx, &t, &a, now)
			out = t
			return nil, err
		}
		if _, err := appendEntry(ctx, tx, &a, storage.Entry{
			Kind: storage.EntryRelease, DHeld: -t.Amount, DAvailable: t.Amount,
			Transaction: t.Token, Description: t.Description,
		}, now); err != nil {
			return nil, err
		}
		err = endHold(ctx, tx, &t, &a, storage.Cancelled, now)
		out = t
		return nil, err
	})
	if err != nil {
		return storage.Transaction{}, err
	}
	return out, nil
}

// Transaction returns a transaction as stored: a hold past its ExpiresAt
// reads Held until ExpireDue, Capture or Cancel ends it. NotFound if
// absent or malformed.
func (l *Ledger) Transaction(ctx context.Context, txn string) (storage.Transaction, error) {
	const op = "transaction"
	if err := l.enter(op, ctx); err != nil {
		return storage.Transaction{}, err
	}
	defer l.leave()
	if !validTxnToken(txn) {
		return storage.Transaction{}, storage.E(op, storage.NotFound, "no such transaction")
	}
	t, err := scanTxn(l.pool.QueryRow(ctx, "SELECT "+txnCols+" FROM iapd_transactions WHERE token = $1", txn))
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.Transaction{}, storage.E(op, storage.NotFound, "no such transaction")
	}
	if err != nil {
		return storage.Transaction{}, l.wrap(op, err)
	}
	return t, nil
}

// ExpireDue releases at most max (> 0, else Invalid) holds whose
// ExpiresAt <= now, oldest first, and returns how many it released. Each
// release is its own transaction (an expiry entry; EndedAt = ExpiresAt).
// Many nodes may sweep at once: a hold or account another caller has
// locked is skipped (FOR UPDATE SKIP LOCKED) and left to the next sweep,
// so no hold is expired twice and no sweeper waits on another.
func (l *Ledger) ExpireDue(ctx context.Context, now time.Time, max int) (int, error) {
	const op = "expire due"
	if err := l.enter(op, ctx); err != nil {
		return 0, err
	}
	defer l.leave()
	if max <= 0 {
		return 0, storage.E(op, storage.Invalid, "max must be positive")
	}
	now = micro(now)
	rows, err := l.pool.Query(ctx, "SELECT token FROM iapd_transactions WHERE state = 'held' AND expires_at <= $1 ORDER BY expires_at LIMIT $2", now, max)
	if err != nil {
		return 0, l.wrap(op, err)
	}
	tokens, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, l.wrap(op, err)
	}
	n := 0
	for _, token := range tokens {
		var done bool
		err := l.write(ctx, op, func(tx *wtx, clock time.Time) (error, error) {
			done = false
			t, a, found, err := loadHold(ctx, op, tx, "", token, true)
			if err != nil || !found || t.State != storage.Held || t.ExpiresAt.After(now) {
				return nil, err // ended meanwhile, or another caller has it
			}
			done = true
			return nil, expireHold(ctx, tx, &t, &a, clock)
		})
		if err != nil {
			return n, err
		}
		if done {
			n++
		}
	}
	return n, nil
}
