package badger

import (
	"context"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
)

// StatsReader computes a Ledger's storage.Stats for monitoring. Create it
// with NewStatsReader; it is safe for concurrent use.
//
// A call reads, in one Badger read txn, every service record and the
// aggregate figures the ledger keeps with each write (flat.go): at most
// 1024 small keys per service, whatever the number of accounts, holds and
// entries. It keeps nothing in memory between calls.
type StatsReader struct {
	l *Ledger
}

// NewStatsReader returns a StatsReader of l.
func NewStatsReader(l *Ledger) *StatsReader { return &StatsReader{l: l} }

// Stats returns the ledger's figures by service. Like every read of the
// ledger, it answers only what is durable. Errors: Unavailable when the
// ledger is closed or stopped, or ctx is done; Internal for a read failure
// or a corrupt record.
func (r *StatsReader) Stats(ctx context.Context) (storage.Stats, error) {
	const op = "stats"
	l := r.l
	if err := l.enter(op, ctx); err != nil {
		return storage.Stats{}, err
	}
	defer l.leave()
	out := storage.Stats{Services: make(map[storage.ServiceName]storage.ServiceStats)}
	err := l.view(op, func(txn *badger.Txn) error {
		figs, err := readAggregates(txn)
		if err != nil {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pService}, PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			name := storage.ServiceName(it.Item().KeyCopy(nil)[1:])
			f := figs[name]
			if f == nil {
				f = &aggFig{}
			}
			out.Services[name] = f.stats()
		}
		return nil
	})
	if err != nil {
		return storage.Stats{}, err
	}
	return out, nil
}
