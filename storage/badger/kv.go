package badger

import (
	"context"
	"encoding/binary"
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
)

// The bookkeeping records of storage.Records: a record key (namespace 0x00
// key) holds the expiry and the value; a record with an expiry also has a
// key in the record expiry index, which DeleteExpiredRecords walks. Writes
// of one record are serialised by one of recordLocks mutexes (by a hash of
// namespace and key), held around the read-modify-write and the commit, so
// that concurrent writers of one key do not turn into Badger conflict
// retries; Badger's conflict detection still guards the rest.

const recordLocks = 256

// recordLock returns the mutex of (ns, key).
func (l *Ledger) recordLock(ns, key string) *sync.Mutex {
	return &l.recLocks[l.recordLockIndex(ns, key)]
}

// recordLockIndex is the index of (ns, key)'s mutex in recLocks.
func (l *Ledger) recordLockIndex(ns, key string) int {
	var h maphash.Hash
	h.SetSeed(l.seed)
	h.WriteString(ns)
	h.WriteByte(0)
	h.WriteString(key)
	return int(h.Sum64() % recordLocks)
}

func (l *Ledger) checkRecordPut(op, ns, key string, value []byte, expires time.Time) error {
	if err := storage.CheckRecord(op, ns, key, value); err != nil {
		return err
	}
	if !expires.IsZero() && !expires.After(l.clock()) {
		return storage.E(op, storage.Invalid, "record expiry is not in the future")
	}
	return nil
}

// live reports whether a record expiring at expires is alive at now.
func live(expires, now time.Time) bool { return expires.IsZero() || now.Before(expires) }

// getRecord reads a record, live or not.
func getRecord(txn *badger.Txn, ns, key string) (expires time.Time, value []byte, found bool, err error) {
	found, err = get(txn, recordKey(ns, key), func(b []byte) (err error) {
		expires, value, err = decodeRecord(b)
		return err
	})
	return expires, value, found, err
}

// record reads a record in a write: as last written (the overlay, then
// Badger) when the write is journaled, else from the write's Badger txn.
func (w *wtxn) record(ns, key string) (expires time.Time, value []byte, found bool, err error) {
	if !w.journaled {
		return getRecord(w.Txn, ns, key)
	}
	found, err = w.l.readLatest(recordKey(ns, key), func(b []byte) (err error) {
		expires, value, err = decodeRecord(b)
		return err
	})
	return expires, value, found, err
}

// putRecord writes a record over one that expired at old (zero: none or
// without expiry), keeping the expiry index in step.
func putRecord(tx *wtxn, ns, key string, value []byte, expires, old time.Time, hadOld bool) error {
	if hadOld && !old.IsZero() && !old.Equal(expires) {
		if err := tx.del(recordExpiryKey(old, ns, key)); err != nil {
			return err
		}
	}
	if !expires.IsZero() && (!hadOld || !old.Equal(expires)) {
		if err := tx.set(recordExpiryKey(expires, ns, key), nil); err != nil {
			return err
		}
	}
	return tx.set(recordKey(ns, key), encodeRecord(expires, value))
}

// deleteRecord deletes a record that expires at expires.
func deleteRecord(tx *wtxn, ns, key string, expires time.Time) error {
	if !expires.IsZero() {
		if err := tx.del(recordExpiryKey(expires, ns, key)); err != nil {
			return err
		}
	}
	return tx.del(recordKey(ns, key))
}

// PutRecordIfAbsent stores value under (ns, key) unless a live record is
// there, and returns the stored value and whether this call created it. A
// record past its expiry counts as absent and is replaced. Of concurrent
// callers with the same key, exactly one creates; the others get its
// value. Invalid as described on storage.Records.
func (l *Ledger) PutRecordIfAbsent(ctx context.Context, ns, key string, value []byte, expires time.Time) ([]byte, bool, error) {
	const op = "put record if absent"
	if err := l.enter(op, ctx); err != nil {
		return nil, false, err
	}
	defer l.leave()
	if err := l.checkRecordPut(op, ns, key, value, expires); err != nil {
		return nil, false, err
	}
	expires = expires.Round(0).UTC()
	var stored []byte
	var created bool
	err := l.writeRecord(ctx, op, l.recordLock(ns, key), func(tx *wtxn, now time.Time) (error, error) {
		old, cur, found, err := tx.record(ns, key)
		if err != nil {
			return nil, err
		}
		if found && live(old, now) {
			stored, created = cur, false
			return nil, nil
		}
		stored, created = slices.Clone(value), true
		if stored == nil {
			stored = []byte{}
		}
		return nil, putRecord(tx, ns, key, value, expires, old, found)
	})
	if err != nil {
		return nil, false, err
	}
	return stored, created, nil
}

// PutRecord stores value under (ns, key), replacing any record. Invalid as
// described on storage.Records.
func (l *Ledger) PutRecord(ctx context.Context, ns, key string, value []byte, expires time.Time) error {
	const op = "put record"
	if err := l.enter(op, ctx); err != nil {
		return err
	}
	defer l.leave()
	if err := l.checkRecordPut(op, ns, key, value, expires); err != nil {
		return err
	}
	expires = expires.Round(0).UTC()
	return l.writeRecord(ctx, op, l.recordLock(ns, key), func(tx *wtxn, now time.Time) (error, error) {
		old, _, found, err := tx.record(ns, key)
		if err != nil {
			return nil, err
		}
		return nil, putRecord(tx, ns, key, value, expires, old, found)
	})
}

// GetRecord returns the live record under (ns, key), a fresh slice.
// NotFound if absent or expired; Invalid for a bad namespace or key.
func (l *Ledger) GetRecord(ctx context.Context, ns, key string) ([]byte, error) {
	const op = "get record"
	if err := l.enter(op, ctx); err != nil {
		return nil, err
	}
	defer l.leave()
	if err := storage.CheckRecordKey(op, ns, key); err != nil {
		return nil, err
	}
	// As last written, from the overlay or Badger (readLatest), without
	// draining the overlay; then, as a view does, wait until what was read
	// is durable.
	var expires time.Time
	var value []byte
	found, err := l.readLatest(recordKey(ns, key), func(b []byte) (err error) {
		expires, value, err = decodeRecord(b)
		return err
	})
	if serr := l.settle(op); serr != nil {
		return nil, serr
	}
	if err != nil {
		return nil, l.wrap(op, err)
	}
	if !found || !live(expires, l.clock()) {
		return nil, storage.E(op, storage.NotFound, "no such record")
	}
	return value, nil
}

// DeleteRecord removes the record under (ns, key), live or expired.
// Idempotent. Invalid for a bad namespace or key.
func (l *Ledger) DeleteRecord(ctx context.Context, ns, key string) error {
	const op = "delete record"
	if err := l.enter(op, ctx); err != nil {
		return err
	}
	defer l.leave()
	if err := storage.CheckRecordKey(op, ns, key); err != nil {
		return err
	}
	return l.writeRecord(ctx, op, l.recordLock(ns, key), func(tx *wtxn, now time.Time) (error, error) {
		expires, _, found, err := tx.record(ns, key)
		if err != nil || !found {
			return nil, err
		}
		return nil, deleteRecord(tx, ns, key, expires)
	})
}

// DeleteExpiredRecords deletes at most max (> 0, else Invalid) records
// whose expiry is at or before now, oldest expiry first, and returns how
// many it deleted. Each deletion is atomic on its own; all are durable
// when it returns. On an error, the count says how many were deleted.
func (l *Ledger) DeleteExpiredRecords(ctx context.Context, now time.Time, max int) (int, error) {
	const op = "delete expired records"
	if err := l.enter(op, ctx); err != nil {
		return 0, err
	}
	defer l.leave()
	if max <= 0 {
		return 0, storage.E(op, storage.Invalid, "max must be positive")
	}
	type due struct {
		at      uint64
		ns, key string
	}
	var dues []due
	limit := timeKey(now)
	if err := l.drain(); err != nil { // the expiry index, as last written
		return 0, l.syncErr(op, err)
	}
	err := l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pRecExpiry}})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(dues) < max; it.Next() {
			k := it.Item().Key()
			if len(k) < 1+8+3 {
				return errCorrupt
			}
			at := binary.BigEndian.Uint64(k[1:9])
			if at > limit {
				break
			}
			ns, key, ok := parseRecordPart(k[9:])
			if !ok {
				return errCorrupt
			}
			dues = append(dues, due{at, ns, key})
		}
		return nil
	})
	if err != nil {
		return 0, l.wrap(op, err)
	}
	sw := sweep{l: l, op: op}
	for _, d := range dues {
		if err = ctx.Err(); err != nil {
			err = l.wrap(op, err)
			break
		}
		mu := l.recordLock(d.ns, d.key)
		del := func(tx *wtxn, _ time.Time) (error, error) {
			expires, _, found, err := tx.record(d.ns, d.key)
			if err != nil {
				return nil, err
			}
			if !found || expires.IsZero() || timeKey(expires) != d.at {
				return nil, nil // replaced or deleted meanwhile
			}
			return nil, deleteRecord(tx, d.ns, d.key, expires)
		}
		if err = sw.commit(mu, nil, del); err != nil {
			break
		}
	}
	if serr := sw.wait(); serr != nil {
		return sw.n, serr
	}
	return sw.n, err
}

// ListRecords returns at most max (> 0, else Invalid) live records of ns
// whose key sorts after after, in key order, as last written (the
// journal's overlay is drained into Badger first, as DeleteExpiredRecords
// does). Invalid for a bad namespace.
func (l *Ledger) ListRecords(ctx context.Context, ns, after string, max int) ([]storage.Record, error) {
	const op = "list records"
	if err := l.enter(op, ctx); err != nil {
		return nil, err
	}
	defer l.leave()
	if !storage.ValidRecordNS(ns) {
		return nil, storage.E(op, storage.Invalid, "invalid record namespace")
	}
	if max <= 0 {
		return nil, storage.E(op, storage.Invalid, "max must be positive")
	}
	if err := l.drain(); err != nil {
		return nil, l.syncErr(op, err)
	}
	prefix := recordKey(ns, "")
	start := prefix
	if after != "" {
		start = append(recordKey(ns, after), 0) // the first key after it
	}
	now := l.clock()
	var out []storage.Record
	err := l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 16})
		defer it.Close()
		for it.Seek(start); it.Valid() && len(out) < max; it.Next() {
			item := it.Item()
			key := string(item.Key()[len(prefix):])
			if key == "" {
				return errCorrupt
			}
			var r storage.Record
			if err := item.Value(func(b []byte) (err error) {
				r.Expires, r.Value, err = decodeRecord(b)
				return err
			}); err != nil {
				return err
			}
			if !live(r.Expires, now) {
				continue
			}
			r.Key = key
			r.Value = slices.Clone(r.Value)
			if r.Value == nil {
				r.Value = []byte{}
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, l.wrap(op, err)
	}
	return out, nil
}

var (
	_ storage.Records       = (*Ledger)(nil)
	_ storage.RecordSweeper = (*Ledger)(nil)
	_ storage.RecordLister  = (*Ledger)(nil)
)
