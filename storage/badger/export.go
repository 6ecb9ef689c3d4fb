package badger

import (
	"context"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
)

// ExportFilter selects the entries Export walks; zero fields select all.
type ExportFilter struct {
	Service storage.ServiceName
	Account storage.AccountToken
	Since   time.Time // entries with Time >= Since (zero: no bound)
	Until   time.Time // entries with Time < Until (zero: no bound)
}

// Export calls fn with every ledger entry f selects (voucher redemptions
// are recharge entries among them; vouchers, queued alerts and bookkeeping
// records are not entries and are not exported: Backup holds them), in
// (service, account, seq) order, from one consistent snapshot taken when it starts (it may run
// while the ledger serves, for as long as fn takes). fn's error stops the
// walk and is returned as is. Invalid for a bad name or token; Unavailable
// when the ledger is closed or ctx is done.
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
	if err := l.drain(); err != nil { // the journaled writes too (overlay.go)
		return l.syncErr(op, err)
	}
	txn := l.readTxn()
	defer txn.Discard()
	if err := l.settle(op); err != nil {
		return err
	}

	// The key prefixes to walk, in key order.
	var prefixes [][]byte
	switch {
	case f.Service != "" && f.Account != "":
		prefixes = [][]byte{accountSubPrefix(pEntry, f.Service, f.Account, 8)}
	case f.Service != "":
		prefixes = [][]byte{append(append([]byte{pEntry}, f.Service...), 0)}
	case f.Account != "":
		// The services that know the token (token index, in service order).
		p := tokenIdxPrefix(f.Account)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: p})
		for it.Rewind(); it.Valid(); it.Next() {
			svc := storage.ServiceName(it.Item().Key()[len(p):])
			prefixes = append(prefixes, accountSubPrefix(pEntry, svc, f.Account, 8))
		}
		it.Close()
	default:
		prefixes = [][]byte{{pEntry}}
	}

	var fnErr error
	walk := func(prefix []byte) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		i := 0
		for it.Rewind(); it.Valid(); it.Next() {
			if i++; i%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			item := it.Item()
			_, svc, tok, seq, ok := parseEntryKey(item.Key())
			if !ok {
				return errCorrupt
			}
			var e storage.Entry
			if err := item.Value(func(b []byte) (err error) {
				e, err = decodeEntry(b, svc, tok, seq)
				return err
			}); err != nil {
				return err
			}
			if !f.Since.IsZero() && e.Time.Before(f.Since) || !f.Until.IsZero() && !e.Time.Before(f.Until) {
				continue
			}
			if fnErr = fn(e); fnErr != nil {
				return fnErr
			}
		}
		return nil
	}
	for _, p := range prefixes {
		if err := walk(p); err != nil {
			if fnErr != nil {
				return fnErr
			}
			return l.wrap(op, err)
		}
	}
	return nil
}
