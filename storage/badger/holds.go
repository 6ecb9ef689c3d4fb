package badger

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
)

// Authorize holds r.Amount (0 <= Amount <= MaxCredits) of the account's
// available credit for r.TTL (0 < TTL <= 100 years) and returns the new
// transaction, whose Token is 16 bytes as 32 lowercase hex (newTxnID:
// the time, then 80 bits from crypto/rand). The account is created on
// first sight as Account does, and that creation is kept even when the
// hold is then refused: Forbidden if the account is not registered
// (unregistered or banned); InsufficientCredit (with Service and Credit =
// Amount) if Available < Amount. Invalid for a bad amount, ttl, name,
// token, or a description over 4096 bytes; NotFound if the service is
// unknown. The hold, its ledger entry (kind hold), the expiry index and
// the account change are one atomic write.
func (l *Ledger) Authorize(ctx context.Context, r storage.AuthorizeRequest) (storage.Transaction, error) {
	const op = "authorize"
	if err := l.enter(op, ctx); err != nil {
		return storage.Transaction{}, err
	}
	defer l.leave()
	if err := r.Check(op); err != nil {
		return storage.Transaction{}, err
	}
	var out storage.Transaction
	err := l.writeHold(ctx, op, l.stripe(r.Service, r.Account), func(tx *wtxn, now time.Time) (refusal error, err error) {
		out, refusal, err = authorizeIn(op, tx, r, now)
		return refusal, err
	})
	if err != nil {
		return storage.Transaction{}, err
	}
	return out, nil
}

// authorizeIn makes the hold of r in tx, which holds the account's stripe:
// Authorize's change. A refusal (Forbidden, InsufficientCredit) comes back
// as refusal, with the account's creation on first sight written.
func authorizeIn(op string, tx *wtxn, r storage.AuthorizeRequest, now time.Time) (t storage.Transaction, refusal, err error) {
	a, created, err := accountForWrite(op, tx, r.Service, r.Account, r.FirstSight, now)
	if err != nil {
		return t, nil, err
	}
	switch {
	case a.State == storage.Banned:
		refusal = storage.E(op, storage.Forbidden, "account is banned")
	case a.State != storage.Registered:
		refusal = storage.E(op, storage.Forbidden, "account is not registered")
	case a.Available < r.Amount:
		refusal = &storage.Error{Op: op, Kind: storage.InsufficientCredit,
			Msg: "not enough credit", Service: r.Service, Credit: r.Amount}
	}
	if refusal != nil {
		if !created {
			return t, nil, refusal
		}
		return t, refusal, putAccount(tx, &a) // keep the first sight
	}
	id := newTxnID(now)
	t = storage.Transaction{
		Token:       hex.EncodeToString(id[:]),
		Service:     r.Service,
		Account:     r.Account,
		State:       storage.Held,
		Amount:      r.Amount,
		Description: r.Description,
		CreatedAt:   now,
		ExpiresAt:   now.Add(r.TTL),
	}
	if _, err := appendEntry(tx, &a.Account, storage.Entry{
		Kind:        storage.EntryHold,
		DAvailable:  -r.Amount,
		DHeld:       r.Amount,
		Transaction: t.Token,
		Description: r.Description,
	}, now); err != nil {
		return t, nil, err
	}
	if err := putTxn(tx, id, &t); err != nil {
		return t, nil, err
	}
	if err := tx.setNew(expiryKey(t.ExpiresAt, id), nil); err != nil {
		return t, nil, err
	}
	tx.aggHold(t.Service, +1)
	return t, nil, putAccount(tx, &a)
}

// newTxnID draws a fresh transaction id: the Unix time in milliseconds
// (6 bytes, big-endian; 0 before 1970), then 10 bytes from crypto/rand.
// Ids are unique without a lookup (two collide only if drawn in the same
// millisecond, with a chance of n²/2⁸¹ for n drawn in it) and arrive in
// key order while now moves forward; docs/performance.md, "Transaction
// ids", has the reasons and the measurements.
func newTxnID(now time.Time) (id [txnIDBytes]byte) {
	// The 48-bit millisecond count fills the first 6 bytes; the random
	// bytes then overwrite the 2 zero bytes the shift left behind.
	binary.BigEndian.PutUint64(id[:8], uint64(max(now.UnixMilli(), 0))<<16)
	_, _ = rand.Read(id[txnTimeBytes:]) // never fails (crypto/rand)
	return id
}

// txnTimeBytes is the length of newTxnID's time prefix.
const txnTimeBytes = 6

// lookupTxn reads a transaction outside any lock, to learn its account
// (immutable). NotFound if the token is malformed, absent or belongs to
// another service.
func (l *Ledger) lookupTxn(op string, svc storage.ServiceName, token string) ([txnIDBytes]byte, storage.Transaction, error) {
	id, ok := parseTxnToken(token)
	if !ok {
		return id, storage.Transaction{}, storage.E(op, storage.NotFound, "no such transaction")
	}
	t, found := l.txns.lookup(id) // Service and Account never change
	var err error
	if !found {
		t, found, err = l.readTxnLatest(id)
	}
	if err != nil {
		return id, t, l.wrap(op, err)
	}
	if !found || t.Service != svc {
		return id, t, storage.E(op, storage.NotFound, "no such transaction")
	}
	return id, t, nil
}

// loadHold re-reads a transaction and its account under the account's
// stripe.
func loadHold(tx *wtxn, id [txnIDBytes]byte) (storage.Transaction, acct, error) {
	t, found, err := tx.txn(id)
	if err != nil {
		return t, acct{}, err
	}
	if !found {
		return t, acct{}, errCorrupt // transactions are never deleted
	}
	a, found, err := tx.account(t.Service, t.Account)
	if err == nil && !found {
		err = errCorrupt
	}
	return t, a, err
}

// endHold closes an open hold: state, end time, expiry index, records. The
// caller has appended the entries to a.
func endHold(tx *wtxn, id [txnIDBytes]byte, t *storage.Transaction, a *acct, state storage.TransactionState, end time.Time) error {
	if err := tx.del(expiryKey(t.ExpiresAt, id)); err != nil {
		return err
	}
	tx.aggHold(t.Service, -1)
	t.State = state
	t.EndedAt = end
	if err := putTxn(tx, id, t); err != nil {
		return err
	}
	return putAccount(tx, a)
}

// expireHold returns an open hold past its ExpiresAt to the account (an
// expiry entry). EndedAt is ExpiresAt: that is when the hold ended.
func expireHold(tx *wtxn, id [txnIDBytes]byte, t *storage.Transaction, a *acct, now time.Time) error {
	if _, err := appendEntry(tx, &a.Account, storage.Entry{
		Kind:        storage.EntryExpiry,
		DAvailable:  t.Amount,
		DHeld:       -t.Amount,
		Transaction: t.Token,
		Description: t.Description,
	}, now); err != nil {
		return err
	}
	return endHold(tx, id, t, a, storage.Expired, t.ExpiresAt)
}

// Capture confirms a hold, taking *r.Amount (nil: the held amount; 0 <=
// Amount <= MaxCredits, else Invalid). Less than held writes a capture entry
// and a release entry for the rest; more than held writes one capture entry
// that also draws the difference from Available, or fails — leaving
// everything as it was — Forbidden if the account is no longer registered
// (the excess is new spending, which Authorize would refuse), else
// InsufficientCredit (Service set, Credit = the amount to capture). Idempotent: capturing a captured transaction again
// with the same amount (or nil) returns it unchanged. NotFound if the
// transaction does not exist, is malformed or belongs to another service;
// Conflict if it was cancelled or expired, or captured for another amount.
// A hold whose ExpiresAt has come (now >= ExpiresAt) is expired by this
// call (expiry entry, credit returned) and the capture fails Conflict.
func (l *Ledger) Capture(ctx context.Context, r storage.CaptureRequest) (storage.Transaction, error) {
	const op = "capture"
	if err := l.enter(op, ctx); err != nil {
		return storage.Transaction{}, err
	}
	defer l.leave()
	if err := r.Check(op); err != nil {
		return storage.Transaction{}, err
	}
	id, t, err := l.lookupTxn(op, r.Service, r.Transaction)
	if err != nil {
		return storage.Transaction{}, err
	}
	err = l.writeHold(ctx, op, l.stripe(t.Service, t.Account), func(tx *wtxn, now time.Time) (error, error) {
		var a acct
		var err error
		t, a, err = loadHold(tx, id)
		if err != nil {
			return nil, err
		}
		switch t.State {
		case storage.Captured:
			if r.Amount == nil || *r.Amount == t.Captured {
				return nil, nil
			}
			return nil, storage.E(op, storage.Conflict, "transaction captured for another amount")
		case storage.Cancelled:
			return nil, storage.E(op, storage.Conflict, "transaction was cancelled")
		case storage.Expired:
			return nil, storage.E(op, storage.Conflict, "transaction expired")
		case storage.Held:
		default:
			return nil, errCorrupt
		}
		if !now.Before(t.ExpiresAt) {
			return storage.E(op, storage.Conflict, "transaction expired"), expireHold(tx, id, &t, &a, now)
		}
		es, c, refusal := storage.CaptureEntries(op, t, a.Account, r.Amount)
		if refusal != nil {
			return nil, refusal
		}
		for _, e := range es {
			if _, err := appendEntry(tx, &a.Account, e, now); err != nil {
				return nil, err
			}
		}
		t.Captured = c
		return nil, endHold(tx, id, &t, &a, storage.Captured, now)
	})
	if err != nil {
		return storage.Transaction{}, err
	}
	return t, nil
}

// Cancel releases a hold (a release entry). Idempotent: cancelling a
// cancelled or expired transaction returns it unchanged; a hold whose
// ExpiresAt has come is expired rather than cancelled (state Expired, an
// expiry entry), without error. NotFound as for Capture; Conflict if it was
// captured; Invalid for a bad service name.
func (l *Ledger) Cancel(ctx context.Context, svc storage.ServiceName, txn string) (storage.Transaction, error) {
	const op = "cancel"
	if err := l.enter(op, ctx); err != nil {
		return storage.Transaction{}, err
	}
	defer l.leave()
	if !storage.ValidServiceName(string(svc)) {
		return storage.Transaction{}, storage.E(op, storage.Invalid, "invalid service name")
	}
	id, t, err := l.lookupTxn(op, svc, txn)
	if err != nil {
		return storage.Transaction{}, err
	}
	err = l.writeHold(ctx, op, l.stripe(t.Service, t.Account), func(tx *wtxn, now time.Time) (error, error) {
		var a acct
		var err error
		t, a, err = loadHold(tx, id)
		if err != nil {
			return nil, err
		}
		switch t.State {
		case storage.Cancelled, storage.Expired:
			return nil, nil
		case storage.Captured:
			return nil, storage.E(op, storage.Conflict, "transaction was captured")
		case storage.Held:
		default:
			return nil, errCorrupt
		}
		if !now.Before(t.ExpiresAt) {
			return nil, expireHold(tx, id, &t, &a, now)
		}
		if _, err := appendEntry(tx, &a.Account, storage.Entry{
			Kind: storage.EntryRelease, DHeld: -t.Amount, DAvailable: t.Amount,
			Transaction: t.Token, Description: t.Description,
		}, now); err != nil {
			return nil, err
		}
		return nil, endHold(tx, id, &t, &a, storage.Cancelled, now)
	})
	if err != nil {
		return storage.Transaction{}, err
	}
	return t, nil
}

// Transaction returns a transaction as stored: a hold past its ExpiresAt
// reads Held until ExpireDue, Capture or Cancel ends it (the account's Held
// still counts it until then). NotFound if absent or malformed.
func (l *Ledger) Transaction(ctx context.Context, txn string) (storage.Transaction, error) {
	const op = "transaction"
	if err := l.enter(op, ctx); err != nil {
		return storage.Transaction{}, err
	}
	defer l.leave()
	id, ok := parseTxnToken(txn)
	if !ok {
		return storage.Transaction{}, storage.E(op, storage.NotFound, "no such transaction")
	}
	var t storage.Transaction
	found, err := l.pointRead(op, txnKey(id), func(b []byte) (err error) {
		t, err = decodeTxn(b, hex.EncodeToString(id[:]))
		return err
	})
	if err == nil && !found {
		err = storage.E(op, storage.NotFound, "no such transaction")
	}
	return t, err
}

// ExpireDue releases at most max (> 0, else Invalid) holds whose ExpiresAt
// <= now, oldest first, and returns how many it released. Each release is
// atomic on its own (an expiry entry; EndedAt = ExpiresAt); all are durable
// when it returns. On an error, the count says how many were released.
func (l *Ledger) ExpireDue(ctx context.Context, now time.Time, max int) (int, error) {
	const op = "expire due"
	if err := l.enter(op, ctx); err != nil {
		return 0, err
	}
	defer l.leave()
	if max <= 0 {
		return 0, storage.E(op, storage.Invalid, "max must be positive")
	}
	due := timeKey(now)
	var ids [][txnIDBytes]byte
	if err := l.drain(); err != nil { // the expiry index, as last written
		return 0, l.syncErr(op, err)
	}
	txn := l.readTxn()
	err := func() error {
		defer txn.Discard()
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pExpiry}})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(ids) < max; it.Next() {
			at, id, ok := parseExpiryKey(it.Item().Key())
			if !ok {
				return errCorrupt
			}
			if at > due {
				break
			}
			ids = append(ids, id)
		}
		return nil
	}()
	if err != nil {
		return 0, l.wrap(op, err)
	}
	sw := sweep{l: l, op: op}
	for _, id := range ids {
		if err = ctx.Err(); err != nil {
			err = l.wrap(op, err)
			break
		}
		t, found, rerr := l.readTxnLatest(id) // to learn its account
		if rerr != nil {
			err = l.wrap(op, rerr)
			break
		}
		if !found {
			err = l.wrap(op, errCorrupt)
			break
		}
		expire := func(tx *wtxn, clock time.Time) (error, error) {
			t, a, err := loadHold(tx, id)
			if err != nil {
				return nil, err
			}
			if t.State != storage.Held || t.ExpiresAt.After(now) {
				return nil, nil // ended meanwhile
			}
			return nil, expireHold(tx, id, &t, &a, clock)
		}
		st := l.stripe(t.Service, t.Account)
		if err = sw.commit(&st.mu, st, expire); err != nil {
			break
		}
	}
	if serr := sw.wait(); serr != nil {
		return sw.n, serr
	}
	return sw.n, err
}

// sweep commits the changes of a sweep (ExpireDue, DeleteExpiredRecords)
// one by one, each atomic on its own, and waits once at the end until all
// are durable.
type sweep struct {
	l       *Ledger
	op      string
	n       int    // changes committed
	pending int64  // Badger commits made (no journal: in memory)
	lastSeq uint64 // the last journal record to wait for
}

// commit runs fn under mu (st: the account stripe whose mutex mu is, or
// nil): journaled when the ledger has a journal.
func (s *sweep) commit(mu *sync.Mutex, st *stripe, fn change) error {
	if s.l.jn != nil {
		_, seq, err := s.l.commitJournaled(s.op, mu, nil, st, fn)
		if err == nil && seq != 0 {
			s.n++
			s.lastSeq = seq
		}
		return err
	}
	_, committed, err := s.l.commitLocked(s.op, st, mu, fn)
	if err == nil && committed {
		s.n++
		s.pending++
	}
	return err
}

// wait returns once every change committed is durable.
func (s *sweep) wait() error {
	if s.lastSeq != 0 {
		if err := s.l.jn.Wait(s.lastSeq); err != nil {
			return s.l.syncErr(s.op, err)
		}
	}
	if s.pending > 0 {
		if err := s.l.syncBadger(); err != nil {
			return s.l.syncErr(s.op, err)
		}
	}
	return nil
}
