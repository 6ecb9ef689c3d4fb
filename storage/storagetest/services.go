package storagetest

import (
	"strings"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
)

func testServices(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	created := e.clock.Now()
	s := res(l.EnsureService(ctx, storage.Service{
		Name: "sms", AutoRegister: true, TrialCredits: cr(5),
		Description: "Text messages", UnitName: "Credits",
	})).must(t)
	if s.Name != "sms" || !s.AutoRegister || s.TrialCredits != cr(5) || s.Description != "Text messages" ||
		s.UnitName != "Credits" || s.HasKey || !s.CreatedAt.Equal(created) {
		t.Fatalf("created %+v", s)
	}
	got := res(l.Service(ctx, "sms")).must(t)
	if got.Name != s.Name || got.TrialCredits != s.TrialCredits || !got.CreatedAt.Equal(created) || got.Description != s.Description {
		t.Fatalf("Service = %+v, want %+v", got, s)
	}

	// Updating the policy keeps the key and the creation time.
	noErr(t, l.SetServiceKey(ctx, "sms", storage.HashKey("k1")))
	e.clock.Advance(time.Hour)
	s2 := res(l.EnsureService(ctx, storage.Service{
		Name: "sms", AutoRegister: false, TrialCredits: cr(1), Description: "SMS", UnitName: "Units",
		CreatedAt: e.clock.Now(), // ignored
	})).must(t)
	if s2.AutoRegister || s2.TrialCredits != cr(1) || s2.Description != "SMS" || s2.UnitName != "Units" ||
		!s2.HasKey || s2.KeyHash != storage.HashKey("k1") || !s2.CreatedAt.Equal(created) {
		t.Fatalf("updated %+v", s2)
	}
	got = res(l.Service(ctx, "sms")).must(t)
	if got.AutoRegister || got.TrialCredits != cr(1) || !got.HasKey || got.KeyHash != storage.HashKey("k1") || !got.CreatedAt.Equal(created) {
		t.Fatalf("Service after update = %+v", got)
	}

	for _, n := range []storage.ServiceName{"reveal", "a-b_c9", "partner_autocomplete"} {
		e.service(n, false, 0)
	}
	all := res(l.Services(ctx)).must(t)
	var names []string
	for _, s := range all {
		names = append(names, string(s.Name))
	}
	if strings.Join(names, ",") != "a-b_c9,partner_autocomplete,reveal,sms" {
		t.Fatalf("Services = %v", names)
	}

	_, err := l.Service(ctx, "snailmail")
	wantKind(t, err, storage.NotFound, "unknown service")
	for _, bad := range []storage.ServiceName{"", "Sms", "1sms", "sms!", "s ms", "_x", storage.ServiceName(strings.Repeat("a", 65))} {
		_, err := l.EnsureService(ctx, storage.Service{Name: bad})
		wantKind(t, err, storage.Invalid, "EnsureService "+string(bad))
	}
	if _, err := l.EnsureService(ctx, storage.Service{Name: storage.ServiceName(strings.Repeat("a", 64))}); err != nil {
		t.Fatalf("64-character name: %v", err)
	}
	_, err = l.EnsureService(ctx, storage.Service{Name: "neg", TrialCredits: -1})
	wantKind(t, err, storage.Invalid, "negative trial credits")
	_, err = l.EnsureService(ctx, storage.Service{Name: "huge", TrialCredits: storage.MaxCredits + 1})
	wantKind(t, err, storage.Invalid, "trial credits above MaxCredits")
	if _, err := l.Service(ctx, "neg"); !storage.Is(err, storage.NotFound) {
		t.Fatalf("refused service was created: %v", err)
	}
}

func testServiceKeys(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", true, 0)
	e.service("reveal", true, 0)
	k1, k2, k3 := storage.HashKey("key-1"), storage.HashKey("key-2"), storage.HashKey("key-3")

	_, err := l.ServiceByKey(ctx, k1)
	wantKind(t, err, storage.Unauthorized, "no key yet")
	wantKind(t, l.SetServiceKey(ctx, "snailmail", k1), storage.NotFound, "key for unknown service")

	noErr(t, l.SetServiceKey(ctx, "sms", k1))
	if s := res(l.ServiceByKey(ctx, k1)).must(t); s.Name != "sms" || !s.HasKey || s.KeyHash != k1 {
		t.Fatalf("ServiceByKey = %+v", s)
	}
	// Setting the same key again is harmless; another service may not take it.
	noErr(t, l.SetServiceKey(ctx, "sms", k1))
	wantKind(t, l.SetServiceKey(ctx, "reveal", k1), storage.Exists, "key of another service")
	_, err = l.EnsureService(ctx, storage.Service{Name: "snailmail", HasKey: true, KeyHash: k1})
	wantKind(t, err, storage.Exists, "new service with a taken key")
	if _, err := l.Service(ctx, "snailmail"); !storage.Is(err, storage.NotFound) {
		t.Fatalf("refused service was created: %v", err)
	}

	// Rotation: the old key stops working at once.
	noErr(t, l.SetServiceKey(ctx, "sms", k2))
	_, err = l.ServiceByKey(ctx, k1)
	wantKind(t, err, storage.Unauthorized, "rotated-out key")
	if s := res(l.ServiceByKey(ctx, k2)).must(t); s.Name != "sms" {
		t.Fatalf("ServiceByKey(new) = %s", s.Name)
	}
	// The freed key can go to another service.
	noErr(t, l.SetServiceKey(ctx, "reveal", k1))
	if s := res(l.ServiceByKey(ctx, k1)).must(t); s.Name != "reveal" {
		t.Fatalf("freed key: %s", s.Name)
	}
	// A new service may come with its key.
	s := res(l.EnsureService(ctx, storage.Service{Name: "snailmail", HasKey: true, KeyHash: k3})).must(t)
	if !s.HasKey || s.KeyHash != k3 {
		t.Fatalf("created with key: %+v", s)
	}
	if s := res(l.ServiceByKey(ctx, k3)).must(t); s.Name != "snailmail" {
		t.Fatalf("ServiceByKey(k3) = %s", s.Name)
	}
	_, err = l.ServiceByKey(ctx, storage.HashKey("never"))
	wantKind(t, err, storage.Unauthorized, "unknown key")
}

func testFirstSight(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", true, cr(10))
	e.service("snailmail", true, 0)
	e.service("reveal", false, cr(10)) // trial credits without auto_register: none given

	_, err := l.LookupAccount(ctx, "sms", "tok1")
	wantKind(t, err, storage.NotFound, "lookup before first sight")

	a := res(l.Account(ctx, "sms", "tok1", storage.FirstSight{DBUUID: "db-1"})).must(t)
	if a.State != storage.Registered || a.Recharged != cr(10) || a.Available != cr(10) || a.Held != 0 ||
		a.Captured != 0 || a.Seq != 1 || a.DBUUID != "db-1" || a.Service != "sms" || a.Token != "tok1" ||
		!a.CreatedAt.Equal(e.clock.Now()) {
		t.Fatalf("first sight with trial: %+v", a)
	}
	h := history(t, l, "sms", "tok1")
	if len(h) != 1 || h[0].Kind != storage.EntryRecharge || h[0].Ref != "trial" || h[0].DRecharged != cr(10) ||
		h[0].DAvailable != cr(10) || h[0].Seq != 1 || h[0].Amount() != cr(10) {
		t.Fatalf("trial history: %+v", h)
	}
	// A second sight gives nothing more and keeps the first DBUUID.
	e.clock.Advance(time.Minute)
	a = res(l.Account(ctx, "sms", "tok1", storage.FirstSight{DBUUID: "db-2"})).must(t)
	if a.Recharged != cr(10) || a.Seq != 1 || a.DBUUID != "db-1" {
		t.Fatalf("second sight: %+v", a)
	}
	if lk := e.lookup("sms", "tok1"); lk.Recharged != cr(10) || lk.DBUUID != "db-1" {
		t.Fatalf("lookup: %+v", lk)
	}

	// NoTrial: registered, without the trial credit; a later sight with
	// NoTrial false gives nothing either (first sight only).
	a = res(l.Account(ctx, "sms", "tok-nt", storage.FirstSight{DBUUID: "db-1", NoTrial: true})).must(t)
	if a.State != storage.Registered || a.Recharged != 0 || a.Available != 0 || a.Seq != 0 || a.DBUUID != "db-1" {
		t.Fatalf("first sight with NoTrial: %+v", a)
	}
	if h := history(t, l, "sms", "tok-nt"); len(h) != 0 {
		t.Fatalf("history with NoTrial: %+v", h)
	}
	if a = res(l.Account(ctx, "sms", "tok-nt", storage.FirstSight{DBUUID: "db-1"})).must(t); a.Available != 0 || a.Seq != 0 {
		t.Fatalf("second sight after NoTrial: %+v", a)
	}
	_, err = l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: "tok-nt2", Amount: cr(1), TTL: time.Hour,
		FirstSight: storage.FirstSight{NoTrial: true}})
	wantKind(t, err, storage.InsufficientCredit, "authorize creating with NoTrial")
	if lk := e.lookup("sms", "tok-nt2"); lk.State != storage.Registered || lk.Available != 0 {
		t.Fatalf("account created by authorize with NoTrial: %+v", lk)
	}

	a = res(l.Account(ctx, "snailmail", "tok1", storage.FirstSight{})).must(t)
	if a.State != storage.Registered || a.Recharged != 0 || a.Seq != 0 {
		t.Fatalf("first sight without trial: %+v", a)
	}
	if h := history(t, l, "snailmail", "tok1"); len(h) != 0 {
		t.Fatalf("history without trial: %+v", h)
	}

	a = res(l.Account(ctx, "reveal", "tok1", storage.FirstSight{})).must(t)
	if a.State != storage.Unregistered || a.Recharged != 0 || a.Available != 0 || a.Seq != 0 {
		t.Fatalf("first sight without auto_register: %+v", a)
	}

	_, err = l.Account(ctx, "nope", "tok1", storage.FirstSight{})
	wantKind(t, err, storage.NotFound, "first sight on unknown service")
	_, err = l.LookupAccount(ctx, "nope", "tok1")
	wantKind(t, err, storage.NotFound, "lookup on unknown service")

	// Authorize also creates on first sight, and keeps the account when it
	// refuses the hold.
	_, err = l.Authorize(ctx, storage.AuthorizeRequest{Service: "reveal", Account: "tok2", Amount: cr(1), TTL: time.Hour})
	wantKind(t, err, storage.Forbidden, "authorize on unregistered first sight")
	if a := e.lookup("reveal", "tok2"); a.State != storage.Unregistered || a.Available != 0 {
		t.Fatalf("account after refused first-sight authorize: %+v", a)
	}
	_, err = l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: "tok3", Amount: cr(11), TTL: time.Hour,
		FirstSight: storage.FirstSight{DBUUID: "db-3"}})
	wantKind(t, err, storage.InsufficientCredit, "authorize above trial on first sight")
	if a := e.lookup("sms", "tok3"); a.Available != cr(10) || a.DBUUID != "db-3" || a.State != storage.Registered {
		t.Fatalf("account after first-sight authorize refused for credit: %+v", a)
	}
	tx := e.authorize("sms", "tok4", cr(4), time.Hour)
	if tx.State != storage.Held {
		t.Fatalf("first-sight authorize: %+v", tx)
	}
	e.figures("sms", "tok4", cr(10), cr(6), cr(4), 0)
	for _, tok := range []storage.AccountToken{"tok1", "tok3", "tok4"} {
		audit(t, l, "sms", tok)
	}
}

func testTokenValidation(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", true, cr(1))
	bad := []storage.AccountToken{"", "abc+disabled", "abc+", "+abc", "has space", "tab\t", "nul\x00", "é",
		storage.AccountToken(strings.Repeat("a", 65))}
	for _, tok := range bad {
		_, err := l.Account(ctx, "sms", tok, storage.FirstSight{})
		wantKind(t, err, storage.Invalid, "Account "+string(tok))
		_, err = l.LookupAccount(ctx, "sms", tok)
		wantKind(t, err, storage.Invalid, "LookupAccount "+string(tok))
		_, err = l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: tok, Amount: 1, TTL: time.Hour})
		wantKind(t, err, storage.Invalid, "Authorize "+string(tok))
		_, err = l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: tok, Amount: 1, Kind: storage.EntryRecharge})
		wantKind(t, err, storage.Invalid, "Recharge "+string(tok))
		_, err = l.History(ctx, "sms", tok, storage.HistoryQuery{})
		wantKind(t, err, storage.Invalid, "History "+string(tok))
		_, err = l.AccountsByToken(ctx, tok)
		wantKind(t, err, storage.Invalid, "AccountsByToken "+string(tok))
	}
	if n := len(res(l.Accounts(ctx, storage.AccountFilter{})).must(t)); n != 0 {
		t.Fatalf("%d accounts created from bad tokens", n)
	}
	// What SplitToken gives is accepted: 64 printable bytes, punctuation.
	for _, raw := range []string{strings.Repeat("f", 64) + "+disabled", "0123456789abcdef0123456789abcdef", "a-b_c.d~!"} {
		tok, _, ok := storage.SplitToken(raw)
		if !ok {
			t.Fatalf("SplitToken(%q) refused", raw)
		}
		if a := res(l.Account(ctx, "sms", tok, storage.FirstSight{})).must(t); a.Token != tok || a.Available != cr(1) {
			t.Fatalf("Account(%q) = %+v", tok, a)
		}
	}
	_, err := l.Account(ctx, "Bad", "tok", storage.FirstSight{})
	wantKind(t, err, storage.Invalid, "bad service name")
}

// testTokenPrefixes checks that accounts whose tokens or services are
// prefixes of one another stay apart.
func testTokenPrefixes(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", true, 0)
	e.service("sms2", true, 0)
	e.recharge("sms", "abc", cr(1))
	e.recharge("sms", "abcd", cr(2))
	e.recharge("sms2", "abc", cr(4))
	e.recharge("sms2", "ab", cr(8))
	e.authorize("sms", "abcd", cr(1), time.Hour)
	e.figures("sms", "abc", cr(1), cr(1), 0, 0)
	e.figures("sms", "abcd", cr(2), cr(1), cr(1), 0)
	e.figures("sms2", "abc", cr(4), cr(4), 0, 0)
	e.figures("sms2", "ab", cr(8), cr(8), 0, 0)
	for _, k := range []struct {
		svc storage.ServiceName
		tok storage.AccountToken
		n   int
	}{{"sms", "abc", 1}, {"sms", "abcd", 2}, {"sms2", "abc", 1}, {"sms2", "ab", 1}} {
		if h := history(t, l, k.svc, k.tok); len(h) != k.n {
			t.Fatalf("%s/%s: %d entries, want %d", k.svc, k.tok, len(h), k.n)
		}
		audit(t, l, k.svc, k.tok)
	}
	got := res(l.AccountsByToken(ctx, "abc")).must(t)
	if len(got) != 2 || got[0].Service != "sms" || got[1].Service != "sms2" || got[0].Token != "abc" || got[1].Token != "abc" {
		t.Fatalf("AccountsByToken(abc) = %+v", got)
	}
	list := res(l.Accounts(ctx, storage.AccountFilter{Service: "sms"})).must(t)
	if len(list) != 2 || list[0].Token != "abc" || list[1].Token != "abcd" {
		t.Fatalf("Accounts(sms) = %+v", list)
	}
}
