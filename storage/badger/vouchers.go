package badger

import (
	"context"
	"encoding/hex"
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
)

// Vouchers (storage.Vouchers): one record per code hash. A redemption is
// one Badger txn under the stripe of the redeeming account: it reads the
// voucher through Badger (so that Badger's conflict detection sees two
// redemptions of one voucher by different accounts, and the loser, retried,
// finds it redeemed) and writes the voucher, the recharge entry, its ref
// and the account together.

// voucherRef is the Ref of a voucher's recharge entry: "voucher:" and the
// first 16 hex digits of the code hash.
func voucherRef(h [32]byte) string { return "voucher:" + hex.EncodeToString(h[:8]) }

// CreateVouchers stores new vouchers, all or none, in one atomic write.
// A zero CreatedAt is set to now; ExpiresAt zero means never. Exists if a
// code hash is stored already or given twice; NotFound if a service is
// unknown; Invalid for a zero code hash, a bad service name, an amount
// outside (0, MaxCredits], a batch label over 256 bytes, a voucher given
// as redeemed, or a batch too big for one atomic write (about a thousand
// vouchers with the default memtable size: split it).
func (l *Ledger) CreateVouchers(ctx context.Context, vs []storage.Voucher) error {
	const op = "create vouchers"
	if err := l.enter(op, ctx); err != nil {
		return err
	}
	defer l.leave()
	if err := storage.CheckVouchers(op, vs); err != nil {
		return err
	}
	if len(vs) == 0 {
		return nil
	}
	return l.write(op, nil, func(tx *wtxn, now time.Time) (error, error) {
		services := map[storage.ServiceName]bool{}
		for i := range vs {
			v := vs[i]
			if !services[v.Service] {
				_, found, err := tx.service(v.Service)
				if err != nil {
					return nil, err
				}
				if !found {
					return nil, storage.E(op, storage.NotFound, "no such service")
				}
				services[v.Service] = true
			}
			taken, err := tx.get(voucherKey(v.CodeHash), func([]byte) error { return nil })
			if err != nil {
				return nil, err
			}
			if taken {
				return nil, storage.E(op, storage.Exists, "a voucher with this code exists")
			}
			if v.CreatedAt.IsZero() {
				v.CreatedAt = now
			}
			v.CreatedAt = v.CreatedAt.Round(0).UTC()
			if !v.ExpiresAt.IsZero() {
				v.ExpiresAt = v.ExpiresAt.Round(0).UTC()
			}
			if err := tx.set(voucherKey(v.CodeHash), encodeVoucher(&v)); err != nil {
				if errors.Is(err, badger.ErrTxnTooBig) {
					return nil, storage.Ef(op, storage.Invalid, "%d vouchers are too many for one atomic write (%d fit): split the batch", len(vs), i)
				}
				return nil, err
			}
		}
		return nil, nil
	})
}

// RedeemVoucher credits the voucher's amount to (svc, tok) as a recharge
// entry (Ref voucherRef, description "voucher") and marks the voucher
// redeemed (RedeemedAt the entry's time), in one atomic write: of
// concurrent redemptions exactly one succeeds. The account is created as on
// first sight and registered if absent; an existing account keeps its
// state, as with Recharge. NotFound if no such voucher or it is for another
// service; Conflict if it was redeemed or has expired at now (now >=
// ExpiresAt), or if the account has a recharge with the voucher's ref
// already; Invalid for a bad name or token, or when the account's total
// would leave the bounded range.
func (l *Ledger) RedeemVoucher(ctx context.Context, codeHash [32]byte, svc storage.ServiceName, tok storage.AccountToken, now time.Time) (storage.Voucher, storage.Entry, error) {
	const op = "redeem voucher"
	if err := l.enter(op, ctx); err != nil {
		return storage.Voucher{}, storage.Entry{}, err
	}
	defer l.leave()
	if err := storage.CheckAccount(op, svc, tok); err != nil {
		return storage.Voucher{}, storage.Entry{}, err
	}
	var v storage.Voucher
	var out storage.Entry
	// The voucher is shared by every account: its writers (CreateVouchers,
	// the redemptions) hold the ledger's shared lock too.
	err := l.writeAlso(op, l.stripe(svc, tok), &l.sharedMu, func(tx *wtxn, clock time.Time) (error, error) {
		var found bool
		var err error
		v, found, err = tx.voucher(codeHash)
		if err != nil {
			return nil, err
		}
		switch {
		case !found || v.Service != svc:
			return nil, storage.E(op, storage.NotFound, "no such voucher")
		case v.Redeemed():
			return nil, storage.E(op, storage.Conflict, "voucher already redeemed")
		case !v.ExpiresAt.IsZero() && !now.Before(v.ExpiresAt):
			return nil, storage.E(op, storage.Conflict, "voucher expired")
		}
		a, created, err := accountForWrite(op, tx, svc, tok, storage.FirstSight{}, clock)
		if err != nil {
			return nil, err
		}
		if created {
			a.State = storage.Registered
		}
		ref := voucherRef(codeHash)
		if !created {
			dup, err := tx.get(refKey(svc, tok, ref), func([]byte) error { return nil })
			if err != nil {
				return nil, err
			}
			if dup {
				return nil, storage.E(op, storage.Conflict, "the account has a recharge with this voucher's ref")
			}
		}
		if a.Recharged+v.Amount > storage.MaxTotal {
			return nil, storage.E(op, storage.Invalid, "account total out of range")
		}
		out, err = appendEntry(tx, &a.Account, storage.Entry{
			Kind:        storage.EntryRecharge,
			DRecharged:  v.Amount,
			DAvailable:  v.Amount,
			Ref:         ref,
			Description: "voucher",
		}, clock)
		if err != nil {
			return nil, err
		}
		if err := tx.set(refKey(svc, tok, ref), encodeSeq(out.Seq)); err != nil {
			return nil, err
		}
		v.RedeemedAt, v.RedeemedBy, v.Entry = out.Time, tok, out.Seq
		if err := tx.set(voucherKey(codeHash), encodeVoucher(&v)); err != nil {
			return nil, err
		}
		return nil, putAccount(tx, &a)
	})
	if err != nil {
		return storage.Voucher{}, storage.Entry{}, err
	}
	return v, out, nil
}

// ListVouchers lists vouchers matching f in code hash order: at most
// f.Limit (<= 0: 100), after the hash f.After. To page, pass the last hash
// of a page as After; a page shorter than the limit is the last. Empty,
// not nil, when none. Invalid for a bad service name.
func (l *Ledger) ListVouchers(ctx context.Context, f storage.VoucherFilter) ([]storage.Voucher, error) {
	const op = "list vouchers"
	if err := l.enter(op, ctx); err != nil {
		return nil, err
	}
	defer l.leave()
	if f.Service != "" && !storage.ValidServiceName(string(f.Service)) {
		return nil, storage.E(op, storage.Invalid, "invalid service name")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	out := []storage.Voucher{}
	err := l.view(op, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pVoucher}, PrefetchValues: true, PrefetchSize: min(limit, 100)})
		defer it.Close()
		start := []byte{pVoucher}
		if f.After != ([32]byte{}) {
			start = append(voucherKey(f.After), 0) // the first key after it
		}
		for it.Seek(start); it.Valid() && len(out) < limit; it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			k := item.Key()
			if len(k) != 33 {
				return errCorrupt
			}
			var h [32]byte
			copy(h[:], k[1:])
			var v storage.Voucher
			if err := item.Value(func(b []byte) (err error) {
				v, err = decodeVoucher(b, h)
				return err
			}); err != nil {
				return err
			}
			if f.Service != "" && v.Service != f.Service || f.Batch != "" && v.Batch != f.Batch ||
				f.Redeemed != nil && v.Redeemed() != *f.Redeemed {
				continue
			}
			out = append(out, v)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

var _ storage.Vouchers = (*Ledger)(nil)

func (w *wtxn) voucher(h [32]byte) (v storage.Voucher, found bool, err error) {
	found, err = w.get(voucherKey(h), func(b []byte) (err error) {
		v, err = decodeVoucher(b, h)
		return err
	})
	return v, found, err
}
