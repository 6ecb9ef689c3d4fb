package sms

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/iapd/iapd/providers"
)

// /iap/message_send is what Odoo 16.0's sms.api._send_sms posts
// (PROTOCOL §6.1, last bullet; odoo@16.0:addons/sms/models/sms_api.py):
//
//	params = {'numbers': numbers, 'message': message}
//	return self._contact_iap('/iap/message_send', params)
//
// where _contact_iap adds 'account_token' and returns iap_jsonrpc's
// result to the caller; any JSON-RPC error is raised (§1.4), an
// InsufficientCreditError as such whatever the client generation.
// (Fixture odoo16 004 is that call; iapd answered NotFound then, which
// Odoo turned into a generic AccessError.)

// messageSend posts the exact params _send_sms builds.
func (e *env) messageSend(tok string, numbers []any, message string) map[string]json.RawMessage {
	e.t.Helper()
	return e.call("/iap/message_send", map[string]any{"numbers": numbers, "message": message, "account_token": tok})
}

// Billed like /iap/sms/2/send: the price of the number's prefix per
// segment, one hold captured for what the provider accepted; the provider
// gets the text for every valid number; one result per number, in order.
func TestMessageSendBillsAndDelivers(t *testing.T) {
	f := &fakeSender{name: "fake"}
	e := newEnv(t, Settings{Prices: map[string]Price{"+32": {Credits: credits(t, "2")}}}, f)
	e.recharge(tokA, "100")
	long := strings.Repeat("b", 161) // two GSM-7 segments
	env := e.messageSend(tokA, []any{"+32470111222", "+33 6 12 34 56 78", "12"}, long)
	if _, ok := env["error"]; ok {
		t.Fatalf("error answered: %s", env["error"])
	}
	var rs []NumberResult
	if err := json.Unmarshal(env["result"], &rs); err != nil {
		t.Fatalf("result %s: %v", env["result"], err)
	}
	for _, r := range e.results(env) {
		if len(r) != 3 {
			t.Fatalf("result must be exactly {number, state, credit}: %v", r)
		}
	}
	want := []NumberResult{
		{Number: "+32470111222", State: stateSuccess, Credit: credits(t, "4")},
		{Number: "+33 6 12 34 56 78", State: stateSuccess, Credit: credits(t, "2")},
		{Number: "12", State: stateBadNumber, Credit: 0},
	}
	if len(rs) != len(want) {
		t.Fatalf("results %+v, want %+v", rs, want)
	}
	for i := range want {
		if rs[i] != want[i] {
			t.Errorf("result %d: %+v, want %+v", i, rs[i], want[i])
		}
	}
	a := e.account(tokA)
	if a.Captured != credits(t, "6") || a.Held != 0 || a.Available != credits(t, "94") {
		t.Fatalf("account: captured %s held %s available %s; want 6, 0, 94", a.Captured, a.Held, a.Available)
	}
	sent := f.messages()
	if len(sent) != 2 {
		t.Fatalf("provider got %d messages, want 2", len(sent))
	}
	for i, to := range []string{"+32470111222", "+33612345678"} {
		if sent[i].To != to || sent[i].Body != long {
			t.Errorf("provider message %d: to %q body %d chars, want %q and the text", i, sent[i].To, len(sent[i].Body), to)
		}
	}
}

// Not enough credit for every number: nothing is sent, nothing held or
// charged, and the answer is the InsufficientCreditError of §1.5 with the
// price of the call, which _send_sms raises to its caller (and 16.0's web
// client shows as the "buy credits" dialog).
func TestMessageSendInsufficientCredit(t *testing.T) {
	f := &fakeSender{name: "fake"}
	e := newEnv(t, Settings{}, f)
	e.recharge(tokA, "2")
	env := e.messageSend(tokA, []any{"+32470000001", "+32470000002", "+32470000003"}, "hello")
	if _, ok := env["result"]; ok {
		t.Fatalf("result answered: %s", env["result"])
	}
	var er struct {
		Data struct {
			Name    string `json:"name"`
			Message string `json:"message"`
		} `json:"data"`
	}
	if err := json.Unmarshal(env["error"], &er); err != nil {
		t.Fatal(err)
	}
	if er.Data.Name != "odoo.addons.iap.tools.iap_tools.InsufficientCreditError" {
		t.Fatalf("error %q, want InsufficientCreditError", er.Data.Name)
	}
	var payload map[string]any
	if err := json.Unmarshal([]byte(er.Data.Message), &payload); err != nil {
		t.Fatalf("data.message is not a JSON object (16.0 json.loads it): %q", er.Data.Message)
	}
	if payload["credit"] != 3.0 || payload["service_name"] != "sms" || payload["base_url"] != testPublicURL+"/iap/1/credit" || payload["trial"] != false {
		t.Errorf("payload %v", payload)
	}
	if f.count() != 0 {
		t.Errorf("provider got %d messages, want none", f.count())
	}
	if a := e.account(tokA); a.Available != credits(t, "2") || a.Held != 0 || a.Captured != 0 {
		t.Errorf("account moved: %+v", a)
	}
	// An unknown account (never credited) is refused the same way.
	if env := e.messageSend("0123456789abcdef0123456789abcdef", []any{"+32470000001"}, "x"); !strings.Contains(string(env["error"]), "InsufficientCreditError") {
		t.Errorf("unknown account: %s", env["error"])
	}
}

// A neutralised database (token +disabled) sends nothing, is not charged
// and gets unregistered per number, as on /iap/sms/2/send.
func TestMessageSendDisabledAndMalformed(t *testing.T) {
	f := &fakeSender{name: "fake"}
	e := newEnv(t, Settings{}, f)
	e.recharge(tokA, "10")
	var rs []NumberResult
	env := e.messageSend(tokA+"+disabled", []any{"+32470000001"}, "x")
	if err := json.Unmarshal(env["result"], &rs); err != nil || len(rs) != 1 || rs[0].State != stateUnregistered {
		t.Fatalf("disabled: %s %s", env["result"], env["error"])
	}
	if f.count() != 0 || e.account(tokA).Captured != 0 {
		t.Fatal("a disabled database sent or was charged")
	}
	// Params not of _send_sms's shape: refused, not half read.
	if env := e.call("/iap/message_send", map[string]any{"account_token": tokA, "numbers": "+32470000001", "message": "x"}); env["error"] == nil {
		t.Errorf("numbers as a string accepted: %s", env["result"])
	}
	many := make([]any, 2000)
	for i := range many {
		many[i] = "+32470000001"
	}
	if env := e.messageSend(tokA, many, "x"); env["error"] == nil || f.count() != 0 {
		t.Errorf("2000 numbers (over the batch limit) accepted: %s", env["result"])
	}
}

// A provider failure that may have sent the text keeps its price on hold
// for reconciliation, as every send does (the same send path and trace).
func TestMessageSendIndeterminateKeepsHold(t *testing.T) {
	f := &fakeSender{name: "fake", batchErr: func([]providers.SMS) error { return perr("fake", providers.Indeterminate) }}
	e := newEnv(t, Settings{}, f)
	e.recharge(tokA, "10")
	var rs []NumberResult
	env := e.messageSend(tokA, []any{"+32470000001", "+32470000002"}, "x")
	if err := json.Unmarshal(env["result"], &rs); err != nil || len(rs) != 2 || rs[0].State != stateServerError || rs[1].Credit != 0 {
		t.Fatalf("result %s %s", env["result"], env["error"])
	}
	if a := e.account(tokA); a.Held != credits(t, "2") || a.Captured != 0 {
		t.Fatalf("held %s captured %s, want 2 held for reconciliation", a.Held, a.Captured)
	}
}
