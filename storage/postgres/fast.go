package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iapd/iapd/storage"
)

// One-statement paths: the common case of a hot operation as a single
// statement in its own implicit transaction — one round trip, durable when
// it returns — with the conditions of the full path in its WHERE clause.
// When they do not hold the statement changes nothing and the caller runs
// the full path, which decides the rest (first sight, refusals, alert
// crossings) as before. Under concurrency the row lock orders the
// statements and PostgreSQL re-checks the WHERE clause on the row as the
// previous one left it (READ COMMITTED), so a conditional UPDATE is a
// compare-and-set, as the full path's locked read then write is.

// fastAuthorizeSQL holds the credit of an existing registered account that
// has it, when the hold queues no low-credit alert (the alert already
// sent, alerts off, or Available staying at or above the threshold;
// re-armed as checkAlert does), and writes the hold and its entry.
const fastAuthorizeSQL = `WITH a AS (
	UPDATE iapd_accounts SET available = available - $3::bigint, held = held + $3::bigint, seq = seq + 1,
		updated_at = greatest(updated_at, $4::timestamptz), holds = holds + 1, authorized = authorized + $3::bigint,
		alert_sent = alert_sent AND available - $3::bigint < alert_threshold
	WHERE service = $1::text AND token = $2::text AND state = 'registered' AND available >= $3::bigint
		AND (alert_sent OR NOT alerts_enabled OR available - $3::bigint >= alert_threshold)
	RETURNING service, token, seq, updated_at),
t AS (INSERT INTO iapd_transactions (` + txnCols + `)
	SELECT $5::text, service, token, 'held', $3::bigint, 0, $6::text, $4::timestamptz, $7::timestamptz, NULL FROM a),
e AS (INSERT INTO iapd_entries (service, token, seq, at, kind, d_recharged, d_available, d_held, d_captured, txn, ref, description)
	SELECT service, token, seq, updated_at, 'hold', 0, -$3::bigint, $3::bigint, 0, $5::text, '', $6::text FROM a)
SELECT seq FROM a`

// fastAuthorize runs fastAuthorizeSQL. ok false: nothing was changed, run
// the full path (also after a failure the full path retries or reports:
// a serialization failure, a deadlock, a token collision).
func (l *Ledger) fastAuthorize(ctx context.Context, r storage.AuthorizeRequest, now time.Time) (t storage.Transaction, ok bool, err error) {
	t = newHold(r, now)
	var seq int64
	err = l.pool.QueryRow(ctx, fastAuthorizeSQL, r.Service, r.Account, r.Amount, now, t.Token, t.Description, t.ExpiresAt).Scan(&seq)
	switch {
	case err == nil:
		return t, true, nil
	case errors.Is(err, pgx.ErrNoRows), retryReason(err) != "", sqlState(err) == "23505":
		return storage.Transaction{}, false, nil
	}
	return storage.Transaction{}, false, err
}

// fastEndSQL ends an open, unexpired hold of service $2 in one statement:
// the account locked first, then the hold (the order of the full path,
// loadHold), with the account's alert judged on the locked row; %[1]s
// sets the account's figures, %[2]s the hold's final state, %[3]s is the
// extra condition on the hold, %[4]s the entry's kind and deltas, %[5]s
// (on the locked row x) and %[7]s (on the updated row y) the account's
// Available after the change, %[6]s the hold's captured amount.
const fastEndSQL = `WITH x AS (
	SELECT service, token, state, available, alert_sent, alerts_enabled, alert_threshold FROM iapd_accounts
	WHERE (service, token) = (SELECT service, account FROM iapd_transactions WHERE token = $1::text) FOR UPDATE),
h AS (SELECT t.token, t.service, t.account, t.amount, t.description, t.created_at, t.expires_at FROM iapd_transactions t, x
	WHERE t.token = $1::text AND t.service = $2::text AND t.state = 'held' AND t.expires_at > $3::timestamptz %[3]s
		AND (x.state <> 'registered' OR NOT x.alerts_enabled OR x.alert_sent OR %[5]s >= x.alert_threshold)
	FOR UPDATE OF t),
a AS (UPDATE iapd_accounts y SET %[1]s, seq = y.seq + 1, updated_at = greatest(y.updated_at, $3::timestamptz),
		holds = y.holds - 1, alert_sent = y.alert_sent AND %[7]s < y.alert_threshold
	FROM h WHERE y.service = h.service AND y.token = h.account
	RETURNING y.service, y.token, y.seq, y.updated_at),
u AS (UPDATE iapd_transactions z SET state = '%[2]s', captured = %[6]s, ended_at = $3::timestamptz
	FROM h WHERE z.token = h.token),
e AS (INSERT INTO iapd_entries (service, token, seq, at, kind, d_recharged, d_available, d_held, d_captured, txn, ref, description)
	SELECT a.service, a.token, a.seq, a.updated_at, %[4]s, h.token, '', h.description FROM a, h)
SELECT h.account, h.amount, h.description, h.created_at, h.expires_at FROM h, a`

var (
	// A capture of the held amount (nil or equal): Available unchanged.
	fastCaptureSQL = fmt.Sprintf(fastEndSQL,
		"held = y.held - h.amount, captured = y.captured + h.amount", storage.Captured,
		"AND ($4::bigint IS NULL OR t.amount = $4::bigint)",
		"'capture', 0, 0, -h.amount, h.amount", "x.available", "z.amount", "y.available")
	// A cancel: the amount back to Available.
	fastCancelSQL = fmt.Sprintf(fastEndSQL,
		"available = y.available + h.amount, held = y.held - h.amount, released = y.released + h.amount", storage.Cancelled,
		"", "'release', 0, h.amount, -h.amount, 0", "x.available + t.amount", "0", "y.available + h.amount")
)

// fastEnd runs fastCaptureSQL (capture: amount nil or the held amount) or
// fastCancelSQL and returns the ended hold. ok false: nothing was changed,
// run the full path (the hold absent, ended, expired, of another service
// or captured for another amount; an alert to queue; a failure the full
// path retries).
func (l *Ledger) fastEnd(ctx context.Context, sql string, state storage.TransactionState, svc storage.ServiceName, token string, amount *storage.Credits, now time.Time) (t storage.Transaction, ok bool, err error) {
	args := []any{token, svc, now}
	if sql == fastCaptureSQL {
		args = append(args, amount)
	}
	t = storage.Transaction{Token: token, Service: svc, State: state, EndedAt: now}
	err = l.pool.QueryRow(ctx, sql, args...).Scan(&t.Account, &t.Amount, &t.Description, &t.CreatedAt, &t.ExpiresAt)
	switch {
	case err == nil:
		t.CreatedAt, t.ExpiresAt = t.CreatedAt.UTC(), t.ExpiresAt.UTC()
		if state == storage.Captured {
			t.Captured = t.Amount
		}
		return t, true, nil
	case errors.Is(err, pgx.ErrNoRows), retryReason(err) != "":
		return storage.Transaction{}, false, nil
	}
	return storage.Transaction{}, false, err
}
