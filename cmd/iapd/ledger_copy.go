package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
	"github.com/iapd/iapd/storage/postgres"
)

// runLedger is "iapd ledger SUB": today only "copy".
func runLedger(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("ledger: want copy -from DIR -to URL (iapd help ledger)")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		writeCommandUsage(stdout, "ledger")
		return nil
	case "copy":
		return runLedgerCopy(ctx, args[1:], getenv, stdout, stderr)
	}
	return fmt.Errorf("ledger: unknown sub-command %q (want copy)", args[0])
}

// acctFigures are what the check compares of one account.
type acctFigures struct {
	state                                storage.AccountState
	recharged, available, held, captured storage.Credits
	seq                                  uint64
}

// runLedgerCopy is "iapd ledger copy": it moves a stopped Badger ledger
// into an empty PostgreSQL ledger in one database transaction (a failed
// copy leaves the database as it was: run it again), then checks the
// copy against the Badger ledger — every account's figures and entry
// count, each service's totals, the counts of every kind of record — and
// prints a summary. Records of the namespaces a node owns alone (sends in
// flight, the delivery-report queue) go to the node the URL names
// (application_name, else this host's name): start that node first.
func runLedgerCopy(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ledger copy", stderr, "iapd ledger copy -from DIR -to URL")
	from := fs.String("from", "", "the Badger data `directory` to copy (iapd stopped)")
	to := fs.String("to", "", "postgres://… `URL` of the empty PostgreSQL ledger to fill")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *from == "" || *to == "" {
		return errors.New("ledger copy: want -from DIR (a Badger data directory) and -to postgres://… (an empty PostgreSQL ledger)")
	}
	if err := validLedgerURL(*to); err != nil {
		return fmt.Errorf("ledger copy: -to: %w", err)
	}
	where := postgres.Redact(*to)
	if _, err := os.Stat(filepath.Join(*from, "MANIFEST")); err != nil {
		return fmt.Errorf("ledger copy: %s holds no Badger ledger (no MANIFEST): give the data directory of the iapd to move", *from)
	}
	if err := dataDirInUse(*from); err != nil { // datadir.go: names the pid
		return fmt.Errorf("ledger copy: %w", err)
	}
	src, err := badger.Open(badger.Options{Dir: *from, Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		if inUse := explainOpenError(*from, err); inUse != err {
			return fmt.Errorf("ledger copy: %w", inUse)
		}
		return fmt.Errorf("ledger copy: opening %s: %w", *from, err)
	}
	defer src.Close()
	octx, cancel := context.WithTimeout(ctx, time.Minute)
	dst, err := postgres.Open(octx, postgres.Options{URL: *to, Now: time.Now, KeyCacheTTL: -1})
	cancel()
	if err != nil {
		return fmt.Errorf("ledger copy: opening %s: %w", where, err)
	}
	defer dst.Close()

	cp, err := dst.BeginCopy(ctx)
	if err != nil {
		return fmt.Errorf("ledger copy: %s: %w", where, err)
	}
	defer cp.Rollback()
	node := nodeName(*to, os.Hostname)
	accts := map[[2]string]acctFigures{}
	entries := map[storage.ServiceName]int64{}
	var nRead int64
	prog := newProgress(stderr, time.Now)
	prog.Phase("ledger copy:", "records", 0)
	step := func() { nRead++; prog.Set(nRead) }
	err = src.Dump(ctx, badger.DumpVisitor{
		Service: func(s storage.Service) error { step(); return cp.Service(ctx, s) },
		Account: func(a storage.Account, alertSent bool) error {
			step()
			accts[[2]string{string(a.Service), string(a.Token)}] = acctFigures{a.State, a.Recharged, a.Available, a.Held, a.Captured, a.Seq}
			return cp.Account(ctx, a, alertSent)
		},
		Entry:       func(e storage.Entry) error { step(); entries[e.Service]++; return cp.Entry(ctx, e) },
		Transaction: func(t storage.Transaction) error { step(); return cp.Transaction(ctx, t) },
		Voucher:     func(v storage.Voucher) error { step(); return cp.Voucher(ctx, v) },
		Alert:       func(n storage.AlertNotice) error { step(); return cp.Alert(ctx, n) },
		Record: func(ns string, r storage.Record) error {
			step()
			if nodeScoped[ns] {
				ns += "@" + node
			}
			return cp.Record(ctx, ns, r)
		},
	})
	if err == nil {
		err = cp.Commit(ctx)
	}
	prog.Done()
	if err != nil {
		return fmt.Errorf("ledger copy: %w; nothing was written to %s", err, where)
	}
	fmt.Fprintf(stderr, "ledger copy: %d records read from %s and committed to %s; checking the totals\n", nRead, *from, where)

	if err := checkCopy(ctx, src, dst, accts, entries); err != nil {
		return fmt.Errorf("ledger copy: the copy in %s does not match %s: %w; do not start nodes on it: drop and re-create the database, then copy again", where, *from, err)
	}
	st, err := dst.Stats(ctx)
	if err != nil {
		return fmt.Errorf("ledger copy: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tACCOUNTS\tENTRIES\tOPEN HOLDS\tRECHARGED\tAVAILABLE\tHELD\tCAPTURED")
	names := make([]storage.ServiceName, 0, len(st.Services))
	for n := range st.Services {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		s := st.Services[n]
		total := 0
		for _, c := range s.Accounts {
			total += c
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", n, total, entries[n], s.Holds,
			s.Available+s.Held+s.Captured, s.Available, s.Held, s.Captured)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "copied %s to %s: %d services, %d accounts, %d entries, %d transactions, %d vouchers, %d queued alerts, %d records; totals checked: equal on both sides\n",
		*from, where, cp.Rows["iapd_services"], cp.Rows["iapd_accounts"], cp.Rows["iapd_entries"], cp.Rows["iapd_transactions"],
		cp.Rows["iapd_vouchers"], cp.Rows["iapd_alerts"], cp.Rows["iapd_records"])
	return nil
}

// checkCopy compares the PostgreSQL ledger, read through its public
// contract, with what was read from Badger: every account's state,
// figures and entry count (and Recharged = Available + Held + Captured),
// each service's entry count and totals (the Stats of both backends).
func checkCopy(ctx context.Context, src *badger.Ledger, dst *postgres.Ledger, accts map[[2]string]acctFigures, entries map[storage.ServiceName]int64) error {
	svcs, err := dst.Services(ctx)
	if err != nil {
		return err
	}
	seen := 0
	for _, s := range svcs {
		f := storage.AccountFilter{Service: s.Name, Limit: 1000}
		for {
			page, err := dst.Accounts(ctx, f)
			if err != nil {
				return err
			}
			for _, a := range page {
				want, ok := accts[[2]string{string(a.Service), string(a.Token)}]
				got := acctFigures{a.State, a.Recharged, a.Available, a.Held, a.Captured, a.Seq}
				switch {
				case !ok:
					return fmt.Errorf("service %s: an account that Badger does not have", a.Service)
				case got != want:
					return fmt.Errorf("service %s: an account's figures differ (PostgreSQL %+v, Badger %+v)", a.Service, got, want)
				case a.Recharged != a.Available+a.Held+a.Captured:
					return fmt.Errorf("service %s: an account breaks recharged = available + held + captured", a.Service)
				}
				seen++
			}
			if len(page) < f.Limit {
				break
			}
			f.After = page[len(page)-1].Token
		}
	}
	if seen != len(accts) {
		return fmt.Errorf("%d accounts in PostgreSQL, %d in Badger", seen, len(accts))
	}
	got := map[storage.ServiceName]int64{}
	if err := dst.Export(ctx, postgres.ExportFilter{}, func(e storage.Entry) error { got[e.Service]++; return nil }); err != nil {
		return err
	}
	for _, s := range svcs {
		if got[s.Name] != entries[s.Name] {
			return fmt.Errorf("service %s: %d entries in PostgreSQL, %d in Badger", s.Name, got[s.Name], entries[s.Name])
		}
	}
	bs, err := badger.NewStatsReader(src).Stats(ctx)
	if err != nil {
		return err
	}
	ps, err := dst.Stats(ctx)
	if err != nil {
		return err
	}
	for name, b := range bs.Services {
		p, ok := ps.Services[name]
		if !ok {
			return fmt.Errorf("service %s missing", name)
		}
		type tot struct {
			avail, held, capt, auth, rel, exp, rech storage.Credits
			holds                                   int
		}
		tb := tot{b.Available, b.Held, b.Captured, b.Authorized, b.Released, b.Expired, b.Recharged, b.Holds}
		tp := tot{p.Available, p.Held, p.Captured, p.Authorized, p.Released, p.Expired, p.Recharged, p.Holds}
		if tb != tp {
			return fmt.Errorf("service %s: totals differ (PostgreSQL %+v, Badger %+v)", name, tp, tb)
		}
		for st, n := range b.Accounts {
			if p.Accounts[st] != n {
				return fmt.Errorf("service %s: %d %s accounts in PostgreSQL, %d in Badger", name, p.Accounts[st], st, n)
			}
		}
	}
	return nil
}
