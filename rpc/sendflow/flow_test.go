package sendflow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/iapd/iapd/rpc/admit"
	"github.com/iapd/iapd/rpc/limit"
	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
	"github.com/iapd/iapd/storage/storagetest"
)

// The flow runs on the Badger ledger (which passes storage/storagetest),
// in memory and on disk, with claims and hold in one change (its
// AuthorizeClaims) and, through a wrapper that hides it, in two.

type store interface {
	storage.Ledger
	storage.Records
}

// twoStep is a store without AuthorizeClaims.
type twoStep struct{ store }

type backend struct {
	name   string
	open   func(t *testing.T, auto bool) store
	claims bool
}

func openBadger(t *testing.T, auto bool, opts badger.Options) *badger.Ledger {
	t.Helper()
	l, err := badger.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if _, err := l.EnsureService(context.Background(), storage.Service{Name: storage.SMS, AutoRegister: auto, UnitName: "Credits"}); err != nil {
		t.Fatal(err)
	}
	return l
}

var backends = []backend{
	{"memory/claims+hold", func(t *testing.T, auto bool) store {
		return openBadger(t, auto, badger.Options{InMemory: true})
	}, true},
	{"memory/claims,hold", func(t *testing.T, auto bool) store {
		return &twoStep{openBadger(t, auto, badger.Options{InMemory: true})}
	}, false},
	{"disk/claims+hold", func(t *testing.T, auto bool) store {
		return openBadger(t, auto, badger.Options{Dir: t.TempDir()})
	}, true},
	{"disk/claims,hold", func(t *testing.T, auto bool) store {
		return &twoStep{openBadger(t, auto, badger.Options{Dir: t.TempDir()})}
	}, false},
}

// each runs fn on every backend.
func each(t *testing.T, fn func(t *testing.T, e *fenv)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			fn(t, newFenv(t, b, true))
		})
	}
}

const tok = "0123456789abcdef0123456789abcdef"

func cr(n int64) storage.Credits { return storage.Credits(n) * storage.Scale }

// fenv is a flow on one backend.
type fenv struct {
	t    *testing.T
	l    store
	flow *Flow
	ctx  context.Context
}

func newFenv(t *testing.T, b backend, auto bool) *fenv {
	l := b.open(t, auto)
	f := &Flow{Ledger: l, Records: l, Claims: ClaimsOf(l, l, "flow"), Service: storage.SMS, NS: "flow",
		ClaimTTL: time.Hour, HoldTTL: time.Hour, Step: "test", Log: slog.New(slog.DiscardHandler), Now: time.Now}
	if (f.Claims != nil) != b.claims {
		t.Fatalf("ClaimsOf: %v, want %v", f.Claims != nil, b.claims)
	}
	return &fenv{t: t, l: l, flow: f, ctx: context.Background()}
}

func (e *fenv) credit(n int64) {
	e.t.Helper()
	if _, err := e.l.Recharge(e.ctx, storage.RechargeRequest{Service: storage.SMS, Account: tok, Amount: cr(n), Kind: storage.EntryRecharge}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *fenv) account() storage.Account {
	e.t.Helper()
	return storagetest.Audit(e.t, e.l, storage.SMS, tok)
}

func (e *fenv) figures(avail, held, captured int64) {
	e.t.Helper()
	if a := e.account(); a.Available != cr(avail) || a.Held != cr(held) || a.Captured != cr(captured) {
		e.t.Fatalf("available %s held %s captured %s, want %d %d %d", a.Available, a.Held, a.Captured, avail, held, captured)
	}
}

func (e *fenv) wantClaim(key string, want bool) {
	e.t.Helper()
	_, err := e.l.GetRecord(e.ctx, "flow", key)
	if got := err == nil; got != want {
		e.t.Fatalf("claim %q present %v, want %v (%v)", key, got, want, err)
	}
}

var send = Send{Account: tok, DBUUID: "db",
	Describe:     func(n int) string { return fmt.Sprintf("%d item(s), send s1", n) },
	DescribeKept: func(n int) string { return fmt.Sprintf("%d item(s) kept", n) },
}

// items are Pending items with these keys and prices (in credits).
func items(spec ...any) []*Item {
	var out []*Item
	for i := 0; i+1 < len(spec); i += 2 {
		k := spec[i].(string)
		out = append(out, &Item{Key: k, Claim: []byte("claim " + k), Price: cr(int64(spec[i+1].(int))), Ref: len(out)})
	}
	return out
}

// steps is a service whose providers answer outcome per item.
type steps struct {
	outcome     func(it *Item) State
	heldErr     error
	dispatchErr error

	mu         sync.Mutex
	txn        string
	dispatched []*Item
	recorded   map[*Item]string // item → Kept when recorded
}

func (s *steps) Held(_ context.Context, txn string) error {
	s.txn = txn
	return s.heldErr
}

func (s *steps) Dispatch(_ context.Context, held []*Item) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range held {
		if it.State != Held {
			return fmt.Errorf("dispatching an item in state %v", it.State)
		}
		s.dispatched = append(s.dispatched, it)
		if s.outcome != nil {
			it.State = s.outcome(it)
		}
	}
	return s.dispatchErr
}

func (s *steps) Record(_ context.Context, held []*Item) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recorded = map[*Item]string{}
	for _, it := range held {
		s.recorded[it] = it.Kept
	}
}

func by(m map[string]State) func(*Item) State {
	return func(it *Item) State { return m[it.Key] }
}

func wantStates(t *testing.T, its []*Item, want ...State) {
	t.Helper()
	for i, it := range its {
		if it.State != want[i] {
			t.Fatalf("item %d (%q): %v, want %v", i, it.Key, it.State, want[i])
		}
	}
}

// TestRunOutcomes: what a provider accepted is captured, what may have
// been sent stays held apart, the rest is released with its claim.
func TestRunOutcomes(t *testing.T) {
	each(t, func(t *testing.T, e *fenv) {
		e.credit(100)
		its := items("a", 1, "b", 2, "c", 3, "", 4)
		st := &steps{outcome: by(map[string]State{"a": Accepted, "b": Invalid, "c": Indeterminate, "": Unavailable})}
		if err := e.flow.Run(e.ctx, send, its, st); err != nil {
			t.Fatal(err)
		}
		wantStates(t, its, Accepted, Invalid, Indeterminate, Unavailable)
		if len(st.dispatched) != 4 || len(st.recorded) != 4 {
			t.Fatalf("dispatched %d, recorded %d, want 4", len(st.dispatched), len(st.recorded))
		}
		hold, err := e.l.Transaction(e.ctx, st.txn)
		if err != nil || hold.State != storage.Captured || hold.Captured != cr(1) || hold.Amount != cr(10) {
			t.Fatalf("the send's hold %+v (%v), want 10 held, 1 captured", hold, err)
		}
		kept := its[2].Kept
		if kept == "" || kept == st.txn || st.recorded[its[2]] != kept {
			t.Fatalf("indeterminate kept by %q (recorded %q), the send's hold %q", kept, st.recorded[its[2]], st.txn)
		}
		if k, err := e.l.Transaction(e.ctx, kept); err != nil || k.State != storage.Held || k.Amount != cr(3) || k.Description != "1 item(s) kept" {
			t.Fatalf("kept hold %+v (%v)", k, err)
		}
		e.figures(96, 3, 1)
		e.wantClaim("a", true)
		e.wantClaim("b", false)
		e.wantClaim("c", true)
		if !its[0].Claimed() || its[1].Claimed() {
			t.Fatal("Claimed() does not say which claims stay")
		}
	})
}

// TestRunAllIndeterminate: a hold that is exactly the price of what may
// have been sent is kept as it is.
func TestRunAllIndeterminate(t *testing.T) {
	each(t, func(t *testing.T, e *fenv) {
		e.credit(10)
		its := items("a", 1, "b", 2)
		st := &steps{outcome: func(*Item) State { return Indeterminate }}
		if err := e.flow.Run(e.ctx, send, its, st); err != nil {
			t.Fatal(err)
		}
		if its[0].Kept != st.txn || its[1].Kept != st.txn {
			t.Fatalf("kept by %q, %q; want the send's hold %q", its[0].Kept, its[1].Kept, st.txn)
		}
		e.figures(7, 3, 0)
	})
}

// TestRunReplay: an item whose claim exists is answered from it: neither
// held nor dispatched.
func TestRunReplay(t *testing.T) {
	each(t, func(t *testing.T, e *fenv) {
		e.credit(10)
		if _, _, err := e.l.PutRecordIfAbsent(e.ctx, "flow", "a", []byte("first"), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		its := items("a", 1, "b", 2)
		st := &steps{outcome: func(*Item) State { return Accepted }}
		if err := e.flow.Run(e.ctx, send, its, st); err != nil {
			t.Fatal(err)
		}
		wantStates(t, its, Replayed, Accepted)
		if string(its[0].Stored) != "first" || len(st.dispatched) != 1 {
			t.Fatalf("stored %q, dispatched %d", its[0].Stored, len(st.dispatched))
		}
		e.figures(8, 0, 2)

		// Everything a retry: nothing held, nothing dispatched.
		again := items("a", 1, "b", 2)
		st2 := &steps{}
		if err := e.flow.Run(e.ctx, send, again, st2); err != nil {
			t.Fatal(err)
		}
		wantStates(t, again, Replayed, Replayed)
		if st2.txn != "" || len(st2.dispatched) != 0 || string(again[1].Stored) != "claim b" {
			t.Fatalf("a retry held %q, dispatched %d, stored %q", st2.txn, len(st2.dispatched), again[1].Stored)
		}
		e.figures(8, 0, 2)

		// A retry with a free item without key: only it is held and sent.
		mixed := items("a", 1, "", 0)
		st3 := &steps{outcome: func(*Item) State { return Accepted }}
		if err := e.flow.Run(e.ctx, send, mixed, st3); err != nil {
			t.Fatal(err)
		}
		wantStates(t, mixed, Replayed, Accepted)
		if st3.txn == "" || len(st3.dispatched) != 1 {
			t.Fatalf("free item: hold %q, dispatched %d", st3.txn, len(st3.dispatched))
		}
		e.figures(8, 0, 2)
	})
}

// TestRunShortCredit: the longest prefix the credit covers is held, the
// rest refused and its claims released; a whole send is all or nothing.
func TestRunShortCredit(t *testing.T) {
	each(t, func(t *testing.T, e *fenv) {
		e.credit(5)
		its := items("a", 2, "b", 2, "c", 2)
		st := &steps{outcome: func(*Item) State { return Accepted }}
		if err := e.flow.Run(e.ctx, send, its, st); err != nil {
			t.Fatal(err)
		}
		wantStates(t, its, Accepted, Accepted, Refused)
		if its[2].Refusal != storage.InsufficientCredit {
			t.Fatalf("refusal %v", its[2].Refusal)
		}
		e.wantClaim("c", false)
		e.figures(1, 0, 4)

		whole := send
		whole.Whole = true
		w := items("d", 1, "e", 1)
		st2 := &steps{}
		if err := e.flow.Run(e.ctx, whole, w, st2); err != nil {
			t.Fatal(err)
		}
		wantStates(t, w, Refused, Refused)
		if st2.txn != "" || len(st2.dispatched) != 0 {
			t.Fatal("a whole send the credit does not cover was held or dispatched")
		}
		e.wantClaim("d", false)
		e.wantClaim("e", false)
		e.figures(1, 0, 4)
	})
}

// TestRunForbidden: an account that is not registered is refused and
// keeps no claim.
func TestRunForbidden(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			e := newFenv(t, b, false)
			its := items("a", 1, "", 1)
			st := &steps{}
			if err := e.flow.Run(e.ctx, send, its, st); err != nil {
				t.Fatal(err)
			}
			wantStates(t, its, Refused, Refused)
			if its[0].Refusal != storage.Forbidden || len(st.dispatched) != 0 {
				t.Fatalf("refusal %v, dispatched %d", its[0].Refusal, len(st.dispatched))
			}
			e.wantClaim("a", false)
		})
	}
}

// TestRunHeldFails: when the hold cannot be recorded, nothing is sent:
// the hold is cancelled and the claims released.
func TestRunHeldFails(t *testing.T) {
	each(t, func(t *testing.T, e *fenv) {
		e.credit(10)
		boom := errors.New("trace write failed")
		its := items("a", 1, "b", 2)
		st := &steps{heldErr: boom}
		if err := e.flow.Run(e.ctx, send, its, st); !errors.Is(err, boom) {
			t.Fatalf("Run: %v, want the Held error", err)
		}
		if len(st.dispatched) != 0 {
			t.Fatal("dispatched after Held failed")
		}
		wantStates(t, its, Unavailable, Unavailable)
		if h, err := e.l.Transaction(e.ctx, st.txn); err != nil || h.State != storage.Cancelled {
			t.Fatalf("hold %+v (%v), want cancelled", h, err)
		}
		e.figures(10, 0, 0)
		e.wantClaim("a", false)
		e.wantClaim("b", false)
	})
}

// TestRunDispatchFails: items a failed dispatch left undecided are
// unavailable: released, and the error returned.
func TestRunDispatchFails(t *testing.T) {
	each(t, func(t *testing.T, e *fenv) {
		e.credit(10)
		boom := errors.New("provider call record failed")
		its := items("a", 1, "b", 2)
		st := &steps{dispatchErr: boom, outcome: by(map[string]State{"a": Accepted, "b": Held})}
		if err := e.flow.Run(e.ctx, send, its, st); !errors.Is(err, boom) {
			t.Fatalf("Run: %v, want the Dispatch error", err)
		}
		wantStates(t, its, Accepted, Unavailable)
		if len(st.recorded) != 2 {
			t.Fatalf("recorded %d, want 2", len(st.recorded))
		}
		e.figures(9, 0, 1)
		e.wantClaim("a", true)
		e.wantClaim("b", false)
	})
}

// TestRunConcurrentRetries: sends of the same keys at once dispatch each
// key once, and charge it once.
func TestRunConcurrentRetries(t *testing.T) {
	each(t, func(t *testing.T, e *fenv) {
		e.credit(100)
		const n = 8
		var wg sync.WaitGroup
		var mu sync.Mutex
		sent := map[string]int{}
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st := &steps{outcome: func(*Item) State { return Accepted }}
				if err := e.flow.Run(e.ctx, send, items("a", 1, "b", 1, "c", 1), st); err != nil {
					t.Error(err)
				}
				mu.Lock()
				for _, it := range st.dispatched {
					sent[it.Key]++
				}
				mu.Unlock()
			}()
		}
		wg.Wait()
		for _, k := range []string{"a", "b", "c"} {
			if sent[k] != 1 {
				t.Fatalf("%q dispatched %d times, want once", k, sent[k])
			}
		}
		e.figures(97, 0, 3)
	})
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{Pending: "pending", Held: "held", Deferred: "deferred", State(99): "state(99)"} {
		if s.String() != want {
			t.Errorf("%d: %q, want %q", int(s), s.String(), want)
		}
	}
}

// TestClaimsOf: claims go with the hold only where Records reads them:
// the store itself, or a wrapper of it (rpc/admit) every layer of which
// holds claims.
func TestClaimsOf(t *testing.T) {
	l := openBadger(t, true, badger.Options{InMemory: true})
	other := openBadger(t, true, badger.Options{InMemory: true})
	wrapped := admit.New(limit.Config{}, admit.Deps{Ledger: l, Records: l})
	overPlain := admit.New(limit.Config{}, admit.Deps{Ledger: &twoStep{l}, Records: l})
	for _, c := range []struct {
		name string
		l    Ledger
		r    Records
		want bool
	}{
		{"the store", l, l, true},
		{"admit over the store", wrapped, l, true},
		{"another store's records", l, other, false},
		{"admit over a ledger without claims", overPlain, l, false},
		{"a wrapper without claims", &twoStep{l}, l, false},
	} {
		if got := ClaimsOf(c.l, c.r, "flow") != nil; got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
