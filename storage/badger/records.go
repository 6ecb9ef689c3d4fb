package badger

import (
	"bytes"
	"encoding/hex"
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
)

// Reading and writing whole records inside a Badger txn. Errors returned
// here are raw (Badger's or errCorrupt); the operations give them a kind.

// get reads key and decodes its value with dec; found is false if absent.
func get(txn *badger.Txn, key []byte, dec func([]byte) error) (found bool, err error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, item.Value(dec)
}

func putService(tx *wtxn, s *storage.Service) error {
	return tx.set(serviceKey(s.Name), encodeService(s))
}

// acct is an account record as stored: the account and the ledger's own
// low-credit alert state (alerts.go).
type acct struct {
	storage.Account
	// alertSent: an alert was queued since Available was last at or above
	// the threshold; the alert is disarmed until it is again. Records of
	// record format 1 have no such field and decode as armed.
	alertSent bool
	// figs are the figures of the record as read or last written, for
	// the aggregates (flat.go: wtxn.aggAccount); zero for a new account.
	figs acctFigs
}

func getAccount(txn *badger.Txn, svc storage.ServiceName, tok storage.AccountToken) (a acct, found bool, err error) {
	found, err = get(txn, accountKey(svc, tok), func(b []byte) (err error) {
		a, err = decodeAcct(b, svc, tok)
		return err
	})
	return a, found, err
}

// account reads an account record in a write: from the stripe's cache when
// the txn holds the account's stripe (always, for the operations on an
// account), else from Badger.
func (w *wtxn) account(svc storage.ServiceName, tok storage.AccountToken) (acct, bool, error) {
	if w.st != nil && w.l.stripe(svc, tok) == w.st {
		if a, ok := w.st.lookup(svc, tok); ok {
			return a, true, nil
		}
	}
	if w.journaled {
		var a acct
		found, err := w.l.readLatest(accountKey(svc, tok), func(b []byte) (err error) {
			a, err = decodeAcct(b, svc, tok)
			return err
		})
		return a, found, err
	}
	return getAccount(w.Txn, svc, tok)
}

// get reads key as this write sees it: its own writes first, then, for a
// journaled write, the overlay and Badger (readLatest); else its Badger
// txn.
func (w *wtxn) get(key []byte, dec func([]byte) error) (bool, error) {
	if !w.journaled {
		return get(w.Txn, key, dec)
	}
	for i := len(w.pend) - 1; i >= 0; i-- {
		if bytes.Equal(w.pend[i].Key, key) {
			if w.pend[i].Del {
				return false, nil
			}
			return true, dec(w.pend[i].Value)
		}
	}
	return w.l.readLatest(key, dec)
}

func (w *wtxn) service(name storage.ServiceName) (s storage.Service, found bool, err error) {
	found, err = w.get(serviceKey(name), func(b []byte) (err error) {
		s, err = decodeService(b)
		return err
	})
	return s, found, err
}

func (w *wtxn) entry(svc storage.ServiceName, tok storage.AccountToken, seq uint64) (e storage.Entry, found bool, err error) {
	found, err = w.get(entryKey(svc, tok, seq), func(b []byte) (err error) {
		e, err = decodeEntry(b, svc, tok, seq)
		return err
	})
	return e, found, err
}

// readLatest reads key as last written: from the overlay of journaled
// writes, else from Badger through a txn opened after the overlay was
// consulted (overlay.go says why that order finds every key).
func (l *Ledger) readLatest(key []byte, dec func([]byte) error) (found bool, err error) {
	if v, del, ok := l.ov.get(key); ok {
		if del {
			return false, nil
		}
		return true, dec(v)
	}
	err = l.db.View(func(txn *badger.Txn) (err error) {
		found, err = get(txn, key, dec)
		return err
	})
	return found, err
}

// putAccount writes an account after checking the invariant: a bug must
// never reach the disk. The txn must hold the account's stripe: the record
// is cached there once the txn commits. It keeps the account's alert state
// and queues a low-credit alert when the account's Available went below its
// threshold (alerts.go: checkAlert), in the same txn.
func putAccount(tx *wtxn, a *acct) error { return putAccountAlerting(tx, a, true) }

// putAccountAlerting is putAccount; with mayQueue false the alert is
// (re-)armed when Available >= Threshold but never queued (a settings
// change, UpdateAccount).
func putAccountAlerting(tx *wtxn, a *acct, mayQueue bool) error {
	if a.Recharged != a.Available+a.Held+a.Captured || a.Available < 0 || a.Held < 0 || a.Captured < 0 {
		return errors.New("account invariant broken; change refused")
	}
	if tx.st == nil || tx.l.stripe(a.Service, a.Token) != tx.st {
		return errors.New("account written outside its stripe; change refused")
	}
	if err := checkAlert(tx, a, mayQueue); err != nil {
		return err
	}
	tx.aggAccount(a)
	if err := tx.set(accountKey(a.Service, a.Token), encodeAccount(a)); err != nil {
		return err
	}
	for i := range tx.accts {
		if tx.accts[i].Service == a.Service && tx.accts[i].Token == a.Token {
			tx.accts[i] = *a
			return nil
		}
	}
	tx.accts = append(tx.accts, *a)
	return nil
}

func getTxn(txn *badger.Txn, id [txnIDBytes]byte) (t storage.Transaction, found bool, err error) {
	found, err = get(txn, txnKey(id), func(b []byte) (err error) {
		t, err = decodeTxn(b, hex.EncodeToString(id[:]))
		return err
	})
	return t, found, err
}

// putTxn writes a transaction record. The txn must hold the stripe of the
// transaction's account: the record is cached once the txn commits.
func putTxn(tx *wtxn, id [txnIDBytes]byte, t *storage.Transaction) error {
	if tx.st == nil || tx.l.stripe(t.Service, t.Account) != tx.st {
		return errors.New("transaction written outside its account's stripe; change refused")
	}
	if err := tx.set(txnKey(id), encodeTxn(t)); err != nil {
		return err
	}
	for i := range tx.txns {
		if tx.txns[i].id == id {
			tx.txns[i].t = *t
			return nil
		}
	}
	tx.txns = append(tx.txns, cachedTxn{id: id, set: true, t: *t})
	return nil
}

// txn reads a transaction record in a write that holds the stripe of its
// account: from the cache (txnCache), else from Badger.
func (w *wtxn) txn(id [txnIDBytes]byte) (storage.Transaction, bool, error) {
	if t, ok := w.l.txns.lookup(id); ok && w.st != nil && w.l.stripe(t.Service, t.Account) == w.st {
		return t, true, nil
	}
	if w.journaled {
		return w.l.readTxnLatest(id)
	}
	return getTxn(w.Txn, id)
}

// readTxnLatest reads a transaction record as last written (readLatest).
func (l *Ledger) readTxnLatest(id [txnIDBytes]byte) (t storage.Transaction, found bool, err error) {
	found, err = l.readLatest(txnKey(id), func(b []byte) (err error) {
		t, err = decodeTxn(b, hex.EncodeToString(id[:]))
		return err
	})
	return t, found, err
}

func getEntry(txn *badger.Txn, svc storage.ServiceName, tok storage.AccountToken, seq uint64) (e storage.Entry, found bool, err error) {
	found, err = get(txn, entryKey(svc, tok, seq), func(b []byte) (err error) {
		e, err = decodeEntry(b, svc, tok, seq)
		return err
	})
	return e, found, err
}

// appendEntry gives e the account's next seq and a time that never goes
// back within the account (even if the clock does), applies its deltas to
// a and writes it. The caller writes a afterwards.
func appendEntry(tx *wtxn, a *storage.Account, e storage.Entry, now time.Time) (storage.Entry, error) {
	if err := storage.ApplyEntry(a, &e, now); err != nil {
		return e, err
	}
	tx.aggEntry(&e)
	return e, tx.set(entryKey(a.Service, a.Token, e.Seq), encodeEntry(&e))
}

// createAccount makes the account (svc, tok) on first sight, in tx:
// registered with the service's trial credits (a recharge entry with Ref
// "trial") when the service auto-registers, unregistered otherwise. It
// writes the token index and the trial entry; the caller writes the
// account. NotFound if the service is unknown.
func createAccount(op string, tx *wtxn, svc storage.ServiceName, tok storage.AccountToken, fs storage.FirstSight, now time.Time) (acct, error) {
	s, found, err := tx.service(svc)
	if err != nil {
		return acct{}, err
	}
	if !found {
		return acct{}, storage.E(op, storage.NotFound, "no such service")
	}
	a := acct{Account: storage.Account{
		Service: svc, Token: tok, State: storage.Unregistered,
		DBUUID: fs.DBUUID, CreatedAt: now, UpdatedAt: now,
	}}
	if err := tx.set(tokenIdxKey(tok, svc), nil); err != nil {
		return a, err
	}
	if err := tx.set(tokenHashKey(tok), nil); err != nil { // flat.go
		return a, err
	}
	if !s.AutoRegister {
		return a, nil
	}
	a.State = storage.Registered
	if s.TrialCredits > 0 && !fs.NoTrial {
		e, err := appendEntry(tx, &a.Account, storage.Entry{
			Kind:        storage.EntryRecharge,
			DRecharged:  s.TrialCredits,
			DAvailable:  s.TrialCredits,
			Ref:         storage.TrialRef,
			Description: "trial credits",
		}, now)
		if err != nil {
			return a, err
		}
		if err := tx.set(refKey(svc, tok, storage.TrialRef), encodeSeq(e.Seq)); err != nil {
			return a, err
		}
	}
	return a, nil
}

// accountForWrite returns the account, creating it on first sight;
// created reports a creation (whose writes the caller must commit).
func accountForWrite(op string, tx *wtxn, svc storage.ServiceName, tok storage.AccountToken, fs storage.FirstSight, now time.Time) (a acct, created bool, err error) {
	a, found, err := tx.account(svc, tok)
	if err != nil || found {
		return a, false, err
	}
	a, err = createAccount(op, tx, svc, tok, fs, now)
	return a, err == nil, err
}
