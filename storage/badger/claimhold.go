package badger

import (
	"context"
	"slices"
	"sort"
	"time"

	"github.com/iapd/iapd/storage"
)

// AuthorizeClaims creates the claims that are absent and holds r.Amount
// plus the Price of every claim it creates, in one atomic change made
// durable by one journal record (the hold operations' path): either all
// of it is written or none of it. A claim whose (NS, Key) holds a live
// record, or repeats an earlier claim of the call, is not created; its
// result carries the value found. When no claim is created and r.Amount
// is 0, nothing is written and the Transaction is zero (Token "").
//
// Refusals are Authorize's (Forbidden, InsufficientCredit with Credit =
// the amount to hold), and then no claim is written (the account's
// creation on first sight is kept). Invalid as for Authorize and
// PutRecordIfAbsent, for an amount over MaxCredits, or for claims over
// 4 MiB of keys and values.
func (l *Ledger) AuthorizeClaims(ctx context.Context, r storage.AuthorizeRequest, claims []storage.Claim) (storage.Transaction, []storage.ClaimResult, error) {
	const op = "authorize claims"
	if err := l.enter(op, ctx); err != nil {
		return storage.Transaction{}, nil, err
	}
	defer l.leave()
	if err := r.Check(op); err != nil {
		return storage.Transaction{}, nil, err
	}
	size := 0
	locks := make([]int, 0, len(claims))
	for i := range claims {
		c := &claims[i]
		if err := l.checkRecordPut(op, c.NS, c.Key, c.Value, c.Expires); err != nil {
			return storage.Transaction{}, nil, err
		}
		if err := storage.CheckAmount(op, c.Price); err != nil {
			return storage.Transaction{}, nil, err
		}
		size += len(c.Key) + len(c.Value)
		locks = append(locks, l.recordLockIndex(c.NS, c.Key))
	}
	if size > storage.MaxClaimBytes {
		return storage.Transaction{}, nil, storage.Ef(op, storage.Invalid, "claims of %d bytes exceed %d", size, storage.MaxClaimBytes)
	}
	// The claims' record locks (in index order, each once), then the
	// account's stripe: no other operation holds a record lock while it
	// waits for a stripe, so this order cannot deadlock. They are held
	// until the change is committed (in the overlay), not while it is made
	// durable, as for PutRecordIfAbsent.
	sort.Ints(locks)
	locks = slices.Compact(locks)
	for _, i := range locks {
		l.recLocks[i].Lock()
	}
	unlock := func() {
		for _, i := range locks {
			l.recLocks[i].Unlock()
		}
	}

	var out storage.Transaction
	var results []storage.ClaimResult
	st := l.stripe(r.Service, r.Account)
	fn := func(tx *wtxn, now time.Time) (error, error) {
		out, results = storage.Transaction{}, make([]storage.ClaimResult, len(claims))
		type create struct {
			i     int
			old   time.Time
			found bool
		}
		var creates []create
		first := make(map[string]int, len(claims))
		amount := r.Amount
		for i := range claims {
			c := &claims[i]
			k := c.NS + "\x00" + c.Key
			if j, ok := first[k]; ok {
				results[i] = storage.ClaimResult{Stored: results[j].Stored}
				continue
			}
			first[k] = i
			old, cur, found, err := tx.record(c.NS, c.Key)
			if err != nil {
				return nil, err
			}
			if found && live(old, now) {
				results[i] = storage.ClaimResult{Stored: slices.Clone(cur)}
				if results[i].Stored == nil {
					results[i].Stored = []byte{}
				}
				continue
			}
			v := slices.Clone(c.Value)
			if v == nil {
				v = []byte{}
			}
			results[i] = storage.ClaimResult{Stored: v, Created: true}
			creates = append(creates, create{i, old, found})
			if amount += c.Price; amount > storage.MaxCredits {
				return nil, storage.Ef(op, storage.Invalid, "amount %s out of range", amount)
			}
		}
		if len(creates) == 0 && r.Amount == 0 {
			return nil, nil // nothing to hold: every claim was there
		}
		h := r
		h.Amount = amount
		t, refusal, err := authorizeIn(op, tx, h, now)
		if err != nil || refusal != nil {
			results = nil
			return refusal, err
		}
		for _, c := range creates {
			cl := &claims[c.i]
			if err := putRecord(tx, cl.NS, cl.Key, cl.Value, cl.Expires.Round(0).UTC(), c.old, c.found); err != nil {
				return nil, err
			}
		}
		out = t
		return nil, nil
	}
	var err error
	if l.jn == nil { // in memory: no journal
		err = l.write(op, st, fn)
		unlock()
	} else {
		var after error
		var seq uint64
		after, seq, err = l.commitJournaled(op, &st.mu, nil, st, fn)
		unlock()
		if err == nil {
			err = l.waitJournaled(ctx, op, seq)
		}
		if err == nil {
			err = after
		}
	}
	if err != nil {
		return storage.Transaction{}, nil, err
	}
	return out, results, nil
}
