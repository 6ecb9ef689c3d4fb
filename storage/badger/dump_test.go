package badger

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
)

// TestDump: Dump gives every kind of record once, in its order (services,
// accounts, entries, transactions, vouchers, alerts, records), each as
// stored (an account's alert state included), skips expired records, and
// stops at the visitor's error, returning it as is.
func TestDump(t *testing.T) {
	ctx := context.Background()
	clock := time.Now()
	l, err := Open(Options{InMemory: true, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err = l.EnsureService(ctx, storage.Service{Name: "svc", AutoRegister: true})
	must(err)
	c := storage.Credits(storage.Scale)
	_, err = l.Recharge(ctx, storage.RechargeRequest{Service: "svc", Account: "tok", Amount: 10 * c, Kind: storage.EntryRecharge})
	must(err)
	_, err = l.UpdateAccount(ctx, "svc", "tok", storage.AccountUpdate{Alerts: &storage.Alerts{Enabled: true, Threshold: 9 * c}})
	must(err)
	tr, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: "svc", Account: "tok", Amount: 2 * c, TTL: time.Hour}) // crosses: alert queued
	must(err)
	must(l.CreateVouchers(ctx, []storage.Voucher{{CodeHash: storage.HashKey("v"), Service: "svc", Amount: c}}))
	must(l.PutRecord(ctx, "ns", "live", []byte("x"), time.Time{}))
	must(l.PutRecord(ctx, "ns", "dying", []byte("y"), clock.Add(time.Minute)))
	clock = clock.Add(2 * time.Minute)

	var order []string
	var sent bool
	seen := map[string]int{}
	note := func(kind string) {
		if len(order) == 0 || order[len(order)-1] != kind {
			order = append(order, kind)
		}
		seen[kind]++
	}
	err = l.Dump(ctx, DumpVisitor{
		Service:     func(storage.Service) error { note("service"); return nil },
		Account:     func(a storage.Account, alertSent bool) error { note("account"); sent = alertSent; return nil },
		Entry:       func(storage.Entry) error { note("entry"); return nil },
		Transaction: func(x storage.Transaction) error { note("transaction"); return errIf(x.Token != tr.Token) },
		Voucher:     func(storage.Voucher) error { note("voucher"); return nil },
		Alert:       func(storage.AlertNotice) error { note("alert"); return nil },
		Record: func(ns string, r storage.Record) error {
			note("record")
			return errIf(ns != "ns" || r.Key != "live" || string(r.Value) != "x")
		},
	})
	must(err)
	want := []string{"service", "account", "entry", "transaction", "voucher", "alert", "record"}
	if len(order) != len(want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("order %v, want %v", order, want)
		}
	}
	if seen["entry"] != 2 || seen["record"] != 1 || seen["alert"] != 1 || !sent {
		t.Fatalf("seen %v, alert sent %v", seen, sent)
	}
	stop := errors.New("stop")
	if err := l.Dump(ctx, DumpVisitor{Entry: func(storage.Entry) error { return stop }}); err != stop {
		t.Fatalf("a visitor's error: %v", err)
	}
}

func errIf(b bool) error {
	if b {
		return errors.New("unexpected record")
	}
	return nil
}
