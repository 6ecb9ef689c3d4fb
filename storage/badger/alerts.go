package badger

import (
	"context"
	"encoding/binary"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
)

// Low-credit alerts (storage.AlertOutbox).
//
// Every account record carries whether its alert is armed (acct.alertSent
// false) or disarmed (an alert was queued and Available has not been at or
// above the threshold since). putAccount, through which every change of an
// account goes, judges the account as it is about to be written
// (checkAlert):
//
//   - Available >= Threshold: the alert is (re-)armed. Threshold 0 is
//     therefore never crossed (Available is never negative): it means no
//     alert.
//   - Available < Threshold, the alert armed and enabled, the account
//     registered: one AlertNotice is queued in the same Badger txn as the
//     change, and the alert is disarmed.
//
// So an alert is queued once per crossing, by whatever change crossed:
// a capture (or an over-capture), an authorize (a hold lowers Available,
// the balance Odoo shows and warns on; a hold that is then cancelled or
// expires gives the credit back and re-arms, so a hold that takes an
// account across the threshold and back queues one alert each time), or
// a negative adjustment. A recharge, a voucher, a positive adjustment, a
// cancel or an expiry re-arm when they bring Available back to the
// threshold. UpdateAccount (a settings change) never queues (issue 13:
// toggling a threshold must not be a way to send mail): one that changes
// Enabled or Threshold re-arms, so a threshold raised above the balance,
// or alerts enabled on an account already below it, queue one alert at
// the next change of credit; a change of recipients alone neither
// re-arms nor queues. An account that is not registered or whose alerts
// are disabled stays armed while below, and is judged again at its next
// change of credit. Records written before ledger format 2
// decode as armed: an enabled account already below its threshold gets
// one alert at its next change.
//
// The judgement reads nothing: the armed state is in the account record
// the operation has read already, so the authorize and capture path pays
// two comparisons, and one more Badger write only when it crosses.
//
// Alert ids are unique and increasing: the larger of the last id plus one
// and the microseconds since 1970 of the ledger clock at queueing time;
// Open starts from the largest id queued. (Ids stay increasing across
// restarts as long as the clock does not go back.)

// maxAlertError bounds the LastError kept for operators.
const maxAlertError = 1024

// alertIDs hands out alert ids.
type alertIDs struct{ last atomic.Uint64 }

func (a *alertIDs) next(now time.Time) uint64 {
	floor := uint64(max(now.UnixMicro(), 0))
	for {
		last := a.last.Load()
		id := max(last+1, floor)
		if a.last.CompareAndSwap(last, id) {
			return id
		}
	}
}

// loadAlertIDs starts the ids after the largest queued.
func (l *Ledger) loadAlertIDs() error {
	return l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pAlert}, Reverse: true})
		defer it.Close()
		it.Seek([]byte{pAlert, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		if !it.Valid() {
			return nil
		}
		k := it.Item().Key()
		if len(k) != 9 {
			return errCorrupt
		}
		l.alerts.last.Store(binary.BigEndian.Uint64(k[1:]))
		return nil
	})
}

// checkAlert arms, or queues an alert and disarms, as described above.
// a.UpdatedAt is the time of the change.
func checkAlert(tx *wtxn, a *acct, mayQueue bool) error {
	if a.Available >= a.Alerts.Threshold {
		a.alertSent = false
		return nil
	}
	if !mayQueue || a.alertSent || !a.Alerts.Enabled || a.State != storage.Registered {
		return nil
	}
	a.alertSent = true
	n := storage.AlertNotice{
		ID:         tx.l.alerts.next(a.UpdatedAt),
		Service:    a.Service,
		Account:    a.Token,
		Available:  a.Available,
		Threshold:  a.Alerts.Threshold,
		Recipients: a.Alerts.Recipients,
		At:         a.UpdatedAt,
		NextTry:    a.UpdatedAt,
	}
	return tx.set(alertKey(n.ID), encodeAlert(&n))
}

func (w *wtxn) alert(id uint64) (n storage.AlertNotice, found bool, err error) {
	found, err = w.get(alertKey(id), func(b []byte) (err error) {
		n, err = decodeAlert(b, id)
		return err
	})
	return n, found, err
}

// DueAlerts returns at most max (> 0, else Invalid) queued alerts whose
// NextTry <= now, oldest (lowest id) first. Empty, not nil, when none.
func (l *Ledger) DueAlerts(ctx context.Context, now time.Time, max int) ([]storage.AlertNotice, error) {
	const op = "due alerts"
	if err := l.enter(op, ctx); err != nil {
		return nil, err
	}
	defer l.leave()
	if max <= 0 {
		return nil, storage.E(op, storage.Invalid, "max must be positive")
	}
	out := []storage.AlertNotice{}
	err := l.view(op, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pAlert}, PrefetchValues: true, PrefetchSize: min(max, 100)})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(out) < max; it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			k := item.Key()
			if len(k) != 9 {
				return errCorrupt
			}
			var n storage.AlertNotice
			if err := item.Value(func(b []byte) (err error) {
				n, err = decodeAlert(b, binary.BigEndian.Uint64(k[1:]))
				return err
			}); err != nil {
				return err
			}
			if n.NextTry.After(now) {
				continue
			}
			out = append(out, n)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AlertSent removes a delivered alert. Idempotent.
func (l *Ledger) AlertSent(ctx context.Context, id uint64) error {
	const op = "alert sent"
	if err := l.enter(op, ctx); err != nil {
		return err
	}
	defer l.leave()
	return l.write(op, nil, func(tx *wtxn, now time.Time) (error, error) {
		found, err := tx.get(alertKey(id), func([]byte) error { return nil })
		if err != nil || !found {
			return nil, err
		}
		return nil, tx.del(alertKey(id))
	})
}

// AlertFailed records a failed delivery: Attempts+1, NextTry = next, and
// reason (cut to 1024 bytes) as LastError. NotFound if the alert is no
// longer queued.
func (l *Ledger) AlertFailed(ctx context.Context, id uint64, next time.Time, reason string) error {
	const op = "alert failed"
	if err := l.enter(op, ctx); err != nil {
		return err
	}
	defer l.leave()
	reason = cutText(reason, maxAlertError)
	return l.write(op, nil, func(tx *wtxn, now time.Time) (error, error) {
		n, found, err := tx.alert(id)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, storage.E(op, storage.NotFound, "no such alert")
		}
		n.Attempts++
		n.NextTry = next.Round(0).UTC()
		n.LastError = reason
		return nil, tx.set(alertKey(id), encodeAlert(&n))
	})
}

// cutText cuts s to at most max bytes without splitting a UTF-8 sequence,
// and makes it valid UTF-8.
func cutText(s string, max int) string {
	if len(s) > max {
		i := max
		for i > 0 && !utf8.RuneStart(s[i]) {
			i--
		}
		s = s[:i]
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

var _ storage.AlertOutbox = (*Ledger)(nil)
