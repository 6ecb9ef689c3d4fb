package badger

import (
	"context"
	"encoding/binary"
	"math"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
)

// History returns entries of one account, newest first (descending Seq):
// at most q.Limit (<= 0: 100), only Seq < q.Before when Before > 0, and
// only Since <= Time < Until for the bounds that are non-zero. Entry times
// never decrease with Seq within an account (the ledger keeps them
// monotonic even if the clock steps back), so the Since bound ends the
// scan. To page, pass the Seq of a page's last entry as Before. Invalid for
// a bad name or token; NotFound if the account does not exist.
func (l *Ledger) History(ctx context.Context, svc storage.ServiceName, tok storage.AccountToken, q storage.HistoryQuery) ([]storage.Entry, error) {
	const op = "history"
	if err := l.enter(op, ctx); err != nil {
		return nil, err
	}
	defer l.leave()
	if err := storage.CheckAccount(op, svc, tok); err != nil {
		return nil, err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	out := []storage.Entry{}
	err := l.view(op, func(txn *badger.Txn) error {
		if _, found, err := getAccount(txn, svc, tok); err != nil {
			return err
		} else if !found {
			return storage.E(op, storage.NotFound, "no such account")
		}
		if q.Before == 1 {
			return nil
		}
		prefix := accountSubPrefix(pEntry, svc, tok, 8)
		it := txn.NewIterator(badger.IteratorOptions{
			Prefix: prefix, Reverse: true, PrefetchValues: true, PrefetchSize: min(limit, 100),
		})
		defer it.Close()
		last := uint64(math.MaxUint64)
		if q.Before > 0 {
			last = q.Before - 1
		}
		for it.Seek(binary.BigEndian.AppendUint64(prefix, last)); it.Valid() && len(out) < limit; it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) != len(prefix)+8 {
				return errCorrupt
			}
			seq := binary.BigEndian.Uint64(k[len(prefix):])
			var e storage.Entry
			if err := item.Value(func(b []byte) (err error) {
				e, err = decodeEntry(b, svc, tok, seq)
				return err
			}); err != nil {
				return err
			}
			if !q.Since.IsZero() && e.Time.Before(q.Since) {
				break
			}
			if !q.Until.IsZero() && !e.Time.Before(q.Until) {
				continue
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
