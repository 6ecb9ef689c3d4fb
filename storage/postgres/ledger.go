package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/iapd/iapd/storage"
)

// Limits of this backend (the request limits are storage's: storage/check.go).
const (
	defaultLimit = 100
	// maxAttempts bounds the tries of one operation on 40001/40P01.
	maxAttempts = 8
)

// Options configure Open.
type Options struct {
	// URL is the PostgreSQL connection URL (postgres://user:pass@host/db?…);
	// pool settings (pool_max_conns, default DefaultPoolSize, …) may ride
	// in it as pgxpool reads them.
	URL string
	// Now is the ledger clock (default time.Now). Times are stored to the
	// microsecond.
	Now func() time.Time
	// Logger receives the ledger's own events (default: discarded).
	Logger *slog.Logger
	// Registerer, set, receives the pool figures and the retry counter.
	Registerer prometheus.Registerer
	// NoMigrate opens without applying migrations (the schema must then be
	// current: run iapd migrate first); Open still refuses a newer schema.
	NoMigrate bool
	// KeyCacheTTL bounds how long ServiceByKey answers from memory a key it
	// found: a rotation or a policy change made on another node applies
	// here within it. 0: DefaultKeyCacheTTL; negative: no cache.
	KeyCacheTTL time.Duration
	// AlertLease, positive, makes DueAlerts claim what it returns: another
	// node's DueAlerts skips those alerts for the lease (AlertSent or
	// AlertFailed ends it sooner). Zero: DueAlerts only reads.
	AlertLease time.Duration
}

// Ledger is the PostgreSQL implementation of storage.Ledger and of the
// stores of storage/extras.go. Create it with Open; it is safe for
// concurrent use, in one process and across nodes sharing the database.
type Ledger struct {
	pool       *pgxpool.Pool
	now        func() time.Time
	log        *slog.Logger
	alertLease time.Duration
	retries    *prometheus.CounterVec // nil without a registerer
	unregister func()

	keys keyCache

	mu     sync.RWMutex
	closed bool
}

// DefaultKeyCacheTTL is Options.KeyCacheTTL's default.
const DefaultKeyCacheTTL = 2 * time.Second

// Open connects to opts.URL, applies the missing migrations (unless
// NoMigrate) and returns the ledger. Errors: Invalid for a URL pgx cannot
// parse; Unavailable when the server cannot be reached; Internal wrapping
// a *SchemaTooNewError (errors.As) when a newer iapd migrated the database,
// or when the schema is older and NoMigrate is set. No error text contains
// the URL's password.
func Open(ctx context.Context, opts Options) (*Ledger, error) {
	const op = "open"
	cfg, err := pgxpool.ParseConfig(opts.URL)
	if err != nil {
		// pgx's parse errors may quote the URL: say only what is wrong.
		return nil, storage.E(op, storage.Invalid, "ledger URL: cannot be parsed as a PostgreSQL connection URL ("+Redact(opts.URL)+")")
	}
	if !strings.Contains(opts.URL, "pool_max_conns") {
		cfg.MaxConns = DefaultPoolSize
	}
	return open(ctx, cfg, opts)
}

// DefaultPoolSize is the pool's size when the URL sets no pool_max_conns
// (pgx's own default, the larger of 4 and the CPU count, leaves requests
// waiting for a connection while others wait for their commit).
const DefaultPoolSize = 16

// open is Open on a parsed pool configuration.
func open(ctx context.Context, cfg *pgxpool.Config, opts Options) (*Ledger, error) {
	const op = "open"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, storage.Wrap(op, storage.Unavailable, scrub(err, cfg.ConnConfig.Password))
	}
	l := &Ledger{pool: pool, now: opts.Now, log: opts.Logger, alertLease: opts.AlertLease, unregister: func() {}}
	l.keys.ttl = opts.KeyCacheTTL
	if l.keys.ttl == 0 {
		l.keys.ttl = DefaultKeyCacheTTL
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if _, _, err := migrate(ctx, pool, !opts.NoMigrate); err != nil {
		pool.Close()
		var tn *SchemaTooNewError
		if errors.As(err, &tn) {
			return nil, storage.Wrap(op, storage.Internal, err)
		}
		return nil, l.wrap(op, scrub(err, cfg.ConnConfig.Password))
	}
	if opts.NoMigrate {
		var have int
		if err := pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM iapd_schema").Scan(&have); err != nil || have < SchemaVersion() {
			pool.Close()
			return nil, storage.Ef(op, storage.Internal, "the database schema is version %d, this iapd needs %d: run iapd migrate", have, SchemaVersion())
		}
	}
	if opts.Registerer != nil {
		if err := l.register(opts.Registerer); err != nil {
			pool.Close()
			return nil, storage.Wrap(op, storage.Internal, err)
		}
	}
	return l, nil
}

// Migrate applies the missing migrations of the database at url under the
// advisory lock and returns the schema versions before and after. The
// errors are Open's.
func Migrate(ctx context.Context, url string) (from, to int, err error) {
	const op = "migrate"
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return 0, 0, storage.E(op, storage.Invalid, "ledger URL: cannot be parsed as a PostgreSQL connection URL ("+Redact(url)+")")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return 0, 0, storage.Wrap(op, storage.Unavailable, scrub(err, cfg.ConnConfig.Password))
	}
	defer pool.Close()
	from, to, err = migrate(ctx, pool, true)
	if err != nil {
		var tn *SchemaTooNewError
		if errors.As(err, &tn) {
			return from, to, storage.Wrap(op, storage.Internal, err)
		}
		return from, to, classify(op, scrub(err, cfg.ConnConfig.Password))
	}
	return from, to, nil
}

// Redact returns the URL with its password replaced by "xxxxx", for logs
// and messages; a string that does not parse as a URL is replaced whole.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// scrub removes a password from an error's text (connection errors may
// quote the connection string).
func scrub(err error, password string) error {
	if err == nil || password == "" {
		return err
	}
	msg := err.Error()
	if !strings.Contains(msg, password) {
		return err
	}
	return errors.New(strings.ReplaceAll(msg, password, "xxxxx"))
}

// Close closes the pool; calls in progress finish first. Later calls,
// Close included, fail Unavailable.
func (l *Ledger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return storage.E("close", storage.Unavailable, "ledger closed")
	}
	l.closed = true
	l.unregister()
	l.pool.Close()
	return nil
}

// Check reports readiness: nil while the ledger is open and the database
// answers within 2 seconds; Unavailable otherwise.
func (l *Ledger) Check() error {
	const op = "check"
	if err := l.enter(op, nil); err != nil {
		return err
	}
	defer l.leave()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := l.pool.Ping(ctx); err != nil {
		return storage.Wrap(op, storage.Unavailable, err)
	}
	return nil
}

// enter admits a call; the caller must call leave.
func (l *Ledger) enter(op string, ctx context.Context) error {
	if ctx != nil {
		if err := ctx.Err(); err != nil {
			return storage.Wrap(op, storage.Unavailable, err)
		}
	}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return storage.E(op, storage.Unavailable, "ledger closed")
	}
	return nil
}

func (l *Ledger) leave() { l.mu.RUnlock() }

// clock is the time recorded for a change: UTC, to the microsecond
// (PostgreSQL's precision), without monotonic reading.
func (l *Ledger) clock() time.Time { return micro(l.now()) }

func micro(t time.Time) time.Time { return t.Round(0).UTC().Truncate(time.Microsecond) }

// change is one operation's work in a database transaction. after is an
// error returned once the transaction committed (a refusal that keeps an
// account created on first sight); err rolls back.
type change func(tx *wtx, now time.Time) (after, err error)

// write runs fn in a transaction (wtx: pipelined), retrying serialization
// failures and deadlocks with jittered backoff.
func (l *Ledger) write(ctx context.Context, op string, fn change) error {
	for attempt := 1; ; attempt++ {
		after, err := l.attempt(ctx, fn)
		if err == nil {
			return after
		}
		reason := retryReason(err)
		if reason == "" || attempt >= maxAttempts || ctx.Err() != nil {
			if reason != "" {
				return storage.Wrap(op, storage.Unavailable, fmt.Errorf("gave up after %d attempts: %w", attempt, err))
			}
			return l.wrap(op, err)
		}
		if l.retries != nil {
			l.retries.WithLabelValues(reason).Inc()
		}
		// 1, 2, 4 … 64 ms, times a random factor in [0.5, 1.5).
		d := time.Duration(float64(time.Millisecond<<min(attempt-1, 6)) * (0.5 + rand.Float64()))
		select {
		case <-ctx.Done():
			return storage.Wrap(op, storage.Unavailable, ctx.Err())
		case <-time.After(d):
		}
	}
}

// attempt runs fn once on a pooled connection and commits.
func (l *Ledger) attempt(ctx context.Context, fn change) (after, err error) {
	conn, err := l.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	tx := &wtx{ctx: ctx, conn: conn}
	after, err = fn(tx, l.clock())
	if err == nil {
		err = tx.commit()
	}
	if err != nil {
		tx.rollback()
		return nil, err
	}
	return after, nil
}

// retryReason names a retryable failure: "serialization" (40001),
// "deadlock" (40P01); "" for the rest.
func retryReason(err error) string {
	switch sqlState(err) {
	case "40001":
		return "serialization"
	case "40P01":
		return "deadlock"
	}
	return ""
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// wrap classifies an error of op: *storage.Error as is; a cancelled call,
// a closed pool or a connection failure Unavailable; a violated constraint
// and every other server error Internal.
func (l *Ledger) wrap(op string, err error) error {
	err = classify(op, err)
	if storage.Is(err, storage.Internal) {
		l.log.Error("ledger operation failed", "op", op, "err", err)
	}
	return err
}

func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var se *storage.Error
	if errors.As(err, &se) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:2] {
		case "08", "53", "57": // connection, resources, operator intervention (shutdown)
			return storage.Wrap(op, storage.Unavailable, err)
		}
		switch pe.Code {
		case "22021", "22P05": // text PostgreSQL cannot store (invalid UTF-8, NUL)
			return storage.Wrap(op, storage.Invalid, fmt.Errorf("text the database cannot store: %w", err))
		}
		if pe.Code == "23514" {
			return storage.Wrap(op, storage.Internal, fmt.Errorf("refused by the schema's constraint %s (a bug: no overdraft or negative figure is stored): %w", pe.ConstraintName, err))
		}
		return storage.Wrap(op, storage.Internal, err)
	}
	return storage.Wrap(op, storage.Unavailable, err) // context, network, closed pool
}

// register adds the pool figures and the retry counter to reg.
func (l *Ledger) register(reg prometheus.Registerer) error {
	l.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "iap_ledger_tx_retries_total",
		Help: "Ledger transactions retried on PostgreSQL, by reason (serialization: 40001, deadlock: 40P01).",
	}, []string{"reason"})
	for _, r := range []string{"serialization", "deadlock"} {
		l.retries.WithLabelValues(r)
	}
	pc := &poolCollector{pool: l.pool}
	if err := reg.Register(l.retries); err != nil {
		return err
	}
	if err := reg.Register(pc); err != nil {
		reg.Unregister(l.retries)
		return err
	}
	l.unregister = func() {
		reg.Unregister(l.retries)
		reg.Unregister(pc)
	}
	return nil
}

// poolCollector reads the pool's figures at scrape time.
type poolCollector struct{ pool *pgxpool.Pool }

var (
	descAcquired = prometheus.NewDesc("iap_ledger_pool_connections", "PostgreSQL pool connections by state (acquired: in use; idle).", []string{"state"}, nil)
	descMax      = prometheus.NewDesc("iap_ledger_pool_max_connections", "The PostgreSQL pool's maximum size.", nil, nil)
	descWait     = prometheus.NewDesc("iap_ledger_pool_wait_seconds_total", "Time calls waited for a PostgreSQL pool connection.", nil, nil)
	descWaits    = prometheus.NewDesc("iap_ledger_pool_waits_total", "Acquisitions that had to wait for a PostgreSQL pool connection.", nil, nil)
)

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descAcquired
	ch <- descMax
	ch <- descWait
	ch <- descWaits
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	ch <- prometheus.MustNewConstMetric(descAcquired, prometheus.GaugeValue, float64(s.AcquiredConns()), "acquired")
	ch <- prometheus.MustNewConstMetric(descAcquired, prometheus.GaugeValue, float64(s.IdleConns()), "idle")
	ch <- prometheus.MustNewConstMetric(descMax, prometheus.GaugeValue, float64(s.MaxConns()))
	ch <- prometheus.MustNewConstMetric(descWait, prometheus.CounterValue, s.EmptyAcquireWaitTime().Seconds())
	ch <- prometheus.MustNewConstMetric(descWaits, prometheus.CounterValue, float64(s.EmptyAcquireCount()))
}

// The contracts the ledger implements (cmd/iapd uses each).
var (
	_ storage.Ledger        = (*Ledger)(nil)
	_ storage.Records       = (*Ledger)(nil)
	_ storage.RecordLister  = (*Ledger)(nil)
	_ storage.RecordSweeper = (*Ledger)(nil)
	_ storage.Vouchers      = (*Ledger)(nil)
	_ storage.AlertOutbox   = (*Ledger)(nil)
)
