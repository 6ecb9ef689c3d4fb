package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
	"github.com/iapd/iapd/storage/postgres"
)

// TestLedgerCopy (issue 16): the upgrade path of README "Moving a Badger
// ledger to PostgreSQL", as written there. A Badger ledger built through
// the real ledger API and a real iapd (several services with keys,
// accounts in every state with alert settings, recharges, holds captured,
// cancelled, expired and open, vouchers redeemed and not, a queued
// low-credit alert, an SMS sent and charged) is copied with iapd ledger
// copy; a copy while iapd runs on the directory, and a second copy into
// the filled database, are refused. Then iapd serve -ledger URL answers
// every account with the figures Badger had, captures a hold authorized
// before the move, answers an SMS retried after the move as sent without
// charging again, and iapd verify is clean.
func TestLedgerCopy(t *testing.T) {
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	const pw = "c0py-secret"
	target := strings.Replace(pgSchema(t), "postgres://iapd@", "postgres://iapd:"+pw+"@", 1)
	cli := func(env map[string]string, args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := run(ctx, args, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errb)
		return out.String() + errb.String(), err
	}

	// 1. An iapd on Badger sends an SMS (records of the uuid, a capture);
	// a copy while it runs is refused and writes nothing.
	smsTok := randHex(16)
	smsUUID := "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
	sendSMS := func(p *abuseProc) string {
		t.Helper()
		res, rerr, err := p.Call("/api/sms/3/send", map[string]any{
			"account_token": smsTok, "dbuuid": "copy-db", "webhook_url": "http://127.0.0.1:1/sms/status",
			"messages": []any{map[string]any{"content": "Hello", "numbers": []any{map[string]any{"number": "+32470123456", "uuid": smsUUID}}}},
		}, time.Minute)
		if err != nil || rerr != nil {
			t.Fatalf("SMS send: %v %v", rerr, err)
		}
		return string(res)
	}
	bp := startAbuse(t, abuseOpts{Data: data})
	if err := bp.Admin.call(ctx, "POST", "/v1/account/credit", nil, map[string]any{
		"service": "sms", "token": smsTok, "amount": json.Number("10"),
	}, nil); err != nil {
		t.Fatal(err)
	}
	if res := sendSMS(bp); !strings.Contains(res, `"success"`) {
		t.Fatalf("SMS on Badger: %s", res)
	}
	if out, err := cli(nil, "ledger", "copy", "-from", data, "-to", target); err == nil || !strings.Contains(out+err.Error(), "in use") {
		t.Fatalf("copy of a ledger in use: %v\n%s; want a refusal", err, out)
	}
	bp.Stop()

	// 2. The rest through the ledger API, iapd stopped.
	l, err := badger.Open(badger.Options{Dir: data})
	if err != nil {
		t.Fatal(err)
	}
	key := "copy-key-" + randHex(16)
	svcs := []storage.Service{
		{Name: "copya", AutoRegister: true, TrialCredits: 5 * storage.Scale, Description: "A", UnitName: "Credits"},
		{Name: "copyb", AutoRegister: false, Description: "B", UnitName: "Stamps"},
	}
	for _, s := range svcs {
		if _, err := l.EnsureService(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.SetServiceKey(ctx, "copya", storage.HashKey(key)); err != nil {
		t.Fatal(err)
	}
	if err := l.SetServiceKey(ctx, "copyb", storage.HashKey("other-"+key)); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	c := func(n int64) storage.Credits { return storage.Credits(n * storage.Scale) }
	var accts []storage.Account
	var openHold string
	for i := 0; i < 6; i++ {
		for _, svc := range []storage.ServiceName{"copya", "copyb"} {
			tok := storage.AccountToken(randHex(16))
			_, err := l.Recharge(ctx, storage.RechargeRequest{Service: svc, Account: tok, Amount: c(60 + int64(i)), Kind: storage.EntryRecharge, Ref: "init"})
			must(err)
			auth := func(n int64, ttl time.Duration) storage.Transaction {
				tr, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: svc, Account: tok, Amount: c(n), TTL: ttl})
				must(err)
				return tr
			}
			_, err = l.Capture(ctx, storage.CaptureRequest{Service: svc, Transaction: auth(3, time.Hour).Token})
			must(err)
			part := c(2)
			_, err = l.Capture(ctx, storage.CaptureRequest{Service: svc, Transaction: auth(4, time.Hour).Token, Amount: &part})
			must(err)
			_, err = l.Cancel(ctx, svc, auth(1, time.Hour).Token)
			must(err)
			auth(2, time.Millisecond) // expires below
			if tr := auth(5, 24*time.Hour); openHold == "" && svc == "copya" {
				openHold = tr.Token
			}
			if i == 0 {
				th := c(55)
				_, err = l.UpdateAccount(ctx, svc, tok, storage.AccountUpdate{Alerts: &storage.Alerts{Enabled: true, Threshold: th,
					Recipients: []storage.Recipient{{Email: "billing@example.com", Lang: "fr_BE"}}}})
				must(err)
				_, err = l.Recharge(ctx, storage.RechargeRequest{Service: svc, Account: tok, Amount: -c(5), Kind: storage.EntryAdjustment, Description: "cross"})
				must(err)
			}
			if i == 1 {
				banned := storage.Banned
				_, err = l.UpdateAccount(ctx, svc, tok, storage.AccountUpdate{State: &banned})
				must(err)
			}
			accts = append(accts, storage.Account{Service: svc, Token: tok})
		}
	}
	time.Sleep(10 * time.Millisecond)
	if n, err := l.ExpireDue(ctx, time.Now(), 100); err != nil || n != 12 {
		t.Fatalf("expired %d holds (%v), want 12", n, err)
	}
	var vs []storage.Voucher
	for i := 0; i < 4; i++ {
		vs = append(vs, storage.Voucher{CodeHash: storage.HashKey("code-" + randHex(8)), Service: "copya", Amount: c(7), Batch: "copy"})
	}
	must(l.CreateVouchers(ctx, vs))
	_, _, err = l.RedeemVoucher(ctx, vs[0].CodeHash, "copya", accts[2].Token, time.Now())
	must(err)
	must(l.PutRecord(ctx, "copy-test", "forever", []byte("v1"), time.Time{}))
	must(l.PutRecord(ctx, "copy-test", "later", []byte("v2"), time.Now().Add(time.Hour)))
	// The figures as Badger has them, SMS account included.
	accts = append(accts, storage.Account{Service: "sms", Token: storage.AccountToken(smsTok)})
	for i, a := range accts {
		accts[i], err = l.LookupAccount(ctx, a.Service, a.Token)
		must(err)
	}
	alerts, err := l.DueAlerts(ctx, time.Now().Add(time.Hour), 100)
	must(err)
	if len(alerts) == 0 {
		t.Fatal("no alert queued in Badger")
	}
	must(l.Close())

	// 3. The copy, as the README says, into a database where a node
	// started once (its built-in services get Badger's); a directory that
	// holds no ledger and a second copy are refused.
	pn := startAbuse(t, abuseOpts{Args: []string{"-ledger", target}})
	pn.Stop()
	if out, err := cli(nil, "ledger", "copy", "-from", t.TempDir(), "-to", target); err == nil || !strings.Contains(out+err.Error(), "no Badger ledger") {
		t.Fatalf("copy of an empty directory: %v\n%s; want a refusal", err, out)
	}
	out, err := cli(nil, "ledger", "copy", "-from", data, "-to", target)
	if err != nil {
		t.Fatalf("iapd ledger copy: %v\n%s", err, out)
	}
	if !strings.Contains(out, "totals checked: equal") || strings.Contains(out, pw) {
		t.Fatalf("iapd ledger copy said:\n%s", out)
	}
	t.Logf("iapd ledger copy:\n%s", out)
	if out2, err := cli(nil, "ledger", "copy", "-from", data, "-to", target); err == nil || !strings.Contains(out2+err.Error(), "not empty") {
		t.Fatalf("a second copy: %v\n%s; want a refusal", err, out2)
	}

	// What no node alters before it is read: vouchers, queued alerts, records.
	pl, err := postgres.Open(ctx, postgres.Options{URL: target})
	must(err)
	pvs, err := pl.ListVouchers(ctx, storage.VoucherFilter{Service: "copya"})
	must(err)
	redeemed := 0
	for _, v := range pvs {
		if v.Redeemed() {
			redeemed++
			if v.RedeemedBy != accts[2].Token {
				t.Fatalf("voucher redeemed by %s", v.RedeemedBy)
			}
		}
	}
	if len(pvs) != 4 || redeemed != 1 {
		t.Fatalf("vouchers in PostgreSQL: %d, %d redeemed; want 4, 1", len(pvs), redeemed)
	}
	palerts, err := pl.DueAlerts(ctx, time.Now().Add(time.Hour), 100)
	must(err)
	if len(palerts) != len(alerts) || palerts[0].ID != alerts[0].ID || palerts[0].Recipients[0] != alerts[0].Recipients[0] {
		t.Fatalf("alerts in PostgreSQL %+v, in Badger %+v", palerts, alerts)
	}
	recs, err := pl.ListRecords(ctx, "copy-test", "", 10)
	must(err)
	if len(recs) != 2 || string(recs[0].Value) != "v1" || recs[1].Expires.IsZero() {
		t.Fatalf("records in PostgreSQL: %+v", recs)
	}
	_, _, err = pl.RedeemVoucher(ctx, vs[0].CodeHash, "copya", accts[3].Token, time.Now())
	if !storage.Is(err, storage.Conflict) {
		t.Fatalf("a voucher redeemed on Badger, again on PostgreSQL: %v; want Conflict", err)
	}
	must(pl.Close())

	// 4. A node on the copy: the same balances, the open hold captured,
	// the SMS retried not charged again, verify clean.
	p := startAbuse(t, abuseOpts{Args: []string{"-ledger", target}})
	for _, want := range accts {
		got := pgAccount(t, p, string(want.Service), string(want.Token))
		if got.State != want.State || got.Recharged != want.Recharged || got.Available != want.Available ||
			got.Held != want.Held || got.Captured != want.Captured || got.Seq != want.Seq {
			t.Fatalf("account of %s after the copy: %+v; Badger had %+v", want.Service, got, want)
		}
	}
	if _, rerr, err := p.Call("/iap/1/capture", map[string]any{"token": openHold, "key": key}, time.Minute); err != nil || rerr != nil {
		t.Fatalf("capture of a hold authorized before the move: %v %v", rerr, err)
	}
	if a := pgAccount(t, p, string(accts[0].Service), string(accts[0].Token)); a.Captured != accts[0].Captured+c(5) || a.Held != accts[0].Held-c(5) {
		t.Fatalf("after the capture: %+v (before %+v)", a, accts[0])
	}
	smsBefore := pgAccount(t, p, "sms", smsTok)
	if res := sendSMS(p); !strings.Contains(res, `"success"`) {
		t.Fatalf("SMS retried after the move: %s", res)
	}
	if a := pgAccount(t, p, "sms", smsTok); a.Captured != smsBefore.Captured || a.Held != 0 {
		t.Fatalf("SMS retried after the move charged again: %+v, before %+v", a, smsBefore)
	}
	env := map[string]string{"IAPD_ADMIN_TOKEN": p.Token, "IAPD_OPS": strings.TrimPrefix(p.Ops, "http://")}
	if out, err := cli(env, "verify"); err != nil || !strings.Contains(out, "ok: no problem found") {
		t.Fatalf("iapd verify after the copy: %v\n%s", err, out)
	}
	p.Stop()
}
