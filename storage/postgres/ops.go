package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iapd/iapd/storage"
)

// Stats returns the ledger's figures by service (metrics.StatsReader) in
// one statement over the accounts (each keeps its flow figures), whatever
// the number of entries. Unavailable when closed or the database is
// unreachable.
func (l *Ledger) Stats(ctx context.Context) (storage.Stats, error) {
	const op = "stats"
	if err := l.enter(op, ctx); err != nil {
		return storage.Stats{}, err
	}
	defer l.leave()
	rows, err := l.pool.Query(ctx, `SELECT s.name, coalesce(a.state, ''), count(a.token),
	coalesce(sum(CASE WHEN a.state = 'registered' AND a.alerts_enabled AND a.available < a.alert_threshold THEN 1 ELSE 0 END), 0),
	coalesce(sum(a.available), 0), coalesce(sum(a.holds), 0), coalesce(sum(a.held), 0), coalesce(sum(a.authorized), 0),
	coalesce(sum(a.captured), 0), coalesce(sum(a.released), 0), coalesce(sum(a.expired), 0), coalesce(sum(a.recharges), 0)
FROM iapd_services s LEFT JOIN iapd_accounts a ON a.service = s.name
GROUP BY s.name, a.state`)
	if err != nil {
		return storage.Stats{}, l.wrap(op, err)
	}
	defer rows.Close()
	out := storage.Stats{Services: map[storage.ServiceName]storage.ServiceStats{}}
	for rows.Next() {
		var name storage.ServiceName
		var state storage.AccountState
		var n, below, holds int64
		var avail, held, auth, capt, rel, exp, rech storage.Credits
		if err := rows.Scan(&name, &state, &n, &below, &avail, &holds, &held, &auth, &capt, &rel, &exp, &rech); err != nil {
			return storage.Stats{}, l.wrap(op, err)
		}
		s, ok := out.Services[name]
		if !ok {
			s.Accounts = map[storage.AccountState]int{}
		}
		if state != "" {
			s.Accounts[state] += int(n)
		}
		s.BelowThreshold += int(below)
		s.Available += avail
		s.Holds += int(holds)
		s.Held += held
		s.Authorized += auth
		s.Captured += capt
		s.Released += rel
		s.Expired += exp
		s.Recharged += rech
		out.Services[name] = s
	}
	if err := rows.Err(); err != nil {
		return storage.Stats{}, l.wrap(op, err)
	}
	return out, nil
}

// ExportFilter selects ledger entries; zero fields select all.
type ExportFilter struct {
	Service storage.ServiceName
	Account storage.AccountToken
	Since   time.Time // entries with Time >= Since (zero: no bound)
	Until   time.Time // entries with Time < Until (zero: no bound)
}

// Export calls fn with every entry f selects, in (service, account, seq)
// order, from one snapshot (a read-only REPEATABLE READ transaction) taken
// when it starts; fn's error stops the walk and is returned as is.
// Invalid for a bad name or token.
func (l *Ledger) Export(ctx context.Context, f ExportFilter, fn func(storage.Entry) error) error {
	const op = "export"
	if err := l.enter(op, ctx); err != nil {
		return err
	}
	defer l.leave()
	if f.Service != "" && !storage.ValidServiceName(string(f.Service)) {
		return storage.E(op, storage.Invalid, "invalid service name")
	}
	if f.Account != "" && !storage.ValidAccountToken(f.Account) {
		return storage.E(op, storage.Invalid, "invalid account token")
	}
	var fnErr error
	err := pgx.BeginTxFunc(ctx, l.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT "+entryCols+` FROM iapd_entries
WHERE ($1 = '' OR service = $1) AND ($2 = '' OR token = $2) AND ($3::timestamptz IS NULL OR at >= $3) AND ($4::timestamptz IS NULL OR at < $4)
ORDER BY service, token, seq`, string(f.Service), string(f.Account), expiresArg(f.Since), expiresArg(f.Until))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scanEntry(rows)
			if err != nil {
				return err
			}
			if fnErr = fn(e); fnErr != nil {
				return fnErr
			}
		}
		return rows.Err()
	})
	if fnErr != nil {
		return fnErr
	}
	return l.wrap(op, err)
}

// DefaultGrace is how long a hold may stay open past its expiry before
// Verify calls it an error (a warning before): a sweep interval or two.
const DefaultGrace = 10 * time.Minute

// MaxProblems bounds the problems a Report lists.
const MaxProblems = 1000

// Report is the result of Verify.
type Report struct {
	At           time.Time // overdue holds were judged at this time
	Schema       int       // the schema version
	Services     int64
	Accounts     int64
	Entries      int64
	Transactions int64
	OpenHolds    int64
	Errors       int
	Warnings     int
	Problems     []Problem // at most MaxProblems
	Omitted      int       // problems counted but not listed
	Duration     time.Duration
}

// Clean reports a ledger without errors (warnings allowed).
func (r *Report) Clean() bool { return r.Errors == 0 }

// Problem is one discrepancy Verify found; Account and Transaction are
// full tokens (the caller hides them).
type Problem struct {
	Severity    string // "error" or "warning"
	Check       string
	Service     storage.ServiceName
	Account     storage.AccountToken
	Transaction string
	Detail      string
}

func (r *Report) add(p Problem) {
	if p.Severity == "error" {
		r.Errors++
	} else {
		r.Warnings++
	}
	if len(r.Problems) >= MaxProblems {
		r.Omitted++
		return
	}
	r.Problems = append(r.Problems, p)
}

// verifyChecks are Verify's queries: each returns (service, account,
// transaction, detail) rows, one per problem. The schema's constraints
// already refuse an unbalanced account or entry and a negative figure;
// these check what spans rows.
var verifyChecks = []struct{ check, sql string }{
	{"entries", `SELECT a.service, a.token, '', format('figures %s/%s/%s/%s, seq %s; entries sum to %s/%s/%s/%s, %s entries, last seq %s',
		a.recharged, a.available, a.held, a.captured, a.seq, coalesce(e.r, 0), coalesce(e.av, 0), coalesce(e.h, 0), coalesce(e.c, 0), coalesce(e.n, 0), coalesce(e.last, 0))
FROM iapd_accounts a LEFT JOIN (
	SELECT service, token, sum(d_recharged) r, sum(d_available) av, sum(d_held) h, sum(d_captured) c, count(*) n, max(seq) last
	FROM iapd_entries GROUP BY service, token) e ON e.service = a.service AND e.token = a.token
WHERE a.recharged <> coalesce(e.r, 0) OR a.available <> coalesce(e.av, 0) OR a.held <> coalesce(e.h, 0) OR a.captured <> coalesce(e.c, 0)
	OR a.seq <> coalesce(e.n, 0) OR a.seq <> coalesce(e.last, 0)`},
	{"holds", `SELECT a.service, a.token, '', format('held %s in %s holds; open holds sum to %s in %s', a.held, a.holds, coalesce(t.s, 0), coalesce(t.n, 0))
FROM iapd_accounts a LEFT JOIN (
	SELECT service, account, sum(amount) s, count(*) n FROM iapd_transactions WHERE state = 'held' GROUP BY service, account
) t ON t.service = a.service AND t.account = a.token
WHERE a.held <> coalesce(t.s, 0) OR a.holds <> coalesce(t.n, 0)`},
	{"entry time", `SELECT service, token, '', format('entry %s is earlier than entry %s', seq, seq - 1) FROM (
	SELECT service, token, seq, at, lag(at) OVER (PARTITION BY service, token ORDER BY seq) prev FROM iapd_entries) x
WHERE at < prev`},
	{"voucher", `SELECT v.service, v.redeemed_by, '', 'redeemed voucher without its recharge entry'
FROM iapd_vouchers v LEFT JOIN iapd_entries e ON e.service = v.service AND e.token = v.redeemed_by AND e.seq = v.entry_seq AND e.kind = 'recharge' AND e.d_recharged = v.amount
WHERE v.redeemed_at IS NOT NULL AND e.seq IS NULL`},
}

// Verify checks the whole ledger in one snapshot (a read-only REPEATABLE
// READ transaction; it may run while nodes serve): every account's
// figures equal the sums of its entries, seqs 1…Seq, entry times never
// going back, held equal to its open holds, redeemed vouchers with their
// entry; holds past their expiry are warnings, errors once overdue by more
// than grace (0: DefaultGrace; negative: warnings only). The error is for
// a walk that could not finish.
func (l *Ledger) Verify(ctx context.Context, grace time.Duration) (Report, error) {
	const op = "verify"
	if err := l.enter(op, ctx); err != nil {
		return Report{}, err
	}
	defer l.leave()
	if grace == 0 {
		grace = DefaultGrace
	}
	start := time.Now()
	r := Report{At: l.clock()}
	err := pgx.BeginTxFunc(ctx, l.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT (SELECT coalesce(max(version), 0) FROM iapd_schema), (SELECT count(*) FROM iapd_services),
	(SELECT count(*) FROM iapd_accounts), (SELECT count(*) FROM iapd_entries), (SELECT count(*) FROM iapd_transactions),
	(SELECT count(*) FROM iapd_transactions WHERE state = 'held')`).Scan(&r.Schema, &r.Services, &r.Accounts, &r.Entries, &r.Transactions, &r.OpenHolds); err != nil {
			return err
		}
		for _, c := range verifyChecks {
			rows, err := tx.Query(ctx, c.sql)
			if err != nil {
				return fmt.Errorf("check %s: %w", c.check, err)
			}
			for rows.Next() {
				p := Problem{Severity: "error", Check: c.check}
				if err := rows.Scan(&p.Service, &p.Account, &p.Transaction, &p.Detail); err != nil {
					rows.Close()
					return err
				}
				r.add(p)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		rows, err := tx.Query(ctx, `SELECT service, account, token, expires_at FROM iapd_transactions
WHERE state = 'held' AND expires_at <= $1 ORDER BY expires_at`, r.At)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			p := Problem{Severity: "warning", Check: "overdue hold"}
			var exp time.Time
			if err := rows.Scan(&p.Service, &p.Account, &p.Transaction, &exp); err != nil {
				return err
			}
			over := r.At.Sub(exp)
			if grace > 0 && over > grace {
				p.Severity = "error"
			}
			p.Detail = fmt.Sprintf("open %s past its expiry", over.Round(time.Second))
			r.add(p)
		}
		return rows.Err()
	})
	r.Duration = time.Since(start)
	if err != nil {
		return r, l.wrap(op, err)
	}
	return r, nil
}
