package postgres

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/iapd/iapd/storage"
)

// Records (storage.Records): one row per (namespace, key); expiry judged
// on the ledger clock.

func (l *Ledger) checkRecordPut(op, ns, key string, value []byte, expires time.Time) error {
	if err := storage.CheckRecord(op, ns, key, value); err != nil {
		return err
	}
	if !expires.IsZero() && !micro(expires).After(l.clock()) {
		return storage.E(op, storage.Invalid, "record expiry is not in the future")
	}
	return nil
}

func expiresArg(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	m := micro(t)
	return &m
}

// PutRecordIfAbsent stores value under (ns, key) unless a live record is
// there, and returns the stored value and whether this call created it; a
// record past its expiry counts as absent and is replaced. The insert is
// the arbiter (INSERT … ON CONFLICT DO UPDATE only over an expired row):
// of concurrent callers on any node, exactly one creates.
func (l *Ledger) PutRecordIfAbsent(ctx context.Context, ns, key string, value []byte, expires time.Time) ([]byte, bool, error) {
	const op = "put record if absent"
	if err := l.enter(op, ctx); err != nil {
		return nil, false, err
	}
	defer l.leave()
	if err := l.checkRecordPut(op, ns, key, value, expires); err != nil {
		return nil, false, err
	}
	if value == nil {
		value = []byte{}
	}
	var stored []byte
	var created bool
	err := l.write(ctx, op, func(tx *wtx, now time.Time) (error, error) {
		var got []byte
		err := tx.QueryRow(ctx, `INSERT INTO iapd_records (ns, key, value, expires) VALUES ($1, $2, $3, $4)
ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, expires = excluded.expires
	WHERE iapd_records.expires IS NOT NULL AND iapd_records.expires <= $5
RETURNING value`, ns, []byte(key), value, expiresArg(expires), now).Scan(&got)
		if err == nil {
			stored, created = got, true
			return nil, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return nil, err
		}
		// A live record is there: the conflicting row is locked by the
		// statement above until this transaction ends, so it reads as is.
		created = false
		return nil, tx.QueryRow(ctx, "SELECT value FROM iapd_records WHERE ns = $1 AND key = $2", ns, []byte(key)).Scan(&stored)
	})
	if err != nil {
		return nil, false, err
	}
	return stored, created, nil
}

// PutRecord stores value under (ns, key), replacing any record.
func (l *Ledger) PutRecord(ctx context.Context, ns, key string, value []byte, expires time.Time) error {
	const op = "put record"
	if err := l.enter(op, ctx); err != nil {
		return err
	}
	defer l.leave()
	if err := l.checkRecordPut(op, ns, key, value, expires); err != nil {
		return err
	}
	if value == nil {
		value = []byte{}
	}
	return l.write(ctx, op, func(tx *wtx, now time.Time) (error, error) {
		tx.queue(nil, `INSERT INTO iapd_records (ns, key, value, expires) VALUES ($1, $2, $3, $4)
ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, expires = excluded.expires`, ns, []byte(key), value, expiresArg(expires))
		return nil, nil
	})
}

// GetRecord returns the live record under (ns, key). NotFound if absent
// or expired; Invalid for a bad namespace or key.
func (l *Ledger) GetRecord(ctx context.Context, ns, key string) ([]byte, error) {
	const op = "get record"
	if err := l.enter(op, ctx); err != nil {
		return nil, err
	}
	defer l.leave()
	if err := storage.CheckRecordKey(op, ns, key); err != nil {
		return nil, err
	}
	var v []byte
	err := l.pool.QueryRow(ctx, "SELECT value FROM iapd_records WHERE ns = $1 AND key = $2 AND (expires IS NULL OR expires > $3)",
		ns, []byte(key), l.clock()).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, storage.E(op, storage.NotFound, "no such record")
	}
	if err != nil {
		return nil, l.wrap(op, err)
	}
	return v, nil
}

// DeleteRecord removes the record under (ns, key), live or expired.
// Idempotent. Invalid for a bad namespace or key.
func (l *Ledger) DeleteRecord(ctx context.Context, ns, key string) error {
	const op = "delete record"
	if err := l.enter(op, ctx); err != nil {
		return err
	}
	defer l.leave()
	if err := storage.CheckRecordKey(op, ns, key); err != nil {
		return err
	}
	return l.write(ctx, op, func(tx *wtx, now time.Time) (error, error) {
		tx.queue(nil, "DELETE FROM iapd_records WHERE ns = $1 AND key = $2", ns, []byte(key))
		return nil, nil
	})
}

// DeleteExpiredRecords deletes at most max (> 0, else Invalid) records
// whose expiry is at or before now, oldest expiry first, in one statement;
// rows another node is deleting are skipped (SKIP LOCKED).
func (l *Ledger) DeleteExpiredRecords(ctx context.Context, now time.Time, max int) (int, error) {
	const op = "delete expired records"
	if err := l.enter(op, ctx); err != nil {
		return 0, err
	}
	defer l.leave()
	if max <= 0 {
		return 0, storage.E(op, storage.Invalid, "max must be positive")
	}
	var n int
	err := l.write(ctx, op, func(tx *wtx, _ time.Time) (error, error) {
		tag, err := tx.Exec(ctx, `DELETE FROM iapd_records WHERE (ns, key) IN (
	SELECT ns, key FROM iapd_records WHERE expires IS NOT NULL AND expires <= $1 ORDER BY expires LIMIT $2 FOR UPDATE SKIP LOCKED)`,
			micro(now), max)
		n = int(tag.RowsAffected())
		return nil, err
	})
	return n, err
}

// ListRecords returns at most max (> 0, else Invalid) live records of ns
// whose key sorts after after, in key order (bytewise). Invalid for a bad
// namespace.
func (l *Ledger) ListRecords(ctx context.Context, ns, after string, max int) ([]storage.Record, error) {
	const op = "list records"
	if err := l.enter(op, ctx); err != nil {
		return nil, err
	}
	defer l.leave()
	if !storage.ValidRecordNS(ns) {
		return nil, storage.E(op, storage.Invalid, "invalid record namespace")
	}
	if max <= 0 {
		return nil, storage.E(op, storage.Invalid, "max must be positive")
	}
	rows, err := l.pool.Query(ctx, `SELECT key, value, expires FROM iapd_records
WHERE ns = $1 AND key > $2 AND (expires IS NULL OR expires > $3) ORDER BY key LIMIT $4`, ns, []byte(after), l.clock(), max)
	if err != nil {
		return nil, l.wrap(op, err)
	}
	defer rows.Close()
	out := []storage.Record{}
	for rows.Next() {
		var key []byte
		var r storage.Record
		var exp *time.Time
		if err := rows.Scan(&key, &r.Value, &exp); err != nil {
			return nil, l.wrap(op, err)
		}
		r.Key = string(key)
		if exp != nil {
			r.Expires = exp.UTC()
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, l.wrap(op, err)
	}
	return out, nil
}

// Vouchers (storage.Vouchers).

func voucherRef(h [32]byte) string { return "voucher:" + hex.EncodeToString(h[:8]) }

const voucherCols = "code_hash, service, amount, batch, created_at, expires_at, redeemed_at, redeemed_by, entry_seq"

func scanVoucher(row pgx.Row) (storage.Voucher, error) {
	var v storage.Voucher
	var h []byte
	var exp, red *time.Time
	var seq int64
	err := row.Scan(&h, &v.Service, &v.Amount, &v.Batch, &v.CreatedAt, &exp, &red, &v.RedeemedBy, &seq)
	copy(v.CodeHash[:], h)
	v.CreatedAt = v.CreatedAt.UTC()
	if exp != nil {
		v.ExpiresAt = exp.UTC()
	}
	if red != nil {
		v.RedeemedAt = red.UTC()
	}
	v.Entry = uint64(seq)
	return v, err
}

// CreateVouchers stores new vouchers, all or none, in one transaction. A
// zero CreatedAt is set to now; ExpiresAt zero means never. Exists if a
// code hash is stored already or given twice (the primary key decides);
// NotFound if a service is unknown; Invalid as storage/badger documents.
func (l *Ledger) CreateVouchers(ctx context.Context, vs []storage.Voucher) error {
	const op = "create vouchers"
	if err := l.enter(op, ctx); err != nil {
		return err
	}
	defer l.leave()
	if err := storage.CheckVouchers(op, vs); err != nil {
		return err
	}
	if len(vs) == 0 {
		return nil
	}
	return l.write(ctx, op, func(tx *wtx, now time.Time) (error, error) {
		for _, v := range vs {
			created := now
			if !v.CreatedAt.IsZero() {
				created = micro(v.CreatedAt)
			}
			tx.queue(nil, `INSERT INTO iapd_vouchers (`+voucherCols+`) VALUES ($1, $2, $3, $4, $5, $6, NULL, '', 0)`,
				v.CodeHash[:], v.Service, v.Amount, v.Batch, created, expiresArg(v.ExpiresAt))
		}
		err := tx.flush()
		switch sqlState(err) {
		case "23505":
			return nil, storage.E(op, storage.Exists, "a voucher with this code exists")
		case "23503":
			return nil, storage.E(op, storage.NotFound, "no such service")
		}
		return nil, err
	})
}

// RedeemVoucher credits the voucher's amount to (svc, tok) as a recharge
// entry (Ref "voucher:"+16 hex) and marks the voucher redeemed, in one
// transaction. The conditional UPDATE of the voucher is the arbiter: of
// concurrent redemptions on any node exactly one succeeds. NotFound if no
// such voucher or it is for another service; Conflict if it was redeemed,
// has expired at now, or the account has a recharge with the voucher's
// ref already; Invalid for a bad name or token.
func (l *Ledger) RedeemVoucher(ctx context.Context, codeHash [32]byte, svc storage.ServiceName, tok storage.AccountToken, now time.Time) (storage.Voucher, storage.Entry, error) {
	const op = "redeem voucher"
	if err := l.enter(op, ctx); err != nil {
		return storage.Voucher{}, storage.Entry{}, err
	}
	defer l.leave()
	if err := storage.CheckAccount(op, svc, tok); err != nil {
		return storage.Voucher{}, storage.Entry{}, err
	}
	now = micro(now)
	var v storage.Voucher
	var out storage.Entry
	err := l.write(ctx, op, func(tx *wtx, clock time.Time) (error, error) {
		var err error
		v, err = scanVoucher(tx.QueryRow(ctx, "SELECT "+voucherCols+" FROM iapd_vouchers WHERE code_hash = $1 FOR UPDATE", codeHash[:]))
		switch {
		case errors.Is(err, pgx.ErrNoRows) || err == nil && v.Service != svc:
			return nil, storage.E(op, storage.NotFound, "no such voucher")
		case err != nil:
			return nil, err
		case v.Redeemed():
			return nil, storage.E(op, storage.Conflict, "voucher already redeemed")
		case !v.ExpiresAt.IsZero() && !now.Before(v.ExpiresAt):
			return nil, storage.E(op, storage.Conflict, "voucher expired")
		}
		a, created, err := accountForWrite(ctx, op, tx, svc, tok, storage.FirstSight{}, clock)
		if err != nil {
			return nil, err
		}
		if created {
			a.State = storage.Registered
		}
		ref := voucherRef(codeHash)
		if !created {
			if _, dup, err := entryByRef(ctx, tx, svc, tok, ref); err != nil {
				return nil, err
			} else if dup {
				return nil, storage.E(op, storage.Conflict, "the account has a recharge with this voucher's ref")
			}
		}
		if a.Recharged+v.Amount > storage.MaxTotal {
			return nil, storage.E(op, storage.Invalid, "account total out of range")
		}
		out, err = appendEntry(ctx, tx, &a, storage.Entry{
			Kind: storage.EntryRecharge, DRecharged: v.Amount, DAvailable: v.Amount, Ref: ref, Description: "voucher",
		}, clock)
		if err != nil {
			return nil, err
		}
		v.RedeemedAt, v.RedeemedBy, v.Entry = out.Time, tok, out.Seq
		tx.queue(func(tag pgconn.CommandTag) error {
			if tag.RowsAffected() != 1 {
				return storage.E(op, storage.Conflict, "voucher already redeemed")
			}
			return nil
		}, "UPDATE iapd_vouchers SET redeemed_at = $2, redeemed_by = $3, entry_seq = $4 WHERE code_hash = $1 AND redeemed_at IS NULL",
			codeHash[:], v.RedeemedAt, tok, int64(v.Entry))
		return nil, putAccount(ctx, tx, &a, true)
	})
	if err != nil {
		return storage.Voucher{}, storage.Entry{}, err
	}
	return v, out, nil
}

// ListVouchers lists vouchers matching f in code hash order: at most
// f.Limit (<= 0: 100), after the hash f.After. Invalid for a bad service
// name.
func (l *Ledger) ListVouchers(ctx context.Context, f storage.VoucherFilter) ([]storage.Voucher, error) {
	const op = "list vouchers"
	if err := l.enter(op, ctx); err != nil {
		return nil, err
	}
	defer l.leave()
	if f.Service != "" && !storage.ValidServiceName(string(f.Service)) {
		return nil, storage.E(op, storage.Invalid, "invalid service name")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	var redeemed *bool
	if f.Redeemed != nil {
		r := *f.Redeemed
		redeemed = &r
	}
	rows, err := l.pool.Query(ctx, "SELECT "+voucherCols+` FROM iapd_vouchers
WHERE code_hash > $1 AND ($2 = '' OR service = $2) AND ($3 = '' OR batch = $3) AND ($4::boolean IS NULL OR (redeemed_at IS NOT NULL) = $4)
ORDER BY code_hash LIMIT $5`, f.After[:], string(f.Service), f.Batch, redeemed, limit)
	if err != nil {
		return nil, l.wrap(op, err)
	}
	defer rows.Close()
	out := []storage.Voucher{}
	for rows.Next() {
		v, err := scanVoucher(rows)
		if err != nil {
			return nil, l.wrap(op, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, l.wrap(op, err)
	}
	return out, nil
}

// The alert outbox (storage.AlertOutbox); alerts are queued by putAccount
// (checkAlert) in the transaction of the change that crossed.

const maxAlertError = 1024

const alertCols = "id, service, account, available, threshold, recipients, at, attempts, next_try, last_error"

func scanAlert(row pgx.Row) (storage.AlertNotice, error) {
	var n storage.AlertNotice
	var id int64
	var recipients string
	err := row.Scan(&id, &n.Service, &n.Account, &n.Available, &n.Threshold, &recipients, &n.At, &n.Attempts, &n.NextTry, &n.LastError)
	if err != nil {
		return n, err
	}
	n.ID = uint64(id)
	n.At, n.NextTry = n.At.UTC(), n.NextTry.UTC()
	if recipients != "" {
		err = json.Unmarshal([]byte(recipients), &n.Recipients)
	}
	return n, err
}

// DueAlerts returns at most max (> 0, else Invalid) queued alerts whose
// NextTry <= now, oldest (lowest id) first. With Options.AlertLease it
// claims them: their NextTry moves to now + lease in the same statement,
// rows another node is claiming are skipped (FOR UPDATE SKIP LOCKED), so
// two nodes never get the same alert within a lease; the notices returned
// carry the NextTry they had.
func (l *Ledger) DueAlerts(ctx context.Context, now time.Time, max int) ([]storage.AlertNotice, error) {
	const op = "due alerts"
	if err := l.enter(op, ctx); err != nil {
		return nil, err
	}
	defer l.leave()
	if max <= 0 {
		return nil, storage.E(op, storage.Invalid, "max must be positive")
	}
	now = micro(now)
	out := []storage.AlertNotice{}
	collect := func(rows pgx.Rows) error {
		defer rows.Close()
		for rows.Next() {
			n, err := scanAlert(rows)
			if err != nil {
				return err
			}
			out = append(out, n)
		}
		return rows.Err()
	}
	if l.alertLease <= 0 {
		rows, err := l.pool.Query(ctx, "SELECT "+alertCols+" FROM iapd_alerts WHERE next_try <= $1 ORDER BY id LIMIT $2", now, max)
		if err == nil {
			err = collect(rows)
		}
		if err != nil {
			return nil, l.wrap(op, err)
		}
		return out, nil
	}
	err := l.write(ctx, op, func(tx *wtx, _ time.Time) (error, error) {
		out = out[:0]
		return nil, tx.query(func(rows pgx.Rows) error {
			n, err := scanAlert(rows)
			out = append(out, n)
			return err
		}, `WITH due AS (
	SELECT `+alertCols+` FROM iapd_alerts WHERE next_try <= $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED
), claimed AS (
	UPDATE iapd_alerts a SET next_try = $3 FROM due WHERE a.id = due.id RETURNING a.id
)
SELECT `+prefixCols("due.", alertCols)+` FROM due JOIN claimed ON claimed.id = due.id ORDER BY due.id`, now, max, now.Add(l.alertLease))
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func prefixCols(p, cols string) string {
	parts := strings.Split(cols, ", ")
	for i := range parts {
		parts[i] = p + parts[i]
	}
	return strings.Join(parts, ", ")
}

// AlertSent removes a delivered alert. Idempotent.
func (l *Ledger) AlertSent(ctx context.Context, id uint64) error {
	const op = "alert sent"
	if err := l.enter(op, ctx); err != nil {
		return err
	}
	defer l.leave()
	return l.write(ctx, op, func(tx *wtx, _ time.Time) (error, error) {
		tx.queue(nil, "DELETE FROM iapd_alerts WHERE id = $1", int64(id))
		return nil, nil
	})
}

// AlertFailed records a failed delivery: Attempts+1, NextTry = next, and
// reason (cut to 1024 bytes) as LastError. NotFound if the alert is no
// longer queued.
func (l *Ledger) AlertFailed(ctx context.Context, id uint64, next time.Time, reason string) error {
	const op = "alert failed"
	if err := l.enter(op, ctx); err != nil {
		return err
	}
	defer l.leave()
	reason = cutText(reason, maxAlertError)
	return l.write(ctx, op, func(tx *wtx, _ time.Time) (error, error) {
		tx.queue(func(tag pgconn.CommandTag) error {
			if tag.RowsAffected() == 0 {
				return storage.E(op, storage.NotFound, "no such alert")
			}
			return nil
		}, "UPDATE iapd_alerts SET attempts = attempts + 1, next_try = $2, last_error = $3 WHERE id = $1", int64(id), micro(next), reason)
		return nil, nil
	})
}

// cutText cuts s to at most max bytes without splitting a UTF-8 sequence,
// and makes it valid UTF-8 (PostgreSQL text refuses invalid UTF-8).
func cutText(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= max {
		return s
	}
	s = s[:max]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
