package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iapd/iapd/rpc/admin"
	"github.com/iapd/iapd/rpc/sendflow"
	"github.com/iapd/iapd/rpc/sms"
	"github.com/iapd/iapd/rpc/snailmail"
	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
	"github.com/iapd/iapd/storage/postgres"
)

// ledgerBackend is what serve and the wiring use of a ledger, whichever
// the backend: the storage contracts and readiness.
type ledgerBackend interface {
	storage.Ledger
	storage.Records
	storage.RecordLister
	storage.Vouchers
	storage.AlertOutbox
	// Check reports readiness (nil: serving).
	Check() error
}

var (
	_ ledgerBackend = (*badger.Ledger)(nil)
	_ ledgerBackend = (*postgres.Ledger)(nil)
)

// pgAlertLease is how long an alert a node's dispatcher took stays
// invisible to the other nodes (postgres.Options.AlertLease): longer than
// one delivery with its retries takes.
const pgAlertLease = 5 * time.Minute

// validLedgerURL accepts "" (Badger) or a postgres:// URL.
func validLedgerURL(u string) error {
	if u == "" || strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://") {
		return nil
	}
	return errors.New("ledger: want a postgres://user:password@host:port/database URL (or nothing: Badger in data)")
}

// ledgerWhere names the ledger for logs, without a password.
func ledgerWhere(cfg Config) string {
	if cfg.Ledger != "" {
		return postgres.Redact(cfg.Ledger)
	}
	return "badger " + cfg.Data
}

// openPostgresLedger opens the PostgreSQL ledger of cfg.Ledger, applying
// the schema's missing migrations, and registers its pool and retry
// metrics on reg.
func openPostgresLedger(ctx context.Context, cfg Config, log *slog.Logger, reg prometheus.Registerer) (*postgres.Ledger, error) {
	octx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	l, err := postgres.Open(octx, postgres.Options{
		URL:        cfg.Ledger,
		Now:        time.Now,
		Logger:     log.With("component", "postgres"),
		Registerer: reg,
		AlertLease: pgAlertLease,
	})
	if err != nil {
		return nil, fmt.Errorf("opening the ledger at %s: %w", postgres.Redact(cfg.Ledger), err)
	}
	log.Info("ledger on PostgreSQL", "ledger", postgres.Redact(cfg.Ledger), "schema", postgres.SchemaVersion())
	return l, nil
}

// pgOperator gives the admin API the PostgreSQL ledger's verification and
// export; backups are PostgreSQL's own (pg_dump, PITR).
type pgOperator struct{ l *postgres.Ledger }

func (o pgOperator) Backup(ctx context.Context, w io.Writer) error {
	return storage.E("backup", storage.Invalid, "the ledger is on PostgreSQL: back it up with PostgreSQL's own tools "+
		"(pg_dump for a copy, continuous archiving/PITR or your provider's snapshots for point-in-time recovery; see docs/postgres.md)")
}

func (o pgOperator) Verify(ctx context.Context, grace time.Duration) (admin.VerifyReport, error) {
	r, err := o.l.Verify(ctx, grace)
	if err != nil {
		return admin.VerifyReport{}, err
	}
	out := admin.VerifyReport{
		Clean:        r.Clean(),
		At:           r.At.UTC().Format(time.RFC3339),
		Duration:     r.Duration.Round(time.Millisecond).String(),
		Format:       uint64(r.Schema),
		Services:     r.Services,
		Accounts:     r.Accounts,
		Entries:      r.Entries,
		Transactions: r.Transactions,
		OpenHolds:    r.OpenHolds,
		Errors:       r.Errors,
		Warnings:     r.Warnings,
		Problems:     make([]admin.VerifyProblem, 0, len(r.Problems)),
		Omitted:      r.Omitted,
	}
	for _, p := range r.Problems {
		out.Problems = append(out.Problems, admin.VerifyProblem{
			Severity: p.Severity, Check: p.Check, Service: p.Service,
			Token: p.Account, Transaction: p.Transaction, Detail: p.Detail,
		})
	}
	return out, nil
}

func (o pgOperator) Export(ctx context.Context, f admin.ExportFilter, fn func(storage.Entry) error) error {
	return o.l.Export(ctx, postgres.ExportFilter{Service: f.Service, Account: f.Account, Since: f.Since, Until: f.Until}, fn)
}

var _ admin.Operator = pgOperator{}

// runMigrate is "iapd migrate": it applies the schema's missing
// migrations to the PostgreSQL ledger (-ledger, the config file's ledger,
// or IAPD_LEDGER) and says what it did. Serve does the same at start;
// this is for operators who migrate before rolling nodes.
func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", stderr, "iapd migrate [-ledger URL] [-config FILE]")
	ledgerURL := fs.String("ledger", "", "postgres://… `URL` of the ledger (default: the config file's ledger, or IAPD_LEDGER)")
	configPath := fs.String("config", "", "YAML configuration `file` whose ledger to migrate")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	u := *ledgerURL
	if u == "" && *configPath != "" {
		cfg, err := loadConfigFile(*configPath, getenv)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		u = cfg.Ledger
	}
	if u == "" {
		u = getenv("IAPD_LEDGER")
	}
	if u == "" {
		return errors.New("migrate: no PostgreSQL ledger given (-ledger URL, ledger: in -config FILE, or IAPD_LEDGER); a Badger ledger migrates itself at start")
	}
	if err := validLedgerURL(u); err != nil {
		return err
	}
	from, to, err := postgres.Migrate(ctx, u)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", postgres.Redact(u), err)
	}
	if from == to {
		fmt.Fprintf(stdout, "schema of %s is current (version %d)\n", postgres.Redact(u), to)
		return nil
	}
	fmt.Fprintf(stdout, "schema of %s migrated from version %d to %d\n", postgres.Redact(u), from, to)
	return nil
}

// nodeRecords is the records store of the SMS and letter services. On a
// ledger several nodes share, the traces of sends in flight (the
// services' OpenNamespace) and the SMS delivery-report relay queue (whose
// bounds the relay keeps in memory) are the node's own — kept under
// "<namespace>@<node>" — so that a node settling at start what its crash
// interrupted never takes the sends another node has in flight, and each
// report received is relayed once, by the node that received it; every
// other namespace (the uuids and documents already handled, delivery
// reports) is shared, which is what makes a retry on another node
// idempotent. The node is the ledger URL's application_name, else the
// host name: give each node its own, and a replaced node's name to its
// replacement so that it settles what the old one left.
func (w *wiring) nodeRecords() recordStore {
	if w.cfg.Ledger == "" {
		return w.ledger
	}
	return scopedRecords{recordStore: w.ledger, node: nodeName(w.cfg.Ledger, os.Hostname)}
}

// recordStore is what the services keep their records in.
type recordStore interface {
	storage.Records
	storage.RecordLister
}

// nodeScoped are the namespaces a node owns alone.
var nodeScoped = map[string]bool{sms.OpenNamespace: true, sms.QueueNamespace: true, snailmail.OpenNamespace: true}

// scopedRecords maps the node-scoped namespaces to "<ns>@<node>".
type scopedRecords struct {
	recordStore
	node string
}

func (r scopedRecords) ns(ns string) string {
	if nodeScoped[ns] {
		return ns + "@" + r.node
	}
	return ns
}

// PassesThrough: every namespace but the node-scoped ones is the
// ledger's own, so a send's claims there may go with its hold
// (rpc/sendflow.ClaimsOf).
func (r scopedRecords) PassesThrough(ns string) (sendflow.Records, bool) {
	return r.recordStore, !nodeScoped[ns]
}

func (r scopedRecords) PutRecordIfAbsent(ctx context.Context, ns, key string, value []byte, expires time.Time) ([]byte, bool, error) {
	return r.recordStore.PutRecordIfAbsent(ctx, r.ns(ns), key, value, expires)
}

func (r scopedRecords) PutRecord(ctx context.Context, ns, key string, value []byte, expires time.Time) error {
	return r.recordStore.PutRecord(ctx, r.ns(ns), key, value, expires)
}

func (r scopedRecords) GetRecord(ctx context.Context, ns, key string) ([]byte, error) {
	return r.recordStore.GetRecord(ctx, r.ns(ns), key)
}

func (r scopedRecords) DeleteRecord(ctx context.Context, ns, key string) error {
	return r.recordStore.DeleteRecord(ctx, r.ns(ns), key)
}

func (r scopedRecords) ListRecords(ctx context.Context, ns, after string, max int) ([]storage.Record, error) {
	return r.recordStore.ListRecords(ctx, r.ns(ns), after, max)
}

// nodeName is the node's name for scoped namespaces: the URL's
// application_name, else the host name, cut to what a namespace holds
// (printable ASCII, no space; the namespace at most 64 bytes).
func nodeName(ledgerURL string, hostname func() (string, error)) string {
	name := ""
	if u, err := url.Parse(ledgerURL); err == nil {
		name = u.Query().Get("application_name")
	}
	if name == "" {
		name, _ = hostname()
	}
	b := []byte(name)
	out := b[:0]
	for _, c := range b {
		if c > ' ' && c < 0x7f {
			out = append(out, c)
		}
	}
	if len(out) > 40 {
		out = out[:40]
	}
	if len(out) == 0 {
		return "node"
	}
	return string(out)
}
