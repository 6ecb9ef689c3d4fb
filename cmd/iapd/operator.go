package main

import (
	"context"
	"io"
	"time"

	"github.com/iapd/iapd/rpc/admin"
	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

// ledgerOperator gives the admin API the Badger ledger's backup,
// verification and export (admin.Operator), translating between the two
// packages' types.
type ledgerOperator struct{ l *badger.Ledger }

func (o ledgerOperator) Backup(ctx context.Context, w io.Writer) error {
	_, err := o.l.Backup(ctx, w)
	return err
}

func (o ledgerOperator) Verify(ctx context.Context, grace time.Duration) (admin.VerifyReport, error) {
	r, err := o.l.Verify(ctx, badger.VerifyOptions{Grace: grace})
	if err != nil {
		return admin.VerifyReport{}, err
	}
	return verifyReport(r), nil
}

func (o ledgerOperator) Export(ctx context.Context, f admin.ExportFilter, fn func(storage.Entry) error) error {
	return o.l.Export(ctx, badger.ExportFilter{Service: f.Service, Account: f.Account, Since: f.Since, Until: f.Until}, fn)
}

// verifyReport is the admin API's view of a verification, with full
// tokens (admin.VerifyReport.Redact hides them).
func verifyReport(r badger.Report) admin.VerifyReport {
	out := admin.VerifyReport{
		Clean:        r.Clean(),
		At:           r.At.UTC().Format(time.RFC3339),
		Duration:     r.Duration.Round(time.Millisecond).String(),
		Format:       r.Format,
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
			Severity: string(p.Severity), Check: p.Check, Service: p.Service,
			Token: p.Account, Transaction: p.Transaction, Detail: p.Detail,
		})
	}
	return out
}

var _ admin.Operator = ledgerOperator{}
