package badger

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/storagetest"
)

// extrasOpener opens ledgers on disk for storagetest.RunExtras.
func extrasOpener(t *testing.T, now func() time.Time) (storagetest.Extras, func() storagetest.Extras) {
	dir := t.TempDir()
	l := openTemp(t, dir, now, nil)
	return l, func() storagetest.Extras {
		t.Helper()
		if err := l.Close(); err != nil {
			t.Fatalf("close before reopen: %v", err)
		}
		l = openTemp(t, dir, now, nil)
		return l
	}
}

func TestConformanceExtras(t *testing.T) {
	storagetest.RunExtras(t, extrasOpener)
}

// populateExtras adds to populate's ledger a voucher redeemed by tokA and
// one unused, a queued alert (tokA's sms account taken below its
// threshold of 10), and bookkeeping records with and without expiry.
func populateExtras(t testing.TB, l *Ledger, clock *fakeClock) (redeemed storage.Voucher, alert storage.AlertNotice) {
	t.Helper()
	ctx := context.Background()
	now := clock.now()
	if err := l.CreateVouchers(ctx, []storage.Voucher{
		{CodeHash: storage.HashKey("V-1"), Service: "sms", Amount: 5 * storage.Scale, Batch: "populate"},
		{CodeHash: storage.HashKey("V-2"), Service: "geocoding", Amount: storage.Scale, ExpiresAt: now.Add(24 * time.Hour)},
	}); err != nil {
		t.Fatal(err)
	}
	redeemed, _, err := l.RedeemVoucher(ctx, storage.HashKey("V-1"), "sms", tokA, now)
	if err != nil {
		t.Fatal(err)
	}
	// tokA: 80.5 available + 5 from the voucher; down to 5.5, below 10.
	if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: tokA, Amount: -80 * storage.Scale, Kind: storage.EntryAdjustment}); err != nil {
		t.Fatal(err)
	}
	due, err := l.DueAlerts(ctx, clock.now(), 10)
	if err != nil || len(due) != 1 || due[0].Account != tokA || due[0].Available != 55000 {
		t.Fatalf("alerts after populateExtras: %+v, %v", due, err)
	}
	for _, r := range []struct {
		ns, key string
		exp     time.Time
	}{{"sms.uuid", "u-1", time.Time{}}, {"sms.dlr", "m-1", now.Add(48 * time.Hour)}, {"sms.dlr", "m-2", now.Add(time.Hour)}} {
		if err := l.PutRecord(ctx, r.ns, r.key, []byte("value of "+r.key), r.exp); err != nil {
			t.Fatal(err)
		}
	}
	return redeemed, due[0]
}

// TestExtrasBackupVerify: vouchers, alerts and records are verified,
// backed up and restored with the ledger.
func TestExtrasBackupVerify(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	l := openTemp(t, t.TempDir(), clock.now, nil)
	populate(t, l, clock)
	redeemed, alert := populateExtras(t, l, clock)
	at := clock.now()
	r := verifyAt(t, l, at, 0)
	if !r.Clean() || r.Warnings != 0 || r.Vouchers != 2 || r.Alerts != 1 || r.Records != 3 {
		t.Fatalf("verify: %+v\n%s", r, problemsString(r))
	}
	file, info := backupOf(t, l)
	if c := info.Counts; c.Vouchers != 2 || c.Alerts != 1 || c.Records != 3 {
		t.Fatalf("backup counts: %+v", c)
	}
	dir := filepath.Join(t.TempDir(), "restored")
	if _, err := Restore(ctx, Options{Dir: dir}, bytes.NewReader(file)); err != nil {
		t.Fatal(err)
	}
	l2 := openTemp(t, dir, clock.now, nil)
	want, got := dump(t, l), dump(t, l2)
	if len(want) != len(got) {
		t.Fatalf("restored %d keys of %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("key %q: restored %q, source %q", k, got[k], v)
		}
	}
	if r := verifyAt(t, l2, at, 0); !r.Clean() || r.Warnings != 0 || r.Vouchers != 2 || r.Alerts != 1 || r.Records != 3 {
		t.Fatalf("verify restored: %+v\n%s", r, problemsString(r))
	}
	if _, _, err := l2.RedeemVoucher(ctx, redeemed.CodeHash, "sms", tokB, at); !storage.Is(err, storage.Conflict) {
		t.Fatalf("redeeming a restored redeemed voucher: %v", err)
	}
	if due, err := l2.DueAlerts(ctx, at, 10); err != nil || len(due) != 1 || !reflect.DeepEqual(due[0], alert) {
		t.Fatalf("restored alerts: %+v, %v (want %+v)", due, err, alert)
	}
	if v, err := l2.GetRecord(ctx, "sms.dlr", "m-1"); err != nil || string(v) != "value of m-1" {
		t.Fatalf("restored record: %q, %v", v, err)
	}
	// The restored ledger queues alerts with ids above the restored ones.
	if _, err := l2.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: tokA, Amount: 10 * storage.Scale, Kind: storage.EntryRecharge}); err != nil {
		t.Fatal(err)
	}
	if _, err := l2.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: tokA, Amount: -10 * storage.Scale, Kind: storage.EntryAdjustment}); err != nil {
		t.Fatal(err)
	}
	due, err := l2.DueAlerts(ctx, clock.now(), 10)
	if err != nil || len(due) != 2 || due[1].ID <= alert.ID {
		t.Fatalf("alerts after a new crossing: %+v, %v", due, err)
	}
	// Export walks entries only: the voucher's recharge is one of them.
	var refs []string
	if err := l2.Export(ctx, ExportFilter{Service: "sms", Account: tokA}, func(e storage.Entry) error {
		refs = append(refs, e.Ref)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(refs, "voucher:"+hex.EncodeToString(redeemed.CodeHash[:8])) {
		t.Fatalf("exported refs %q lack the voucher's", refs)
	}
}

// TestVerifyExtrasCorruption damages vouchers, alerts, the alert state and
// records one way at a time.
func TestVerifyExtrasCorruption(t *testing.T) {
	clock := newFakeClock()
	l := openTemp(t, t.TempDir(), clock.now, nil)
	populate(t, l, clock)
	redeemed, alert := populateExtras(t, l, clock)
	at := clock.now()

	// A redeemed voucher whose entry went missing, and one of an unknown
	// service.
	bad := redeemed
	bad.CodeHash = storage.HashKey("V-ghost")
	bad.Entry = 999
	rawSet(t, l, voucherKey(bad.CodeHash), encodeVoucher(&bad))
	lost := storage.Voucher{CodeHash: storage.HashKey("V-lost"), Service: "gone", Amount: 1}
	rawSet(t, l, voucherKey(lost.CodeHash), encodeVoucher(&lost))
	// An alert of an account that does not exist.
	orphan := alert
	orphan.ID, orphan.Account = alert.ID+1, "nobody"
	rawSet(t, l, alertKey(orphan.ID), encodeAlert(&orphan))
	// tokB's sms account disarmed while at its threshold (0).
	rawDrain(t, l)
	if err := l.db.Update(func(txn *badger.Txn) error {
		a, _, err := getAccount(txn, "sms", tokB)
		if err != nil {
			return err
		}
		a.alertSent = true
		return txn.Set(accountKey("sms", tokB), encodeAccount(&a))
	}); err != nil {
		t.Fatal(err)
	}
	// A record that lost its index entry, an index entry without record.
	var m1 time.Time
	rawDrain(t, l)
	if err := l.db.View(func(txn *badger.Txn) (err error) {
		m1, _, _, err = getRecord(txn, "sms.dlr", "m-1")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	rawDelete(t, l, recordExpiryKey(m1, "sms.dlr", "m-1"))
	rawSet(t, l, recordExpiryKey(at, "sms.dlr", "nothing"), nil)
	// A voucher record that does not decode.
	rawSet(t, l, voucherKey(storage.HashKey("V-junk")), []byte{formatV1, 0xff})

	r := verifyAt(t, l, at, 0)
	findProblem(t, r, CheckVoucher, "sms", tokA, "which does not exist")
	findProblem(t, r, CheckVoucher, "gone", "", "service that does not exist")
	findProblem(t, r, CheckAlert, "sms", "nobody", "does not exist")
	if p := findProblem(t, r, CheckAlertState, "sms", tokB, "disarmed"); p.Severity != SeverityWarning {
		t.Fatalf("alert state: %+v", p)
	}
	findProblem(t, r, CheckRecordIndex, "", "", "missing from the record expiry index")
	if p := findProblem(t, r, CheckRecordIndex, "", "", "of a record that does not exist"); p.Severity != SeverityWarning {
		t.Fatalf("orphan record index: %+v", p)
	}
	findProblem(t, r, CheckRecord, "", "", "voucher voucher:")
	if r.Errors != 5 || r.Warnings != 2 {
		t.Fatalf("%d errors, %d warnings:\n%s", r.Errors, r.Warnings, problemsString(r))
	}
}

// TestFormat1AccountsArmed: the v0 fixture's account records (record
// format 1) decode with their alert armed; the account with alerts
// (threshold 10) queues one alert when it first goes below, then no more.
func TestFormat1AccountsArmed(t *testing.T) {
	ctx := context.Background()
	dir := copyDir(t, filepath.Join("testdata", "v0"))
	fixtureEnd := time.Date(2025, 6, 1, 12, 2, 22, 0, time.UTC)
	l := openTemp(t, dir, func() time.Time { return fixtureEnd }, nil)
	if err := l.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(accountKey("sms", tokA))
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error {
			if b[0] != formatV1 {
				t.Errorf("fixture account in record format %d", b[0])
			}
			a, err := decodeAcct(b, "sms", tokA)
			if err == nil && a.alertSent {
				t.Error("a format 1 account decoded disarmed")
			}
			return err
		})
	}); err != nil {
		t.Fatal(err)
	}
	adjust := func(amount storage.Credits) {
		t.Helper()
		if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: tokA, Amount: amount, Kind: storage.EntryAdjustment}); err != nil {
			t.Fatal(err)
		}
	}
	adjust(-75 * storage.Scale) // 80.5 → 5.5
	adjust(-storage.Scale)
	due, err := l.DueAlerts(ctx, fixtureEnd, 10)
	if err != nil || len(due) != 1 || due[0].Available != 55000 || due[0].Threshold != 10*storage.Scale ||
		len(due[0].Recipients) != 1 || due[0].Recipients[0].Email != "ops@example.com" {
		t.Fatalf("alerts: %+v, %v", due, err)
	}
	if r := verifyAt(t, l, fixtureEnd, 0); !r.Clean() || r.Warnings != 0 || r.Alerts != 1 {
		t.Fatalf("verify: %+v\n%s", r, problemsString(r))
	}
}

// TestVoucherBatchTooBig: with the smallest memtable, a batch too big for
// one Badger txn is Invalid and stores nothing; a smaller one is stored.
func TestVoucherBatchTooBig(t *testing.T) {
	ctx := context.Background()
	l := openTemp(t, t.TempDir(), nil, func(o *Options) { o.MemTableSize = MinMemTableSize })
	if _, err := l.EnsureService(ctx, storage.Service{Name: "sms"}); err != nil {
		t.Fatal(err)
	}
	batch := func(n int, prefix string) []storage.Voucher {
		vs := make([]storage.Voucher, n)
		for i := range vs {
			vs[i] = storage.Voucher{CodeHash: storage.HashKey(fmt.Sprintf("%s-%d", prefix, i)), Service: "sms", Amount: 1, Batch: strings.Repeat("b", 200)}
		}
		return vs
	}
	err := l.CreateVouchers(ctx, batch(2000, "big"))
	if !storage.Is(err, storage.Invalid) || !strings.Contains(err.Error(), "split the batch") {
		t.Fatalf("a batch of 2000: %v", err)
	}
	if vs, err := l.ListVouchers(ctx, storage.VoucherFilter{Limit: 10}); err != nil || len(vs) != 0 {
		t.Fatalf("a refused batch stored %d vouchers (%v)", len(vs), err)
	}
	if err := l.CreateVouchers(ctx, batch(50, "small")); err != nil {
		t.Fatal(err)
	}
	if err := l.Check(); err != nil {
		t.Fatalf("the ledger after a refused batch: %v", err)
	}
}
