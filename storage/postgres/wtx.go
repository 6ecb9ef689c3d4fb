package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// wtx is one ledger transaction on one pooled connection, pipelined to
// save round trips: BEGIN rides with the first read, writes are queued and
// ride with the next read or with COMMIT. An authorize on an existing
// account is then two round trips ([BEGIN, lock the account] and [insert
// the hold and its entry, update the account, COMMIT]; fast.go does the
// common case in one), a capture or a
// cancel two as well (docs/postgres.md).
type wtx struct {
	ctx     context.Context
	conn    *pgxpool.Conn
	begun   bool     // BEGIN sent
	pending []queued // writes not sent yet
}

// queued is a write waiting to be sent; check, set, judges its result.
type queued struct {
	sql   string
	args  []any
	check func(pgconn.CommandTag) error
}

// queue adds a write, sent with the next read or the commit; an error of
// it (or of check) fails the transaction.
func (w *wtx) queue(check func(pgconn.CommandTag) error, sql string, args ...any) {
	w.pending = append(w.pending, queued{sql: sql, args: args, check: check})
}

// statement is one SQL statement and its arguments.
type statement struct {
	sql  string
	args []any
}

// send sends, in one round trip, BEGIN (if not yet sent), the queued
// writes and then stmts, and reads the results up to stmts'.
func (w *wtx) send(stmts ...statement) (pgx.BatchResults, error) {
	b := &pgx.Batch{}
	pre := 0
	if !w.begun {
		b.Queue("BEGIN")
		pre++
	}
	for _, q := range w.pending {
		b.Queue(q.sql, q.args...)
	}
	for _, st := range stmts {
		b.Queue(st.sql, st.args...)
	}
	return w.sendBatch(b, pre)
}

// sendBatch sends b (its first pre statements BEGIN, then the queued
// writes, then the caller's) and reads the results up to the caller's.
func (w *wtx) sendBatch(b *pgx.Batch, pre int) (pgx.BatchResults, error) {
	br := w.conn.SendBatch(w.ctx, b)
	w.begun = true
	pending := w.pending
	w.pending = nil
	for i := 0; i < pre; i++ {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return nil, err
		}
	}
	for _, q := range pending {
		tag, err := br.Exec()
		if err == nil && q.check != nil {
			err = q.check(tag)
		}
		if err != nil {
			_ = br.Close()
			return nil, err
		}
	}
	return br, nil
}

// rows runs queries in one round trip (with BEGIN and the queued writes
// before them) and hands each one's single row to its scan, in order.
func (w *wtx) rows(qs []rowQuery) error {
	stmts := make([]statement, len(qs))
	for i, q := range qs {
		stmts[i] = statement{q.sql, q.args}
	}
	br, err := w.send(stmts...)
	if err != nil {
		return err
	}
	for _, q := range qs {
		if err := q.scan(br.QueryRow()); err != nil {
			_ = br.Close()
			return err
		}
	}
	return br.Close()
}

// rowQuery is one query of rows: its single row goes to scan.
type rowQuery struct {
	sql  string
	args []any
	scan func(pgx.Row) error
}

// rowsQuery is one query of queries: each is called for every row.
type rowsQuery struct {
	sql  string
	args []any
	each func(pgx.Rows) error
}

// queries runs queries of any number of rows in one round trip (with
// BEGIN and the queued writes before them), in order.
func (w *wtx) queries(qs []rowsQuery) error {
	stmts := make([]statement, len(qs))
	for i, q := range qs {
		stmts[i] = statement{q.sql, q.args}
	}
	br, err := w.send(stmts...)
	if err != nil {
		return err
	}
	for _, q := range qs {
		rows, err := br.Query()
		if err == nil {
			for rows.Next() {
				if err = q.each(rows); err != nil {
					break
				}
			}
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
		}
		if err != nil {
			_ = br.Close()
			return err
		}
	}
	return br.Close()
}

// QueryRow returns a row whose Scan runs the query (see rows) and scans
// it: pgx.ErrNoRows as pgx reports it.
func (w *wtx) QueryRow(_ context.Context, sql string, args ...any) pgx.Row {
	return lazyRow{w: w, sql: sql, args: args}
}

type lazyRow struct {
	w    *wtx
	sql  string
	args []any
}

func (r lazyRow) Scan(dest ...any) error {
	return r.w.rows([]rowQuery{{sql: r.sql, args: r.args, scan: func(row pgx.Row) error { return row.Scan(dest...) }}})
}

// Exec runs one write now (with the queued ones) and returns its tag.
func (w *wtx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	var tag pgconn.CommandTag
	br, err := w.send(statement{sql, args})
	if err != nil {
		return tag, err
	}
	tag, err = br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

// commit sends the queued writes and COMMIT in one round trip.
func (w *wtx) commit() error {
	if !w.begun && len(w.pending) == 0 {
		return nil
	}
	_, err := w.Exec(w.ctx, "COMMIT")
	return err
}

// rollback ends a failed transaction; the connection is closed (and the
// pool drops it) when that fails.
func (w *wtx) rollback() {
	if !w.begun {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), 5*time.Second)
	defer cancel()
	if _, err := w.conn.Exec(ctx, "ROLLBACK"); err != nil {
		_ = w.conn.Conn().Close(ctx)
	}
}

// flush sends the queued writes now (with BEGIN if not yet sent), to learn
// their errors before going on.
func (w *wtx) flush() error {
	if w.begun && len(w.pending) == 0 {
		return nil
	}
	br, err := w.send()
	if err != nil {
		return err
	}
	return br.Close()
}

// query runs a query of many rows now (see rows), calling each for every
// row.
func (w *wtx) query(each func(pgx.Rows) error, sql string, args ...any) error {
	return w.queries([]rowsQuery{{sql: sql, args: args, each: each}})
}
