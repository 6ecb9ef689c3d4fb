package sms

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/storage"
)

const tokA = "e1c341df746e42af93b5587c490dc106"

// Billing per segment and per country (longest prefix), one hold, the
// accepted part captured (PROTOCOL §6.2; issue 4 "Billing").
func TestSend3BillsSegmentsByCountry(t *testing.T) {
	f := &fakeSender{name: "fake"}
	e := newEnv(t, Settings{Prices: map[string]Price{"+32": {Credits: credits(t, "2")}, "+3247": {Credits: credits(t, "0.5")}}}, f)
	e.recharge(tokA, "100")
	long := strings.Repeat("a", 161) // two GSM-7 segments
	res := e.send3(tokA, "", map[string][]num{
		long:    {{uuidN(1), "+32470123456"}, {uuidN(2), "+32 2 123 45 67"}, {uuidN(3), "+33612345678"}},
		"Hello": {{uuidN(4), "+14155550100"}},
	})
	want := map[string]string{uuidN(1): "1", uuidN(2): "4", uuidN(3): "2", uuidN(4): "1"}
	for u, c := range want {
		if res[u].State != "success" || res[u].Credit != c {
			t.Errorf("%s: %+v, want success with credit %s", u, res[u], c)
		}
	}
	a := e.account(tokA)
	if a.Captured != credits(t, "8") || a.Held != 0 || a.Available != credits(t, "92") {
		t.Fatalf("account %+v: want 8 captured, nothing held, 92 available", a)
	}
	if f.count() != 4 {
		t.Fatalf("sent %d, want 4", f.count())
	}
	for _, m := range f.messages() {
		if !strings.HasPrefix(m.To, "+") || strings.Contains(m.To, " ") {
			t.Errorf("number not normalised to E.164: %q", m.To)
		}
	}
}

// 16.0: flat messages, results by res_id with state and credit always
// (§6.1); the 17.0 states 16.0 does not know are mapped to ones it does.
func TestSend2Flat(t *testing.T) {
	f := &fakeSender{name: "fake"}
	e := newEnv(t, Settings{UnsupportedPrefixes: []string{"+882"}}, f)
	e.recharge(tokA, "10")
	env := e.call("/iap/sms/2/send", map[string]any{"account_token": tokA, "messages": []map[string]any{
		{"res_id": 7, "number": "+32470123456", "content": "Hi"},
		{"res_id": 8, "number": "not a number", "content": "Hi"},
		{"res_id": 9, "number": "+88212345678", "content": "Hi"},
		{"res_id": 10, "number": false, "content": "Hi"},
	}})
	rs := e.results(env)
	got := map[string]string{}
	for _, r := range rs {
		if len(r) != 3 || r["res_id"] == nil || r["state"] == nil || r["credit"] == nil {
			t.Fatalf("16.0 result must be exactly {res_id, state, credit}: %v", r)
		}
		var st string
		json.Unmarshal(r["state"], &st)
		got[string(r["res_id"])] = st + "/" + string(r["credit"])
	}
	want := map[string]string{"7": "success/1", "8": "wrong_number_format/0", "9": "wrong_number_format/0", "10": "wrong_number_format/0"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("res_id %s: %s, want %s", k, got[k], v)
		}
	}
	if a := e.account(tokA); a.Captured != credits(t, "1") {
		t.Fatalf("captured %s, want 1", a.Captured)
	}
}

// 17.0+: a bad number is wrong_number_format, an unsupported country
// country_not_supported, neither charged nor sent.
func TestSend3RefusedNumbers(t *testing.T) {
	f := &fakeSender{name: "fake"}
	e := newEnv(t, Settings{UnsupportedPrefixes: []string{"+882"}}, f)
	e.recharge(tokA, "10")
	res := e.send3(tokA, "", map[string][]num{"x": {{uuidN(1), "0470"}, {uuidN(2), "+88212345678"}}, strings.Repeat("a", 153*255+1): {{uuidN(3), "+32470123456"}}})
	if res[uuidN(1)].State != "wrong_number_format" || res[uuidN(2)].State != "country_not_supported" || res[uuidN(3)].State != "incompatible_content" {
		t.Fatalf("got %+v", res)
	}
	if res[uuidN(1)].hasCredit {
		t.Error("an uncharged message carries credit")
	}
	if f.count() != 0 || e.account(tokA).Available != credits(t, "10") {
		t.Fatal("refused numbers were sent or charged")
	}
}

// Out of credit: insufficient_credit per number (the fixtures' no-credit
// answer), as many messages as the credit covers are sent, in order.
func TestInsufficientCredit(t *testing.T) {
	f := &fakeSender{name: "fake"}
	e := newEnv(t, Settings{}, f)
	e.recharge(tokA, "2")
	res := e.send3(tokA, "", map[string][]num{"x": {{uuidN(1), "+32470000001"}, {uuidN(2), "+32470000002"}, {uuidN(3), "+32470000003"}}})
	ok, nc := 0, 0
	for _, r := range res {
		switch r.State {
		case "success":
			ok++
		case "insufficient_credit":
			nc++
			if r.hasCredit {
				t.Error("insufficient_credit with a credit key")
			}
		}
	}
	if ok != 2 || nc != 1 || f.count() != 2 {
		t.Fatalf("got %+v (sent %d), want 2 success and 1 insufficient_credit", res, f.count())
	}
	a := e.account(tokA)
	if a.Available != 0 || a.Held != 0 || a.Captured != credits(t, "2") {
		t.Fatalf("account %+v", a)
	}
	// None at all: nothing sent, nothing held.
	res = e.send3(tokA, "", map[string][]num{"x": {{uuidN(9), "+32470000009"}}})
	if res[uuidN(9)].State != "insufficient_credit" || f.count() != 2 {
		t.Fatalf("got %+v", res)
	}
	// The refused uuid was released: after a recharge, Odoo's resend goes
	// through.
	e.recharge(tokA, "1")
	if res := e.send3(tokA, "", map[string][]num{"x": {{uuidN(9), "+32470000009"}}}); res[uuidN(9)].State != "success" {
		t.Fatalf("resend after recharge: %+v", res)
	}
	e.account(tokA)
}

// Unregistered, banned and +disabled accounts: "unregistered", never
// charged, nothing sent; a disabled token does not even create an account.
func TestRefusedAccounts(t *testing.T) {
	f := &fakeSender{name: "fake"}
	l := openLedger(t, false) // accounts seen first are unregistered
	e := newEnvOn(t, l, Settings{}, f)
	one := map[string][]num{"x": {{uuidN(1), "+32470000001"}}}
	if r := e.send3(tokA, "", one); r[uuidN(1)].State != "unregistered" {
		t.Fatalf("unregistered: %+v", r)
	}
	// Registered with credit, then banned.
	e.recharge(tokA, "5")
	banned := storage.Banned
	if _, err := l.UpdateAccount(context.Background(), storage.SMS, tokA, storage.AccountUpdate{State: &banned}); err != nil {
		t.Fatal(err)
	}
	if r := e.send3(tokA, "", one); r[uuidN(1)].State != "unregistered" {
		t.Fatalf("banned: %+v", r)
	}
	if a := e.account(tokA); a.Available != credits(t, "5") || a.Held != 0 {
		t.Fatalf("banned account charged: %+v", a)
	}
	const tokD = "a4a09dd3a4a09dd3a4a09dd3a4a094b9"
	if r := e.send3(tokD+"+disabled", "", one); r[uuidN(1)].State != "unregistered" {
		t.Fatalf("disabled: %+v", r)
	}
	if _, err := l.LookupAccount(context.Background(), storage.SMS, tokD); !storage.Is(err, storage.NotFound) {
		t.Fatalf("a disabled token created an account: %v", err)
	}
	env := e.call("/iap/sms/2/send", map[string]any{"account_token": tokD + "+disabled", "messages": []map[string]any{{"res_id": 1, "number": "+32470000001", "content": "x"}}})
	if rs := e.results(env); string(rs[0]["state"]) != `"unregistered"` {
		t.Fatalf("16.0 disabled: %v", rs)
	}
	if f.count() != 0 {
		t.Fatal("a refused account's SMS was sent")
	}
}

// A retried batch (same uuids) is neither sent nor charged twice; the
// uuid of another message is duplicate_message.
func TestDedupe(t *testing.T) {
	f := &fakeSender{name: "fake"}
	e := newEnv(t, Settings{}, f)
	e.recharge(tokA, "10")
	batch := map[string][]num{"Hello": {{uuidN(1), "+32470000001"}, {uuidN(2), "+32470000002"}}}
	first := e.send3(tokA, "", batch)
	again := e.send3(tokA, "", batch)
	for _, u := range []string{uuidN(1), uuidN(2)} {
		if first[u].State != "success" || again[u] != first[u] {
			t.Fatalf("%s: first %+v, retry %+v; want the same success", u, first[u], again[u])
		}
	}
	if f.count() != 2 {
		t.Fatalf("sent %d times, want 2", f.count())
	}
	if a := e.account(tokA); a.Captured != credits(t, "2") {
		t.Fatalf("charged %s, want 2", a.Captured)
	}
	other := e.send3(tokA, "", map[string][]num{"Another body": {{uuidN(1), "+32470000001"}}})
	if other[uuidN(1)].State != "duplicate_message" || f.count() != 2 {
		t.Fatalf("reused uuid: %+v", other)
	}
	// Within one request a repeated uuid is answered once.
	res := e.send3(tokA, "", map[string][]num{"x": {{uuidN(5), "+32470000005"}, {uuidN(5), "+32470000006"}}})
	if len(res) != 1 || f.count() != 3 {
		t.Fatalf("repeated uuid in one batch: %+v, sent %d", res, f.count())
	}
	// 16.0: a retried res_id with the same number and body is not sent again.
	flat := map[string]any{"account_token": tokA, "messages": []map[string]any{{"res_id": 42, "number": "+32470000042", "content": "x"}}}
	e.call("/iap/sms/2/send", flat)
	rs := e.results(e.call("/iap/sms/2/send", flat))
	if string(rs[0]["state"]) != `"success"` || f.count() != 4 {
		t.Fatalf("16.0 retry: %v, sent %d", rs, f.count())
	}
	e.account(tokA)
}

// Failover to the next provider only on unavailable; invalid is final.
func TestFailover(t *testing.T) {
	down := &fakeSender{name: "down", batchErr: func([]providers.SMS) error { return perr("down", providers.Unavailable) }}
	ok := &fakeSender{name: "ok"}
	e := newEnv(t, Settings{Providers: []string{"down", "ok"}}, down, ok)
	e.recharge(tokA, "10")
	res := e.send3(tokA, "", map[string][]num{"x": {{uuidN(1), "+32470000001"}, {uuidN(2), "+32470000002"}}})
	if res[uuidN(1)].State != "success" || res[uuidN(2)].State != "success" || down.count() != 2 || ok.count() != 2 {
		t.Fatalf("failover: %+v (down %d, ok %d)", res, down.count(), ok.count())
	}

	// Per message: only the unavailable one moves on; an invalid one is
	// wrong_number_format and not charged.
	mixed := &fakeSender{name: "mixed", result: func(m providers.SMS) providers.SMSResult {
		switch m.To {
		case "+32470000011":
			return providers.SMSResult{Err: perr("mixed", providers.Unavailable)}
		case "+32470000012":
			return providers.SMSResult{Err: perr("mixed", providers.Invalid)}
		}
		return providers.SMSResult{ProviderID: "m-" + m.ID, Status: providers.SMSAccepted}
	}}
	ok2 := &fakeSender{name: "ok2"}
	e2 := newEnv(t, Settings{Providers: []string{"mixed", "ok2"}}, mixed, ok2)
	e2.recharge(tokA, "10")
	res = e2.send3(tokA, "", map[string][]num{"x": {{uuidN(1), "+32470000010"}, {uuidN(2), "+32470000011"}, {uuidN(3), "+32470000012"}}})
	if res[uuidN(1)].State != "success" || res[uuidN(2)].State != "success" || res[uuidN(3)].State != "wrong_number_format" {
		t.Fatalf("per-message failover: %+v", res)
	}
	if ok2.count() != 1 || ok2.messages()[0].To != "+32470000011" {
		t.Fatalf("the fallback got %v", ok2.messages())
	}
	if a := e2.account(tokA); a.Captured != credits(t, "2") || a.Held != 0 {
		t.Fatalf("account %+v", a)
	}

	// Routes: the first rule whose prefix matches picks the chain.
	us := &fakeSender{name: "us"}
	eu := &fakeSender{name: "eu"}
	e3 := newEnv(t, Settings{Providers: []string{"eu"}, Routes: []RouteRule{{Prefixes: []string{"+1"}, Providers: []string{"us"}}}}, eu, us)
	e3.recharge(tokA, "10")
	e3.send3(tokA, "", map[string][]num{"x": {{uuidN(1), "+14155550100"}, {uuidN(2), "+32470000001"}}})
	if us.count() != 1 || eu.count() != 1 || us.messages()[0].To != "+14155550100" {
		t.Fatalf("routing: us %v, eu %v", us.messages(), eu.messages())
	}
}

// Every provider unavailable: server_error, nothing charged, and the
// uuid released so that Odoo's resend is sent.
func TestAllUnavailable(t *testing.T) {
	up := false
	f := &fakeSender{name: "flaky"}
	f.batchErr = func([]providers.SMS) error {
		if up {
			return nil
		}
		return perr("flaky", providers.Unavailable)
	}
	e := newEnv(t, Settings{}, f)
	e.recharge(tokA, "10")
	one := map[string][]num{"x": {{uuidN(1), "+32470000001"}}}
	if r := e.send3(tokA, "", one); r[uuidN(1)].State != "server_error" {
		t.Fatalf("got %+v", r)
	}
	if a := e.account(tokA); a.Available != credits(t, "10") || a.Held != 0 {
		t.Fatalf("charged for nothing: %+v", a)
	}
	up = true
	if r := e.send3(tokA, "", one); r[uuidN(1)].State != "success" {
		t.Fatalf("resend: %+v", r)
	}
	e.account(tokA)
}

// Indeterminate: server_error, the price stays held (for reconciliation,
// until the hold's ttl), and a retry is never sent again.
func TestIndeterminateKeepsHold(t *testing.T) {
	f := &fakeSender{name: "hung", batchErr: func([]providers.SMS) error { return perr("hung", providers.Indeterminate) }}
	e := newEnv(t, Settings{HoldTTL: 48 * time.Hour}, f)
	e.recharge(tokA, "10")
	one := map[string][]num{"x": {{uuidN(1), "+32470000001"}, {uuidN(2), "+32470000002"}}}
	r := e.send3(tokA, "", one)
	if r[uuidN(1)].State != "server_error" || r[uuidN(2)].State != "server_error" {
		t.Fatalf("got %+v", r)
	}
	a := e.account(tokA)
	if a.Held != credits(t, "2") || a.Captured != 0 {
		t.Fatalf("account %+v: want 2 held", a)
	}
	r = e.send3(tokA, "", one)
	if r[uuidN(1)].State != "duplicate_message" || f.count() != 2 {
		t.Fatalf("retry of an indeterminate send: %+v (sent %d)", r, f.count())
	}
	// The record names the hold kept.
	v, err := e.ledger.GetRecord(context.Background(), nsDedupe, "db-1/"+uuidN(1))
	if err != nil {
		t.Fatal(err)
	}
	var d dedupeRecord
	json.Unmarshal(v, &d)
	txn, err := e.ledger.Transaction(context.Background(), d.Txn)
	if err != nil || txn.State != storage.Held || txn.Amount != credits(t, "2") || txn.ExpiresAt.Sub(txn.CreatedAt) != 48*time.Hour {
		t.Fatalf("hold %+v, %v", txn, err)
	}

	// Mixed: accepted captured, the indeterminate one held apart, the
	// invalid one released.
	mixed := &fakeSender{name: "mixed", result: func(m providers.SMS) providers.SMSResult {
		switch m.To {
		case "+32470000022":
			return providers.SMSResult{Err: perr("mixed", providers.Indeterminate)}
		case "+32470000023":
			return providers.SMSResult{Err: perr("mixed", providers.Invalid)}
		}
		return providers.SMSResult{ProviderID: "p-" + m.ID, Status: providers.SMSAccepted}
	}}
	e2 := newEnv(t, Settings{}, mixed)
	e2.recharge(tokA, "10")
	r = e2.send3(tokA, "", map[string][]num{"x": {{uuidN(1), "+32470000021"}, {uuidN(2), "+32470000022"}, {uuidN(3), "+32470000023"}}})
	if r[uuidN(1)].State != "success" || r[uuidN(2)].State != "server_error" || r[uuidN(3)].State != "wrong_number_format" {
		t.Fatalf("mixed: %+v", r)
	}
	a = e2.account(tokA)
	if a.Captured != credits(t, "1") || a.Held != credits(t, "1") || a.Available != credits(t, "8") {
		t.Fatalf("mixed account %+v: want 1 captured, 1 held, 8 available", a)
	}
}

// Messages not attempted before the send deadline are left out of the
// answer (Odoo keeps them queued) and not charged.
func TestDeadlineDefers(t *testing.T) {
	f := &fakeSender{name: "slow", holdUntilDeadline: "+32470000001"}
	e := newEnv(t, Settings{SendTimeout: 100 * time.Millisecond, ChunkSize: 1, Concurrency: 1}, f)
	e.recharge(tokA, "10")
	r := e.send3(tokA, "", map[string][]num{"x": {{uuidN(1), "+32470000001"}, {uuidN(2), "+32470000002"}}})
	if r[uuidN(1)].State != "success" {
		t.Fatalf("first: %+v", r)
	}
	if _, listed := r[uuidN(2)]; listed || f.count() != 1 {
		t.Fatalf("the message not attempted was answered or sent: %+v (sent %d)", r, f.count())
	}
	if a := e.account(tokA); a.Captured != credits(t, "1") || a.Held != 0 {
		t.Fatalf("account %+v", a)
	}
	if r := e.send3(tokA, "", map[string][]num{"x": {{uuidN(2), "+32470000002"}}}); r[uuidN(2)].State != "success" {
		t.Fatalf("the deferred message could not be sent later: %+v", r)
	}
}

// Odoo's wire: the envelope has a result and no error key; bad params are
// a JSON-RPC error (Odoo marks the batch server_error), the server keeps
// serving.
func TestSendBadParams(t *testing.T) {
	e := newEnv(t, Settings{}, &fakeSender{name: "fake"})
	env := e.call("/api/sms/3/send", map[string]any{"account_token": tokA, "messages": "nope"})
	if _, ok := env["error"]; !ok {
		t.Fatalf("want an error: %v", env)
	}
	env = e.call("/api/sms/3/send", map[string]any{"messages": []any{}})
	if _, ok := env["error"]; !ok {
		t.Fatalf("missing token: want an error: %v", env)
	}
	env = e.call("/api/sms/3/send", map[string]any{"account_token": tokA, "messages": []any{}})
	if string(env["result"]) != "[]" {
		t.Fatalf("empty batch: %v", env)
	}
}

// Metrics go to the injected registerer, iap_ prefixed, with bounded
// labels (states, providers of the configuration, outcomes).
func TestMetrics(t *testing.T) {
	f := &fakeSender{name: "fake"}
	e := newEnv(t, Settings{}, f)
	e.recharge(tokA, "1")
	e.send3(tokA, "", map[string][]num{"x": {{uuidN(1), "+32470000001"}, {uuidN(2), "+32470000002"}}})
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "iap_sms_") {
			t.Errorf("metric %s without the iap_sms_ prefix", mf.GetName())
		}
		for _, m := range mf.GetMetric() {
			k := mf.GetName()
			for _, l := range m.GetLabel() {
				k += "," + l.GetName() + "=" + l.GetValue()
			}
			got[k] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	for k, v := range map[string]float64{
		"iap_sms_messages_total,state=success":                           1,
		"iap_sms_messages_total,state=insufficient_credit":               1,
		"iap_sms_provider_messages_total,outcome=accepted,provider=fake": 1,
		"iap_sms_segments_total":                                         1,
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

// Early 17.0 (/iap/sms/3/send, no dbuuid): same answers, deduplicated by
// account; a retry while the first request is still sending is answered
// processing (Odoo waits for the delivery report).
func TestSend3EarlyAndInFlight(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	f := &fakeSender{name: "fake"}
	f.batchErr = func([]providers.SMS) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		return nil
	}
	e := newEnv(t, Settings{}, f)
	e.recharge(tokA, "10")
	params := map[string]any{"account_token": tokA, "messages": []map[string]any{
		{"content": "x", "numbers": []map[string]string{{"uuid": uuidN(1), "number": "+32470000001"}}}}}
	done := make(chan map[string]result3)
	go func() { done <- e.decode3(e.call("/iap/sms/3/send", params)) }()
	<-entered
	if r := e.decode3(e.call("/iap/sms/3/send", params)); r[uuidN(1)].State != "processing" {
		t.Fatalf("retry in flight: %+v", r)
	}
	close(release)
	if r := <-done; r[uuidN(1)].State != "success" || r[uuidN(1)].Credit != "1" {
		t.Fatalf("first: %+v", r)
	}
	if r := e.decode3(e.call("/iap/sms/3/send", params)); r[uuidN(1)].State != "success" || f.count() != 1 {
		t.Fatalf("retry after: %+v (sent %d)", r, f.count())
	}
	if _, err := e.ledger.GetRecord(context.Background(), nsDedupe, "t:"+rpc.TokenRef(tokA)+"/"+uuidN(1)); err != nil {
		t.Fatalf("no dedupe record under the account: %v", err)
	}
	e.account(tokA)
}
