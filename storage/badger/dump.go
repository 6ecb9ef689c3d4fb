package badger

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"slices"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
)

// DumpVisitor receives everything a ledger holds, one record at a time,
// for a copy to another backend (iapd ledger copy). Nil fields skip that
// kind; an error a field returns stops the walk and is returned as is.
type DumpVisitor struct {
	Service func(storage.Service) error
	// Account gets each account and whether its low-credit alert is
	// disarmed (an alert was queued since Available was last at or above
	// the threshold).
	Account     func(a storage.Account, alertSent bool) error
	Entry       func(storage.Entry) error
	Transaction func(storage.Transaction) error // every hold, open or ended
	Voucher     func(storage.Voucher) error
	Alert       func(storage.AlertNotice) error
	// Record gets the live records (expired ones are skipped) of every
	// namespace.
	Record func(ns string, r storage.Record) error
}

// Dump walks the whole ledger from one consistent snapshot, in this
// order: services, accounts, entries (by account, then seq), transactions,
// vouchers, queued alerts, records — each kind in key order. It only
// reads. Unavailable when the ledger is closed or ctx is done; Internal
// for a record that does not decode.
func (l *Ledger) Dump(ctx context.Context, v DumpVisitor) error {
	const op = "dump"
	if err := l.enter(op, ctx); err != nil {
		return err
	}
	defer l.leave()
	if err := l.drain(); err != nil { // the journaled writes too (overlay.go)
		return l.syncErr(op, err)
	}
	txn := l.readTxn()
	defer txn.Discard()
	if err := l.settle(op); err != nil {
		return err
	}
	now := l.clock()

	var fnErr error
	call := func(err error) error {
		fnErr = err
		return err
	}
	walk := func(prefix byte, fn func(k, b []byte) error) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefix}, PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		i := 0
		for it.Rewind(); it.Valid(); it.Next() {
			if i++; i%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			item := it.Item()
			k := item.KeyCopy(nil)
			if err := item.Value(func(b []byte) error { return fn(k, b) }); err != nil {
				return err
			}
		}
		return nil
	}
	steps := []struct {
		prefix byte
		skip   bool
		fn     func(k, b []byte) error
	}{
		{pService, v.Service == nil, func(k, b []byte) error {
			s, err := decodeService(b)
			if err != nil {
				return err
			}
			return call(v.Service(s))
		}},
		{pAccount, v.Account == nil, func(k, b []byte) error {
			svc, tok, ok := parseAccountKey(k)
			if !ok {
				return errCorrupt
			}
			a, err := decodeAcct(b, svc, tok)
			if err != nil {
				return err
			}
			return call(v.Account(a.Account, a.alertSent))
		}},
		{pEntry, v.Entry == nil, func(k, b []byte) error {
			_, svc, tok, seq, ok := parseEntryKey(k)
			if !ok {
				return errCorrupt
			}
			e, err := decodeEntry(b, svc, tok, seq)
			if err != nil {
				return err
			}
			return call(v.Entry(e))
		}},
		{pTxn, v.Transaction == nil, func(k, b []byte) error {
			if len(k) != 1+txnIDBytes {
				return errCorrupt
			}
			t, err := decodeTxn(b, hex.EncodeToString(k[1:]))
			if err != nil {
				return err
			}
			return call(v.Transaction(t))
		}},
		{pVoucher, v.Voucher == nil, func(k, b []byte) error {
			if len(k) != 33 {
				return errCorrupt
			}
			vo, err := decodeVoucher(b, [32]byte(k[1:]))
			if err != nil {
				return err
			}
			return call(v.Voucher(vo))
		}},
		{pAlert, v.Alert == nil, func(k, b []byte) error {
			if len(k) != 9 {
				return errCorrupt
			}
			n, err := decodeAlert(b, binary.BigEndian.Uint64(k[1:]))
			if err != nil {
				return err
			}
			return call(v.Alert(n))
		}},
		{pRecord, v.Record == nil, func(k, b []byte) error {
			ns, key, ok := parseRecordPart(k[1:])
			if !ok {
				return errCorrupt
			}
			exp, val, err := decodeRecord(b)
			if err != nil {
				return err
			}
			if !live(exp, now) {
				return nil
			}
			val = slices.Clone(val)
			if val == nil {
				val = []byte{}
			}
			return call(v.Record(ns, storage.Record{Key: key, Value: val, Expires: exp}))
		}},
	}
	for _, s := range steps {
		if s.skip {
			continue
		}
		if err := walk(s.prefix, s.fn); err != nil {
			if fnErr != nil {
				return fnErr
			}
			return l.wrap(op, err)
		}
	}
	return nil
}
