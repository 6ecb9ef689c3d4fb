package sms

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/outbound"
)

var allowLocal = WebhookSettings{AllowPrivate: true, RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond}

// Delivery reports reach the database's webhook as Odoo's /sms/status
// takes them (PROTOCOL §6.4): mapped from the provider id to the uuid,
// statuses mapped, batched.
func TestDeliveryReportsRelayed(t *testing.T) {
	odoo := newOdooStatusEndpoint(t)
	rep := &reporter{fakeSender: &fakeSender{name: "rep"}}
	e := newEnv(t, Settings{Webhooks: allowLocal}, rep)
	runRelay(t, e.svc)
	e.recharge(tokA, "10")
	res := e.send3(tokA, odoo.URL+"/sms/status", map[string][]num{"x": {{uuidN(1), "+32470000001"}, {uuidN(2), "+32470000002"}, {uuidN(3), "+32470000003"}}})
	for _, r := range res {
		if r.State != "success" {
			t.Fatalf("%+v", res)
		}
	}
	sent := rep.messages()
	if sent[0].StatusURL != testPublicURL+"/providers/rep/status" {
		t.Fatalf("StatusURL %q", sent[0].StatusURL)
	}
	byID := map[string]string{} // uuid → provider id
	for i := range sent {
		byID[sent[i].ID] = "rep-" + string(rune('1'+i))
	}
	rep.sink(context.Background(), "rep", []providers.DeliveryReport{
		{ProviderID: byID[uuidN(1)], Status: providers.SMSAccepted},
		{ProviderID: byID[uuidN(1)], Status: providers.SMSDelivered},
		{ProviderID: byID[uuidN(2)], Status: providers.SMSUndelivered},
		{ProviderID: byID[uuidN(3)], Status: providers.SMSRejected},
		{ProviderID: "unknown", Status: providers.SMSDelivered},
	})
	odoo.wait(t, func(s map[string][]string) bool { return len(s) == 3 })
	want := map[string]string{uuidN(1): "sent,delivered", uuidN(2): "not_delivered", uuidN(3): "rejected"}
	odoo.mu.Lock()
	for u, w := range want {
		if got := strings.Join(odoo.statuses[u], ","); got != w {
			t.Errorf("%s: %s, want %s", u, got, w)
		}
	}
	if odoo.refused != 0 || odoo.calls != 1 {
		t.Errorf("%d calls, %d refused; want one batched call", odoo.calls, odoo.refused)
	}
	odoo.mu.Unlock()
	// A final report removes the mapping: a repeat is not relayed.
	if _, err := e.ledger.GetRecord(context.Background(), nsDLR, "rep/"+byID[uuidN(1)]); err == nil {
		t.Error("mapping kept after the final report")
	}
}

// A provider that reports before its send call returned (the outbox)
// still gets its reports relayed.
func TestEarlyReportRelayed(t *testing.T) {
	odoo := newOdooStatusEndpoint(t)
	rep := &reporter{fakeSender: &fakeSender{name: "early"}}
	rep.result = func(m providers.SMS) providers.SMSResult {
		rep.sink(context.Background(), "early", []providers.DeliveryReport{{ProviderID: "E" + m.ID, Status: providers.SMSDelivered}})
		return providers.SMSResult{ProviderID: "E" + m.ID, Status: providers.SMSAccepted}
	}
	e := newEnv(t, Settings{Webhooks: allowLocal}, rep)
	runRelay(t, e.svc)
	e.recharge(tokA, "10")
	e.send3(tokA, odoo.URL+"/sms/status", map[string][]num{"x": {{uuidN(1), "+32470000001"}}})
	odoo.wait(t, func(s map[string][]string) bool { return strings.Join(s[uuidN(1)], ",") == "delivered" })

	// A provider that knows the outcome at once: relayed without a callback.
	now := &fakeSender{name: "now", result: func(m providers.SMS) providers.SMSResult {
		return providers.SMSResult{ProviderID: "N" + m.ID, Status: providers.SMSDelivered}
	}}
	e2 := newEnv(t, Settings{Webhooks: allowLocal}, now)
	runRelay(t, e2.svc)
	e2.recharge(tokA, "10")
	e2.send3(tokA, odoo.URL+"/sms/status", map[string][]num{"x": {{uuidN(7), "+32470000001"}}})
	odoo.wait(t, func(s map[string][]string) bool { return strings.Join(s[uuidN(7)], ",") == "delivered" })
}

// A failing webhook is retried with backoff; a JSON-RPC error is final.
func TestRelayRetries(t *testing.T) {
	odoo := newOdooStatusEndpoint(t)
	odoo.fail = 2
	e := newEnv(t, Settings{Webhooks: allowLocal}, &fakeSender{name: "fake"})
	runRelay(t, e.svc)
	e.svc.relay.enqueue(context.Background(), []queued{{UUID: uuidN(1), Status: "delivered", URL: odoo.URL + "/sms/status"}})
	odoo.wait(t, func(s map[string][]string) bool { return len(s[uuidN(1)]) == 1 })
	odoo.mu.Lock()
	if odoo.calls != 3 {
		t.Errorf("%d calls, want 2 failures then success", odoo.calls)
	}
	odoo.mu.Unlock()

	// The database refuses (a JSON-RPC error): dropped, not retried.
	bad := newOdooStatusEndpoint(t)
	e.svc.relay.enqueue(context.Background(), []queued{{UUID: "not-a-uuid", Status: "delivered", URL: bad.URL + "/sms/status"}})
	deadline := time.After(time.Minute)
	for e.svc.relay.queueLen() != 0 {
		select {
		case <-deadline:
			t.Fatal("refused report still queued")
		case <-time.After(5 * time.Millisecond):
		}
	}
	bad.mu.Lock()
	if bad.refused != 1 || bad.calls != 1 {
		t.Errorf("refused %d of %d calls", bad.refused, bad.calls)
	}
	bad.mu.Unlock()
}

// The queue is durable: reports queued before a restart are relayed by
// the next run.
func TestRelayQueueSurvivesRestart(t *testing.T) {
	odoo := newOdooStatusEndpoint(t)
	l := openLedger(t, true)
	e1 := newEnvOn(t, l, Settings{Webhooks: allowLocal}, &fakeSender{name: "fake"})
	// No loop runs: the reports only go to the records.
	e1.svc.relay.enqueue(context.Background(), []queued{
		{UUID: uuidN(1), Status: "delivered", URL: odoo.URL + "/sms/status"},
		{UUID: uuidN(2), Status: "expired", URL: odoo.URL + "/sms/status"},
	})
	e2 := newEnvOn(t, l, Settings{Webhooks: allowLocal}, &fakeSender{name: "fake"})
	runRelay(t, e2.svc)
	odoo.wait(t, func(s map[string][]string) bool { return len(s) == 2 })
	deadline := time.After(time.Minute)
	for e2.svc.relay.queueLen() != 0 {
		select {
		case <-deadline:
			t.Fatal("delivered reports still queued")
		case <-time.After(5 * time.Millisecond):
		}
	}
	// And a third run has nothing left to send.
	e3 := newEnvOn(t, l, Settings{Webhooks: allowLocal}, &fakeSender{name: "fake"})
	if err := e3.svc.relay.load(context.Background()); err != nil || e3.svc.relay.queueLen() != 0 {
		t.Fatalf("queue after delivery: %d, %v", e3.svc.relay.queueLen(), err)
	}
}

// The SSRF guard refuses internal addresses at dial time, after name
// resolution, unless the settings allow them.
func TestWebhookGuard(t *testing.T) {
	g, err := webhookGuard(WebhookSettings{AllowCIDRs: []string{"10.8.0.0/16"}})
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]bool{
		"127.0.0.1": false, "127.8.9.10": false, "::1": false, "10.0.0.1": false, "172.16.5.4": false,
		"192.168.1.1": false, "169.254.169.254": false, "fe80::1": false, "0.0.0.0": false, "::": false,
		"::ffff:127.0.0.1": false, "::ffff:10.0.0.1": false, "64:ff9b::7f00:1": false, "100.64.0.1": false,
		"fd00::1": false, "224.0.0.1": false, "ff02::1": false,
		"10.8.1.2": true, "93.184.216.34": true, "2606:4700::1111": true, "8.8.8.8": true,
	} {
		if got := g.Permits(netip.MustParseAddr(ip)); got != want {
			t.Errorf("allowed(%s) = %v, want %v", ip, got, want)
		}
	}

	// End to end: a webhook on loopback, by address and by a name that
	// resolves to it, is never called.
	odoo := newOdooStatusEndpoint(t)
	e := newEnv(t, Settings{}, &fakeSender{name: "fake"}) // default guard
	u, _ := url.Parse(odoo.URL)
	_, port, _ := net.SplitHostPort(u.Host)
	for _, target := range []string{odoo.URL, "http://localhost:" + port} {
		p := newPost(target+"/sms/status", []queued{{UUID: uuidN(1), Status: "delivered"}})
		err := e.svc.relay.send(context.Background(), p)
		if err == nil || !errors.Is(err, outbound.ErrNonPublicAddress) {
			t.Errorf("%s: %v, want the guard's refusal", target, err)
		}
	}
	odoo.mu.Lock()
	if odoo.calls != 0 {
		t.Errorf("the guarded endpoint was called %d times", odoo.calls)
	}
	odoo.mu.Unlock()
	// Allowed by CIDR: delivered.
	e2 := newEnv(t, Settings{Webhooks: WebhookSettings{AllowCIDRs: []string{"127.0.0.0/8"}}}, &fakeSender{name: "fake"})
	if err := e2.svc.relay.send(context.Background(), newPost(odoo.URL+"/sms/status", []queued{{UUID: uuidN(1), Status: "delivered"}})); err != nil {
		t.Fatalf("allowed network: %v", err)
	}
	// Redirects are not followed (to an internal address or anywhere).
	redir := &http.Server{Handler: http.RedirectHandler(odoo.URL, http.StatusTemporaryRedirect)}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go redir.Serve(ln)
	t.Cleanup(func() { redir.Close() })
	if err := e2.svc.relay.send(context.Background(), newPost("http://"+ln.Addr().String()+"/sms/status", []queued{{UUID: uuidN(2), Status: "delivered"}})); err == nil {
		t.Fatal("a redirect was followed")
	}
}

// A report refused by the guard (an Odoo on this host, the default
// policy) is logged with the setting that allows it, and kept for retry.
func TestRelayRefusalNamesTheSetting(t *testing.T) {
	odoo := newOdooStatusEndpoint(t)
	e := newEnv(t, Settings{}, &fakeSender{name: "fake"})
	var buf bytes.Buffer
	e.svc.log = slog.New(slog.NewTextHandler(&buf, nil))
	p := newPost(odoo.URL+"/sms/status", []queued{{UUID: uuidN(1), Status: "delivered"}})
	err := e.svc.relay.send(context.Background(), p)
	if !errors.Is(err, outbound.ErrNonPublicAddress) || !strings.Contains(err.Error(), "services.sms.settings.webhooks.allow_cidrs") {
		t.Fatalf("send: %v, want the guard's refusal naming the setting", err)
	}
	e.svc.relay.done(context.Background(), p, err)
	line := buf.String()
	for _, want := range []string{"level=WARN", "setting=services.sms.settings.webhooks.allow_cidrs", `127.0.0.1/32`, "will retry"} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %q:\n%s", want, line)
		}
	}
}
