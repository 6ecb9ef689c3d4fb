package badger

import (
	"context"
	"encoding/binary"
	"hash/maphash"
	"sync"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
)

// StatsReader computes a Ledger's storage.Stats for monitoring. Create it
// with NewStatsReader; it is safe for concurrent use (calls are
// serialised).
//
// A call reads, in one Badger read txn: every service record, every
// account record, the expiry index and the transaction of each open hold,
// and the entries written since the previous call. The flow totals of
// storage.ServiceStats are sums over all entries; the reader remembers,
// per account, how many entries it has summed already (8 bytes of
// account hash and 8 of seq, about 25 bytes an account in memory), so
// that only the first call reads the whole history and later calls read
// only the new entries. A call costs a scan of the account records plus
// the open holds plus the new entries: callers that poll (a metrics
// scrape) should cache the result for a few seconds.
type StatsReader struct {
	l    *Ledger
	seed maphash.Seed

	mu    sync.Mutex
	seen  map[uint64]uint64 // account hash → entries already summed
	flows map[storage.ServiceName]flowTotals
}

// flowTotals are the history totals of one service.
type flowTotals struct {
	authorized, captured, released, expired, recharged storage.Credits
}

// NewStatsReader returns a StatsReader of l.
func NewStatsReader(l *Ledger) *StatsReader {
	return &StatsReader{
		l:     l,
		seed:  maphash.MakeSeed(),
		seen:  make(map[uint64]uint64),
		flows: make(map[storage.ServiceName]flowTotals),
	}
}

// Stats returns the ledger's figures by service. Like every read of the
// ledger, it answers only what is durable. Errors: Unavailable when the
// ledger is closed or stopped, or ctx is done; Internal for a read failure
// or a corrupt record. A failed call changes nothing in the reader.
func (r *StatsReader) Stats(ctx context.Context) (storage.Stats, error) {
	const op = "stats"
	l := r.l
	if err := l.enter(op, ctx); err != nil {
		return storage.Stats{}, err
	}
	defer l.leave()
	r.mu.Lock()
	defer r.mu.Unlock()

	out := storage.Stats{Services: make(map[storage.ServiceName]storage.ServiceStats)}
	// Figures are gathered in a local map of pointers, then copied out.
	figs := make(map[storage.ServiceName]*storage.ServiceStats)
	get := func(name storage.ServiceName) *storage.ServiceStats {
		s := figs[name]
		if s == nil {
			s = &storage.ServiceStats{Accounts: make(map[storage.AccountState]int, 3)}
			figs[name] = s
		}
		return s
	}
	// What this call adds to the reader's state, applied only on success.
	seen := make(map[uint64]uint64)
	delta := make(map[storage.ServiceName]flowTotals)

	err := l.view(op, func(txn *badger.Txn) error {
		scanServices(txn, get)
		if err := r.scanHolds(ctx, txn, get); err != nil {
			return err
		}
		return r.scanAccounts(ctx, txn, get, seen, delta)
	})
	if err != nil {
		return storage.Stats{}, err
	}

	for h, seq := range seen {
		r.seen[h] = seq
	}
	for name, d := range delta {
		f := r.flows[name]
		f.authorized += d.authorized
		f.captured += d.captured
		f.released += d.released
		f.expired += d.expired
		f.recharged += d.recharged
		r.flows[name] = f
	}
	for name, f := range r.flows {
		s := get(name)
		s.Authorized, s.Captured, s.Released, s.Expired, s.Recharged =
			f.authorized, f.captured, f.released, f.expired, f.recharged
	}
	for name, s := range figs {
		out.Services[name] = *s
	}
	return out, nil
}

// scanServices makes sure every service has figures, accounts or not.
func scanServices(txn *badger.Txn, get func(storage.ServiceName) *storage.ServiceStats) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pService}, PrefetchValues: false})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		get(storage.ServiceName(it.Item().Key()[1:]))
	}
}

// scanHolds counts the open holds: the expiry index has one key per open
// hold; the service is in the transaction record.
func (r *StatsReader) scanHolds(ctx context.Context, txn *badger.Txn, get func(storage.ServiceName) *storage.ServiceStats) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pExpiry}, PrefetchValues: false})
	defer it.Close()
	n := 0
	for it.Rewind(); it.Valid(); it.Next() {
		if n++; n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		_, id, ok := parseExpiryKey(it.Item().Key())
		if !ok {
			return errCorrupt
		}
		t, found, err := getTxn(txn, id)
		if err != nil {
			return err
		}
		if !found {
			return errCorrupt
		}
		get(t.Service).Holds++
	}
	return nil
}

// scanAccounts reads every account record for the state figures and, for
// each account with entries not summed yet, sums them into delta and
// records the account's new seq in seen.
func (r *StatsReader) scanAccounts(ctx context.Context, txn *badger.Txn, get func(storage.ServiceName) *storage.ServiceStats,
	seen map[uint64]uint64, delta map[storage.ServiceName]flowTotals) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pAccount}})
	defer it.Close()
	var entries *badger.Iterator // opened on the first account with new entries
	defer func() {
		if entries != nil {
			entries.Close()
		}
	}()
	n := 0
	for it.Rewind(); it.Valid(); it.Next() {
		if n++; n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		item := it.Item()
		name, tok, ok := parseAccountKey(item.Key())
		if !ok {
			return errCorrupt
		}
		var a storage.Account
		if err := item.Value(func(b []byte) (err error) {
			a, err = decodeAccount(b, name, tok)
			return err
		}); err != nil {
			return err
		}
		s := get(name)
		s.Accounts[a.State]++
		s.Available += a.Available
		s.Held += a.Held
		if a.State == storage.Registered && a.Alerts.Enabled && a.Available < a.Alerts.Threshold {
			s.BelowThreshold++
		}

		h := r.accountHash(name, tok)
		from := r.seen[h]
		if a.Seq <= from {
			continue
		}
		if entries == nil {
			entries = txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pEntry}})
		}
		d := delta[name]
		if err := sumEntries(entries, name, tok, from, a.Seq, &d); err != nil {
			return err
		}
		delta[name] = d
		seen[h] = a.Seq
	}
	return nil
}

// sumEntries adds the entries of one account with from < seq <= to to d.
func sumEntries(it *badger.Iterator, svc storage.ServiceName, tok storage.AccountToken, from, to uint64, d *flowTotals) error {
	prefix := accountSubPrefix(pEntry, svc, tok, 0)
	for it.Seek(entryKey(svc, tok, from+1)); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		k := item.Key()
		if len(k) != len(prefix)+8 {
			return errCorrupt
		}
		seq := binary.BigEndian.Uint64(k[len(prefix):])
		if seq > to {
			break // written after the account record this txn read
		}
		var e storage.Entry
		if err := item.Value(func(b []byte) (err error) {
			e, err = decodeEntry(b, svc, tok, seq)
			return err
		}); err != nil {
			return err
		}
		switch e.Kind {
		case storage.EntryHold:
			d.authorized += e.DHeld
		case storage.EntryCapture:
			d.captured += e.DCaptured
		case storage.EntryRelease:
			d.released += e.DAvailable
		case storage.EntryExpiry:
			d.expired += e.DAvailable
		case storage.EntryRecharge:
			d.recharged += e.DRecharged
		}
	}
	return nil
}

// accountHash identifies an account in the reader's memory: 64 bits of
// maphash of service and token (a collision among a million accounts has
// odds below one in ten million).
func (r *StatsReader) accountHash(svc storage.ServiceName, tok storage.AccountToken) uint64 {
	var h maphash.Hash
	h.SetSeed(r.seed)
	h.WriteString(string(svc))
	h.WriteByte(0)
	h.WriteString(string(tok))
	return h.Sum64()
}
