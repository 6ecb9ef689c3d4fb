package postgres

import (
	"context"
	"errors"
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
	t = storage.Transaction{
		Token:       newTxnToken(now),
		Service:     r.Service,
		Account:     r.Account,
		State:       storage.Held,
		Amount:      r.Amount,
		Description: r.Description,
		CreatedAt:   now,
		ExpiresAt:   micro(now.Add(r.TTL)),
	}
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
