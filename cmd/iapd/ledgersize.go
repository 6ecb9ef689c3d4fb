package main

import (
	"github.com/iapd/iapd/metrics"
	"github.com/iapd/iapd/storage/badger"
)

// ledgerFiles reads the ledger's files for iap_ledger_size_bytes.
func ledgerFiles(use func() (badger.DiskUse, error)) func() (metrics.LedgerFiles, error) {
	return func() (metrics.LedgerFiles, error) {
		d, err := use()
		return metrics.LedgerFiles{Tables: d.Tables, ValueLog: d.ValueLog, Memtables: d.Memtables, Journal: d.Journal, Other: d.Other}, err
	}
}
