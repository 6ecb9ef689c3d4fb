package sms

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/storage"
)

func (e *env) state(path string, params map[string]any) string {
	e.t.Helper()
	env := e.call(path, params)
	var r map[string]string
	if err := json.Unmarshal(env["result"], &r); err != nil || len(r) != 1 {
		e.t.Fatalf("%s: want {\"state\": …}: %v", path, env)
	}
	return r["state"]
}

var codeRE = regexp.MustCompile(`\b(\d{6})\b`)

// The 18.0+ registration wizards (PROTOCOL §6.3): a code sent by SMS,
// verified, the account registered; then the sender name, set once.
func TestRegistration(t *testing.T) {
	f := &fakeSender{name: "fake"}
	l := openLedger(t, false)
	e := newEnvOn(t, l, Settings{}, f)
	const create, verify, sender = "/api/sms/1/account/create", "/api/sms/2/account/verify", "/api/sms/1/account/update_sender"
	tok := map[string]any{"account_token": tokA, "dbuuid": "db-1"}
	with := func(k, v string) map[string]any {
		m := map[string]any{}
		for a, b := range tok {
			m[a] = b
		}
		m[k] = v
		return m
	}

	if st := e.state(create, with("phone_number", "12")); st != "invalid_phone_number" {
		t.Fatalf("bad phone: %s", st)
	}
	if st := e.state(sender, with("sender_name", "MyShop")); st != "unregistered_account" {
		t.Fatalf("sender before registration: %s", st)
	}
	if st := e.state(verify, with("code", "000000")); st != "invalid_code" {
		t.Fatalf("verify without a code: %s", st)
	}
	if st := e.state(create, with("phone_number", "+32470123456")); st != "success" {
		t.Fatalf("create: %s", st)
	}
	msgs := f.messages()
	if len(msgs) != 1 || msgs[0].To != "+32470123456" {
		t.Fatalf("verification SMS: %+v", msgs)
	}
	code := codeRE.FindString(msgs[0].Body)
	if code == "" {
		t.Fatalf("no code in %q", msgs[0].Body)
	}
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	if st := e.state(verify, with("code", wrong)); st != "invalid_code" {
		t.Fatalf("wrong code: %s", st)
	}
	if a := e.account(tokA); a.State != storage.Unregistered || a.Available != 0 {
		t.Fatalf("registered by a wrong code, or charged for the code: %+v", a)
	}
	if st := e.state(verify, with("code", code)); st != "success" {
		t.Fatalf("right code: %s", st)
	}
	if a := e.account(tokA); a.State != storage.Registered {
		t.Fatalf("not registered: %+v", a)
	}
	// Registered: nothing to verify, and no code is sent any more (the
	// route must not send SMS for free).
	if st := e.state(verify, with("code", code)); st != "success" {
		t.Fatalf("verify when registered: %s", st)
	}
	if st := e.state(create, with("phone_number", "+32470123456")); st != "success" || f.count() != 1 {
		t.Fatalf("create when registered: %s, %d SMS sent", st, f.count())
	}

	for _, bad := range []string{"ab", "twelve chars", "bad_name", "émile"} {
		if st := e.state(sender, with("sender_name", bad)); st != "format_error" {
			t.Errorf("sender %q: %s", bad, st)
		}
	}
	if st := e.state(sender, with("sender_name", "My-Shop 1")); st != "success" {
		t.Fatalf("sender: %s", st)
	}
	if a := e.account(tokA); a.SenderName != "My-Shop 1" {
		t.Fatalf("sender name not stored: %+v", a)
	}
	if st := e.state(sender, with("sender_name", "My-Shop 1")); st != "success" {
		t.Fatalf("same sender again: %s", st)
	}
	if st := e.state(sender, with("sender_name", "Other")); st != "existing_sender" {
		t.Fatalf("another sender: %s", st)
	}
	// The sender name goes with every SMS of the account.
	e.recharge(tokA, "5")
	e.send3(tokA, "", map[string][]num{"x": {{uuidN(1), "+32470000001"}}})
	if m := f.messages(); m[len(m)-1].Sender != "My-Shop 1" {
		t.Fatalf("sender not used: %+v", m[len(m)-1])
	}
	e.account(tokA)
}

func TestRegistrationRefusals(t *testing.T) {
	f := &fakeSender{name: "fake"}
	l := openLedger(t, false)
	e := newEnvOn(t, l, Settings{}, f)
	const tokB = "0123456789abcdef0123456789abcdef"
	p := func(k, v string) map[string]any { return map[string]any{"account_token": tokB, k: v} }

	// Too many wrong codes void the code.
	if st := e.state("/api/sms/1/account/create", p("phone_number", "+32470123456")); st != "success" {
		t.Fatal(st)
	}
	code := codeRE.FindString(f.messages()[0].Body)
	var last string
	for i := 0; i < maxCodeTries; i++ {
		last = e.state("/api/sms/2/account/verify", p("code", "x"+code))
	}
	if last != "too_many_attempts" {
		t.Fatalf("after %d wrong codes: %s", maxCodeTries, last)
	}
	if st := e.state("/api/sms/2/account/verify", p("code", code)); st != "too_many_attempts" {
		t.Fatalf("the right code after too many tries: %s", st)
	}
	// At most maxCodeSends codes per window.
	for i := 1; i < maxCodeSends; i++ {
		e.state("/api/sms/1/account/create", p("phone_number", "+32470123456"))
	}
	if st := e.state("/api/sms/1/account/create", p("phone_number", "+32470123456")); st != "too_many_attempts" {
		t.Fatalf("codes sent without limit: %s", st)
	}
	if n := f.count(); n != maxCodeSends {
		t.Fatalf("sent %d codes", n)
	}

	// Banned.
	banned := storage.Banned
	if _, err := l.UpdateAccount(context.Background(), storage.SMS, tokB, storage.AccountUpdate{State: &banned}); err != nil {
		t.Fatal(err)
	}
	for path, param := range map[string]string{"/api/sms/1/account/create": "phone_number", "/api/sms/2/account/verify": "code", "/api/sms/1/account/update_sender": "sender_name"} {
		if st := e.state(path, p(param, "+32470123456")); st != "banned_account" {
			t.Errorf("%s banned: %s", path, st)
		}
		// Disabled token.
		if st := e.state(path, map[string]any{"account_token": tokA + "+disabled", param: "x"}); st != "unregistered_account" {
			t.Errorf("%s disabled: %s", path, st)
		}
	}
	if _, err := l.LookupAccount(context.Background(), storage.SMS, tokA); !storage.Is(err, storage.NotFound) {
		t.Fatal("a disabled token created an account")
	}

	// Delivery of the code fails: verification_sms_delivery.
	down := &fakeSender{name: "down", batchErr: func([]providers.SMS) error { return perr("down", providers.Unavailable) }}
	e2 := newEnvOn(t, openLedger(t, false), Settings{}, down)
	if st := e2.state("/api/sms/1/account/create", p("phone_number", "+32470123456")); st != "verification_sms_delivery" {
		t.Fatalf("undeliverable code: %s", st)
	}
	// All accounts together: at most verifications_per_hour codes.
	few := &fakeSender{name: "few"}
	e4 := newEnvOn(t, openLedger(t, false), Settings{VerificationsPerHour: 2}, few)
	var states []string
	for i := 0; i < 3; i++ {
		states = append(states, e4.state("/api/sms/1/account/create", map[string]any{"account_token": uuidN(100 + i), "phone_number": "+32470123456"}))
	}
	if strings.Join(states, ",") != "success,success,too_many_attempts" || few.count() != 2 {
		t.Fatalf("global limit: %v, %d sent", states, few.count())
	}
	// Registration turned off.
	e3 := newEnvOn(t, openLedger(t, false), Settings{Registration: "off"}, f)
	if st := e3.state("/api/sms/1/account/create", p("phone_number", "+32470123456")); st != "closed_feature" {
		t.Fatalf("registration off: %s", st)
	}
}
