package storagetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
)

// invariantErr is checkInvariant for goroutines that may not call Fatal.
func invariantErr(a storage.Account) error {
	if a.Recharged != a.Available+a.Held+a.Captured {
		return fmt.Errorf("%s/%s: recharged %s != available %s + held %s + captured %s",
			a.Service, a.Token, a.Recharged, a.Available, a.Held, a.Captured)
	}
	if a.Available < 0 || a.Held < 0 || a.Captured < 0 {
		return fmt.Errorf("%s/%s: negative figure: available %s held %s captured %s",
			a.Service, a.Token, a.Available, a.Held, a.Captured)
	}
	return nil
}

// bankHold is a hold a bank worker made.
type bankHold struct {
	token  string
	acct   int
	amount storage.Credits
}

// bankRef is a recharge a bank worker made, to replay it.
type bankRef struct {
	ref    string
	acct   int
	amount storage.Credits
	kind   storage.EntryKind
	seq    uint64
}

type bankCounts struct {
	authorized, refused, captured, overRefused, expiredOnCapture, cancelled, recharged, adjusted, replayed, expired, reads atomic.Int64
}

// testBank is the bank test (after dgraph-io/badger's badger/cmd/bank.go):
// 16 workers authorize, capture (exact, partial, over), cancel, recharge,
// adjust and replay recharges on ten accounts and one hot account, an
// expirer moves the clock and expires holds, and readers check the
// invariant at every read. At the end every account must agree with its
// history, with the holds the workers made, and with the credit they put
// in.
func testBank(t *testing.T, e *env) {
	const (
		svc      = storage.ServiceName("bank")
		workers  = 16
		readers  = 2
		nAccts   = 11 // the last is the hot one
		hot      = nAccts - 1
		initial  = 50
		maxTTLm  = 30
		clockInc = 5 * time.Second
	)
	duration := 2 * time.Second
	if testing.Short() {
		duration = 500 * time.Millisecond
	}
	ctx, l := e.ctx, e.l
	e.service(svc, true, 0)
	toks := make([]storage.AccountToken, nAccts)
	for i := range toks {
		toks[i] = storage.AccountToken(fmt.Sprintf("acct%02d", i))
		if i == hot {
			toks[i] = "hot"
		}
		res(l.Recharge(ctx, storage.RechargeRequest{Service: svc, Account: toks[i], Amount: cr(initial), Kind: storage.EntryRecharge, Ref: "init"})).must(t)
	}
	var tally [nAccts]atomic.Int64 // credit put in by successful recharges and adjustments
	var counts bankCounts
	var stop, failed atomic.Bool
	var failMu sync.Mutex
	var firstErr error
	fail := func(format string, args ...any) {
		failMu.Lock()
		defer failMu.Unlock()
		if firstErr == nil {
			firstErr = fmt.Errorf(format, args...)
		}
		failed.Store(true)
	}
	pick := func(rng *rand.Rand) int {
		if rng.IntN(10) < 4 {
			return hot
		}
		return rng.IntN(nAccts - 1)
	}

	holdsOf := make([][]bankHold, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			var open []bankHold
			var refs []bankRef
			n := 0
			take := func() (bankHold, bool) {
				if len(open) == 0 {
					return bankHold{}, false
				}
				i := rng.IntN(len(open))
				h := open[i]
				open[i] = open[len(open)-1]
				open = open[:len(open)-1]
				return h, true
			}
			for !stop.Load() && !failed.Load() {
				n++
				acct := pick(rng)
				switch op := rng.IntN(100); {
				case op < 35: // authorize
					amount := storage.Credits(rng.Int64N(int64(cr(20))))
					ttl := time.Duration(1+rng.IntN(maxTTLm)) * time.Minute
					tx, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: svc, Account: toks[acct], Amount: amount, TTL: ttl, Description: "bank"})
					switch {
					case err == nil:
						if tx.State != storage.Held || tx.Amount != amount || tx.Account != toks[acct] {
							fail("authorize returned %+v", tx)
							return
						}
						h := bankHold{tx.Token, acct, amount}
						open = append(open, h)
						holdsOf[w] = append(holdsOf[w], h)
						counts.authorized.Add(1)
					case storage.Is(err, storage.InsufficientCredit):
						counts.refused.Add(1)
					default:
						fail("authorize: %v", err)
						return
					}
				case op < 60: // capture
					h, ok := take()
					if !ok {
						continue
					}
					var amount *storage.Credits
					want := h.amount
					mode := rng.IntN(4)
					switch mode {
					case 1:
						amount = ptr(h.amount)
					case 2:
						want = storage.Credits(rng.Int64N(int64(h.amount) + 1))
						amount = &want
					case 3:
						want = h.amount + storage.Credits(rng.Int64N(int64(cr(5))))
						amount = &want
					}
					tx, err := l.Capture(ctx, storage.CaptureRequest{Service: svc, Transaction: h.token, Amount: amount})
					switch {
					case err == nil:
						if tx.State != storage.Captured || tx.Captured != want {
							fail("capture of %s wanted %s, got %+v", h.amount, want, tx)
							return
						}
						counts.captured.Add(1)
						if rng.IntN(5) == 0 { // the retry of a capture changes nothing
							again, err := l.Capture(ctx, storage.CaptureRequest{Service: svc, Transaction: h.token, Amount: amount})
							if err != nil || again.Captured != want || again.State != storage.Captured {
								fail("capture retry: %+v, %v", again, err)
								return
							}
						}
					case storage.Is(err, storage.Conflict):
						st, err := l.Transaction(ctx, h.token)
						if err != nil || st.State != storage.Expired {
							fail("capture conflict on a hold that is %+v (%v)", st, err)
							return
						}
						counts.expiredOnCapture.Add(1)
					case storage.Is(err, storage.InsufficientCredit) && mode == 3 && want > h.amount:
						open = append(open, h)
						counts.overRefused.Add(1)
					default:
						fail("capture (mode %d): %v", mode, err)
						return
					}
				case op < 72: // cancel
					h, ok := take()
					if !ok {
						continue
					}
					tx, err := l.Cancel(ctx, svc, h.token)
					if err != nil || tx.State != storage.Cancelled && tx.State != storage.Expired {
						fail("cancel: %+v, %v", tx, err)
						return
					}
					counts.cancelled.Add(1)
				case op < 92: // recharge (op < 84), adjustment
					r := storage.RechargeRequest{Service: svc, Account: toks[acct], Kind: storage.EntryRecharge,
						Amount: 1 + storage.Credits(rng.Int64N(int64(cr(12)))), Ref: fmt.Sprintf("w%d-%d", w, n)}
					if op >= 84 {
						r.Kind = storage.EntryAdjustment
						r.Amount = storage.Credits(rng.Int64N(int64(cr(60)))) - cr(30)
						if r.Amount == 0 {
							r.Amount = 1
						}
					}
					en, err := l.Recharge(ctx, r)
					switch {
					case err == nil:
						if en.DRecharged != r.Amount || en.Kind != r.Kind || en.Ref != r.Ref {
							fail("recharge returned %+v for %+v", en, r)
							return
						}
						tally[acct].Add(int64(r.Amount))
						refs = append(refs, bankRef{r.Ref, acct, r.Amount, r.Kind, en.Seq})
						if r.Kind == storage.EntryRecharge {
							counts.recharged.Add(1)
						} else {
							counts.adjusted.Add(1)
						}
					case storage.Is(err, storage.InsufficientCredit) && r.Amount < 0:
					default:
						fail("recharge %+v: %v", r, err)
						return
					}
				default: // replay a recharge: nothing changes
					if len(refs) == 0 {
						continue
					}
					rf := refs[rng.IntN(len(refs))]
					r := storage.RechargeRequest{Service: svc, Account: toks[rf.acct], Kind: rf.kind, Amount: rf.amount, Ref: rf.ref}
					en, err := l.Recharge(ctx, r)
					if err != nil || en.Seq != rf.seq || en.DRecharged != rf.amount {
						fail("replay of %+v: %+v, %v", rf, en, err)
						return
					}
					r.Amount++
					if _, err := l.Recharge(ctx, r); !storage.Is(err, storage.Conflict) {
						fail("replay with another amount: %v", err)
						return
					}
					counts.replayed.Add(1)
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // expirer
		defer wg.Done()
		for !stop.Load() && !failed.Load() {
			now := e.clock.Advance(clockInc)
			n, err := l.ExpireDue(ctx, now, 20)
			if err != nil {
				fail("expire: %v", err)
				return
			}
			counts.expired.Add(int64(n))
			time.Sleep(time.Millisecond)
		}
	}()
	for r := 0; r < readers; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 7))
			for i := 0; !stop.Load() && !failed.Load(); i++ {
				if i%50 == 49 {
					list, err := l.Accounts(ctx, storage.AccountFilter{Service: svc})
					if err != nil || len(list) != nAccts {
						fail("accounts: %d, %v", len(list), err)
						return
					}
					for _, a := range list {
						if err := invariantErr(a); err != nil {
							fail("at a read: %v", err)
							return
						}
					}
					continue
				}
				a, err := l.LookupAccount(ctx, svc, toks[pick(rng)])
				if err != nil {
					fail("lookup: %v", err)
					return
				}
				if err := invariantErr(a); err != nil {
					fail("at a read: %v", err)
					return
				}
				counts.reads.Add(1)
			}
		}()
	}
	// Run for duration, and on until the work is enough to mean something:
	// a shared CPU makes it slow, not absent (a minute more at most).
	enough := func() bool {
		return counts.authorized.Load() >= 100 && counts.captured.Load() >= 20 && counts.cancelled.Load() >= 10 &&
			counts.recharged.Load() >= 10 && counts.refused.Load() > 0 && counts.expired.Load() > 0 && counts.reads.Load() >= 100
	}
	began := time.Now()
	for !failed.Load() {
		d := time.Since(began)
		if d >= duration && enough() || d >= duration+time.Minute {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	t.Logf("authorized %d (refused %d), captured %d (over refused %d, expired %d), cancelled %d, recharged %d, adjusted %d, replayed %d, expired by sweep %d, reads %d",
		counts.authorized.Load(), counts.refused.Load(), counts.captured.Load(), counts.overRefused.Load(), counts.expiredOnCapture.Load(),
		counts.cancelled.Load(), counts.recharged.Load(), counts.adjusted.Load(), counts.replayed.Load(),
		counts.expired.Load(), counts.reads.Load())
	if !enough() {
		t.Fatal("the bank test did too little work to mean anything")
	}

	// Every account against its history, its holds and the credit put in.
	var held, captured [nAccts]storage.Credits
	for _, hs := range holdsOf {
		for _, h := range hs {
			st := res(l.Transaction(ctx, h.token)).must(t)
			switch st.State {
			case storage.Held:
				held[h.acct] += st.Amount
			case storage.Captured:
				captured[h.acct] += st.Captured
			case storage.Expired:
				if !st.EndedAt.Equal(st.ExpiresAt) {
					t.Fatalf("expired hold %+v", st)
				}
			case storage.Cancelled:
			default:
				t.Fatalf("hold in state %q", st.State)
			}
		}
	}
	for i, tok := range toks {
		a := audit(t, l, svc, tok)
		if want := cr(initial) + storage.Credits(tally[i].Load()); a.Recharged != want {
			t.Fatalf("%s: recharged %s, credit put in %s", tok, a.Recharged, want)
		}
		if a.Held != held[i] {
			t.Fatalf("%s: held %s, open holds sum to %s", tok, a.Held, held[i])
		}
		if a.Captured != captured[i] {
			t.Fatalf("%s: captured %s, captures sum to %s", tok, a.Captured, captured[i])
		}
	}
	// What is still held expires completely.
	for {
		n := res(l.ExpireDue(context.Background(), e.clock.Advance(time.Hour), 1000)).must(t)
		if n < 1000 {
			break
		}
	}
	for i, tok := range toks {
		if a := audit(t, l, svc, tok); a.Held != 0 || a.Available != a.Recharged-captured[i] {
			t.Fatalf("%s after expiring everything: %+v", tok, a)
		}
	}
}
