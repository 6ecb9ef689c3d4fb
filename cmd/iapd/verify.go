package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/iapd/iapd/rpc/admin"
	"github.com/iapd/iapd/storage/badger"
)

// runVerify verifies the ledger: offline with -data (iapd stopped), else
// online through the admin API. A ledger with errors is an error (exit 1).
func runVerify(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify", stderr, "iapd verify [-data DIR] [-grace D] [-show-tokens] [-ops ADDR] [-json]")
	cf := addClientFlags(fs, getenv)
	data := fs.String("data", "", "verify this data `directory` offline (iapd stopped); without it, the running iapd is asked")
	grace := fs.Duration("grace", badger.DefaultGrace, "an open hold overdue by more than `D` is an error (less: a warning); 0: any overdue hold is an error")
	show := fs.Bool("show-tokens", false, "show account and transaction tokens in full (default: a SHA-256 prefix)")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	g := *grace
	if g == 0 {
		g = time.Nanosecond
	}
	var rep admin.VerifyReport
	if *data != "" {
		if err := dataDirInUse(*data); err != nil { // datadir.go: names the pid
			return fmt.Errorf("verify: %w; or run iapd verify without -data to verify it online", err)
		}
		l, err := badger.Open(badger.Options{Dir: *data, Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		var ce *badger.JournalCorruptError
		if errors.As(err, &ce) {
			// Open refused and changed nothing: the ledger cannot be
			// walked without choosing what to replay, so the report is
			// the journal's.
			rep = admin.VerifyReport{Errors: 1, Problems: []admin.VerifyProblem{{
				Severity: string(badger.SeverityError), Check: badger.CheckJournal,
				Detail: ce.Error() + "; the ledger was not walked (iapd serve -journal-corrupt=move-aside starts from the records before the damage)",
			}}}
			if *cf.json {
				if err := writeJSON(stdout, rep); err != nil {
					return err
				}
			} else {
				printVerifyReport(stdout, rep)
			}
			return fmt.Errorf("verify: %s: %w", *data, ce)
		}
		if err != nil {
			if inUse := explainOpenError(*data, err); inUse != err {
				return fmt.Errorf("verify: %w; or run iapd verify without -data to verify it online", inUse)
			}
			return fmt.Errorf("verify: opening %s: %w", *data, err)
		}
		prog := newProgress(stderr, time.Now)
		prog.Phase("verify:", "records walked", 0)
		r, err := l.Verify(ctx, badger.VerifyOptions{Grace: g, Progress: prog.Set})
		prog.Done()
		cerr := l.Close()
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if cerr != nil {
			return fmt.Errorf("verify: closing the ledger: %w", cerr)
		}
		rep = verifyReport(r)
		rep.Redact(*show)
	} else {
		c, err := cf.client(getenv)
		if err != nil {
			return err
		}
		q := url.Values{"grace": {g.String()}}
		if *show {
			q.Set("show_tokens", "true")
		}
		c.hc.Timeout = 0 // a big ledger takes a while; ^C stops the wait
		prog := newProgress(stderr, time.Now)
		prog.Phase("verify: iapd is walking the ledger", "", 0)
		stop := prog.Ticking(ctx)
		err = c.call(ctx, "GET", "/v1/verify", q, nil, &rep)
		stop()
		prog.Done()
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
	}
	if *cf.json {
		if err := writeJSON(stdout, rep); err != nil {
			return err
		}
	} else {
		printVerifyReport(stdout, rep)
	}
	if !rep.Clean {
		return fmt.Errorf("verify: the ledger has %s", plural(rep.Errors, "error"))
	}
	return nil
}

// printVerifyReport writes a report for humans: a summary, one line per
// problem, the totals.
func printVerifyReport(w io.Writer, rep admin.VerifyReport) {
	if rep.At == "" { // not walked (a corrupt journal)
		fmt.Fprintln(w, "ledger not verified: its journal is corrupt")
	} else {
		fmt.Fprintf(w, "ledger verified at %s in %s (format %d): %d services, %d accounts, %d entries, %d transactions (%d holds open)\n",
			rep.At, rep.Duration, rep.Format, rep.Services, rep.Accounts, rep.Entries, rep.Transactions, rep.OpenHolds)
	}
	if len(rep.Problems) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEVERITY\tCHECK\tSERVICE\tACCOUNT\tTRANSACTION\tDETAIL")
		for _, p := range rep.Problems {
			acct := p.Account
			if p.Token != "" {
				acct = string(p.Token)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", strings.ToUpper(p.Severity), p.Check, orDash(string(p.Service)), orDash(acct), orDash(p.Transaction), p.Detail)
		}
		tw.Flush()
	}
	if rep.Omitted > 0 {
		fmt.Fprintf(w, "… and %d more problems not listed\n", rep.Omitted)
	}
	switch {
	case rep.Errors == 0 && rep.Warnings == 0:
		fmt.Fprintln(w, "ok: no problem found")
	case rep.Errors == 0:
		fmt.Fprintf(w, "ok: %s, no error\n", plural(rep.Warnings, "warning"))
	default:
		fmt.Fprintf(w, "FAILED: %s, %s\n", plural(rep.Errors, "error"), plural(rep.Warnings, "warning"))
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
