package storage

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestChecks pins the shared request checks at their bounds: each case is
// either accepted (nil) or refused Invalid with the given message, the
// same for every backend (both call these).
func TestChecks(t *testing.T) {
	const op = "op"
	ok := RechargeRequest{Service: "sms", Account: "tok", Kind: EntryRecharge, Amount: 1}
	rc := func(f func(*RechargeRequest)) error { r := ok; f(&r); return r.Check(op) }
	hold := AuthorizeRequest{Service: "sms", Account: "tok", Amount: 0, TTL: time.Minute}
	ah := func(f func(*AuthorizeRequest)) error { r := hold; f(&r); return r.Check(op) }
	svc := Service{Name: "sms", TrialCredits: MaxCredits, UnitName: strings.Repeat("u", MaxShortText)}
	sv := func(f func(*Service)) error { s := svc; f(&s); return s.Check(op) }
	vo := Voucher{CodeHash: [32]byte{1}, Service: "sms", Amount: MaxCredits, Batch: strings.Repeat("b", MaxShortText)}
	vc := func(f func(*Voucher)) error { v := vo; f(&v); return v.Check(op) }
	bad, long := AccountState("gone"), strings.Repeat("s", MaxShortText+1)
	many := make([]Recipient, MaxRecipients+1)
	over := MaxCredits + 1
	upd := func(u AccountUpdate) error { return u.Check(op) }
	if err := CheckVouchers(op, []Voucher{vo, vo}); !Is(err, Exists) {
		t.Errorf("a code given twice: %v, want Exists", err)
	}
	for _, c := range []struct {
		name string
		err  error
		want string // "" accepted; else the Invalid message
	}{
		{"recharge ok", rc(func(r *RechargeRequest) {}), ""},
		{"recharge max", rc(func(r *RechargeRequest) { r.Amount = MaxCredits }), ""},
		{"recharge zero", rc(func(r *RechargeRequest) { r.Amount = 0 }), "recharge amount 0 out of range"},
		{"recharge over", rc(func(r *RechargeRequest) { r.Amount = MaxCredits + 1 }), "out of range"},
		{"adjustment negative", rc(func(r *RechargeRequest) { r.Kind, r.Amount = EntryAdjustment, -MaxCredits }), ""},
		{"adjustment zero", rc(func(r *RechargeRequest) { r.Kind, r.Amount = EntryAdjustment, 0 }), "adjustment amount"},
		{"recharge kind", rc(func(r *RechargeRequest) { r.Kind = EntryHold }), "kind must be recharge or adjustment"},
		{"recharge trial ref", rc(func(r *RechargeRequest) { r.Ref = TrialRef }), `ref "trial" is reserved`},
		{"recharge long ref", rc(func(r *RechargeRequest) { r.Ref = strings.Repeat("r", MaxShortText+1) }), "ref longer than 256 bytes"},
		{"recharge long description", rc(func(r *RechargeRequest) { r.Description = strings.Repeat("d", MaxText+1) }), "description longer than 4096 bytes"},
		{"recharge token plus", rc(func(r *RechargeRequest) { r.Account = "a+b" }), "invalid account token"},
		{"recharge token long", rc(func(r *RechargeRequest) { r.Account = AccountToken(strings.Repeat("t", 65)) }), "invalid account token"},
		{"recharge service", rc(func(r *RechargeRequest) { r.Service = "" }), "invalid service name"},
		{"hold ok", ah(func(r *AuthorizeRequest) {}), ""},
		{"hold negative", ah(func(r *AuthorizeRequest) { r.Amount = -1 }), "amount -0.0001 out of range"},
		{"hold ttl zero", ah(func(r *AuthorizeRequest) { r.TTL = 0 }), "ttl 0s out of range"},
		{"hold ttl max", ah(func(r *AuthorizeRequest) { r.TTL = MaxTTL }), ""},
		{"hold ttl over", ah(func(r *AuthorizeRequest) { r.TTL = MaxTTL + 1 }), "out of range"},
		{"hold db uuid", ah(func(r *AuthorizeRequest) { r.FirstSight.DBUUID = strings.Repeat("x", MaxShortText+1) }), "db uuid longer"},
		{"service ok", sv(func(s *Service) {}), ""},
		{"service zero key", sv(func(s *Service) { s.HasKey = true }), "zero key hash"},
		{"service trial over", sv(func(s *Service) { s.TrialCredits = MaxCredits + 1 }), "out of range"},
		{"service unit name", sv(func(s *Service) { s.UnitName += "u" }), "unit name longer"},
		{"voucher ok", vc(func(v *Voucher) {}), ""},
		{"voucher zero hash", vc(func(v *Voucher) { v.CodeHash = [32]byte{} }), "zero voucher code hash"},
		{"voucher zero amount", vc(func(v *Voucher) { v.Amount = 0 }), "voucher amount"},
		{"voucher redeemed", vc(func(v *Voucher) { v.Entry = 3 }), "a new voucher cannot be redeemed"},
		{"voucher batch", vc(func(v *Voucher) { v.Batch += "b" }), "batch longer"},
		{"update empty", upd(AccountUpdate{}), ""},
		{"update state", upd(AccountUpdate{State: &bad}), "invalid account state"},
		{"update sender", upd(AccountUpdate{SenderName: &long}), "sender name longer than 256 bytes"},
		{"update threshold", upd(AccountUpdate{Alerts: &Alerts{Threshold: -1}}), "out of range"},
		{"update recipients max", upd(AccountUpdate{Alerts: &Alerts{Recipients: many[:MaxRecipients]}}), ""},
		{"update recipients", upd(AccountUpdate{Alerts: &Alerts{Recipients: many}}), "more than 50 recipients"},
		{"update e-mail", upd(AccountUpdate{Alerts: &Alerts{Recipients: []Recipient{{Email: long}}}}), "e-mail longer"},
		{"update lang", upd(AccountUpdate{Alerts: &Alerts{Recipients: []Recipient{{Lang: strings.Repeat("l", MaxLang+1)}}}}), "language longer than 32 bytes"},
		{"capture nil", CaptureRequest{Service: "sms"}.Check(op), ""},
		{"capture service", CaptureRequest{Service: "a b"}.Check(op), "invalid service name"},
		{"capture amount", CaptureRequest{Service: "sms", Amount: &over}.Check(op), "out of range"},
		{"service key ok", CheckServiceKey(op, "sms", [32]byte{1}), ""},
		{"service key zero", CheckServiceKey(op, "sms", [32]byte{}), "zero key hash"},
		{"service key name", CheckServiceKey(op, "", [32]byte{1}), "invalid service name"},
		{"vouchers ok", CheckVouchers(op, []Voucher{vo, {CodeHash: [32]byte{2}, Service: "sms", Amount: 1}}), ""},
		{"vouchers bad second", CheckVouchers(op, []Voucher{vo, {CodeHash: [32]byte{2}, Service: "sms"}}), "voucher amount 0 out of range"},
		{"filter ok", AccountFilter{Service: "sms", After: "t", State: Banned}.Check(op), ""},
		{"filter after", AccountFilter{After: "t"}.Check(op), "After needs Service"},
		{"filter state", AccountFilter{State: "gone"}.Check(op), "invalid account state"},
		{"filter service", AccountFilter{Service: "a b"}.Check(op), "invalid service name"},
		{"record ok", CheckRecord(op, strings.Repeat("n", MaxRecordNS), strings.Repeat("k", MaxRecordKey), make([]byte, MaxRecordValue)), ""},
		{"record ns space", CheckRecord(op, "a b", "k", nil), "invalid record namespace"},
		{"record ns long", CheckRecord(op, strings.Repeat("n", MaxRecordNS+1), "k", nil), "invalid record namespace"},
		{"record empty key", CheckRecord(op, "ns", "", nil), "record key must be 1 to 512 bytes"},
		{"record value", CheckRecord(op, "ns", "k", make([]byte, MaxRecordValue+1)), "record value of"},
	} {
		switch {
		case c.want == "" && c.err != nil:
			t.Errorf("%s: %v, want accepted", c.name, c.err)
		case c.want != "" && (!Is(c.err, Invalid) || !strings.Contains(c.err.Error(), c.want)):
			t.Errorf("%s: %v, want Invalid %q", c.name, c.err, c.want)
		}
	}
}

// TestApplyEntry: an unbalanced entry changes nothing; a balanced one takes
// the next seq and a time that does not go back when the clock does.
func TestApplyEntry(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a := Account{Service: "sms", Token: "tok", Seq: 4, Recharged: 10, Available: 10, UpdatedAt: t0}
	before := a
	e := Entry{Kind: EntryHold, DAvailable: -3, DHeld: 2}
	if err := ApplyEntry(&a, &e, t0.Add(time.Second)); err == nil || !reflect.DeepEqual(a, before) || e.Seq != 0 {
		t.Fatalf("unbalanced: err %v, account %+v, entry %+v", err, a, e)
	}
	e = Entry{Kind: EntryHold, DAvailable: -3, DHeld: 3}
	if err := ApplyEntry(&a, &e, t0.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if e.Seq != 5 || a.Seq != 5 || !e.Time.Equal(t0) || !a.UpdatedAt.Equal(t0) || e.Service != "sms" || e.Account != "tok" {
		t.Fatalf("entry %+v, account %+v", e, a)
	}
	if a.Available != 7 || a.Held != 3 || a.Recharged != 10 || a.Captured != 0 {
		t.Fatalf("figures %+v", a)
	}
}

// TestCaptureEntries: a capture up to the hold writes capture (+ release
// for the rest); beyond it draws Available, refused for an account not
// registered or short of credit. Every returned entry balances.
func TestCaptureEntries(t *testing.T) {
	const op = "capture"
	h := Transaction{Token: "h1", Service: "sms", Amount: 10, Description: "d"}
	reg := Account{State: Registered, Available: 5}
	amt := func(c Credits) *Credits { return &c }
	for _, c := range []struct {
		name      string
		a         Account
		amount    *Credits
		kinds     []EntryKind
		captured  Credits
		available Credits // sum of DAvailable
		kind      Kind    // refusal, 0 none
	}{
		{"held amount", reg, nil, []EntryKind{EntryCapture}, 10, 0, 0},
		{"less", reg, amt(4), []EntryKind{EntryCapture, EntryRelease}, 4, 6, 0},
		{"zero", reg, amt(0), []EntryKind{EntryCapture, EntryRelease}, 0, 10, 0},
		{"more, credit", reg, amt(15), []EntryKind{EntryCapture}, 15, -5, 0},
		{"more, short", reg, amt(16), nil, 0, 0, InsufficientCredit},
		{"more, banned", Account{State: Banned, Available: 100}, amt(11), nil, 0, 0, Forbidden},
		{"more, unregistered", Account{State: Unregistered, Available: 100}, amt(11), nil, 0, 0, Forbidden},
		{"less, banned", Account{State: Banned}, amt(3), []EntryKind{EntryCapture, EntryRelease}, 3, 7, 0},
	} {
		es, got, err := CaptureEntries(op, h, c.a, c.amount)
		if c.kind != 0 {
			if !Is(err, c.kind) || es != nil {
				t.Errorf("%s: %v %v, want %v", c.name, es, err, c.kind)
			}
			continue
		}
		if err != nil || got != c.captured || len(es) != len(c.kinds) {
			t.Errorf("%s: %v %v %v", c.name, es, got, err)
			continue
		}
		var avail, captured Credits
		for i, e := range es {
			if e.Kind != c.kinds[i] || e.Transaction != "h1" || e.DRecharged != e.DAvailable+e.DHeld+e.DCaptured {
				t.Errorf("%s: entry %d %+v", c.name, i, e)
			}
			avail += e.DAvailable
			captured += e.DCaptured
		}
		if avail != c.available || captured != c.captured {
			t.Errorf("%s: available %s captured %s", c.name, avail, captured)
		}
	}
}
