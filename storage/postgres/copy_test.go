package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/postgres/pgtest"
)

// TestCopy: a copy is all or nothing — rolled back, or refused by a
// constraint at commit, it leaves the ledger as it was (and may be run
// again); committed, the rows read back as written, flow figures and
// open-hold counts computed from the copied entries and holds, and the
// ledger serves on (a copied open hold captured, a new alert id above the
// copied ones). A ledger holding accounts refuses a copy (Exists).
func TestCopy(t *testing.T) {
	ctx := context.Background()
	l := open(t, pgtest.Schema(t), time.Now)
	now := time.Now().UTC().Truncate(time.Microsecond)
	svc := storage.Service{Name: "copied", AutoRegister: true, UnitName: "Credits", CreatedAt: now, HasKey: true, KeyHash: storage.HashKey("k")}
	c := func(n int64) storage.Credits { return storage.Credits(n * storage.Scale) }
	acct := storage.Account{Service: "copied", Token: "tok", State: storage.Registered,
		Recharged: c(10), Available: c(7), Held: c(2), Captured: c(1), Seq: 4, CreatedAt: now, UpdatedAt: now,
		Alerts: storage.Alerts{Enabled: true, Threshold: c(8), Recipients: []storage.Recipient{{Email: "a@example.com"}}}}
	hold := "0123456789abcdef0123456789abcdef"
	write := func(cp interface {
		Service(context.Context, storage.Service) error
		Account(context.Context, storage.Account, bool) error
		Entry(context.Context, storage.Entry) error
		Transaction(context.Context, storage.Transaction) error
		Alert(context.Context, storage.AlertNotice) error
	}, badEntry bool) error {
		for _, err := range []error{
			cp.Service(ctx, svc),
			cp.Account(ctx, acct, true),
			cp.Entry(ctx, storage.Entry{Seq: 1, Time: now, Service: "copied", Account: "tok", Kind: storage.EntryRecharge, DRecharged: c(10), DAvailable: c(10), Ref: "init"}),
			cp.Entry(ctx, storage.Entry{Seq: 2, Time: now, Service: "copied", Account: "tok", Kind: storage.EntryHold, DAvailable: -c(1), DHeld: c(1), Transaction: "f0"}),
			cp.Entry(ctx, storage.Entry{Seq: 3, Time: now, Service: "copied", Account: "tok", Kind: storage.EntryCapture, DHeld: -c(1), DCaptured: c(1), Transaction: "f0"}),
			cp.Entry(ctx, storage.Entry{Seq: 4, Time: now, Service: "copied", Account: "tok", Kind: storage.EntryHold, DAvailable: -c(2), DHeld: c(2), Transaction: hold}),
			cp.Transaction(ctx, storage.Transaction{Token: hold, Service: "copied", Account: "tok", State: storage.Held, Amount: c(2), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}),
			cp.Alert(ctx, storage.AlertNotice{ID: 1_700_000_000_000_000, Service: "copied", Account: "tok", Available: c(7), Threshold: c(8), At: now, NextTry: now.Add(time.Hour)}),
		} {
			if err != nil {
				return err
			}
		}
		if badEntry { // unbalanced: the schema refuses it
			return cp.Entry(ctx, storage.Entry{Seq: 5, Time: now, Service: "copied", Account: "tok", Kind: storage.EntryAdjustment, DRecharged: c(1)})
		}
		return nil
	}
	empty := func(what string) {
		t.Helper()
		if _, err := l.Service(ctx, "copied"); !storage.Is(err, storage.NotFound) {
			t.Fatalf("%s: the service is there (%v)", what, err)
		}
	}

	cp, err := l.BeginCopy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := write(cp, false); err != nil {
		t.Fatal(err)
	}
	cp.Rollback()
	empty("rolled back")

	cp, err = l.BeginCopy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = write(cp, true)
	if err == nil {
		err = cp.Commit(ctx)
	}
	if !storage.Is(err, storage.Internal) {
		t.Fatalf("an unbalanced entry: %v, want Internal", err)
	}
	cp.Rollback()
	empty("refused")

	cp, err = l.BeginCopy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := write(cp, false); err != nil {
		t.Fatal(err)
	}
	if err := cp.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if cp.Rows["iapd_entries"] != 4 || cp.Rows["iapd_accounts"] != 1 {
		t.Fatalf("rows written: %v", cp.Rows)
	}
	st, err := l.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Services["copied"]; s.Holds != 1 || s.Held != c(2) || s.Authorized != c(3) || s.Recharged != c(10) || s.Captured != c(1) {
		t.Fatalf("figures after the copy: %+v", s)
	}
	got, err := l.LookupAccount(ctx, "copied", "tok")
	if err != nil || got.Available != c(7) || got.Seq != 4 || got.Alerts.Recipients[0].Email != "a@example.com" {
		t.Fatalf("account after the copy: %+v, %v", got, err)
	}
	if _, err := l.ServiceByKey(ctx, storage.HashKey("k")); err != nil {
		t.Fatalf("the copied key: %v", err)
	}
	if tr, err := l.Capture(ctx, storage.CaptureRequest{Service: "copied", Transaction: hold}); err != nil || tr.Captured != c(2) {
		t.Fatalf("capture of a copied hold: %+v, %v", tr, err)
	}
	if h, err := l.History(ctx, "copied", "tok", storage.HistoryQuery{}); err != nil || len(h) != 5 || h[0].Seq != 5 {
		t.Fatalf("history after a capture: %d entries, %v", len(h), err)
	}
	// Below the threshold with the alert sent (copied disarmed): a recharge
	// re-arms, an adjustment crosses again, a new alert id follows the copied.
	if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "copied", Account: "tok", Amount: c(5), Kind: storage.EntryRecharge}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "copied", Account: "tok", Amount: -c(5), Kind: storage.EntryAdjustment}); err != nil {
		t.Fatal(err)
	}
	due, err := l.DueAlerts(ctx, now.Add(2*time.Hour), 10)
	if err != nil || len(due) != 2 || due[1].ID <= due[0].ID {
		t.Fatalf("alerts after the copy: %+v, %v", due, err)
	}
	if _, err := l.BeginCopy(ctx); !storage.Is(err, storage.Exists) {
		t.Fatalf("a copy into a ledger with accounts: %v, want Exists", err)
	}
}
