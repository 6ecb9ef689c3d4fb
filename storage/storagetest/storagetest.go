// Package storagetest is the conformance suite every storage.Ledger backend
// runs from its tests: one subtest per clause of the Ledger contract, a
// bank test (many goroutines moving credit while readers check that nothing
// is created or lost), and a race for the last credits of an account.
//
// A backend's test calls Run with a function that opens a fresh, empty
// ledger on a given clock:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T, now func() time.Time) storage.Ledger {
//			l, err := Open(Options{Dir: t.TempDir(), Now: now})
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { l.Close() })
//			return l
//		})
//	}
//
// The suite closes ledgers itself only in its Close subtest, so the
// opener's cleanup must tolerate a ledger that is closed already (Close then
// fails Unavailable). The suite pins down choices the contract leaves open
// the way storage/badger documents them (token validation, partial-capture
// entries, lazy expiry, reserved ref "trial", History bounds); a backend
// that chooses otherwise must change both.
//
// RunExtras is the suite of the stores beside the ledger (Records,
// Vouchers, AlertOutbox) for a backend that implements them; its opener
// also reopens the same data, to check durability across a restart.
//
// Package storagetest imports the standard library and storage only.
package storagetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
)

// Opener opens a fresh, empty ledger whose clock is now. It registers the
// ledger's Close with t.Cleanup.
type Opener func(t *testing.T, now func() time.Time) storage.Ledger

// Clock is a clock tests move by hand. It is safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// epoch is where every clock of the suite starts.
func epoch() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) }

// NewClock returns a clock showing t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t (backwards too).
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// Advance moves the clock by d and returns the new time.
func (c *Clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// Run runs the whole suite against ledgers made by open.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"Services", testServices},
		{"ServiceKeys", testServiceKeys},
		{"FirstSight", testFirstSight},
		{"TokenValidation", testTokenValidation},
		{"TokenPrefixes", testTokenPrefixes},
		{"AccountsByToken", testAccountsByToken},
		{"TokenByHash", testTokenByHash},
		{"AccountsPaging", testAccountsPaging},
		{"UpdateAccount", testUpdateAccount},
		{"Recharge", testRecharge},
		{"RechargeRef", testRechargeRef},
		{"Adjustment", testAdjustment},
		{"Authorize", testAuthorize},
		{"AuthorizeRefused", testAuthorizeRefused},
		{"CaptureExact", testCaptureExact},
		{"CapturePartial", testCapturePartial},
		{"CaptureOver", testCaptureOver},
		{"CaptureNotRegistered", testCaptureNotRegistered},
		{"CaptureIdempotent", testCaptureIdempotent},
		{"CaptureRefused", testCaptureRefused},
		{"CaptureExpired", testCaptureExpired},
		{"Cancel", testCancel},
		{"ExpireDue", testExpireDue},
		{"History", testHistory},
		{"HistoryMonotonicTime", testHistoryMonotonic},
		{"ContextCancelled", testContextCancelled},
		{"Close", testClose},
		{"LastCredits", testLastCredits},
		{"Bank", testBank},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newEnv(t, open))
		})
	}
}

// env is one subtest's ledger, clock and helpers.
type env struct {
	t     *testing.T
	l     storage.Ledger
	clock *Clock
	ctx   context.Context
}

func newEnv(t *testing.T, open Opener) *env {
	c := NewClock(epoch())
	return &env{t: t, l: open(t, c.Now), clock: c, ctx: context.Background()}
}

// cr is n whole credits.
func cr(n int64) storage.Credits { return storage.Credits(n) * storage.Scale }

func ptr[T any](v T) *T { return &v }

// wantKind fails the test unless err is an *storage.Error of kind k.
func wantKind(t *testing.T, err error, k storage.Kind, what string) {
	t.Helper()
	var se *storage.Error
	if err == nil || !errors.As(err, &se) || se.Kind != k {
		t.Fatalf("%s: err = %v (kind %v), want kind %v", what, err, storage.KindOf(err), k)
	}
}

// result holds the two results of a call, for res(f()).must(t).
type result[T any] struct {
	v   T
	err error
}

func res[T any](v T, err error) result[T] { return result[T]{v, err} }

// must returns the value, failing the test on an error.
func (r result[T]) must(t testing.TB) T {
	t.Helper()
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.v
}

func (e *env) service(name storage.ServiceName, auto bool, trial storage.Credits) storage.Service {
	e.t.Helper()
	return res(e.l.EnsureService(e.ctx, storage.Service{
		Name: name, AutoRegister: auto, TrialCredits: trial, UnitName: "Credits",
	})).must(e.t)
}

func (e *env) recharge(svc storage.ServiceName, tok storage.AccountToken, amount storage.Credits) storage.Entry {
	e.t.Helper()
	return res(e.l.Recharge(e.ctx, storage.RechargeRequest{
		Service: svc, Account: tok, Amount: amount, Kind: storage.EntryRecharge,
	})).must(e.t)
}

func (e *env) authorize(svc storage.ServiceName, tok storage.AccountToken, amount storage.Credits, ttl time.Duration) storage.Transaction {
	e.t.Helper()
	return res(e.l.Authorize(e.ctx, storage.AuthorizeRequest{
		Service: svc, Account: tok, Amount: amount, TTL: ttl, Description: "test hold",
	})).must(e.t)
}

func (e *env) lookup(svc storage.ServiceName, tok storage.AccountToken) storage.Account {
	e.t.Helper()
	return res(e.l.LookupAccount(e.ctx, svc, tok)).must(e.t)
}

// figures asserts an account's four figures.
func (e *env) figures(svc storage.ServiceName, tok storage.AccountToken, recharged, available, held, captured storage.Credits) storage.Account {
	e.t.Helper()
	a := e.lookup(svc, tok)
	if a.Recharged != recharged || a.Available != available || a.Held != held || a.Captured != captured {
		e.t.Fatalf("%s/%s: recharged %s available %s held %s captured %s, want %s %s %s %s",
			svc, tok, a.Recharged, a.Available, a.Held, a.Captured, recharged, available, held, captured)
	}
	return a
}

// history reads an account's whole history, newest first, by pages.
func history(t testing.TB, l storage.Ledger, svc storage.ServiceName, tok storage.AccountToken) []storage.Entry {
	t.Helper()
	var all []storage.Entry
	var before uint64
	for {
		page, err := l.History(context.Background(), svc, tok, storage.HistoryQuery{Before: before, Limit: 50})
		if err != nil {
			t.Fatalf("history: %v", err)
		}
		all = append(all, page...)
		if len(page) < 50 {
			return all
		}
		before = page[len(page)-1].Seq
	}
}

// audit checks an account against its history: the invariant, Available
// and Held not negative, seqs 1…Seq without gaps, every entry balanced,
// the deltas summing to the figures. It returns the account.
func audit(t testing.TB, l storage.Ledger, svc storage.ServiceName, tok storage.AccountToken) storage.Account {
	t.Helper()
	a, err := l.LookupAccount(context.Background(), svc, tok)
	if err != nil {
		t.Fatalf("audit %s/%s: %v", svc, tok, err)
	}
	checkInvariant(t, a)
	h := history(t, l, svc, tok)
	if uint64(len(h)) != a.Seq {
		t.Fatalf("audit %s/%s: %d entries, Seq %d", svc, tok, len(h), a.Seq)
	}
	var sum storage.Account
	for i, en := range h {
		if want := a.Seq - uint64(i); en.Seq != want {
			t.Fatalf("audit %s/%s: entry %d has Seq %d, want %d", svc, tok, i, en.Seq, want)
		}
		if en.Service != svc || en.Account != tok {
			t.Fatalf("audit %s/%s: entry %d belongs to %s/%s", svc, tok, en.Seq, en.Service, en.Account)
		}
		if en.DRecharged != en.DAvailable+en.DHeld+en.DCaptured {
			t.Fatalf("audit %s/%s: entry %d unbalanced: %+v", svc, tok, en.Seq, en)
		}
		if i > 0 && en.Time.After(h[i-1].Time) {
			t.Fatalf("audit %s/%s: entry %d is later than entry %d", svc, tok, en.Seq, h[i-1].Seq)
		}
		sum.Recharged += en.DRecharged
		sum.Available += en.DAvailable
		sum.Held += en.DHeld
		sum.Captured += en.DCaptured
	}
	if sum.Recharged != a.Recharged || sum.Available != a.Available || sum.Held != a.Held || sum.Captured != a.Captured {
		t.Fatalf("audit %s/%s: entries sum to %s/%s/%s/%s, account has %s/%s/%s/%s", svc, tok,
			sum.Recharged, sum.Available, sum.Held, sum.Captured, a.Recharged, a.Available, a.Held, a.Captured)
	}
	return a
}

// checkInvariant asserts Recharged = Available + Held + Captured and that
// no figure is negative.
func checkInvariant(t testing.TB, a storage.Account) {
	t.Helper()
	if a.Recharged != a.Available+a.Held+a.Captured {
		t.Fatalf("%s/%s: recharged %s != available %s + held %s + captured %s",
			a.Service, a.Token, a.Recharged, a.Available, a.Held, a.Captured)
	}
	if a.Available < 0 || a.Held < 0 || a.Captured < 0 {
		t.Fatalf("%s/%s: negative figure: available %s held %s captured %s",
			a.Service, a.Token, a.Available, a.Held, a.Captured)
	}
}

// Audit is audit for backends' own tests (crash and reopen tests): it
// checks one account against its history and returns it.
func Audit(t testing.TB, l storage.Ledger, svc storage.ServiceName, tok storage.AccountToken) storage.Account {
	t.Helper()
	return audit(t, l, svc, tok)
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
