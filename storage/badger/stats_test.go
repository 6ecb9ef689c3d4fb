package badger

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/storagetest"
)

func cr(s string) storage.Credits {
	c, err := storage.ParseCredits(s)
	if err != nil {
		panic(err)
	}
	return c
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// TestStats drives every way credit moves and checks each figure.
func TestStats(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clock := storagetest.NewClock(time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC))
	l := openTemp(t, dir, clock.Now, nil)
	svc := must[storage.Service](t)
	svc(l.EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true, TrialCredits: cr("1")}))
	svc(l.EnsureService(ctx, storage.Service{Name: "geo"}))
	svc(l.EnsureService(ctx, storage.Service{Name: "reveal", AutoRegister: true}))
	entry := must[storage.Entry](t)
	txn := must[storage.Transaction](t)
	acct := must[storage.Account](t)

	recharge := func(tok storage.AccountToken, amount string) {
		entry(l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: tok, Amount: cr(amount), Kind: storage.EntryRecharge}))
	}
	hold := func(tok storage.AccountToken, amount string, ttl time.Duration) storage.Transaction {
		return txn(l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: tok, Amount: cr(amount), TTL: ttl}))
	}
	capture := func(h storage.Transaction, amount string) {
		c := cr(amount)
		txn(l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: h.Token, Amount: &c}))
	}

	recharge("a", "100")                                                                                                             // trial 1 + 100
	recharge("b", "5")                                                                                                               // trial 1 + 5
	entry(l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "a", Amount: -cr("0.5"), Kind: storage.EntryAdjustment})) // not a recharge
	acct(l.UpdateAccount(ctx, "sms", "b", storage.AccountUpdate{Alerts: &storage.Alerts{Enabled: true, Threshold: cr("10")}}))
	acct(l.UpdateAccount(ctx, "sms", "a", storage.AccountUpdate{Alerts: &storage.Alerts{Enabled: true, Threshold: cr("1")}}))
	acct(l.Account(ctx, "sms", "c", storage.FirstSight{}))
	banned := storage.Banned
	acct(l.UpdateAccount(ctx, "sms", "c", storage.AccountUpdate{State: &banned}))
	acct(l.Account(ctx, "geo", "g", storage.FirstSight{})) // unregistered

	capture(hold("a", "10", time.Hour), "10")                  // captured 10
	capture(hold("a", "6", time.Hour), "4")                    // captured 4, released 2
	txn(l.Cancel(ctx, "sms", hold("a", "3", time.Hour).Token)) // released 3
	capture(hold("a", "7", time.Hour), "9")                    // captured 9, 2 beyond the hold
	h1 := hold("a", "1.5", time.Hour)                          // expired by a capture
	hold("b", "2", time.Hour)                                  // expired by the sweep
	c1 := hold("a", "0.25", time.Hour)                         // expired by a cancel
	open := hold("a", "4", 100*time.Hour)                      // stays open
	if _, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: "b", Amount: cr("1000"), TTL: time.Hour}); !storage.Is(err, storage.InsufficientCredit) {
		t.Fatalf("refused authorize: %v", err)
	}

	r := NewStatsReader(l)
	st, err := r.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := storage.ServiceStats{
		Accounts:   map[storage.AccountState]int{storage.Registered: 2, storage.Banned: 1},
		Holds:      4,
		Held:       cr("1.5") + cr("2") + cr("0.25") + cr("4"),
		Authorized: cr("10") + cr("6") + cr("3") + cr("7") + cr("1.5") + cr("2") + cr("0.25") + cr("4"),
		Captured:   cr("23"),
		Released:   cr("5"),
		Recharged:  cr("108"), // trials of a, b and c (first sight), 100, 5
	}
	want.BelowThreshold = 1 // b: 6 - 2 held = 4 available < 10; a is above 1; c is banned
	want.Available = cr("108") - cr("0.5") - want.Held - want.Captured
	checkServiceStats(t, "before expiry", st, "sms", want)
	checkServiceStats(t, "before expiry", st, "geo", storage.ServiceStats{Accounts: map[storage.AccountState]int{storage.Unregistered: 1}})
	checkServiceStats(t, "before expiry", st, "reveal", storage.ServiceStats{Accounts: map[storage.AccountState]int{}})
	if len(st.Services) != 3 {
		t.Errorf("services: %v", st.Services)
	}

	// Again without change: the flows are not counted twice.
	st = must[storage.Stats](t)(r.Stats(ctx))
	checkServiceStats(t, "unchanged", st, "sms", want)

	// Expiry, three ways.
	clock.Advance(2 * time.Hour)
	if _, err := l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: h1.Token}); !storage.Is(err, storage.Conflict) {
		t.Fatalf("capture of an expired hold: %v", err)
	}
	if got := txn(l.Cancel(ctx, "sms", c1.Token)); got.State != storage.Expired {
		t.Fatalf("cancel of an expired hold: %v", got.State)
	}
	if n, err := l.ExpireDue(ctx, clock.Now(), 10); err != nil || n != 1 {
		t.Fatalf("ExpireDue: %d %v", n, err)
	}
	// Idempotent replays change nothing.
	txn(l.Cancel(ctx, "sms", c1.Token))
	if _, err := l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: h1.Token}); !storage.Is(err, storage.Conflict) {
		t.Fatal(err)
	}
	want.Holds = 1
	want.Expired = cr("1.5") + cr("2") + cr("0.25")
	want.Held = cr("4")
	want.Available += want.Expired
	want.BelowThreshold = 1 // b: 6 < 10
	st = must[storage.Stats](t)(r.Stats(ctx))
	checkServiceStats(t, "after expiry", st, "sms", want)

	// A fresh reader (a full scan) and a reader after a reopen agree with
	// the incremental one.
	st = must[storage.Stats](t)(NewStatsReader(l).Stats(ctx))
	checkServiceStats(t, "fresh reader", st, "sms", want)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Stats(ctx); !storage.Is(err, storage.Unavailable) {
		t.Fatalf("Stats on a closed ledger: %v, want Unavailable", err)
	}
	l = openTemp(t, dir, clock.Now, nil)
	st = must[storage.Stats](t)(NewStatsReader(l).Stats(ctx))
	checkServiceStats(t, "after reopen", st, "sms", want)
	if tx := txn(l.Transaction(ctx, open.Token)); tx.State != storage.Held {
		t.Fatalf("open hold: %v", tx.State)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := NewStatsReader(l).Stats(cctx); !storage.Is(err, storage.Unavailable) {
		t.Fatalf("Stats with a done context: %v", err)
	}
}

func checkServiceStats(t *testing.T, when string, st storage.Stats, name storage.ServiceName, want storage.ServiceStats) {
	t.Helper()
	got, ok := st.Services[name]
	if !ok {
		t.Fatalf("%s: no figures for %s", when, name)
	}
	for _, state := range []storage.AccountState{storage.Registered, storage.Unregistered, storage.Banned} {
		if got.Accounts[state] != want.Accounts[state] {
			t.Errorf("%s: %s %s accounts = %d, want %d", when, name, state, got.Accounts[state], want.Accounts[state])
		}
	}
	got.Accounts, want.Accounts = nil, nil
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("%s: %s\n got %+v\nwant %+v", when, name, got, want)
	}
}

// TestStatsConsistentUnderLoad reads Stats while many goroutines
// authorize, capture, cancel and expire: every snapshot balances.
func TestStatsConsistentUnderLoad(t *testing.T) {
	ctx := context.Background()
	clock := storagetest.NewClock(time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC))
	l := openTemp(t, t.TempDir(), clock.Now, nil)
	if _, err := l.EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true}); err != nil {
		t.Fatal(err)
	}
	const accounts, workers, rounds = 8, 8, 60
	for i := range accounts {
		if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: storage.AccountToken(fmt.Sprint("acct-", i)),
			Amount: cr("1000"), Kind: storage.EntryRecharge}); err != nil {
			t.Fatal(err)
		}
	}
	r := NewStatsReader(l)
	check := func(st storage.Stats) {
		t.Helper()
		s := st.Services["sms"]
		// Every hold is of 1 credit and no capture goes beyond its hold.
		if s.Held != storage.Credits(s.Holds)*storage.Scale {
			t.Errorf("held %s for %d holds", s.Held, s.Holds)
		}
		if s.Authorized != s.Captured+s.Released+s.Expired+s.Held {
			t.Errorf("authorized %s != captured %s + released %s + expired %s + held %s", s.Authorized, s.Captured, s.Released, s.Expired, s.Held)
		}
		if s.Recharged != s.Available+s.Held+s.Captured {
			t.Errorf("recharged %s != available %s + held %s + captured %s", s.Recharged, s.Available, s.Held, s.Captured)
		}
	}
	done := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			st, err := r.Stats(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			check(st)
		}
	}()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range rounds {
				tok := storage.AccountToken(fmt.Sprint("acct-", rng.IntN(accounts)))
				h, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: tok, Amount: cr("1"), TTL: time.Hour})
				if err != nil {
					t.Error(err)
					return
				}
				switch rng.IntN(4) {
				case 0:
					half := cr("0.5")
					_, err = l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: h.Token, Amount: &half})
				case 1:
					_, err = l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: h.Token})
				case 2:
					_, err = l.Cancel(ctx, "sms", h.Token)
				case 3: // left for the sweep
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	clock.Advance(2 * time.Hour)
	if _, err := l.ExpireDue(ctx, clock.Now(), 1<<20); err != nil {
		t.Fatal(err)
	}
	close(done)
	readers.Wait()
	st := must[storage.Stats](t)(r.Stats(ctx))
	check(st)
	s := st.Services["sms"]
	if s.Holds != 0 || s.Held != 0 || s.Authorized != storage.Credits(workers*rounds)*storage.Scale || s.Expired == 0 {
		t.Fatalf("final figures: %+v", s)
	}
	if full := must[storage.Stats](t)(NewStatsReader(l).Stats(ctx)).Services["sms"]; fmt.Sprint(full) != fmt.Sprint(s) {
		t.Fatalf("incremental %+v\n     full %+v", s, full)
	}
}
