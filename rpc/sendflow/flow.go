package sendflow

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/iapd/iapd/rpc/internal/failpoint"
	"github.com/iapd/iapd/storage"
)

// State is where an item stands in a send.
type State int

const (
	Pending       State = iota // priced, not yet claimed and held
	Replayed                   // its claim was there: a retry, answered from Stored
	Refused                    // not held: Refusal says why (InsufficientCredit or Forbidden)
	Held                       // claimed and held: to be dispatched
	Accepted                   // a provider accepted it: its price is captured
	Invalid                    // a provider refused it for good: released
	Unavailable                // no provider took it (or its dispatch failed): released
	Indeterminate              // it may have been sent: its price stays held (Kept)
	Deferred                   // not attempted in time: released
)

var stateNames = [...]string{"pending", "replayed", "refused", "held", "accepted", "invalid", "unavailable", "indeterminate", "deferred"}

func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Item is one thing to send (an SMS to one number, a letter).
type Item struct {
	// Set by the caller before Run.
	Key   string          // claim key in Flow.NS; "" for none (never deduplicated)
	Claim []byte          // the value of its pending claim
	Price storage.Credits // what it costs when sent
	Ref   int             // the caller's own reference (an index)

	State   State
	Refusal storage.Kind // Refused: InsufficientCredit or Forbidden
	Stored  []byte       // Replayed: the claim found
	Kept    string       // Indeterminate after settling: the hold keeping its price ("" when none could be kept)

	claimed bool // this send created its claim
}

// Claimed reports whether this send created the item's claim (and has not
// released it).
func (it *Item) Claimed() bool { return it.claimed }

// Ledger is what a send needs of the ledger (storage.Ledger's methods).
type Ledger interface {
	Authorize(ctx context.Context, r storage.AuthorizeRequest) (storage.Transaction, error)
	Capture(ctx context.Context, r storage.CaptureRequest) (storage.Transaction, error)
	Cancel(ctx context.Context, svc storage.ServiceName, txn string) (storage.Transaction, error)
	LookupAccount(ctx context.Context, svc storage.ServiceName, tok storage.AccountToken) (storage.Account, error)
}

// Records is what a send needs of storage.Records: the claims.
type Records interface {
	PutRecordIfAbsent(ctx context.Context, ns, key string, value []byte, expires time.Time) ([]byte, bool, error)
	DeleteRecord(ctx context.Context, ns, key string) error
}

// ClaimHolder writes claims and their hold as one atomic, durable change
// (storage/badger's AuthorizeClaims): the absent claims are created (a
// claim repeated in the call, or whose live record exists, is not; its
// result carries the value found) and r.Amount plus the Price of each
// created claim is held. Nothing is written, and the Transaction is zero,
// when no claim is created and r.Amount is 0. A refusal (InsufficientCredit,
// Forbidden) writes no claim.
type ClaimHolder interface {
	AuthorizeClaims(ctx context.Context, r storage.AuthorizeRequest, claims []storage.Claim) (storage.Transaction, []storage.ClaimResult, error)
}

// ClaimsOf returns l as a ClaimHolder when its claims of namespace ns land
// where r reads them: l is r, or wraps it (Unwrap() storage.Ledger, as
// rpc/admit's ledger does), every layer down to r holding claims. A
// Records that passes ns through unchanged to another store
// (PassThrough) is compared as that store. Else nil: claims first, then
// the hold.
func ClaimsOf(l Ledger, r Records, ns string) ClaimHolder {
	ch, ok := l.(ClaimHolder)
	if !ok {
		return nil
	}
	if p, ok := r.(PassThrough); ok {
		if base, ok := p.PassesThrough(ns); ok {
			r = base
		}
	}
	for x := any(l); ; {
		if _, ok := x.(ClaimHolder); !ok {
			return nil
		}
		if reflect.TypeOf(x).Comparable() && x == any(r) {
			return ch
		}
		u, ok := x.(interface{ Unwrap() storage.Ledger })
		if !ok {
			return nil
		}
		x = u.Unwrap()
	}
}

// PassThrough is a Records that keeps some namespaces as the store it
// wraps does: PassesThrough(ns) returns that store and true when records
// of ns are read and written there under the same namespace and key.
type PassThrough interface {
	PassesThrough(ns string) (Records, bool)
}

// Steps are the sending service's part of a send.
type Steps interface {
	// Held records the hold (its token) in the send's trace before
	// anything is dispatched. An error ends the send: the hold is
	// cancelled, the claims released, the items Unavailable, and Run
	// returns the error.
	Held(ctx context.Context, txn string) error
	// Dispatch hands the held items to the providers and sets each one's
	// State: Accepted, Invalid, Unavailable, Indeterminate or Deferred (an
	// item left Held counts as Unavailable). An error is returned by Run
	// after the hold is settled and the outcomes recorded.
	Dispatch(ctx context.Context, held []*Item) error
	// Record stores what became of the dispatched items, after the hold
	// is settled (Kept set). The flow then releases the claims of the
	// items neither Accepted nor Indeterminate.
	Record(ctx context.Context, held []*Item)
}

// Flow runs sends for one service. Its fields are set once, before use.
type Flow struct {
	Ledger  Ledger
	Records Records
	// Claims, if set, claims and holds in one change; it must write to
	// Records' store. Nil: claims first, then the hold.
	Claims   ClaimHolder
	Service  storage.ServiceName
	NS       string        // the claims' namespace
	ClaimTTL time.Duration // how long a claim lives
	HoldTTL  time.Duration
	// Step names the failpoints of the send: Step+".claimed", ".held",
	// ".recorded", ".captured", ".final".
	Step string
	Log  *slog.Logger
	Now  func() time.Time
}

// Send is one send's request.
type Send struct {
	Account storage.AccountToken
	DBUUID  string
	// Whole: every item is held or none is (no partial hold when the
	// credit is short).
	Whole bool
	// Describe is the description of the hold of n items; it names the
	// send, so that a settlement after a crash finds the hold.
	// DescribeKept is the description of the hold that keeps the price of
	// n indeterminate items apart.
	Describe, DescribeKept func(n int) string
}

// Run sends items (all Pending): claim and hold, then steps.Held,
// steps.Dispatch, the settlement of the hold, steps.Record. When the
// credit covers only some of them, the longest prefix it covers is held
// (none with s.Whole) and the rest Refused. A non-nil error before the
// dispatch (the ledger or the records failed, or steps.Held) means
// nothing was sent; the claims made are released. ctx is the request's:
// the settlement and the records are not cancelled with it.
func (f *Flow) Run(ctx context.Context, s Send, items []*Item, steps Steps) error {
	txn, held, err := f.Reserve(ctx, s, items)
	if err != nil || len(held) == 0 {
		return err
	}
	failpoint.Hit(f.Step + ".held")
	if err := steps.Held(ctx, txn.Token); err != nil {
		// Without its record the hold could not be settled after a
		// crash: nothing is sent.
		f.cancel(ctx, txn.Token)
		f.release(ctx, held)
		for _, it := range held {
			it.State = Unavailable
		}
		return err
	}
	failpoint.Hit(f.Step + ".recorded")
	derr := steps.Dispatch(ctx, held)
	for _, it := range held {
		if it.State == Held {
			it.State = Unavailable
		}
	}
	f.settle(ctx, s, txn, held)
	failpoint.Hit(f.Step + ".captured")
	steps.Record(context.WithoutCancel(ctx), held)
	var free []*Item
	for _, it := range held {
		if it.State != Accepted && it.State != Indeterminate {
			free = append(free, it)
		}
	}
	f.release(ctx, free)
	failpoint.Hit(f.Step + ".final")
	return derr
}

// Reserve is Run's first step: it claims and holds the items (Pending) and
// returns the hold and the items Held (none: no hold); the others are
// Replayed or Refused. On an error nothing is held and the claims made are
// released.
func (f *Flow) Reserve(ctx context.Context, s Send, items []*Item) (*storage.Transaction, []*Item, error) {
	if f.Claims != nil {
		var claims []storage.Claim
		var base storage.Credits
		for _, it := range items {
			if it.Key == "" {
				base += it.Price
				continue
			}
			claims = append(claims, storage.Claim{NS: f.NS, Key: it.Key, Value: it.Claim, Expires: f.Now().Add(f.ClaimTTL), Price: it.Price})
		}
		if len(claims) > 0 {
			txn, rs, err := f.Claims.AuthorizeClaims(ctx, f.request(s, base, len(items)), claims)
			switch {
			case err == nil:
				return f.claimedAndHeld(ctx, s, items, txn, rs)
			case storage.Is(err, storage.InsufficientCredit), storage.Is(err, storage.Forbidden):
				// Nothing was written: claim, then hold what the
				// credit covers (or refuse), item by item.
			default:
				return nil, nil, err
			}
		}
	}
	todo, err := f.claim(ctx, items)
	if err != nil || len(todo) == 0 {
		return nil, nil, err
	}
	failpoint.Hit(f.Step + ".claimed")
	return f.hold(ctx, s, todo)
}

// claimedAndHeld reads the results of AuthorizeClaims.
func (f *Flow) claimedAndHeld(ctx context.Context, s Send, items []*Item, txn storage.Transaction, rs []storage.ClaimResult) (*storage.Transaction, []*Item, error) {
	var held []*Item
	j := 0
	for _, it := range items {
		if it.Key == "" {
			held = append(held, it)
			continue
		}
		r := rs[j]
		j++
		if r.Created {
			it.claimed = true
			held = append(held, it)
		} else {
			it.State, it.Stored = Replayed, r.Stored
		}
	}
	if len(held) == 0 {
		return nil, nil, nil
	}
	failpoint.Hit(f.Step + ".claimed")
	for _, it := range held {
		it.State = Held
	}
	if txn.Token != "" {
		return &txn, held, nil
	}
	// Every claim was a retry and the rest is free: hold it on its own.
	return f.hold(ctx, s, held)
}

func (f *Flow) request(s Send, amount storage.Credits, n int) storage.AuthorizeRequest {
	return storage.AuthorizeRequest{
		Service:     f.Service,
		Account:     s.Account,
		Amount:      amount,
		Description: s.Describe(n),
		TTL:         f.HoldTTL,
		FirstSight:  storage.FirstSight{DBUUID: s.DBUUID},
	}
}

// claim creates the claim of every item that has a key; an item whose
// claim exists is Replayed. It returns the items to hold. The claims are
// written concurrently, so that the ledger makes them durable in a few
// group syncs rather than one each.
func (f *Flow) claim(ctx context.Context, items []*Item) ([]*Item, error) {
	errs := make([]error, len(items))
	stored := make([][]byte, len(items))
	parallel(len(items), func(i int) {
		it := items[i]
		if it.Key == "" {
			return
		}
		v, created, err := f.Records.PutRecordIfAbsent(ctx, f.NS, it.Key, it.Claim, f.Now().Add(f.ClaimTTL))
		it.claimed = created && err == nil
		stored[i], errs[i] = v, err
	})
	if err := errors.Join(errs...); err != nil {
		f.release(ctx, items)
		return nil, err
	}
	var todo []*Item
	for i, it := range items {
		if it.Key != "" && !it.claimed {
			it.State, it.Stored = Replayed, stored[i]
			continue
		}
		todo = append(todo, it)
	}
	return todo, nil
}

// hold authorizes the price of todo, or of the longest prefix of it the
// available credit covers (none when s.Whole); the rest is Refused and
// its claims released.
func (f *Flow) hold(ctx context.Context, s Send, todo []*Item) (*storage.Transaction, []*Item, error) {
	var total storage.Credits
	for _, it := range todo {
		total += it.Price
	}
	txn, err := f.Ledger.Authorize(ctx, f.request(s, total, len(todo)))
	if storage.Is(err, storage.InsufficientCredit) {
		var avail storage.Credits
		if a, lerr := f.Ledger.LookupAccount(ctx, f.Service, s.Account); lerr == nil {
			avail = a.Available
		}
		var fit storage.Credits
		n := 0
		for n < len(todo) && !s.Whole && fit+todo[n].Price <= avail {
			fit += todo[n].Price
			n++
		}
		f.refuse(ctx, todo[n:], storage.InsufficientCredit)
		todo = todo[:n]
		if n == 0 {
			return nil, nil, nil
		}
		txn, err = f.Ledger.Authorize(ctx, f.request(s, fit, n))
		if storage.Is(err, storage.InsufficientCredit) { // spent meanwhile
			f.refuse(ctx, todo, storage.InsufficientCredit)
			return nil, nil, nil
		}
	}
	switch {
	case storage.Is(err, storage.Forbidden): // banned or unregistered meanwhile
		f.refuse(ctx, todo, storage.Forbidden)
		return nil, nil, nil
	case err != nil:
		f.release(ctx, todo)
		return nil, nil, err
	}
	for _, it := range todo {
		it.State = Held
	}
	return &txn, todo, nil
}

func (f *Flow) refuse(ctx context.Context, items []*Item, k storage.Kind) {
	for _, it := range items {
		it.State, it.Refusal = Refused, k
	}
	f.release(ctx, items)
}

// settle captures the price of what was accepted, keeps on hold the price
// of what is indeterminate and releases the rest.
func (f *Flow) settle(ctx context.Context, s Send, txn *storage.Transaction, held []*Item) {
	ctx = context.WithoutCancel(ctx)
	var accepted, indet storage.Credits
	var nIndet int
	for _, it := range held {
		switch it.State {
		case Accepted:
			accepted += it.Price
		case Indeterminate:
			indet += it.Price
			nIndet++
		}
	}
	keep := txn.Token
	capture := func() {
		var err error
		if accepted == 0 {
			_, err = f.Ledger.Cancel(ctx, f.Service, txn.Token)
		} else {
			_, err = f.Ledger.Capture(ctx, storage.CaptureRequest{Service: f.Service, Transaction: txn.Token, Amount: &accepted})
		}
		if err != nil {
			f.Log.Error(string(f.Service)+": settling a hold failed; it will expire unsettled", "transaction", txn.Token, "captured", accepted.String(), "err", err)
		}
	}
	switch {
	case indet == 0:
		capture()
	case accepted == 0 && indet == txn.Amount:
		// The hold is exactly the price of what may have been sent: kept.
	default:
		// Hold the indeterminate part apart, then settle the batch hold.
		r := f.request(s, indet, 0)
		r.Description = s.DescribeKept(nIndet)
		h2, err := f.Ledger.Authorize(ctx, r)
		if storage.Is(err, storage.InsufficientCredit) {
			capture()
			h2, err = f.Ledger.Authorize(ctx, r)
		} else {
			defer capture()
		}
		if err != nil {
			keep = ""
			f.Log.Error(string(f.Service)+": could not keep the price of indeterminate sends on hold; reconcile by hand",
				"amount", indet.String(), "items", nIndet, "err", err)
		} else {
			keep = h2.Token
		}
	}
	for _, it := range held {
		if it.State == Indeterminate {
			it.Kept = keep
		}
	}
}

func (f *Flow) cancel(ctx context.Context, txn string) {
	if _, err := f.Ledger.Cancel(context.WithoutCancel(ctx), f.Service, txn); err != nil {
		f.Log.Error(string(f.Service)+": releasing a hold failed; it will expire", "transaction", txn, "err", err)
	}
}

// release deletes the claims this send made for items, so that the
// caller may send them again.
func (f *Flow) release(ctx context.Context, items []*Item) {
	ctx = context.WithoutCancel(ctx)
	parallel(len(items), func(i int) {
		it := items[i]
		if !it.claimed {
			return
		}
		if err := f.Records.DeleteRecord(ctx, f.NS, it.Key); err != nil {
			f.Log.Error(string(f.Service)+": releasing a claim failed; a retry of it will be answered as a duplicate", "err", err)
			return
		}
		it.claimed = false
	})
}

// parallelism bounds the concurrent record writes of one send.
const parallelism = 32

// Parallel runs f(0) … f(n-1), 32 at a time, and waits: the records of
// one send written concurrently, so that the ledger makes them durable in
// a few group syncs rather than one each.
func Parallel(n int, f func(i int)) { parallel(n, f) }

func parallel(n int, f func(i int)) {
	if n == 1 {
		f(0)
		return
	}
	sem := make(chan struct{}, parallelism)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			f(i)
		}()
	}
	wg.Wait()
}
