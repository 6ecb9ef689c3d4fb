package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iapd/iapd/storage"
)

// Copy writes another ledger's contents into this one (iapd ledger copy),
// all in one database transaction: nothing is visible to the nodes before
// Commit, and a copy that fails or is abandoned (Rollback) leaves the
// database as it was — so a failed copy is simply run again. Rows are
// written as given (times to the microsecond), with the schema's
// constraints checked as for any write; the accounts' flow figures and
// open-hold counts are computed from the entries and holds at Commit.
// Give records of a kind only after those they refer to: services,
// accounts, then entries and transactions; vouchers after services. A
// Copy is for one goroutine.
type Copy struct {
	l     *Ledger
	tx    pgx.Tx
	table string
	cols  []string
	rows  [][]any
	// Rows counts the rows written, by table.
	Rows map[string]int64
}

// copyBatch is how many rows ride in one COPY.
const copyBatch = 2000

// BeginCopy starts a copy into a ledger that holds no account, voucher,
// transaction, queued alert or record (services only, as a node that
// started once leaves them: a copied service replaces one of the same
// name). Exists when the ledger holds any of those; Unavailable when the
// database is unreachable.
func (l *Ledger) BeginCopy(ctx context.Context) (*Copy, error) {
	const op = "copy"
	if err := l.enter(op, ctx); err != nil {
		return nil, err
	}
	defer l.leave()
	tx, err := l.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		return nil, l.wrap(op, err)
	}
	var busy bool
	err = tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM iapd_accounts) OR EXISTS (SELECT 1 FROM iapd_vouchers)
	OR EXISTS (SELECT 1 FROM iapd_transactions) OR EXISTS (SELECT 1 FROM iapd_alerts) OR EXISTS (SELECT 1 FROM iapd_records)`).Scan(&busy)
	if err == nil && busy {
		err = storage.E(op, storage.Exists, "the PostgreSQL ledger is not empty (it holds accounts, vouchers, holds, alerts or records): copy into a new database")
	}
	if err == nil {
		// Taken by Open's migration too: no node migrates or starts
		// writing a schema under the copy's feet unnoticed.
		_, err = tx.Exec(ctx, "LOCK TABLE iapd_services, iapd_accounts, iapd_entries, iapd_transactions, iapd_vouchers, iapd_alerts, iapd_records IN EXCLUSIVE MODE")
	}
	if err != nil {
		_ = tx.Rollback(context.Background())
		return nil, l.wrap(op, err)
	}
	return &Copy{l: l, tx: tx, Rows: map[string]int64{}}, nil
}

// add queues one row of table, writing the queue when it is full or the
// table changes.
func (c *Copy) add(ctx context.Context, table string, cols []string, row ...any) error {
	if table != c.table || len(c.rows) >= copyBatch {
		if err := c.flush(ctx); err != nil {
			return err
		}
		c.table, c.cols = table, cols
	}
	c.rows = append(c.rows, row)
	return nil
}

func (c *Copy) flush(ctx context.Context) error {
	if len(c.rows) == 0 {
		return nil
	}
	n, err := c.tx.CopyFrom(ctx, pgx.Identifier{c.table}, c.cols, pgx.CopyFromRows(c.rows))
	if err != nil {
		return c.l.wrap("copy "+c.table, err)
	}
	c.Rows[c.table] += n
	c.rows = c.rows[:0]
	return nil
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	m := micro(t)
	return &m
}

// Service writes s (key, policy and creation time), replacing a service
// of that name.
func (c *Copy) Service(ctx context.Context, s storage.Service) error {
	if err := c.flush(ctx); err != nil {
		return err
	}
	var key []byte
	if s.HasKey {
		key = s.KeyHash[:]
	}
	_, err := c.tx.Exec(ctx, `INSERT INTO iapd_services (name, key_hash, auto_register, trial_credits, description, unit_name, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (name) DO UPDATE SET key_hash = $2, auto_register = $3, trial_credits = $4, description = $5, unit_name = $6, created_at = $7`,
		s.Name, key, s.AutoRegister, s.TrialCredits, s.Description, s.UnitName, micro(s.CreatedAt))
	if err != nil {
		return c.l.wrap("copy services", err)
	}
	c.Rows["iapd_services"]++
	return nil
}

var (
	acctCopyCols = []string{"service", "token", "token_sha1", "state", "recharged", "available", "held", "captured",
		"alerts_enabled", "alert_threshold", "alert_recipients", "alert_sent", "sender_name", "db_uuid", "seq",
		"created_at", "updated_at", "holds", "authorized", "released", "expired", "recharges"}
	entryCopyCols = []string{"service", "token", "seq", "at", "kind", "d_recharged", "d_available", "d_held", "d_captured", "txn", "ref", "description"}
	txnCopyCols   = []string{"token", "service", "account", "state", "amount", "captured", "description", "created_at", "expires_at", "ended_at"}
	vchCopyCols   = []string{"code_hash", "service", "amount", "batch", "created_at", "expires_at", "redeemed_at", "redeemed_by", "entry_seq"}
	alertCopyCols = []string{"id", "service", "account", "available", "threshold", "recipients", "at", "attempts", "next_try", "last_error"}
	recCopyCols   = []string{"ns", "key", "value", "expires"}
)

// Account writes a with its alert state (alertSent: disarmed).
func (c *Copy) Account(ctx context.Context, a storage.Account, alertSent bool) error {
	h := storage.HashToken(a.Token)
	return c.add(ctx, "iapd_accounts", acctCopyCols, string(a.Service), string(a.Token), h[:], string(a.State),
		int64(a.Recharged), int64(a.Available), int64(a.Held), int64(a.Captured),
		a.Alerts.Enabled, int64(a.Alerts.Threshold), encodeRecipients(a.Alerts.Recipients), alertSent,
		a.SenderName, a.DBUUID, int64(a.Seq), micro(a.CreatedAt), micro(a.UpdatedAt),
		int64(0), int64(0), int64(0), int64(0), int64(0))
}

// Entry writes one ledger entry as it is (seq, time, deltas, refs).
func (c *Copy) Entry(ctx context.Context, e storage.Entry) error {
	return c.add(ctx, "iapd_entries", entryCopyCols, string(e.Service), string(e.Account), int64(e.Seq), micro(e.Time),
		string(e.Kind), int64(e.DRecharged), int64(e.DAvailable), int64(e.DHeld), int64(e.DCaptured), e.Transaction, e.Ref, e.Description)
}

// Transaction writes one hold, open or ended; its token is kept, so that
// a capture or cancel Odoo retries after the move finds it.
func (c *Copy) Transaction(ctx context.Context, t storage.Transaction) error {
	if !validTxnToken(t.Token) {
		return storage.E("copy transactions", storage.Invalid, "a transaction token is not 32 lowercase hex")
	}
	var ended *time.Time
	if t.State != storage.Held {
		ended = optTime(t.EndedAt)
		if ended == nil {
			e := micro(t.CreatedAt)
			ended = &e
		}
	}
	return c.add(ctx, "iapd_transactions", txnCopyCols, t.Token, string(t.Service), string(t.Account), string(t.State),
		int64(t.Amount), int64(t.Captured), t.Description, micro(t.CreatedAt), micro(t.ExpiresAt), ended)
}

// Voucher writes one voucher, redeemed or not.
func (c *Copy) Voucher(ctx context.Context, v storage.Voucher) error {
	return c.add(ctx, "iapd_vouchers", vchCopyCols, v.CodeHash[:], string(v.Service), int64(v.Amount), v.Batch,
		micro(v.CreatedAt), optTime(v.ExpiresAt), optTime(v.RedeemedAt), string(v.RedeemedBy), int64(v.Entry))
}

// Alert writes one queued low-credit alert with its id and delivery state.
func (c *Copy) Alert(ctx context.Context, n storage.AlertNotice) error {
	return c.add(ctx, "iapd_alerts", alertCopyCols, int64(n.ID), string(n.Service), string(n.Account), int64(n.Available),
		int64(n.Threshold), encodeRecipients(n.Recipients), micro(n.At), int32(n.Attempts), micro(n.NextTry), n.LastError)
}

// Record writes one live record of namespace ns.
func (c *Copy) Record(ctx context.Context, ns string, r storage.Record) error {
	if !storage.ValidRecordNS(ns) || storage.CheckRecordKey("copy records", ns, r.Key) != nil {
		return storage.E("copy records", storage.Invalid, "invalid record namespace or key")
	}
	return c.add(ctx, "iapd_records", recCopyCols, ns, []byte(r.Key), r.Value, optTime(r.Expires))
}

// Commit writes what is queued, computes each account's flow figures
// (from its entries) and open-hold count (from its holds), moves the
// alert ids past the largest copied, and commits: then, and only then,
// the nodes see the copy. Internal if a constraint refuses a row (the
// copy is then rolled back whole).
func (c *Copy) Commit(ctx context.Context) error {
	const op = "copy"
	if err := c.flush(ctx); err != nil {
		_ = c.tx.Rollback(context.Background())
		return err
	}
	for _, q := range []string{
		`UPDATE iapd_accounts a SET authorized = f.authorized, released = f.released, expired = f.expired, recharges = f.recharges
FROM (SELECT service, token,
	coalesce(sum(d_held) FILTER (WHERE kind = 'hold'), 0) AS authorized,
	coalesce(sum(d_available) FILTER (WHERE kind = 'release'), 0) AS released,
	coalesce(sum(d_available) FILTER (WHERE kind = 'expiry'), 0) AS expired,
	coalesce(sum(d_recharged) FILTER (WHERE kind = 'recharge'), 0) AS recharges
	FROM iapd_entries GROUP BY service, token) f
WHERE a.service = f.service AND a.token = f.token`,
		`UPDATE iapd_accounts a SET holds = h.n
FROM (SELECT service, account, count(*) AS n FROM iapd_transactions WHERE state = 'held' GROUP BY service, account) h
WHERE a.service = h.service AND a.token = h.account`,
		`SELECT setval(pg_get_serial_sequence('iapd_alerts', 'id'), max(id)) FROM iapd_alerts HAVING count(*) > 0`,
	} {
		if _, err := c.tx.Exec(ctx, q); err != nil {
			_ = c.tx.Rollback(context.Background())
			return c.l.wrap(op, err)
		}
	}
	if err := c.tx.Commit(ctx); err != nil {
		return c.l.wrap(op, err)
	}
	return nil
}

// Rollback abandons the copy: the database is left as it was. Idempotent,
// and harmless after Commit.
func (c *Copy) Rollback() {
	_ = c.tx.Rollback(context.Background())
}
