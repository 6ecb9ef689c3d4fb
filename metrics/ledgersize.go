package metrics

import "github.com/prometheus/client_golang/prometheus"

// LedgerFiles are the bytes the ledger's files take on disk, by part
// (storage/badger's DiskUse, as the gauge needs it).
type LedgerFiles struct {
	Tables, ValueLog, Memtables, Journal, Other int64
}

// NewLedgerSizeCollector returns a collector of iap_ledger_size_bytes{part}
// (tables, value_log, memtables, journal, other), read at scrape time. read
// must be cheap (a listing of the data directory, no key read); an error
// costs the series of that scrape only.
func NewLedgerSizeCollector(read func() (LedgerFiles, error)) prometheus.Collector {
	return &ledgerSizeCollector{read: read, desc: prometheus.NewDesc("iap_ledger_size_bytes",
		"Bytes the ledger's files take in the data directory, by part (tables, value_log, memtables, journal, other); sum them for the ledger's size.",
		[]string{"part"}, nil)}
}

type ledgerSizeCollector struct {
	read func() (LedgerFiles, error)
	desc *prometheus.Desc
}

func (c *ledgerSizeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *ledgerSizeCollector) Collect(ch chan<- prometheus.Metric) {
	f, err := c.read()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, p := range []struct {
		part string
		n    int64
	}{{"tables", f.Tables}, {"value_log", f.ValueLog}, {"memtables", f.Memtables}, {"journal", f.Journal}, {"other", f.Other}} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(p.n), p.part)
	}
}
