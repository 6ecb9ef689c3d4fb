package badger

import (
	"context"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
)

// Account returns the account, creating it on first sight: registered with
// the service's TrialCredits (a recharge entry, Ref "trial") when the
// service auto-registers, unregistered otherwise; fs.DBUUID is recorded at
// creation only. Invalid for a bad service name, a token that
// storage.SplitToken would not produce (empty, over 64 bytes, a '+', a
// space or a non-printable byte) or a DBUUID over 256 bytes; NotFound if
// the service is unknown.
func (l *Ledger) Account(ctx context.Context, svc storage.ServiceName, tok storage.AccountToken, fs storage.FirstSight) (storage.Account, error) {
	const op = "account"
	if err := l.enter(op, ctx); err != nil {
		return storage.Account{}, err
	}
	defer l.leave()
	if err := storage.CheckAccount(op, svc, tok); err != nil {
		return storage.Account{}, err
	}
	if err := storage.CheckText(op, "db uuid", fs.DBUUID, storage.MaxShortText); err != nil {
		return storage.Account{}, err
	}
	a, found := l.cachedAccount(svc, tok)
	var err error
	if found {
		err = l.settle(op)
	} else {
		// A miss needs no settle: the write below waits for its own
		// record, and so for every record before it.
		found, err = l.readLatest(accountKey(svc, tok), func(b []byte) error {
			r, err := decodeAcct(b, svc, tok)
			a = r.Account
			return err
		})
		if err = l.wrap(op, err); err == nil && found {
			err = l.settle(op)
		}
	}
	if err != nil || found {
		return a, err
	}
	err = l.write(op, l.stripe(svc, tok), func(tx *wtxn, now time.Time) (error, error) {
		r, created, err := accountForWrite(op, tx, svc, tok, fs, now)
		a = r.Account
		if err != nil || !created {
			return nil, err
		}
		err = putAccount(tx, &r)
		a = r.Account
		return nil, err
	})
	if err != nil {
		return storage.Account{}, err
	}
	return a, nil
}

// LookupAccount returns the account without creating it. Invalid as for
// Account; NotFound if absent.
func (l *Ledger) LookupAccount(ctx context.Context, svc storage.ServiceName, tok storage.AccountToken) (storage.Account, error) {
	const op = "lookup account"
	if err := l.enter(op, ctx); err != nil {
		return storage.Account{}, err
	}
	defer l.leave()
	if err := storage.CheckAccount(op, svc, tok); err != nil {
		return storage.Account{}, err
	}
	if a, ok := l.cachedAccount(svc, tok); ok {
		return a, l.settle(op)
	}
	a, found, err := l.readAccount(op, svc, tok)
	if err == nil && !found {
		err = storage.E(op, storage.NotFound, "no such account")
	}
	return a, err
}

// readAccount reads an account as last written (a point read: the
// overlay, then Badger, with no checkpoint) and waits until what it read
// is durable.
func (l *Ledger) readAccount(op string, svc storage.ServiceName, tok storage.AccountToken) (a storage.Account, found bool, err error) {
	found, err = l.pointRead(op, accountKey(svc, tok), func(b []byte) error {
		r, err := decodeAcct(b, svc, tok)
		a = r.Account
		return err
	})
	return a, found, err
}

// cachedAccount returns the last committed record of an account when its
// stripe caches it and is free (a read does not wait for a write: it reads
// Badger instead). The caller must then settle: the record may be one
// whose round is still to come.
func (l *Ledger) cachedAccount(svc storage.ServiceName, tok storage.AccountToken) (storage.Account, bool) {
	st := l.stripe(svc, tok)
	if !st.mu.TryLock() {
		return storage.Account{}, false
	}
	defer st.mu.Unlock()
	a, ok := st.lookup(svc, tok)
	return a.Account, ok
}

// AccountsByToken returns the accounts of every service that have this
// token, by service name. Empty, not an error, when none; Invalid for a bad
// token.
func (l *Ledger) AccountsByToken(ctx context.Context, tok storage.AccountToken) ([]storage.Account, error) {
	const op = "accounts by token"
	if err := l.enter(op, ctx); err != nil {
		return nil, err
	}
	defer l.leave()
	if !storage.ValidAccountToken(tok) {
		return nil, storage.E(op, storage.Invalid, "invalid account token")
	}
	out := []storage.Account{}
	err := l.view(op, func(txn *badger.Txn) error {
		prefix := tokenIdxPrefix(tok)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			svc := storage.ServiceName(it.Item().Key()[len(prefix):])
			a, found, err := getAccount(txn, svc, tok)
			if err != nil {
				return err
			}
			if !found {
				return errCorrupt // the index and the account are written together
			}
			out = append(out, a.Account)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Accounts lists accounts matching f in (service, token) order: at most
// f.Limit (<= 0: 100), after the token f.After of service f.Service. To
// page, pass the last token of a page as After; a page shorter than the
// limit is the last. Invalid for After without Service, a bad service name
// or an unknown state.
func (l *Ledger) Accounts(ctx context.Context, f storage.AccountFilter) ([]storage.Account, error) {
	const op = "accounts"
	if err := l.enter(op, ctx); err != nil {
		return nil, err
	}
	defer l.leave()
	if err := f.Check(op); err != nil {
		return nil, err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	out := []storage.Account{}
	err := l.view(op, func(txn *badger.Txn) error {
		prefix := accountPrefix(f.Service)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: min(limit, 100)})
		defer it.Close()
		start := prefix
		if f.After != "" {
			// The first key after (Service, After): tokens hold no 0x00.
			start = append(accountKey(f.Service, f.After), 0)
		}
		for it.Seek(start); it.Valid() && len(out) < limit; it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			svc, tok, ok := parseAccountKey(item.Key())
			if !ok {
				return errCorrupt
			}
			var a storage.Account
			if err := item.Value(func(b []byte) (err error) {
				a, err = decodeAccount(b, svc, tok)
				return err
			}); err != nil {
				return err
			}
			if f.State != "" && a.State != f.State {
				continue
			}
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UpdateAccount applies u atomically and returns the result; an update
// with every field nil changes nothing. Settings are not money: no entry is
// written. NotFound if the account does not exist; Invalid for an unknown
// state, a threshold outside [0, MaxCredits], more than 50 recipients or
// over-long texts (sender name and e-mail 256 bytes, language 32).
func (l *Ledger) UpdateAccount(ctx context.Context, svc storage.ServiceName, tok storage.AccountToken, u storage.AccountUpdate) (storage.Account, error) {
	const op = "update account"
	if err := l.enter(op, ctx); err != nil {
		return storage.Account{}, err
	}
	defer l.leave()
	if err := storage.CheckAccount(op, svc, tok); err != nil {
		return storage.Account{}, err
	}
	if err := u.Check(op); err != nil {
		return storage.Account{}, err
	}
	var out storage.Account
	err := l.write(op, l.stripe(svc, tok), func(tx *wtxn, now time.Time) (error, error) {
		a, found, err := tx.account(svc, tok)
		out = a.Account
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, storage.E(op, storage.NotFound, "no such account")
		}
		if u.State == nil && u.Alerts == nil && u.SenderName == nil {
			return nil, nil
		}
		if u.State != nil {
			a.State = *u.State
		}
		if u.Alerts != nil {
			if u.Alerts.Enabled != a.Alerts.Enabled || u.Alerts.Threshold != a.Alerts.Threshold {
				a.alertSent = false // new settings: re-armed, then judged afresh
			}
			a.Alerts = *u.Alerts
			a.Alerts.Recipients = append([]storage.Recipient(nil), u.Alerts.Recipients...)
			if len(a.Alerts.Recipients) == 0 {
				a.Alerts.Recipients = nil
			}
		}
		if u.SenderName != nil {
			a.SenderName = *u.SenderName
		}
		if now.After(a.UpdatedAt) {
			a.UpdatedAt = now
		}
		err = putAccountAlerting(tx, &a, false) // a settings change queues no alert
		out = a.Account
		return nil, err
	})
	if err != nil {
		return storage.Account{}, err
	}
	return out, nil
}

// Recharge adds credit (Kind EntryRecharge, 0 < Amount <= MaxCredits) or
// corrects it (Kind EntryAdjustment, Amount != 0, |Amount| <= MaxCredits,
// never taking Available below 0: InsufficientCredit with Service and
// Credit = -Amount set). An absent account is created as on first sight
// (trial credits included when the service auto-registers) and registered;
// an existing account keeps its state. With a Ref (at most 256 bytes; the
// ledger's own "trial" is refused), a second call with the same Ref, kind
// and amount returns the first entry and changes nothing; the same Ref with
// another kind or amount is a Conflict. Refs are per account. A refused
// recharge changes nothing, not even the creation. NotFound if the service
// is unknown; Invalid for a bad amount, kind, ref, name or token, or when
// the account's total would leave the bounded range (2^62 units).
func (l *Ledger) Recharge(ctx context.Context, r storage.RechargeRequest) (storage.Entry, error) {
	const op = "recharge"
	if err := l.enter(op, ctx); err != nil {
		return storage.Entry{}, err
	}
	defer l.leave()
	if err := r.Check(op); err != nil {
		return storage.Entry{}, err
	}
	var out storage.Entry
	err := l.write(op, l.stripe(r.Service, r.Account), func(tx *wtxn, now time.Time) (error, error) {
		a, created, err := accountForWrite(op, tx, r.Service, r.Account, storage.FirstSight{}, now)
		if err != nil {
			return nil, err
		}
		if created {
			a.State = storage.Registered
		}
		if r.Ref != "" && !created {
			var seq uint64
			dup, err := tx.get(refKey(r.Service, r.Account, r.Ref), func(b []byte) (err error) {
				seq, err = decodeSeq(b)
				return err
			})
			if err != nil {
				return nil, err
			}
			if dup {
				first, found, err := tx.entry(r.Service, r.Account, seq)
				if err != nil {
					return nil, err
				}
				if !found {
					return nil, errCorrupt
				}
				if first.Kind != r.Kind || first.DRecharged != r.Amount {
					return nil, storage.E(op, storage.Conflict, "ref already used with another kind or amount")
				}
				out = first
				return nil, nil
			}
		}
		if a.Recharged+r.Amount > storage.MaxTotal {
			return nil, storage.E(op, storage.Invalid, "account total out of range")
		}
		if a.Available+r.Amount < 0 {
			return nil, &storage.Error{Op: op, Kind: storage.InsufficientCredit,
				Msg: "adjustment exceeds available credit", Service: r.Service, Credit: -r.Amount}
		}
		out, err = appendEntry(tx, &a.Account, storage.Entry{
			Kind:        r.Kind,
			DRecharged:  r.Amount,
			DAvailable:  r.Amount,
			Ref:         r.Ref,
			Description: r.Description,
		}, now)
		if err != nil {
			return nil, err
		}
		if r.Ref != "" {
			if err := tx.set(refKey(r.Service, r.Account, r.Ref), encodeSeq(out.Seq)); err != nil {
				return nil, err
			}
		}
		return nil, putAccount(tx, &a)
	})
	if err != nil {
		return storage.Entry{}, err
	}
	return out, nil
}
