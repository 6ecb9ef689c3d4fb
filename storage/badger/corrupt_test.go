package badger

import (
	"context"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
)

// Test-only helpers that damage a ledger behind its back, through the
// storage layer's own encoding, for the verification tests. They write raw
// Badger keys, bypassing putAccount's invariant check; nothing like them
// exists outside tests.

// corruptAccount rewrites an account record with change applied.
func corruptAccount(t testing.TB, l *Ledger, svc storage.ServiceName, tok storage.AccountToken, change func(*storage.Account)) {
	t.Helper()
	rawDrain(t, l)
	if err := l.db.Update(func(txn *badger.Txn) error {
		a, found, err := getAccount(txn, svc, tok)
		if err != nil || !found {
			t.Fatalf("corruptAccount: %v (found %v)", err, found)
		}
		change(&a.Account)
		return txn.Set(accountKey(svc, tok), encodeAccount(&a))
	}); err != nil {
		t.Fatal(err)
	}
}

// corruptEntry rewrites one entry with change applied.
func corruptEntry(t testing.TB, l *Ledger, svc storage.ServiceName, tok storage.AccountToken, seq uint64, change func(*storage.Entry)) {
	t.Helper()
	if err := l.db.Update(func(txn *badger.Txn) error {
		e, found, err := getEntry(txn, svc, tok, seq)
		if err != nil || !found {
			t.Fatalf("corruptEntry: %v (found %v)", err, found)
		}
		change(&e)
		return txn.Set(entryKey(svc, tok, seq), encodeEntry(&e))
	}); err != nil {
		t.Fatal(err)
	}
}

// corruptTxn rewrites a transaction with change applied.
func corruptTxn(t testing.TB, l *Ledger, token string, change func(*storage.Transaction)) {
	t.Helper()
	id, ok := parseTxnToken(token)
	if !ok {
		t.Fatalf("corruptTxn: bad token %q", token)
	}
	rawDrain(t, l)
	if err := l.db.Update(func(txn *badger.Txn) error {
		tr, found, err := getTxn(txn, id)
		if err != nil || !found {
			t.Fatalf("corruptTxn: %v (found %v)", err, found)
		}
		change(&tr)
		return txn.Set(txnKey(id), encodeTxn(&tr))
	}); err != nil {
		t.Fatal(err)
	}
}

// rawSet and rawDelete write or delete one raw key.
// rawSet and rawDelete damage Badger directly, after draining the
// journal's overlay into it (a later checkpoint must not undo the damage).
func rawSet(t testing.TB, l *Ledger, k, v []byte) {
	t.Helper()
	rawDrain(t, l)
	if err := l.db.Update(func(txn *badger.Txn) error { return txn.Set(k, v) }); err != nil {
		t.Fatal(err)
	}
}

func rawDelete(t testing.TB, l *Ledger, k []byte) {
	t.Helper()
	rawDrain(t, l)
	if err := l.db.Update(func(txn *badger.Txn) error { return txn.Delete(k) }); err != nil {
		t.Fatal(err)
	}
}

func rawDrain(t testing.TB, l *Ledger) {
	t.Helper()
	if err := l.drain(); err != nil {
		t.Fatal(err)
	}
}

// Fixture tokens of populate.
const (
	tokA = storage.AccountToken("0123456789abcdef0123456789abcdef")
	tokB = storage.AccountToken("fedcba9876543210fedcba9876543210")
	tokC = storage.AccountToken("00000000000000000000000000000001")
)

// populated is what populate made.
type populated struct {
	open    storage.Transaction // a hold left open (180 days)
	expired storage.Transaction // a hold released by ExpireDue
	ended   time.Time           // the clock after the last write
}

// populate writes a small ledger with every kind of record: services with
// and without keys and trial credits, recharges with refs, holds captured
// in full, in part and over, cancelled, expired and open, an adjustment,
// alerts, a banned and an unregistered account. The clock advances by a
// second per call from 2025-06-01 12:00 UTC.
func populate(t testing.TB, l *Ledger, clock *fakeClock) populated {
	t.Helper()
	ctx := context.Background()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	var p populated
	must(l.EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true, UnitName: "Credits"}))
	must(nil, l.SetServiceKey(ctx, "sms", storage.HashKey("populate-sms-key-0123456789")))
	must(l.EnsureService(ctx, storage.Service{Name: "geocoding", AutoRegister: true, TrialCredits: 25000, UnitName: "Lookups"}))
	must(l.EnsureService(ctx, storage.Service{Name: "snailmail", AutoRegister: false, UnitName: "Stamps"}))
	must(l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: tokA, Amount: 100 * storage.Scale, Kind: storage.EntryRecharge, Ref: "invoice-1"}))
	h1, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: tokA, Amount: 10 * storage.Scale, TTL: time.Hour, Description: "captured in full"})
	must(h1, err)
	must(l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: h1.Token}))
	h2, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: tokA, Amount: 5 * storage.Scale, TTL: time.Hour, Description: "captured in part"})
	must(h2, err)
	part := storage.Credits(2 * storage.Scale)
	must(l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: h2.Token, Amount: &part}))
	h3, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: tokA, Amount: 3 * storage.Scale, TTL: time.Hour, Description: "cancelled"})
	must(h3, err)
	must(l.Cancel(ctx, "sms", h3.Token))
	p.open, err = l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: tokA, Amount: 7 * storage.Scale, TTL: 180 * 24 * time.Hour, Description: "still held"})
	must(p.open, err)
	p.expired, err = l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: tokA, Amount: storage.Scale, TTL: time.Minute, Description: "expired"})
	must(p.expired, err)
	clock.advance(2 * time.Minute)
	must(l.ExpireDue(ctx, clock.now(), 10))
	must(l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: tokA, Amount: -5000, Kind: storage.EntryAdjustment, Description: "correction"}))
	alerts := storage.Alerts{Enabled: true, Threshold: 10 * storage.Scale, Recipients: []storage.Recipient{{Email: "ops@example.com", Lang: "en_US"}}}
	must(l.UpdateAccount(ctx, "sms", tokA, storage.AccountUpdate{Alerts: &alerts}))
	must(l.Account(ctx, "geocoding", tokA, storage.FirstSight{DBUUID: "db-uuid-1"}))
	h4, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: "geocoding", Account: tokB, Amount: 10000, TTL: time.Hour, Description: "over-captured"})
	must(h4, err)
	over := storage.Credits(15000)
	must(l.Capture(ctx, storage.CaptureRequest{Service: "geocoding", Transaction: h4.Token, Amount: &over}))
	must(l.Account(ctx, "snailmail", tokC, storage.FirstSight{}))
	banned := storage.Banned
	must(l.Account(ctx, "sms", tokB, storage.FirstSight{}))
	must(l.UpdateAccount(ctx, "sms", tokB, storage.AccountUpdate{State: &banned}))
	p.ended = clock.now()
	return p
}

// fakeClock advances by a second at every reading.
type fakeClock struct {
	mu chan struct{}
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{mu: make(chan struct{}, 1), t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) now() time.Time {
	c.mu <- struct{}{}
	defer func() { <-c.mu }()
	c.t = c.t.Add(time.Second)
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu <- struct{}{}
	c.t = c.t.Add(d)
	<-c.mu
}
