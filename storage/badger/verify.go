package badger

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger/internal/journal"
)

// Severity says how bad a Problem is: an error is a ledger that is wrong
// (credit created, lost or unaccounted for, or an index that misleads the
// ledger), a warning something an operator should look at.
type Severity string

// Severities.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// The checks Verify runs; a Problem names the one that failed.
const (
	CheckFormat       = "format"        // the format marker is missing or not FormatVersion
	CheckRecord       = "record"        // a key or a value that does not decode
	CheckService      = "service"       // an account, hold or index of a service that does not exist
	CheckInvariant    = "invariant"     // recharged ≠ available + held + captured
	CheckNegative     = "negative"      // a negative figure
	CheckEntrySum     = "entry-sum"     // a figure ≠ the sum of its entries' deltas
	CheckEntrySeq     = "entry-seq"     // entry seqs are not 1, 2, … Seq
	CheckEntryBalance = "entry-balance" // an entry's deltas do not balance
	CheckEntryTime    = "entry-time"    // entry times go back within an account
	CheckOrphanEntry  = "orphan-entry"  // entries of an account that does not exist
	CheckHeld         = "held"          // held ≠ the sum of the account's open holds
	CheckHoldAccount  = "hold-account"  // an open hold of an account that does not exist
	CheckOverdueHold  = "overdue-hold"  // an open hold past its expiry, not released
	CheckExpiryIndex  = "expiry-index"  // an open hold and the expiry index disagree
	CheckTokenIndex   = "token-index"   // an account and the token index disagree
	CheckKeyIndex     = "key-index"     // a service key and the key index disagree
	CheckRefIndex     = "ref-index"     // a recharge ref and its entry disagree
	CheckUnknownKeys  = "unknown-keys"  // keys of a table this iapd does not know
	CheckVoucher      = "voucher"       // a voucher of an unknown service, or redeemed without its recharge entry
	CheckAlert        = "alert"         // a queued alert of an account that does not exist
	CheckAlertState   = "alert-state"   // an account's alert disarmed while it is at or above its threshold
	CheckRecordIndex  = "record-index"  // a bookkeeping record and the record expiry index disagree
	CheckJournal      = "journal"       // a journal moved aside at Open (JournalMoveAside, or damage the checkpoint covered)
)

// Problem is one discrepancy. Service, Account and Transaction say where,
// when known; Detail says what, and never holds a token.
type Problem struct {
	Severity    Severity
	Check       string
	Service     storage.ServiceName
	Account     storage.AccountToken
	Transaction string
	Detail      string
}

// DefaultGrace is how long a hold may stay open past its expiry before
// Verify reports it as an error rather than a warning: the sweeper runs
// every minute by default.
const DefaultGrace = time.Hour

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// Now is the time overdue holds are judged at; zero is the ledger's
	// clock.
	Now time.Time
	// Grace: an open hold past its expiry is a warning, an error once
	// overdue by more than Grace. 0 is DefaultGrace; negative makes every
	// overdue hold a warning (a restored or long-stopped ledger, whose
	// holds the sweeper releases at the next start).
	Grace time.Duration
	// MaxProblems bounds Report.Problems (the counts go on); 0 is 1000.
	MaxProblems int
	// Progress, when set, is called every 1024 records walked with the
	// number walked so far (passes revisit some records; no total is
	// known in advance), on the walking goroutine: it must be quick.
	Progress func(walked int64)
}

// Report is the outcome of Verify: what was walked and what is wrong.
type Report struct {
	At           time.Time // the time overdue holds were judged at
	Format       uint64    // the format marker's
	Services     int64
	Accounts     int64
	Entries      int64
	Transactions int64
	OpenHolds    int64
	Vouchers     int64 // redeemed or not
	Alerts       int64 // queued
	Records      int64 // bookkeeping records, expired ones not yet swept included
	Errors       int   // problems of severity error, listed or not
	Warnings     int
	Problems     []Problem // at most MaxProblems, in walk order
	Omitted      int       // problems counted but not listed
	Duration     time.Duration
}

// Clean reports a ledger without errors (warnings allowed).
func (r *Report) Clean() bool { return r.Errors == 0 }

// Verify walks the whole ledger in one consistent snapshot (it may run
// while the ledger serves) and checks, for every account: recharged =
// available + held + captured; no figure negative; each figure equal to the
// sum of its entries' deltas; entry seqs 1, 2, … Seq, each entry balanced,
// times never going back; held equal to the sum of the account's open
// holds. It also checks that every open hold has an account and an expiry
// index key and vice versa, reports holds past their expiry (warnings,
// errors past opts.Grace), and checks the token, key and recharge-ref
// indexes, the format marker and that every record decodes. Beside the
// ledger it checks that every voucher belongs to a service and every
// redeemed one has its recharge entry (amount and ref), that every queued
// alert belongs to an account, that no account's alert is disarmed while at
// or above its threshold (a warning), and that bookkeeping records and
// their expiry index agree. Each journal folder moved aside at an Open
// (journal-corrupt-*) is a problem until the operator removes it: an error
// when acknowledged records were not replayed, else a warning. The error is
// for a walk that could not finish (Unavailable when closed or ctx is
// done); what the walk finds is in the Report.
func (l *Ledger) Verify(ctx context.Context, opts VerifyOptions) (Report, error) {
	const op = "verify"
	if err := l.enter(op, ctx); err != nil {
		return Report{}, err
	}
	defer l.leave()
	start := time.Now()
	v := &verifier{
		ctx: ctx, opts: opts,
		services: map[storage.ServiceName]storage.Service{},
		held:     map[string]heldSum{},
	}
	if v.opts.Now.IsZero() {
		v.opts.Now = l.clock()
	}
	if v.opts.Grace == 0 {
		v.opts.Grace = DefaultGrace
	}
	if v.opts.MaxProblems <= 0 {
		v.opts.MaxProblems = 1000
	}
	v.r.At = v.opts.Now
	if err := l.drain(); err != nil { // the journaled writes too (overlay.go)
		return v.r, l.syncErr(op, err)
	}
	txn := l.readTxn()
	v.txn = txn
	err := v.run()
	txn.Discard()
	if err == nil && l.dir != "" {
		err = v.journalAside(l.dir)
	}
	v.r.Duration = time.Since(start)
	if err != nil {
		return v.r, l.wrap(op, err)
	}
	return v.r, nil
}

type heldSum struct {
	svc   storage.ServiceName
	tok   storage.AccountToken
	sum   storage.Credits
	holds int
}

type verifier struct {
	ctx      context.Context
	opts     VerifyOptions
	txn      *badger.Txn
	r        Report
	n        int // items walked, for ctx checks
	services map[storage.ServiceName]storage.Service
	held     map[string]heldSum // open holds by account key
}

func (v *verifier) add(p Problem) {
	if p.Severity == SeverityError {
		v.r.Errors++
	} else {
		v.r.Warnings++
	}
	if len(v.r.Problems) < v.opts.MaxProblems {
		v.r.Problems = append(v.r.Problems, p)
	} else {
		v.r.Omitted++
	}
}

func (v *verifier) errorf(check string, svc storage.ServiceName, tok storage.AccountToken, txn string, format string, args ...any) {
	v.add(Problem{Severity: SeverityError, Check: check, Service: svc, Account: tok, Transaction: txn, Detail: fmt.Sprintf(format, args...)})
}

func (v *verifier) warnf(check string, svc storage.ServiceName, tok storage.AccountToken, txn string, format string, args ...any) {
	v.add(Problem{Severity: SeverityWarning, Check: check, Service: svc, Account: tok, Transaction: txn, Detail: fmt.Sprintf(format, args...)})
}

// tick checks ctx every 1024 items.
func (v *verifier) tick() error {
	v.n++
	if v.n%1024 == 0 {
		if v.opts.Progress != nil {
			v.opts.Progress(int64(v.n))
		}
		return v.ctx.Err()
	}
	return nil
}

// exists reports whether key is present.
func (v *verifier) exists(key []byte) (bool, error) {
	return get(v.txn, key, func([]byte) error { return nil })
}

// each walks the keys with prefix p.
func (v *verifier) each(p byte, values bool, fn func(item *badger.Item) error) error {
	it := v.txn.NewIterator(badger.IteratorOptions{Prefix: []byte{p}, PrefetchValues: values, PrefetchSize: 100})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if err := v.tick(); err != nil {
			return err
		}
		if err := fn(it.Item()); err != nil {
			return err
		}
	}
	return nil
}

func (v *verifier) run() error {
	for _, pass := range []func() error{
		v.format, v.servicesPass, v.keyIndexPass, v.transactionsPass, v.expiryPass,
		v.accountsPass, v.tokenIndexPass, v.refPass, v.vouchersPass, v.alertsPass,
		v.recordsPass, v.recordIndexPass, v.flatPass, v.unknownPass,
	} {
		if err := pass(); err != nil {
			return err
		}
	}
	return nil
}

// journalAside reports the moved-aside journal folders of dir.
func (v *verifier) journalAside(dir string) error {
	as, err := ListJournalAside(dir)
	if err != nil {
		return err
	}
	for _, a := range as {
		d := a.Damage
		switch {
		case a.Err != nil:
			v.errorf(CheckJournal, "", "", "", "%s: a journal moved aside, its %s unreadable: %v", a.Path, journal.DamageFile, a.Err)
		case d.Unreplayed > 0 || d.Unreadable > 0 || d.Unscanned:
			v.errorf(CheckJournal, "", "", "", "%s: journal corrupt in %s at byte %d (%s); replayed up to record %d, "+
				"%d records after the damage and %d in it not replayed (%s lists the %d holds they wrote); reconcile, then remove the folder",
				a.Path, filepath.Base(d.File), d.Offset, d.Reason, d.ReplayedTo, d.Unreplayed, d.Unreadable, journal.DamageFile, len(d.Transactions))
		default:
			v.add(Problem{Severity: SeverityWarning, Check: CheckJournal, Detail: fmt.Sprintf(
				"%s: journal damaged in %s at byte %d (%s), nothing lost (the checkpoint held those records); check the disk, then remove the folder",
				a.Path, filepath.Base(d.File), d.Offset, d.Reason)})
		}
	}
	return nil
}

func (v *verifier) format() error {
	var m formatMarker
	found, err := get(v.txn, metaKey(), func(b []byte) error { return decodeMarker(b, &m) })
	switch {
	case errors.Is(err, errCorrupt):
		v.errorf(CheckFormat, "", "", "", "the format marker does not decode: %v", err)
	case err != nil:
		return err
	case !found:
		v.errorf(CheckFormat, "", "", "", "no format marker (Open writes one)")
	case m.Format != FormatVersion:
		v.errorf(CheckFormat, "", "", "", "format %d, this iapd writes %d", m.Format, FormatVersion)
	}
	v.r.Format = m.Format
	return nil
}

func (v *verifier) servicesPass() error {
	return v.each(pService, true, func(item *badger.Item) error {
		name := storage.ServiceName(item.Key()[1:])
		var s storage.Service
		if err := item.Value(func(b []byte) (err error) { s, err = decodeService(b); return err }); err != nil {
			if errors.Is(err, errCorrupt) {
				v.errorf(CheckRecord, name, "", "", "service record: %v", err)
				return nil
			}
			return err
		}
		if s.Name != name || !storage.ValidServiceName(string(name)) {
			v.errorf(CheckRecord, name, "", "", "service record names %q", s.Name)
			return nil
		}
		v.r.Services++
		v.services[name] = s
		if s.HasKey {
			var got storage.ServiceName
			found, err := get(v.txn, keyHashKey(s.KeyHash), func(b []byte) (err error) { got, err = decodeName(b); return err })
			switch {
			case err != nil && !errors.Is(err, errCorrupt):
				return err
			case !found:
				v.errorf(CheckKeyIndex, name, "", "", "the service has a key but the key index does not know it: the service cannot authenticate")
			case err == nil && got != name:
				v.errorf(CheckKeyIndex, name, "", "", "the key index gives this service's key to service %q", got)
			}
		}
		return nil
	})
}

func (v *verifier) keyIndexPass() error {
	return v.each(pKeyHash, true, func(item *badger.Item) error {
		k := item.Key()
		var name storage.ServiceName
		if err := item.Value(func(b []byte) (err error) { name, err = decodeName(b); return err }); err != nil || len(k) != 33 {
			if err != nil && !errors.Is(err, errCorrupt) {
				return err
			}
			v.errorf(CheckRecord, "", "", "", "malformed key index entry")
			return nil
		}
		s, ok := v.services[name]
		switch {
		case !ok:
			v.errorf(CheckKeyIndex, name, "", "", "a key index entry points to a service that does not exist")
		case !s.HasKey || !bytes.Equal(s.KeyHash[:], k[1:]):
			v.errorf(CheckKeyIndex, name, "", "", "a key index entry holds a key the service no longer has (a rotated key would still authenticate)")
		}
		return nil
	})
}

func (v *verifier) transactionsPass() error {
	return v.each(pTxn, true, func(item *badger.Item) error {
		k := item.Key()
		if len(k) != 1+txnIDBytes {
			v.errorf(CheckRecord, "", "", "", "malformed transaction key (%d bytes)", len(k))
			return nil
		}
		var id [txnIDBytes]byte
		copy(id[:], k[1:])
		token := hex.EncodeToString(id[:])
		var t storage.Transaction
		if err := item.Value(func(b []byte) (err error) { t, err = decodeTxn(b, token); return err }); err != nil {
			if errors.Is(err, errCorrupt) {
				v.errorf(CheckRecord, "", "", token, "transaction record: %v", err)
				return nil
			}
			return err
		}
		v.r.Transactions++
		if _, ok := v.services[t.Service]; !ok {
			v.errorf(CheckService, t.Service, t.Account, token, "a transaction of a service that does not exist")
		}
		if t.Amount < 0 || t.Captured < 0 {
			v.errorf(CheckNegative, t.Service, t.Account, token, "transaction amount %s, captured %s", t.Amount, t.Captured)
		}
		switch t.State {
		case storage.Held:
		case storage.Captured, storage.Cancelled, storage.Expired:
			return nil
		default:
			v.errorf(CheckRecord, t.Service, t.Account, token, "transaction in unknown state %q", t.State)
			return nil
		}
		v.r.OpenHolds++
		ak := string(accountKey(t.Service, t.Account))
		h := v.held[ak]
		h.svc, h.tok = t.Service, t.Account
		h.sum += t.Amount
		h.holds++
		v.held[ak] = h
		if ok, err := v.exists(expiryKey(t.ExpiresAt, id)); err != nil {
			return err
		} else if !ok {
			v.errorf(CheckExpiryIndex, t.Service, t.Account, token, "open hold of %s missing from the expiry index: the sweeper will never release it", t.Amount)
		}
		if over := v.opts.Now.Sub(t.ExpiresAt); over >= 0 {
			msg := "open hold of %s expired at %s (overdue by %s) and not released"
			args := []any{t.Amount, t.ExpiresAt.Format(time.RFC3339), over.Round(time.Second)}
			if v.opts.Grace >= 0 && over > v.opts.Grace {
				v.errorf(CheckOverdueHold, t.Service, t.Account, token, msg+" (grace %s): is the sweeper running?", append(args, v.opts.Grace)...)
			} else {
				v.warnf(CheckOverdueHold, t.Service, t.Account, token, msg, args...)
			}
		}
		return nil
	})
}

func (v *verifier) expiryPass() error {
	return v.each(pExpiry, false, func(item *badger.Item) error {
		at, id, ok := parseExpiryKey(item.Key())
		if !ok {
			v.errorf(CheckRecord, "", "", "", "malformed expiry index key (%d bytes)", len(item.Key()))
			return nil
		}
		token := hex.EncodeToString(id[:])
		t, found, err := getTxn(v.txn, id)
		switch {
		case errors.Is(err, errCorrupt):
			return nil // reported by the transactions pass
		case err != nil:
			return err
		case !found:
			v.errorf(CheckExpiryIndex, "", "", token, "an expiry index entry of a transaction that does not exist")
		case t.State != storage.Held:
			v.errorf(CheckExpiryIndex, t.Service, t.Account, token, "an expiry index entry of a %s transaction (left behind when it ended)", t.State)
		case timeKey(t.ExpiresAt) != at:
			v.errorf(CheckExpiryIndex, t.Service, t.Account, token, "an expiry index entry at another time than the hold's expiry %s", t.ExpiresAt.Format(time.RFC3339))
		}
		return nil
	})
}

// parseEntryKey splits an entry key: the account part (service 0x00
// token, as in an account key after its prefix byte) and the seq.
func parseEntryKey(k []byte) (acct []byte, svc storage.ServiceName, tok storage.AccountToken, seq uint64, ok bool) {
	if len(k) < 1+3+1+8 || k[0] != pEntry || k[len(k)-9] != 0 {
		return nil, "", "", 0, false
	}
	acct = k[1 : len(k)-9]
	svc, tok, ok = parseAccountKey(append([]byte{pAccount}, acct...))
	return acct, svc, tok, binary.BigEndian.Uint64(k[len(k)-8:]), ok
}

// accountsPass walks accounts and entries side by side: both tables are in
// (service, token) order, so each account's entries follow the entries of
// the accounts before it, and entries between two accounts belong to none.
func (v *verifier) accountsPass() error {
	eit := v.txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pEntry}, PrefetchValues: true, PrefetchSize: 100})
	defer eit.Close()
	eit.Rewind()
	var orphan []byte // the account part of the last orphan group reported

	// skipBefore consumes entries of accounts ordered before acct (all of
	// them when acct is nil), reporting them as orphans.
	skipBefore := func(acct []byte) error {
		for ; eit.Valid(); eit.Next() {
			if err := v.tick(); err != nil {
				return err
			}
			g, svc, tok, _, ok := parseEntryKey(eit.Item().Key())
			if !ok {
				v.errorf(CheckRecord, "", "", "", "malformed entry key (%d bytes)", len(eit.Item().Key()))
				continue
			}
			if acct != nil && bytes.Compare(g, acct) >= 0 {
				return nil
			}
			v.r.Entries++
			if !bytes.Equal(g, orphan) {
				orphan = append(orphan[:0], g...)
				v.errorf(CheckOrphanEntry, svc, tok, "", "entries of an account that does not exist")
			}
		}
		return nil
	}

	ait := v.txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pAccount}, PrefetchValues: true, PrefetchSize: 100})
	defer ait.Close()
	for ait.Rewind(); ait.Valid(); ait.Next() {
		if err := v.tick(); err != nil {
			return err
		}
		item := ait.Item()
		svc, tok, ok := parseAccountKey(item.Key())
		if !ok {
			v.errorf(CheckRecord, "", "", "", "malformed account key (%d bytes)", len(item.Key()))
			continue
		}
		part := item.KeyCopy(nil)[1:] // service 0x00 token
		if err := skipBefore(part); err != nil {
			return err
		}
		var a acct
		if err := item.Value(func(b []byte) (err error) { a, err = decodeAcct(b, svc, tok); return err }); err != nil {
			if !errors.Is(err, errCorrupt) {
				return err
			}
			v.errorf(CheckRecord, svc, tok, "", "account record: %v", err)
			delete(v.held, string(accountKey(svc, tok)))
			if err := v.entries(part, nil, eit); err != nil {
				return err
			}
			continue
		}
		v.r.Accounts++
		if err := v.account(&a.Account, part, eit); err != nil {
			return err
		}
		if a.alertSent && a.Available >= a.Alerts.Threshold {
			v.warnf(CheckAlertState, svc, tok, "", "the low-credit alert is disarmed at available %s, threshold %s: it re-arms at the next change", a.Available, a.Alerts.Threshold)
		}
	}
	if err := skipBefore(nil); err != nil {
		return err
	}
	for _, h := range v.held {
		v.errorf(CheckHoldAccount, h.svc, h.tok, "", "%d open holds of %s in all on an account that does not exist", h.holds, h.sum)
	}
	return nil
}

// account checks one account and consumes its entries from eit.
func (v *verifier) account(a *storage.Account, acct []byte, eit *badger.Iterator) error {
	svc, tok := a.Service, a.Token
	if _, ok := v.services[svc]; !ok {
		v.errorf(CheckService, svc, tok, "", "an account of a service that does not exist")
	}
	if !a.State.Valid() {
		v.errorf(CheckRecord, svc, tok, "", "unknown account state %q", a.State)
	}
	if sum := a.Available + a.Held + a.Captured; a.Recharged != sum {
		v.errorf(CheckInvariant, svc, tok, "", "recharged %s ≠ available %s + held %s + captured %s (sum %s, difference %s)",
			a.Recharged, a.Available, a.Held, a.Captured, sum, a.Recharged-sum)
	}
	for _, f := range []struct {
		name string
		v    storage.Credits
	}{{"recharged", a.Recharged}, {"available", a.Available}, {"held", a.Held}, {"captured", a.Captured}} {
		if f.v < 0 {
			v.errorf(CheckNegative, svc, tok, "", "%s is negative: %s", f.name, f.v)
		}
	}
	if err := v.entries(acct, a, eit); err != nil {
		return err
	}
	h := v.held[string(accountKey(svc, tok))]
	delete(v.held, string(accountKey(svc, tok)))
	if a.Held != h.sum {
		v.errorf(CheckHeld, svc, tok, "", "held %s, but the account's %d open holds sum to %s (difference %s)", a.Held, h.holds, h.sum, a.Held-h.sum)
	}
	if ok, err := v.exists(tokenIdxKey(tok, svc)); err != nil {
		return err
	} else if !ok {
		v.errorf(CheckTokenIndex, svc, tok, "", "the account is missing from the token index: Odoo 17's account list will not show it")
	}
	return nil
}

// entries consumes the entries of acct from eit and checks them against a
// (nil: the account record did not decode; entries are only counted).
func (v *verifier) entries(acct []byte, a *storage.Account, eit *badger.Iterator) error {
	var sum storage.Account
	var n, want uint64 = 0, 1
	var last time.Time
	var svc storage.ServiceName
	var tok storage.AccountToken
	if a != nil {
		svc, tok = a.Service, a.Token
	}
	gapReported := false
	for ; eit.Valid(); eit.Next() {
		if err := v.tick(); err != nil {
			return err
		}
		item := eit.Item()
		g, esvc, etok, seq, ok := parseEntryKey(item.Key())
		if !ok {
			v.errorf(CheckRecord, svc, tok, "", "malformed entry key (%d bytes)", len(item.Key()))
			continue
		}
		if !bytes.Equal(g, acct) {
			break
		}
		v.r.Entries++
		n++
		if a == nil {
			continue
		}
		var e storage.Entry
		if err := item.Value(func(b []byte) (err error) { e, err = decodeEntry(b, esvc, etok, seq); return err }); err != nil {
			if !errors.Is(err, errCorrupt) {
				return err
			}
			v.errorf(CheckRecord, svc, tok, "", "entry %d: %v", seq, err)
			want = seq + 1
			continue
		}
		if seq != want && !gapReported {
			gapReported = true
			v.errorf(CheckEntrySeq, svc, tok, "", "entry seqs jump from %d to %d", want-1, seq)
		}
		want = seq + 1
		if e.DRecharged != e.DAvailable+e.DHeld+e.DCaptured {
			v.errorf(CheckEntryBalance, svc, tok, e.Transaction, "entry %d (%s): d_recharged %s ≠ d_available %s + d_held %s + d_captured %s",
				seq, e.Kind, e.DRecharged, e.DAvailable, e.DHeld, e.DCaptured)
		}
		if e.Time.Before(last) {
			v.warnf(CheckEntryTime, svc, tok, "", "entry %d is dated %s, before entry %d", seq, e.Time.Format(time.RFC3339Nano), seq-1)
		}
		last = e.Time
		sum.Recharged += e.DRecharged
		sum.Available += e.DAvailable
		sum.Held += e.DHeld
		sum.Captured += e.DCaptured
	}
	if a == nil {
		return nil
	}
	if n != a.Seq || want != a.Seq+1 {
		v.errorf(CheckEntrySeq, svc, tok, "", "the account counts %d entries; found %d, the last numbered %d", a.Seq, n, want-1)
	}
	for _, f := range []struct {
		name      string
		have, sum storage.Credits
	}{
		{"recharged", a.Recharged, sum.Recharged},
		{"available", a.Available, sum.Available},
		{"held", a.Held, sum.Held},
		{"captured", a.Captured, sum.Captured},
	} {
		if f.have != f.sum {
			v.errorf(CheckEntrySum, svc, tok, "", "%s is %s but its entries sum to %s (difference %s)", f.name, f.have, f.sum, f.have-f.sum)
		}
	}
	return nil
}

func (v *verifier) tokenIndexPass() error {
	return v.each(pTokenIdx, false, func(item *badger.Item) error {
		k := item.Key()
		i := bytes.IndexByte(k, 0)
		if i < 2 || i == len(k)-1 {
			v.errorf(CheckRecord, "", "", "", "malformed token index key (%d bytes)", len(k))
			return nil
		}
		tok, svc := storage.AccountToken(k[1:i]), storage.ServiceName(k[i+1:])
		if ok, err := v.exists(accountKey(svc, tok)); err != nil {
			return err
		} else if !ok {
			v.errorf(CheckTokenIndex, svc, tok, "", "a token index entry of an account that does not exist")
		}
		return nil
	})
}

func (v *verifier) refPass() error {
	return v.each(pRechRef, true, func(item *badger.Item) error {
		k := item.Key()
		i := bytes.IndexByte(k, 0)
		j := -1
		if i > 0 {
			if j = bytes.IndexByte(k[i+1:], 0); j >= 0 {
				j += i + 1
			}
		}
		if i < 2 || j < i+2 {
			v.errorf(CheckRecord, "", "", "", "malformed recharge ref key (%d bytes)", len(k))
			return nil
		}
		svc, tok, ref := storage.ServiceName(k[1:i]), storage.AccountToken(k[i+1:j]), string(k[j+1:])
		var seq uint64
		if err := item.Value(func(b []byte) (err error) { seq, err = decodeSeq(b); return err }); err != nil {
			if !errors.Is(err, errCorrupt) {
				return err
			}
			v.errorf(CheckRecord, svc, tok, "", "recharge ref record: %v", err)
			return nil
		}
		e, found, err := getEntry(v.txn, svc, tok, seq)
		switch {
		case errors.Is(err, errCorrupt):
			return nil // reported by the accounts pass
		case err != nil:
			return err
		case !found:
			v.errorf(CheckRefIndex, svc, tok, "", "a recharge ref points to entry %d, which does not exist", seq)
		case e.Ref != ref:
			v.errorf(CheckRefIndex, svc, tok, "", "a recharge ref points to entry %d, which has another ref", seq)
		}
		return nil
	})
}

// knownPrefixes are the tables of keys.go, the meta key and the journal
// checkpoint marker (overlay.go).
var knownPrefixes = [256]bool{pService: true, pKeyHash: true, pAccount: true, pTokenIdx: true,
	pTxn: true, pExpiry: true, pEntry: true, pRechRef: true, pMeta: true,
	pVoucher: true, pAlert: true, pRecord: true, pRecExpiry: true, pJournalMark: true,
	pTokenHash: true, pAggregate: true} // flat.go

// unknownPass counts keys of tables this code does not know (a newer iapd's,
// or damage), seeking once per unknown prefix byte.
func (v *verifier) unknownPass() error {
	it := v.txn.NewIterator(badger.IteratorOptions{})
	defer it.Close()
	for b := 0; b < 256; b++ {
		if knownPrefixes[b] {
			continue
		}
		n := 0
		for it.Seek([]byte{byte(b)}); it.Valid() && it.Item().Key()[0] == byte(b); it.Next() {
			if err := v.tick(); err != nil {
				return err
			}
			n++
		}
		if n > 0 {
			v.warnf(CheckUnknownKeys, "", "", "", "%d keys with the unknown prefix 0x%02x", n, b)
		}
	}
	return nil
}
