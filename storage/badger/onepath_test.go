package badger

import (
	"context"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/storagetest"
)

// Every kind of change is a journal record (one durability path): each
// call below appends at least one record, and none is committed to Badger
// by itself (the checkpoint marker does not move while checkpoints are
// stopped and nothing reads). After a crash that leaves only the journal
// (no last checkpoint), reopening replays them all, and the idempotent
// calls (a recharge's ref, a voucher's redemption, a service's key) stay
// idempotent across the crash.
func TestEveryChangeJournaled(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clock := newFakeClock()
	l := openTemp(t, dir, clock.now, nil)
	stopCheckpoints(l)
	mark0, err := l.readJournalMark()
	if err != nil {
		t.Fatal(err)
	}
	key := storage.HashKey("service-key-1")
	code := storage.HashKey("VOUCHER-1")
	registered := storage.Registered
	sender := "ACME"
	steps := []struct {
		name string
		do   func() error
	}{
		{"ensure service", func() error {
			_, err := l.EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true, TrialCredits: storage.Scale})
			return err
		}},
		{"set service key", func() error { return l.SetServiceKey(ctx, "sms", key) }},
		{"recharge with ref (creates the account)", func() error {
			_, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "acct", Amount: 5 * storage.Scale, Kind: storage.EntryRecharge, Ref: "pay-1"})
			return err
		}},
		{"adjustment", func() error {
			_, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "acct", Amount: -storage.Scale, Kind: storage.EntryAdjustment})
			return err
		}},
		{"update account", func() error {
			_, err := l.UpdateAccount(ctx, "sms", "acct", storage.AccountUpdate{State: &registered, SenderName: &sender})
			return err
		}},
		{"create vouchers", func() error {
			return l.CreateVouchers(ctx, []storage.Voucher{{CodeHash: code, Service: "sms", Amount: 2 * storage.Scale}})
		}},
		{"redeem voucher", func() error {
			_, _, err := l.RedeemVoucher(ctx, code, "sms", "acct", clock.now())
			return err
		}},
		{"put record", func() error { return l.PutRecord(ctx, "test", "k", []byte("v"), time.Time{}) }},
	}
	for _, s := range steps {
		before := l.jn.LastSeq()
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if l.jn.LastSeq() == before {
			t.Fatalf("%s appended no journal record", s.name)
		}
	}
	if mark, err := l.readJournalMark(); err != nil || mark != mark0 {
		t.Fatalf("the checkpoint marker moved from %d to %d (%v): a change reached Badger outside a checkpoint", mark0, mark, err)
	}
	crashClose(t, l)

	l = openTemp(t, dir, clock.now, nil)
	s, err := l.ServiceByKey(ctx, key)
	if err != nil || s.Name != "sms" || s.TrialCredits != storage.Scale {
		t.Fatalf("service after replay: %+v, %v", s, err)
	}
	a := storagetest.Audit(t, l, "sms", "acct")
	// 1 trial (the recharge created the account) + 5 + 2 (voucher) - 1
	// (adjustment), in 4 entries.
	if a.Available != 7*storage.Scale || a.Seq != 4 || a.SenderName != sender {
		t.Fatalf("account after replay: %+v", a)
	}
	if e, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "acct", Amount: 5 * storage.Scale, Kind: storage.EntryRecharge, Ref: "pay-1"}); err != nil || e.Ref != "pay-1" {
		t.Fatalf("the same ref again after replay: %+v, %v", e, err)
	}
	if _, _, err := l.RedeemVoucher(ctx, code, "sms", "other", clock.now()); !storage.Is(err, storage.Conflict) {
		t.Fatalf("redeeming the voucher again after replay: %v (want Conflict)", err)
	}
	if v, err := l.GetRecord(ctx, "test", "k"); err != nil || string(v) != "v" {
		t.Fatalf("record after replay: %q, %v", v, err)
	}
	if a2 := storagetest.Audit(t, l, "sms", "acct"); a2.Available != a.Available {
		t.Fatalf("an idempotent retry changed the account: %+v, then %+v", a, a2)
	}
}
