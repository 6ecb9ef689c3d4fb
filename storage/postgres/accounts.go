package postgres

import (
	"context"
	"crypto/sha1" // #nosec G505 -- Odoo 19's hashed token (storage.HashToken)
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/iapd/iapd/storage"
)

// acct is an account row: the storage.Account, the alert's armed state
// and the flow figures kept for Stats.
type acct struct {
	storage.Account
	alertSent                                    bool
	holds                                        int64
	authorized, released, expired, rechargesFlow storage.Credits
}

const acctCols = `service, token, state, recharged, available, held, captured, alerts_enabled, alert_threshold,
	alert_recipients, alert_sent, sender_name, db_uuid, seq, created_at, updated_at, holds, authorized, released, expired, recharges`

// scanAcct reads one row of acctCols.
func scanAcct(row pgx.Row) (acct, error) {
	var a acct
	var recipients string
	var seq int64
	err := row.Scan(&a.Service, &a.Token, &a.State, &a.Recharged, &a.Available, &a.Held, &a.Captured,
		&a.Alerts.Enabled, &a.Alerts.Threshold, &recipients, &a.alertSent, &a.SenderName, &a.DBUUID,
		&seq, &a.CreatedAt, &a.UpdatedAt, &a.holds, &a.authorized, &a.released, &a.expired, &a.rechargesFlow)
	if err != nil {
		return a, err
	}
	a.Seq = uint64(seq)
	a.CreatedAt, a.UpdatedAt = a.CreatedAt.UTC(), a.UpdatedAt.UTC()
	if recipients != "" && recipients != "null" {
		if err := json.Unmarshal([]byte(recipients), &a.Alerts.Recipients); err != nil {
			return a, err
		}
	}
	return a, nil
}

func encodeRecipients(rs []storage.Recipient) string {
	if len(rs) == 0 {
		return ""
	}
	b, _ := json.Marshal(rs) // strings only: never fails
	return string(b)
}

// lockAccount reads the account under its row lock. found is false when
// it does not exist.
func lockAccount(ctx context.Context, tx *wtx, svc storage.ServiceName, tok storage.AccountToken) (acct, bool, error) {
	a, err := scanAcct(tx.QueryRow(ctx, "SELECT "+acctCols+" FROM iapd_accounts WHERE service = $1 AND token = $2 FOR UPDATE", svc, tok))
	if errors.Is(err, pgx.ErrNoRows) {
		return a, false, nil
	}
	return a, err == nil, err
}

// accountForWrite returns the account under its row lock, creating it on
// first sight as Account documents; created reports a creation. The
// insert is the arbiter between nodes creating the same account: the
// loser reads the winner's row.
func accountForWrite(ctx context.Context, op string, tx *wtx, svc storage.ServiceName, tok storage.AccountToken, fs storage.FirstSight, now time.Time) (a acct, created bool, err error) {
	a, found, err := lockAccount(ctx, tx, svc, tok)
	if err != nil || found {
		return a, false, err
	}
	var s storage.Service
	var trial int64
	err = tx.QueryRow(ctx, "SELECT auto_register, trial_credits FROM iapd_services WHERE name = $1", svc).Scan(&s.AutoRegister, &trial)
	if errors.Is(err, pgx.ErrNoRows) {
		return a, false, storage.E(op, storage.NotFound, "no such service")
	}
	if err != nil {
		return a, false, err
	}
	a = acct{Account: storage.Account{
		Service: svc, Token: tok, State: storage.Unregistered,
		DBUUID: fs.DBUUID, CreatedAt: now, UpdatedAt: now,
	}}
	if s.AutoRegister {
		a.State = storage.Registered
	}
	h := sha1.Sum([]byte(tok)) // #nosec G401 -- storage.HashToken
	tag, err := tx.Exec(ctx, `INSERT INTO iapd_accounts (service, token, token_sha1, state, recharged, available, held, captured,
	alerts_enabled, alert_threshold, alert_recipients, alert_sent, sender_name, db_uuid, seq, created_at, updated_at,
	holds, authorized, released, expired, recharges)
VALUES ($1, $2, $3, $4, 0, 0, 0, 0, false, 0, '', false, '', $5, 0, $6, $6, 0, 0, 0, 0, 0)
ON CONFLICT (service, token) DO NOTHING`, svc, tok, h[:], a.State, fs.DBUUID, now)
	if err != nil {
		return a, false, err
	}
	if tag.RowsAffected() == 0 { // created meanwhile by another caller
		a, found, err = lockAccount(ctx, tx, svc, tok)
		if err == nil && !found {
			err = errors.New("account vanished after a conflicting insert")
		}
		return a, false, err
	}
	if s.AutoRegister && trial > 0 && !fs.NoTrial {
		if _, err := appendEntry(ctx, tx, &a, storage.Entry{
			Kind:        storage.EntryRecharge,
			DRecharged:  storage.Credits(trial),
			DAvailable:  storage.Credits(trial),
			Ref:         storage.TrialRef,
			Description: "trial credits",
		}, now); err != nil {
			return a, false, err
		}
	}
	return a, true, nil
}

// appendEntry gives e the account's next seq and a time that never goes
// back within the account, applies its deltas (and the flow figures) to a
// and inserts it. The caller writes a afterwards (putAccount).
func appendEntry(ctx context.Context, tx *wtx, a *acct, e storage.Entry, now time.Time) (storage.Entry, error) {
	if err := storage.ApplyEntry(&a.Account, &e, now); err != nil {
		return e, err
	}
	switch e.Kind {
	case storage.EntryHold:
		a.authorized += e.DHeld
	case storage.EntryRelease:
		a.released += e.DAvailable
	case storage.EntryExpiry:
		a.expired += e.DAvailable
	case storage.EntryRecharge:
		a.rechargesFlow += e.DRecharged
	}
	tx.queue(nil, `INSERT INTO iapd_entries (service, token, seq, at, kind, d_recharged, d_available, d_held, d_captured, txn, ref, description)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		e.Service, e.Account, int64(e.Seq), e.Time, e.Kind, e.DRecharged, e.DAvailable, e.DHeld, e.DCaptured, e.Transaction, e.Ref, e.Description)
	return e, nil
}

// putAccount writes a's mutable columns, judging its low-credit alert
// first (checkAlert; mayQueue false for a settings change).
func putAccount(ctx context.Context, tx *wtx, a *acct, mayQueue bool) error {
	if err := checkAlert(ctx, tx, a, mayQueue); err != nil {
		return err
	}
	tx.queue(oneRow, `UPDATE iapd_accounts SET state = $3, recharged = $4, available = $5, held = $6, captured = $7,
	alerts_enabled = $8, alert_threshold = $9, alert_recipients = $10, alert_sent = $11, sender_name = $12,
	seq = $13, updated_at = $14, holds = $15, authorized = $16, released = $17, expired = $18, recharges = $19
WHERE service = $1 AND token = $2`,
		a.Service, a.Token, a.State, a.Recharged, a.Available, a.Held, a.Captured,
		a.Alerts.Enabled, a.Alerts.Threshold, encodeRecipients(a.Alerts.Recipients), a.alertSent, a.SenderName,
		int64(a.Seq), a.UpdatedAt, a.holds, a.authorized, a.released, a.expired, a.rechargesFlow)
	return nil
}

// oneRow checks that a queued write changed exactly one row.
func oneRow(tag pgconn.CommandTag) error {
	if tag.RowsAffected() != 1 {
		return storage.Wrap("write", storage.Internal, fmt.Errorf("%s changed %d rows, want 1", tag.String(), tag.RowsAffected()))
	}
	return nil
}

// checkAlert arms the account's alert when Available >= Threshold, or
// queues one alert and disarms when it crossed below (storage.AlertNotice;
// the rule of storage/badger/alerts.go).
func checkAlert(ctx context.Context, tx *wtx, a *acct, mayQueue bool) error {
	if a.Available >= a.Alerts.Threshold {
		a.alertSent = false
		return nil
	}
	if !mayQueue || a.alertSent || !a.Alerts.Enabled || a.State != storage.Registered {
		return nil
	}
	a.alertSent = true
	tx.queue(nil, `INSERT INTO iapd_alerts (service, account, available, threshold, recipients, at, attempts, next_try, last_error)
VALUES ($1, $2, $3, $4, $5, $6, 0, $6, '')`,
		a.Service, a.Token, a.Available, a.Alerts.Threshold, encodeRecipients(a.Alerts.Recipients), a.UpdatedAt)
	return nil
}

// Account returns the account, creating it on first sight: registered with
// the service's TrialCredits (a recharge entry, Ref "trial") when the
// service auto-registers, unregistered otherwise; fs.DBUUID is recorded at
// creation only. Invalid for a bad service name or token, or a DBUUID over
// 256 bytes; NotFound if the service is unknown.
func (l *Ledger) Account(ctx context.Context, svc storage.ServiceName, tok storage.AccountToken, fs storage.FirstSight) (storage.Account, error) {
	const op = "account"
	if err := l.enter(op, ctx); err != nil {
		return storage.Account{}, err
	}
	defer l.leave()
	if err := storage.CheckAccount(op, svc, tok); err != nil {
		return storage.Account{}, err
	}
	if err := storage.CheckText(op, "db uuid", fs.DBUUID, storage.MaxShortText); err != nil {
		return storage.Account{}, err
	}
	a, err := scanAcct(l.pool.QueryRow(ctx, "SELECT "+acctCols+" FROM iapd_accounts WHERE service = $1 AND token = $2", svc, tok))
	if err == nil {
		return a.Account, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return storage.Account{}, l.wrap(op, err)
	}
	err = l.write(ctx, op, func(tx *wtx, now time.Time) (error, error) {
		r, created, err := accountForWrite(ctx, op, tx, svc, tok, fs, now)
		if err != nil || !created {
			a = r
			return nil, err
		}
		err = putAccount(ctx, tx, &r, true)
		a = r
		return nil, err
	})
	if err != nil {
		return storage.Account{}, err
	}
	return a.Account, nil
}

// LookupAccount returns the account without creating it. Invalid as for
// Account; NotFound if absent.
func (l *Ledger) LookupAccount(ctx context.Context, svc storage.ServiceName, tok storage.AccountToken) (storage.Account, error) {
	const op = "lookup account"
	if err := l.enter(op, ctx); err != nil {
		return storage.Account{}, err
	}
	defer l.leave()
	if err := storage.CheckAccount(op, svc, tok); err != nil {
		return storage.Account{}, err
	}
	a, err := scanAcct(l.pool.QueryRow(ctx, "SELECT "+acctCols+" FROM iapd_accounts WHERE service = $1 AND token = $2", svc, tok))
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.Account{}, storage.E(op, storage.NotFound, "no such account")
	}
	if err != nil {
		return storage.Account{}, l.wrap(op, err)
	}
	return a.Account, nil
}

// queryAccounts runs a query of acctCols rows.
func (l *Ledger) queryAccounts(ctx context.Context, op, sql string, args ...any) ([]storage.Account, error) {
	rows, err := l.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, l.wrap(op, err)
	}
	defer rows.Close()
	out := []storage.Account{}
	for rows.Next() {
		a, err := scanAcct(rows)
		if err != nil {
			return nil, l.wrap(op, err)
		}
		out = append(out, a.Account)
	}
	if err := rows.Err(); err != nil {
		return nil, l.wrap(op, err)
	}
	return out, nil
}

// AccountsByToken returns the accounts of every service that have this
// token, by service name. Empty when none; Invalid for a bad token.
func (l *Ledger) AccountsByToken(ctx context.Context, tok storage.AccountToken) ([]storage.Account, error) {
	const op = "accounts by token"
	if err := l.enter(op, ctx); err != nil {
		return nil, err
	}
	defer l.leave()
	if !storage.ValidAccountToken(tok) {
		return nil, storage.E(op, storage.Invalid, "invalid account token")
	}
	return l.queryAccounts(ctx, op, "SELECT "+acctCols+" FROM iapd_accounts WHERE token = $1 ORDER BY service", tok)
}

// TokenByHash returns the token whose SHA-1 is h (an index lookup).
// NotFound when no account has such a token.
func (l *Ledger) TokenByHash(ctx context.Context, h [sha1.Size]byte) (storage.AccountToken, error) {
	const op = "token by hash"
	if err := l.enter(op, ctx); err != nil {
		return "", err
	}
	defer l.leave()
	var tok storage.AccountToken
	err := l.pool.QueryRow(ctx, "SELECT token FROM iapd_accounts WHERE token_sha1 = $1 LIMIT 1", h[:]).Scan(&tok)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", storage.E(op, storage.NotFound, "no account has this token")
	}
	if err != nil {
		return "", l.wrap(op, err)
	}
	return tok, nil
}

// Accounts lists accounts matching f in (service, token) order (bytewise):
// at most f.Limit (<= 0: 100), after the token f.After of service
// f.Service. Invalid for After without Service, a bad service name or an
// unknown state.
func (l *Ledger) Accounts(ctx context.Context, f storage.AccountFilter) ([]storage.Account, error) {
	const op = "accounts"
	if err := l.enter(op, ctx); err != nil {
		return nil, err
	}
	defer l.leave()
	if err := f.Check(op); err != nil {
		return nil, err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	return l.queryAccounts(ctx, op, "SELECT "+acctCols+` FROM iapd_accounts
WHERE ($1 = '' OR service = $1) AND ($2 = '' OR state = $2) AND ($3 = '' OR token > $3)
ORDER BY service, token LIMIT $4`, string(f.Service), string(f.State), string(f.After), limit)
}

// UpdateAccount applies u atomically and returns the result; an update
// with every field nil changes nothing. No entry is written; no alert is
// queued (a change of Enabled or Threshold re-arms). NotFound if the
// account does not exist; Invalid as storage/badger documents.
func (l *Ledger) UpdateAccount(ctx context.Context, svc storage.ServiceName, tok storage.AccountToken, u storage.AccountUpdate) (storage.Account, error) {
	const op = "update account"
	if err := l.enter(op, ctx); err != nil {
		return storage.Account{}, err
	}
	defer l.leave()
	if err := storage.CheckAccount(op, svc, tok); err != nil {
		return storage.Account{}, err
	}
	if err := u.Check(op); err != nil {
		return storage.Account{}, err
	}
	var out storage.Account
	err := l.write(ctx, op, func(tx *wtx, now time.Time) (error, error) {
		a, found, err := lockAccount(ctx, tx, svc, tok)
		out = a.Account
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, storage.E(op, storage.NotFound, "no such account")
		}
		if u.State == nil && u.Alerts == nil && u.SenderName == nil {
			return nil, nil
		}
		if u.State != nil {
			a.State = *u.State
		}
		if u.Alerts != nil {
			if u.Alerts.Enabled != a.Alerts.Enabled || u.Alerts.Threshold != a.Alerts.Threshold {
				a.alertSent = false
			}
			a.Alerts = *u.Alerts
			a.Alerts.Recipients = append([]storage.Recipient(nil), u.Alerts.Recipients...)
			if len(a.Alerts.Recipients) == 0 {
				a.Alerts.Recipients = nil
			}
		}
		if u.SenderName != nil {
			a.SenderName = *u.SenderName
		}
		if now.After(a.UpdatedAt) {
			a.UpdatedAt = now
		}
		err = putAccount(ctx, tx, &a, false)
		out = a.Account
		return nil, err
	})
	if err != nil {
		return storage.Account{}, err
	}
	return out, nil
}

// Recharge adds credit or corrects it, as storage/badger's Recharge
// documents. The ref's idempotency stands on the unique index
// iapd_entries_ref: the insert of the entry is the arbiter.
func (l *Ledger) Recharge(ctx context.Context, r storage.RechargeRequest) (storage.Entry, error) {
	const op = "recharge"
	if err := l.enter(op, ctx); err != nil {
		return storage.Entry{}, err
	}
	defer l.leave()
	if err := r.Check(op); err != nil {
		return storage.Entry{}, err
	}
	var out storage.Entry
	err := l.write(ctx, op, func(tx *wtx, now time.Time) (error, error) {
		a, created, err := accountForWrite(ctx, op, tx, r.Service, r.Account, storage.FirstSight{}, now)
		if err != nil {
			return nil, err
		}
		if created {
			a.State = storage.Registered
		}
		if r.Ref != "" && !created {
			first, dup, err := entryByRef(ctx, tx, r.Service, r.Account, r.Ref)
			if err != nil {
				return nil, err
			}
			if dup {
				if first.Kind != r.Kind || first.DRecharged != r.Amount {
					return nil, storage.E(op, storage.Conflict, "ref already used with another kind or amount")
				}
				out = first
				return nil, nil
			}
		}
		if a.Recharged+r.Amount > storage.MaxTotal {
			return nil, storage.E(op, storage.Invalid, "account total out of range")
		}
		if a.Available+r.Amount < 0 {
			return nil, &storage.Error{Op: op, Kind: storage.InsufficientCredit,
				Msg: "adjustment exceeds available credit", Service: r.Service, Credit: -r.Amount}
		}
		out, err = appendEntry(ctx, tx, &a, storage.Entry{
			Kind: r.Kind, DRecharged: r.Amount, DAvailable: r.Amount, Ref: r.Ref, Description: r.Description,
		}, now)
		if err != nil {
			return nil, err
		}
		return nil, putAccount(ctx, tx, &a, true)
	})
	if err != nil {
		return storage.Entry{}, err
	}
	return out, nil
}

// entryByRef reads the entry of an account that has the ref. The account
// is locked by the caller, so no insert of that ref can race this read;
// the unique index refuses a second one regardless.
func entryByRef(ctx context.Context, tx *wtx, svc storage.ServiceName, tok storage.AccountToken, ref string) (storage.Entry, bool, error) {
	e, err := scanEntry(tx.QueryRow(ctx, "SELECT "+entryCols+" FROM iapd_entries WHERE service = $1 AND token = $2 AND ref = $3 AND ref <> ''", svc, tok, ref))
	if errors.Is(err, pgx.ErrNoRows) {
		return e, false, nil
	}
	return e, err == nil, err
}

const entryCols = "service, token, seq, at, kind, d_recharged, d_available, d_held, d_captured, txn, ref, description"

func scanEntry(row pgx.Row) (storage.Entry, error) {
	var e storage.Entry
	var seq int64
	err := row.Scan(&e.Service, &e.Account, &seq, &e.Time, &e.Kind, &e.DRecharged, &e.DAvailable, &e.DHeld, &e.DCaptured, &e.Transaction, &e.Ref, &e.Description)
	e.Seq = uint64(seq)
	e.Time = e.Time.UTC()
	return e, err
}

// History returns entries of one account, newest first, as storage/badger
// documents (Before, Since, Until, Limit). Invalid for a bad name or
// token; NotFound if the account does not exist.
func (l *Ledger) History(ctx context.Context, svc storage.ServiceName, tok storage.AccountToken, q storage.HistoryQuery) ([]storage.Entry, error) {
	const op = "history"
	if err := l.enter(op, ctx); err != nil {
		return nil, err
	}
	defer l.leave()
	if err := storage.CheckAccount(op, svc, tok); err != nil {
		return nil, err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	before := int64(-1)
	if q.Before > 0 {
		before = int64(q.Before)
	}
	var since, until *time.Time
	if !q.Since.IsZero() {
		s := q.Since.UTC()
		since = &s
	}
	if !q.Until.IsZero() {
		u := q.Until.UTC()
		until = &u
	}
	out := []storage.Entry{}
	err := pgx.BeginTxFunc(ctx, l.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, "SELECT 1 FROM iapd_accounts WHERE service = $1 AND token = $2", svc, tok).Scan(&one); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return storage.E(op, storage.NotFound, "no such account")
			}
			return err
		}
		rows, err := tx.Query(ctx, "SELECT "+entryCols+` FROM iapd_entries
WHERE service = $1 AND token = $2 AND ($3 < 0 OR seq < $3) AND ($4::timestamptz IS NULL OR at >= $4) AND ($5::timestamptz IS NULL OR at < $5)
ORDER BY seq DESC LIMIT $6`, svc, tok, before, since, until, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scanEntry(rows)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, l.wrap(op, err)
	}
	return out, nil
}
