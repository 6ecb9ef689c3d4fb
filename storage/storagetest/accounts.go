package storagetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
)

func testAccountsByToken(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", true, cr(1))
	e.service("reveal", false, 0)
	e.service("snailmail", true, 0)
	res(l.Account(ctx, "sms", "shared", storage.FirstSight{})).must(t)
	res(l.Account(ctx, "reveal", "shared", storage.FirstSight{})).must(t)
	res(l.Account(ctx, "snailmail", "other", storage.FirstSight{})).must(t)

	got := res(l.AccountsByToken(ctx, "shared")).must(t)
	if len(got) != 2 || got[0].Service != "reveal" || got[1].Service != "sms" ||
		got[0].State != storage.Unregistered || got[1].Available != cr(1) {
		t.Fatalf("AccountsByToken(shared) = %+v", got)
	}
	none, err := l.AccountsByToken(ctx, "nobody")
	if err != nil || len(none) != 0 {
		t.Fatalf("AccountsByToken(nobody) = %v, %v; want empty, nil", none, err)
	}
}

// testTokenByHash: the hashed form of a token (Odoo 19's credit links,
// PROTOCOL §4.7) finds the token of an account of any service, created
// by any route, as soon as the creation returned; not a token without an
// account, nor an account that was never created because the call failed.
func testTokenByHash(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", true, cr(1))
	e.service("reveal", false, 0)
	res(l.Account(ctx, "sms", "shared", storage.FirstSight{})).must(t)
	res(l.Account(ctx, "reveal", "shared", storage.FirstSight{})).must(t)
	res(l.Recharge(ctx, storage.RechargeRequest{Service: "reveal", Account: "bought", Amount: cr(5), Kind: storage.EntryRecharge})).must(t)
	if _, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: "reveal", Account: "refused", Amount: cr(1), TTL: time.Minute}); err == nil {
		t.Fatal("authorize on an unregistered account succeeded")
	}
	for _, tok := range []storage.AccountToken{"shared", "bought", "refused"} {
		got, err := l.TokenByHash(ctx, storage.HashToken(tok))
		if err != nil || got != tok {
			t.Fatalf("TokenByHash(hash of %s) = %q, %v", tok, got, err)
		}
	}
	for _, tok := range []storage.AccountToken{"nobody", "share", "shared2"} {
		if got, err := l.TokenByHash(ctx, storage.HashToken(tok)); !storage.Is(err, storage.NotFound) {
			t.Fatalf("TokenByHash(hash of %s) = %q, %v; want NotFound", tok, got, err)
		}
	}
	if _, err := l.Account(ctx, "nope", "ghost", storage.FirstSight{}); err == nil {
		t.Fatal("account of an unknown service created")
	}
	if got, err := l.TokenByHash(ctx, storage.HashToken("ghost")); !storage.Is(err, storage.NotFound) {
		t.Fatalf("TokenByHash(hash of ghost) = %q, %v; want NotFound", got, err)
	}
}

func testAccountsPaging(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("aaa", true, 0)
	e.service("bbb", false, 0)
	for i := 0; i < 105; i++ {
		tok := fmt.Sprintf("t%03d", (i*37)%105) // created out of order
		res(l.Account(ctx, "aaa", storage.AccountToken(tok), storage.FirstSight{})).must(t)
	}
	res(l.Account(ctx, "bbb", "x1", storage.FirstSight{})).must(t)
	res(l.Account(ctx, "bbb", "x2", storage.FirstSight{})).must(t)
	res(l.UpdateAccount(ctx, "bbb", "x2", storage.AccountUpdate{State: ptr(storage.Registered)})).must(t)

	def := res(l.Accounts(ctx, storage.AccountFilter{Service: "aaa"})).must(t)
	if len(def) != 100 || def[0].Token != "t000" || def[99].Token != "t099" {
		t.Fatalf("default page: %d accounts, first %v", len(def), def[0].Token)
	}
	// Page through aaa by 40.
	var seen []string
	after := storage.AccountToken("")
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		page := res(l.Accounts(ctx, storage.AccountFilter{Service: "aaa", After: after, Limit: 40})).must(t)
		for _, a := range page {
			if a.Service != "aaa" {
				t.Fatalf("page holds %s/%s", a.Service, a.Token)
			}
			seen = append(seen, string(a.Token))
		}
		if len(page) < 40 {
			break
		}
		after = page[len(page)-1].Token
	}
	if len(seen) != 105 {
		t.Fatalf("paged %d accounts, want 105", len(seen))
	}
	for i, tok := range seen {
		if want := fmt.Sprintf("t%03d", i); tok != want {
			t.Fatalf("page order: position %d is %s, want %s", i, tok, want)
		}
	}
	// After a token that does not exist continues at the next one.
	page := res(l.Accounts(ctx, storage.AccountFilter{Service: "aaa", After: "t0505", Limit: 2})).must(t)
	if len(page) != 2 || page[0].Token != "t051" || page[1].Token != "t052" {
		t.Fatalf("after t0505: %+v", page)
	}

	all := res(l.Accounts(ctx, storage.AccountFilter{Limit: 1000})).must(t)
	if len(all) != 107 || all[0].Service != "aaa" || all[105].Service != "bbb" || all[106].Token != "x2" {
		t.Fatalf("all services: %d accounts", len(all))
	}
	unreg := res(l.Accounts(ctx, storage.AccountFilter{State: storage.Unregistered})).must(t)
	if len(unreg) != 1 || unreg[0].Service != "bbb" || unreg[0].Token != "x1" {
		t.Fatalf("unregistered: %+v", unreg)
	}
	reg := res(l.Accounts(ctx, storage.AccountFilter{Service: "bbb", State: storage.Registered})).must(t)
	if len(reg) != 1 || reg[0].Token != "x2" {
		t.Fatalf("bbb registered: %+v", reg)
	}
	if none := res(l.Accounts(ctx, storage.AccountFilter{Service: "ccc"})).must(t); len(none) != 0 {
		t.Fatalf("unknown service lists %d accounts", len(none))
	}

	_, err := l.Accounts(ctx, storage.AccountFilter{After: "t001"})
	wantKind(t, err, storage.Invalid, "After without Service")
	_, err = l.Accounts(ctx, storage.AccountFilter{State: "gone"})
	wantKind(t, err, storage.Invalid, "unknown state")
}

func testUpdateAccount(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", true, cr(3))
	_, err := l.UpdateAccount(ctx, "sms", "tok", storage.AccountUpdate{State: ptr(storage.Banned)})
	wantKind(t, err, storage.NotFound, "update of absent account")
	if _, err := l.LookupAccount(ctx, "sms", "tok"); !storage.Is(err, storage.NotFound) {
		t.Fatalf("update created the account: %v", err)
	}
	res(l.Account(ctx, "sms", "tok", storage.FirstSight{})).must(t)

	_, err = l.UpdateAccount(ctx, "sms", "tok", storage.AccountUpdate{State: ptr(storage.AccountState("disabled"))})
	wantKind(t, err, storage.Invalid, "unknown state")
	_, err = l.UpdateAccount(ctx, "sms", "tok", storage.AccountUpdate{Alerts: &storage.Alerts{Threshold: -1}})
	wantKind(t, err, storage.Invalid, "negative threshold")

	e.clock.Advance(time.Hour)
	alerts := storage.Alerts{Enabled: true, Threshold: cr(2), Recipients: []storage.Recipient{
		{Email: "a@example.com", Lang: "fr_BE"}, {Email: "b@example.com"},
	}}
	a := res(l.UpdateAccount(ctx, "sms", "tok", storage.AccountUpdate{Alerts: &alerts, SenderName: ptr("ACME")})).must(t)
	check := func(a storage.Account, state storage.AccountState, sender string) {
		t.Helper()
		if a.State != state || a.SenderName != sender || !a.Alerts.Enabled || a.Alerts.Threshold != cr(2) ||
			len(a.Alerts.Recipients) != 2 || a.Alerts.Recipients[0] != alerts.Recipients[0] ||
			a.Alerts.Recipients[1] != alerts.Recipients[1] || a.Available != cr(3) || a.Seq != 1 {
			t.Fatalf("account %+v", a)
		}
	}
	check(a, storage.Registered, "ACME")
	if !a.UpdatedAt.Equal(e.clock.Now()) {
		t.Fatalf("UpdatedAt %v, want %v", a.UpdatedAt, e.clock.Now())
	}
	check(e.lookup("sms", "tok"), storage.Registered, "ACME")

	// Nil fields are left alone.
	a = res(l.UpdateAccount(ctx, "sms", "tok", storage.AccountUpdate{State: ptr(storage.Banned)})).must(t)
	check(a, storage.Banned, "ACME")
	check(e.lookup("sms", "tok"), storage.Banned, "ACME")
	_, err = l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: "tok", Amount: cr(1), TTL: time.Hour})
	wantKind(t, err, storage.Forbidden, "authorize on banned account")
	a = res(l.UpdateAccount(ctx, "sms", "tok", storage.AccountUpdate{})).must(t)
	check(a, storage.Banned, "ACME")

	a = res(l.UpdateAccount(ctx, "sms", "tok", storage.AccountUpdate{State: ptr(storage.Registered), SenderName: ptr("")})).must(t)
	check(a, storage.Registered, "")
	e.authorize("sms", "tok", cr(1), time.Hour)
	audit(t, l, "sms", "tok")
}

func testRecharge(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", false, cr(7)) // no auto_register: Recharge registers anyway, no trial
	e.service("auto", true, cr(7))

	en := res(l.Recharge(ctx, storage.RechargeRequest{
		Service: "sms", Account: "tok", Amount: cr(10), Kind: storage.EntryRecharge, Description: "pack 10",
	})).must(t)
	if en.Kind != storage.EntryRecharge || en.DRecharged != cr(10) || en.DAvailable != cr(10) || en.DHeld != 0 ||
		en.DCaptured != 0 || en.Seq != 1 || en.Service != "sms" || en.Account != "tok" || en.Description != "pack 10" ||
		!en.Time.Equal(e.clock.Now()) || en.Amount() != cr(10) {
		t.Fatalf("entry %+v", en)
	}
	a := e.figures("sms", "tok", cr(10), cr(10), 0, 0)
	if a.State != storage.Registered || a.Seq != 1 {
		t.Fatalf("created by recharge: %+v", a)
	}
	e.recharge("sms", "tok", 1) // the smallest amount: 0.0001
	e.figures("sms", "tok", cr(10)+1, cr(10)+1, 0, 0)

	// On an auto-registering service the account gets its trial first.
	en = res(l.Recharge(ctx, storage.RechargeRequest{Service: "auto", Account: "tok", Amount: cr(1), Kind: storage.EntryRecharge})).must(t)
	if en.Seq != 2 {
		t.Fatalf("recharge after trial has Seq %d", en.Seq)
	}
	e.figures("auto", "tok", cr(8), cr(8), 0, 0)

	// An existing unregistered account stays unregistered.
	e.service("manual", false, 0)
	res(l.Account(ctx, "manual", "u", storage.FirstSight{})).must(t)
	e.recharge("manual", "u", cr(1))
	if a := e.lookup("manual", "u"); a.State != storage.Unregistered || a.Available != cr(1) {
		t.Fatalf("recharge of unregistered account: %+v", a)
	}

	for _, r := range []storage.RechargeRequest{
		{Amount: 0, Kind: storage.EntryRecharge},
		{Amount: -1, Kind: storage.EntryRecharge},
		{Amount: storage.MaxCredits + 1, Kind: storage.EntryRecharge},
		{Amount: 0, Kind: storage.EntryAdjustment},
		{Amount: -storage.MaxCredits - 1, Kind: storage.EntryAdjustment},
		{Amount: cr(1), Kind: storage.EntryHold},
		{Amount: cr(1), Kind: ""},
		{Amount: cr(1), Kind: storage.EntryRecharge, Ref: "trial"},
	} {
		r.Service, r.Account = "sms", "tok"
		_, err := l.Recharge(ctx, r)
		wantKind(t, err, storage.Invalid, fmt.Sprintf("recharge %+v", r))
	}
	_, err := l.Recharge(ctx, storage.RechargeRequest{Service: "nope", Account: "tok", Amount: cr(1), Kind: storage.EntryRecharge})
	wantKind(t, err, storage.NotFound, "recharge on unknown service")
	if en := e.recharge("sms", "big", storage.MaxCredits); en.DRecharged != storage.MaxCredits {
		t.Fatalf("MaxCredits recharge: %+v", en)
	}
	e.figures("sms", "tok", cr(10)+1, cr(10)+1, 0, 0)
	audit(t, l, "sms", "tok")
	audit(t, l, "auto", "tok")
}

func testRechargeRef(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", true, cr(1))
	req := storage.RechargeRequest{Service: "sms", Account: "tok", Amount: cr(5), Kind: storage.EntryRecharge, Ref: "order-1"}
	first := res(l.Recharge(ctx, req)).must(t)
	if first.Ref != "order-1" || first.Seq != 2 {
		t.Fatalf("first: %+v", first)
	}
	e.clock.Advance(time.Minute)
	again := res(l.Recharge(ctx, storage.RechargeRequest{
		Service: "sms", Account: "tok", Amount: cr(5), Kind: storage.EntryRecharge, Ref: "order-1", Description: "retry",
	})).must(t)
	if again.Seq != first.Seq || !again.Time.Equal(first.Time) || again.DRecharged != first.DRecharged || again.Description != first.Description {
		t.Fatalf("retry returned %+v, want %+v", again, first)
	}
	e.figures("sms", "tok", cr(6), cr(6), 0, 0)

	other := req
	other.Amount = cr(6)
	_, err := l.Recharge(ctx, other)
	wantKind(t, err, storage.Conflict, "same ref, other amount")
	other = req
	other.Kind = storage.EntryAdjustment
	_, err = l.Recharge(ctx, other)
	wantKind(t, err, storage.Conflict, "same ref, other kind")
	e.figures("sms", "tok", cr(6), cr(6), 0, 0)

	// Refs are per account.
	req2 := req
	req2.Account = "tok2"
	if en := res(l.Recharge(ctx, req2)).must(t); en.Ref != "order-1" || en.Account != "tok2" {
		t.Fatalf("same ref on another account: %+v", en)
	}
	e.figures("sms", "tok2", cr(6), cr(6), 0, 0)

	// Adjustments are idempotent too.
	adj := storage.RechargeRequest{Service: "sms", Account: "tok", Amount: -cr(2), Kind: storage.EntryAdjustment, Ref: "fix-1"}
	a1 := res(l.Recharge(ctx, adj)).must(t)
	a2 := res(l.Recharge(ctx, adj)).must(t)
	if a1.Seq != a2.Seq || a1.DRecharged != -cr(2) {
		t.Fatalf("adjustment retry: %+v / %+v", a1, a2)
	}
	e.figures("sms", "tok", cr(4), cr(4), 0, 0)
	if n := len(history(t, l, "sms", "tok")); n != 3 {
		t.Fatalf("%d entries, want 3 (trial, recharge, adjustment)", n)
	}

	// A refused recharge does not burn its ref.
	_, err = l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "tok", Amount: -cr(100), Kind: storage.EntryAdjustment, Ref: "fix-2"})
	wantKind(t, err, storage.InsufficientCredit, "adjustment below zero")
	if en := res(l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "tok", Amount: -cr(1), Kind: storage.EntryAdjustment, Ref: "fix-2"})).must(t); en.DRecharged != -cr(1) {
		t.Fatalf("ref after refusal: %+v", en)
	}
	_, err = l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "tok", Amount: cr(1), Kind: storage.EntryRecharge,
		Ref: strings.Repeat("r", 4097)})
	wantKind(t, err, storage.Invalid, "over-long ref")
	audit(t, l, "sms", "tok")
	audit(t, l, "sms", "tok2")
}

func testAdjustment(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", true, 0)
	e.recharge("sms", "tok", cr(10))
	e.authorize("sms", "tok", cr(4), time.Hour)
	e.figures("sms", "tok", cr(10), cr(6), cr(4), 0)

	en := res(l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "tok", Amount: cr(3), Kind: storage.EntryAdjustment})).must(t)
	if en.Kind != storage.EntryAdjustment || en.DRecharged != cr(3) || en.DAvailable != cr(3) || en.Amount() != cr(3) {
		t.Fatalf("positive adjustment: %+v", en)
	}
	e.figures("sms", "tok", cr(13), cr(9), cr(4), 0)

	// Held credit cannot be adjusted away: only Available counts.
	_, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "tok", Amount: -cr(10), Kind: storage.EntryAdjustment})
	wantKind(t, err, storage.InsufficientCredit, "adjustment beyond available")
	var se *storage.Error
	if !errors.As(err, &se) || se.Service != "sms" || se.Credit != cr(10) {
		t.Fatalf("InsufficientCredit details: %+v", se)
	}
	e.figures("sms", "tok", cr(13), cr(9), cr(4), 0)

	en = res(l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "tok", Amount: -cr(9), Kind: storage.EntryAdjustment})).must(t)
	if en.DRecharged != -cr(9) || en.DAvailable != -cr(9) || en.Amount() != -cr(9) {
		t.Fatalf("negative adjustment: %+v", en)
	}
	e.figures("sms", "tok", cr(4), 0, cr(4), 0)
	_, err = l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "tok", Amount: -1, Kind: storage.EntryAdjustment})
	wantKind(t, err, storage.InsufficientCredit, "adjustment at zero")
	audit(t, l, "sms", "tok")
}
