package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/postgres"
	"github.com/iapd/iapd/storage/postgres/pgtest"
	"github.com/iapd/iapd/storage/storagetest"
)

// TestStats: the figures by service follow every kind of change and keep
// Authorized + over-capture = Captured + Released + Expired + Held.
func TestStats(t *testing.T) {
	ctx := context.Background()
	clock := storagetest.NewClock(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	l, err := postgres.Open(ctx, postgres.Options{URL: pgtest.Schema(t), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, s := range []storage.Service{{Name: "sms", AutoRegister: true, TrialCredits: cr(1)}, {Name: "empty"}} {
		if _, err := l.EnsureService(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	hold := func(tok storage.AccountToken, n int64, ttl time.Duration) storage.Transaction {
		t.Helper()
		tr, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: tok, Amount: cr(n), TTL: ttl})
		must(err)
		return tr
	}
	_, err = l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "a", Amount: cr(20), Kind: storage.EntryRecharge})
	must(err)
	_, err = l.UpdateAccount(ctx, "sms", "a", storage.AccountUpdate{Alerts: &storage.Alerts{Enabled: true, Threshold: cr(100)}})
	must(err)
	over := cr(2)
	_, err = l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: hold("a", 3, time.Hour).Token, Amount: ptr(cr(3) + over)})
	must(err)
	_, err = l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: hold("a", 4, time.Hour).Token, Amount: ptr(cr(1))})
	must(err)
	_, err = l.Cancel(ctx, "sms", hold("a", 2, time.Hour).Token)
	must(err)
	hold("a", 1, time.Minute)
	hold("b", 1, time.Hour) // b: first sight, 1 trial credit
	clock.Advance(2 * time.Minute)
	n, err := l.ExpireDue(ctx, clock.Now(), 10)
	must(err)
	if n != 1 {
		t.Fatalf("expired %d", n)
	}
	_, err = l.Account(ctx, "sms", "c", storage.FirstSight{NoTrial: true})
	must(err)
	_, err = l.UpdateAccount(ctx, "sms", "c", storage.AccountUpdate{State: ptr(storage.Banned)})
	must(err)

	st, err := l.Stats(ctx)
	must(err)
	s, e := st.Services["sms"], st.Services["empty"]
	if len(st.Services) != 2 || len(e.Accounts) != 0 || e.Available != 0 {
		t.Fatalf("services: %+v", st.Services)
	}
	want := storage.ServiceStats{
		Accounts:       map[storage.AccountState]int{storage.Registered: 2, storage.Banned: 1},
		BelowThreshold: 1,
		Available:      cr(20+1) - cr(5) - cr(1) + cr(1) - cr(1), // a: 20 + 1 trial - 5 - 1 captured; b: 1 trial - 1 held
		Holds:          1, Held: cr(1),
		Authorized: cr(3 + 4 + 2 + 1 + 1), Captured: cr(5 + 1), Released: cr(3 + 2), Expired: cr(1),
		Recharged: cr(20 + 1 + 1),
	}
	if s.Accounts[storage.Registered] != 2 || s.Accounts[storage.Banned] != 1 || s.BelowThreshold != want.BelowThreshold ||
		s.Available != want.Available || s.Holds != want.Holds || s.Held != want.Held || s.Authorized != want.Authorized ||
		s.Captured != want.Captured || s.Released != want.Released || s.Expired != want.Expired || s.Recharged != want.Recharged {
		t.Fatalf("sms stats\n got %+v\nwant %+v", s, want)
	}
	if s.Authorized+over != s.Captured+s.Released+s.Expired+s.Held {
		t.Fatalf("flow identity broken: %+v", s)
	}
}

func ptr[T any](v T) *T { return &v }

// TestVerifyFindsDamage: verify is clean on a sound ledger, reports an
// entry changed behind the ledger's back (balanced, so the schema lets it
// through) and a hold left open past its expiry.
func TestVerifyFindsDamage(t *testing.T) {
	ctx := context.Background()
	clock := storagetest.NewClock(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	url := pgtest.Schema(t)
	l, err := postgres.Open(ctx, postgres.Options{URL: url, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "a", Amount: cr(5), Kind: storage.EntryRecharge}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: "a", Amount: cr(1), TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if r, err := l.Verify(ctx, 0); err != nil || !r.Clean() || r.Warnings != 0 || r.Accounts != 1 || r.Entries != 2 || r.OpenHolds != 1 {
		t.Fatalf("sound ledger: %+v %v", r, err)
	}
	exec(t, url, "UPDATE iapd_entries SET d_recharged = d_recharged + 10000, d_available = d_available + 10000 WHERE seq = 1")
	clock.Advance(time.Hour)
	r, err := l.Verify(ctx, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]string{}
	for _, p := range r.Problems {
		checks[p.Check] = p.Severity
	}
	if r.Clean() || checks["entries"] != "error" || checks["overdue hold"] != "error" {
		t.Fatalf("damaged ledger: %+v", r)
	}
}
