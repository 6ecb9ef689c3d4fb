package badger

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
)

// The passes of Verify over the stores beside the ledger: vouchers, the
// alert queue and the bookkeeping records.

func (v *verifier) vouchersPass() error {
	return v.each(pVoucher, true, func(item *badger.Item) error {
		k := item.Key()
		if len(k) != 33 {
			v.errorf(CheckRecord, "", "", "", "malformed voucher key (%d bytes)", len(k))
			return nil
		}
		var h [32]byte
		copy(h[:], k[1:])
		var vo storage.Voucher
		if err := item.Value(func(b []byte) (err error) { vo, err = decodeVoucher(b, h); return err }); err != nil {
			if errors.Is(err, errCorrupt) {
				v.errorf(CheckRecord, "", "", "", "voucher %s: %v", voucherRef(h), err)
				return nil
			}
			return err
		}
		v.r.Vouchers++
		svc, tok := vo.Service, vo.RedeemedBy
		if _, ok := v.services[svc]; !ok {
			v.errorf(CheckVoucher, svc, tok, "", "voucher %s of a service that does not exist", voucherRef(h))
		}
		if vo.Amount <= 0 || vo.Amount > storage.MaxCredits {
			v.errorf(CheckVoucher, svc, tok, "", "voucher %s of amount %s", voucherRef(h), vo.Amount)
		}
		if !vo.Redeemed() {
			if vo.RedeemedBy != "" || vo.Entry != 0 {
				v.errorf(CheckVoucher, svc, tok, "", "voucher %s is not redeemed but names an account or entry", voucherRef(h))
			}
			return nil
		}
		e, found, err := getEntry(v.txn, svc, tok, vo.Entry)
		switch {
		case errors.Is(err, errCorrupt):
			return nil // reported by the accounts pass
		case err != nil:
			return err
		case !found:
			v.errorf(CheckVoucher, svc, tok, "", "voucher %s redeemed by entry %d, which does not exist: its credit was never given", voucherRef(h), vo.Entry)
		case e.Kind != storage.EntryRecharge || e.DRecharged != vo.Amount || e.Ref != voucherRef(h):
			v.errorf(CheckVoucher, svc, tok, "", "voucher %s of %s redeemed by entry %d, a %s of %s with ref %q", voucherRef(h), vo.Amount, vo.Entry, e.Kind, e.DRecharged, e.Ref)
		}
		return nil
	})
}

func (v *verifier) alertsPass() error {
	return v.each(pAlert, true, func(item *badger.Item) error {
		k := item.Key()
		if len(k) != 9 {
			v.errorf(CheckRecord, "", "", "", "malformed alert key (%d bytes)", len(k))
			return nil
		}
		id := binary.BigEndian.Uint64(k[1:])
		var n storage.AlertNotice
		if err := item.Value(func(b []byte) (err error) { n, err = decodeAlert(b, id); return err }); err != nil {
			if errors.Is(err, errCorrupt) {
				v.errorf(CheckRecord, "", "", "", "alert %d: %v", id, err)
				return nil
			}
			return err
		}
		v.r.Alerts++
		if ok, err := v.exists(accountKey(n.Service, n.Account)); err != nil {
			return err
		} else if !ok {
			v.errorf(CheckAlert, n.Service, n.Account, "", "alert %d of an account that does not exist", id)
		}
		return nil
	})
}

func (v *verifier) recordsPass() error {
	return v.each(pRecord, true, func(item *badger.Item) error {
		ns, key, ok := parseRecordPart(item.Key()[1:])
		if !ok || !storage.ValidRecordNS(ns) || len(key) > storage.MaxRecordKey {
			v.errorf(CheckRecord, "", "", "", "malformed bookkeeping record key (%d bytes)", len(item.Key()))
			return nil
		}
		var expires time.Time
		if err := item.Value(func(b []byte) (err error) { expires, _, err = decodeRecord(b); return err }); err != nil {
			if errors.Is(err, errCorrupt) {
				v.errorf(CheckRecord, "", "", "", "bookkeeping record in namespace %q: %v", ns, err)
				return nil
			}
			return err
		}
		v.r.Records++
		if expires.IsZero() {
			return nil
		}
		if ok, err := v.exists(recordExpiryKey(expires, ns, key)); err != nil {
			return err
		} else if !ok {
			v.errorf(CheckRecordIndex, "", "", "", "a record in namespace %q expiring at %s is missing from the record expiry index: the sweeper will never delete it",
				ns, expires.Format(time.RFC3339))
		}
		return nil
	})
}

func (v *verifier) recordIndexPass() error {
	return v.each(pRecExpiry, false, func(item *badger.Item) error {
		k := item.Key()
		var ns, key string
		ok := len(k) > 9
		if ok {
			ns, key, ok = parseRecordPart(k[9:])
		}
		if !ok {
			v.errorf(CheckRecord, "", "", "", "malformed record expiry index key (%d bytes)", len(k))
			return nil
		}
		expires, _, found, err := getRecord(v.txn, ns, key)
		switch {
		case errors.Is(err, errCorrupt):
			return nil // reported by the records pass
		case err != nil:
			return err
		case !found:
			v.warnf(CheckRecordIndex, "", "", "", "a record expiry index entry in namespace %q of a record that does not exist", ns)
		case expires.IsZero() || timeKey(expires) != binary.BigEndian.Uint64(k[1:9]):
			v.warnf(CheckRecordIndex, "", "", "", "a record expiry index entry in namespace %q at another time than the record's expiry", ns)
		}
		return nil
	})
}
