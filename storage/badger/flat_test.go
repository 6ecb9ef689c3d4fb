package badger

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
)

// aggregatesMatch fails t unless the aggregate figures equal a full walk
// of the ledger (what Verify's aggregate check compares) for every service.
func aggregatesMatch(t *testing.T, l *Ledger, when string) {
	t.Helper()
	if err := l.drain(); err != nil {
		t.Fatal(err)
	}
	txn := l.db.NewTransaction(false)
	defer txn.Discard()
	agg, err := readAggregates(txn)
	if err != nil {
		t.Fatal(err)
	}
	full, err := fullFigures(context.Background(), txn)
	if err != nil {
		t.Fatal(err)
	}
	if len(full) == 0 {
		t.Fatalf("%s: nothing walked", when)
	}
	for svc, f := range full {
		if a := agg[svc]; a == nil || *a != *f {
			t.Fatalf("%s: service %s: aggregates %s, walk %s", when, svc, figString(a), figString(f))
		}
	}
	for svc, a := range agg {
		if _, ok := full[svc]; !ok && !a.zero() {
			t.Fatalf("%s: service %s without accounts has aggregates %s", when, svc, figString(a))
		}
	}
}

// TestAggregatesEqualAWalk runs random operations of every kind from
// several goroutines (authorize, capture for less, as much and more than
// held, cancel, expiry by the sweep and by a late capture, recharge,
// adjustment, alerts, bans, accounts created by each route) and checks
// that the aggregates equal a full walk: after the operations, after a
// reopen (the journal replayed), and after more operations under the new
// process's stripe seed.
func TestAggregatesEqualAWalk(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	l := openTemp(t, dir, clock.now, nil)
	ctx := context.Background()
	for _, s := range []storage.Service{
		{Name: "sms", AutoRegister: true, TrialCredits: 3 * storage.Scale},
		{Name: "reveal", AutoRegister: false},
	} {
		if _, err := l.EnsureService(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	run := func(l *Ledger, seed uint64) {
		var wg sync.WaitGroup
		for g := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed, uint64(g)))
				var open []storage.Transaction
				for range 300 {
					svc := []storage.ServiceName{"sms", "reveal"}[rng.IntN(2)]
					tok := storage.AccountToken(fmt.Sprintf("tok%03d", rng.IntN(60)))
					amt := storage.Credits(rng.IntN(4)) * storage.Scale
					switch op := rng.IntN(10); {
					case op < 3:
						txn, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: svc, Account: tok, Amount: amt, TTL: time.Duration(1+rng.IntN(3)) * time.Second})
						if err == nil {
							open = append(open, txn)
						}
					case op < 5 && len(open) > 0:
						i := rng.IntN(len(open))
						c := open[i].Amount + storage.Credits(rng.IntN(3)-1)*storage.Scale
						if c < 0 {
							c = 0
						}
						_, _ = l.Capture(ctx, storage.CaptureRequest{Service: open[i].Service, Transaction: open[i].Token, Amount: &c})
						open = append(open[:i], open[i+1:]...)
					case op < 6 && len(open) > 0:
						i := rng.IntN(len(open))
						_, _ = l.Cancel(ctx, open[i].Service, open[i].Token)
						open = append(open[:i], open[i+1:]...)
					case op < 7:
						kind := storage.EntryRecharge
						if rng.IntN(3) == 0 {
							kind, amt = storage.EntryAdjustment, -amt
						}
						if amt == 0 {
							amt = storage.Scale
						}
						_, _ = l.Recharge(ctx, storage.RechargeRequest{Service: svc, Account: tok, Amount: amt, Kind: kind})
					case op < 8:
						al := storage.Alerts{Enabled: rng.IntN(2) == 0, Threshold: storage.Credits(rng.IntN(6)) * storage.Scale,
							Recipients: []storage.Recipient{{Email: "a@example.com"}}}
						_, _ = l.UpdateAccount(ctx, svc, tok, storage.AccountUpdate{Alerts: &al})
					case op < 9:
						st := []storage.AccountState{storage.Registered, storage.Unregistered, storage.Banned}[rng.IntN(3)]
						_, _ = l.UpdateAccount(ctx, svc, tok, storage.AccountUpdate{State: &st})
					default:
						_, _ = l.Account(ctx, svc, tok, storage.FirstSight{})
					}
				}
			}()
		}
		wg.Wait()
	}
	run(l, 1)
	aggregatesMatch(t, l, "after the operations")
	clock.advance(2 * time.Second)
	if _, err := l.ExpireDue(ctx, clock.now(), 50); err != nil {
		t.Fatal(err)
	}
	aggregatesMatch(t, l, "after a partial sweep")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTemp(t, dir, clock.now, nil)
	aggregatesMatch(t, l, "after a reopen")
	run(l, 2)
	clock.advance(10 * time.Second)
	if _, err := l.ExpireDue(ctx, clock.now(), 1000); err != nil {
		t.Fatal(err)
	}
	aggregatesMatch(t, l, "after more operations and the sweep")
	st, err := NewStatsReader(l).Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Services["sms"]; s.Holds != 0 || s.Held != 0 || s.Accounts[storage.Registered]+s.Accounts[storage.Unregistered]+s.Accounts[storage.Banned] == 0 {
		t.Fatalf("sms after every hold ended: %+v", s)
	}
	r, err := l.Verify(ctx, VerifyOptions{})
	if err != nil || !r.Clean() {
		t.Fatalf("verify: %+v %v", r, err)
	}
}

// TestMigrationToFormat4IsIdempotent: the step from format 3, run again
// (as after a crash before its marker), leaves the same figures and index.
func TestMigrationToFormat4IsIdempotent(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	l := openTemp(t, dir, clock.now, nil)
	ctx := context.Background()
	if _, err := l.EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true, TrialCredits: storage.Scale}); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := l.Account(ctx, "sms", storage.AccountToken(fmt.Sprintf("t%02d", i)), storage.FirstSight{}); err != nil {
			t.Fatal(err)
		}
	}
	// Run the step twice more, as after crashes before its marker: the
	// figures and the index stay exact.
	for range 2 {
		if err := l.migrateFlat(); err != nil {
			t.Fatal(err)
		}
		aggregatesMatch(t, l, "after the migration step")
	}
	for i := range 10 { // and writes after it keep them exact
		if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: storage.AccountToken(fmt.Sprintf("t%02d", i)), Amount: storage.Scale, Kind: storage.EntryRecharge}); err != nil {
			t.Fatal(err)
		}
	}
	aggregatesMatch(t, l, "after writes")
	r, err := l.Verify(ctx, VerifyOptions{})
	if err != nil || !r.Clean() || r.Warnings != 0 {
		t.Fatalf("verify: %+v %v", r, err)
	}
	for i := range 50 {
		tok := storage.AccountToken(fmt.Sprintf("t%02d", i))
		if got, err := l.TokenByHash(ctx, storage.HashToken(tok)); err != nil || got != tok {
			t.Fatalf("TokenByHash(%s) = %q, %v", tok, got, err)
		}
	}
}
