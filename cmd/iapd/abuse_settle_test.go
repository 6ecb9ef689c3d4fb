package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iapd/iapd/providers/pingen/pingentest"
	"github.com/iapd/iapd/providers/twilio"
	"github.com/iapd/iapd/rpc/rpctest"
	"github.com/iapd/iapd/storage"
)

// Issue 13, finding 7: SMS and letters sent during a crash are settled at
// the next start, each exactly once. iapd is killed (SIGKILL) at every
// step of a send — by a failpoint compiled only into a binary built with
// the tag iapd_failpoints, or, for "the provider received it and had not
// answered", by the test while the provider holds the request — then
// started again on the same data: the hold's final state, what the
// provider received, the balance, and the answer to Odoo's retry of the
// same uuids (PROTOCOL §6.2) or document (§7) must agree, and nothing is
// charged twice.

// startSettleProc starts the failpoint binary (rpc/internal/failpoint:
// built with the tag iapd_failpoints) and waits for /readyz.
func startSettleProc(t testing.TB, o abuseOpts) *abuseProc {
	t.Helper()
	o.Tags = "iapd_failpoints"
	return startAbuse(t, o)
}

// settleAccount is an account as the admin API shows it.
type settleAccount struct {
	Available storage.Credits `json:"available"`
	Held      storage.Credits `json:"held"`
	Captured  storage.Credits `json:"captured"`
}

func (a settleAccount) String() string {
	return fmt.Sprintf("avail %s held %s captured %s", a.Available, a.Held, a.Captured)
}

func settleShow(t *testing.T, p *abuseProc, svc, tok string) settleAccount {
	t.Helper()
	var a settleAccount
	if err := p.Admin.call(context.Background(), "GET", "/v1/account", url.Values{"service": {svc}, "token": {tok}}, nil, &a); err != nil {
		t.Fatalf("show account: %v", err)
	}
	return a
}

func settleCredit(t *testing.T, p *abuseProc, svc, tok, amount string) {
	t.Helper()
	if err := p.Admin.call(context.Background(), "POST", "/v1/account/credit", nil,
		map[string]string{"service": svc, "token": tok, "amount": amount}, nil); err != nil {
		t.Fatalf("credit: %v", err)
	}
}

// settleStep is one place of a send where iapd dies.
type settleStep struct {
	name      string
	sms, mail string // failpoints; "" with received: the provider holds the request
	received  bool
	// charged: the settlement charges the send (a provider accepted it or
	// may have); else it releases it and the retry sends it afresh.
	charged bool
	// answered: the provider's answer (its message ids) was recorded, so
	// its delivery reports reach Odoo.
	answered bool
}

var settleSteps = []settleStep{
	{name: "trace written", sms: "sms.opened", mail: "letter.opened"},
	{name: "uuid claimed", sms: "sms.claimed", mail: "letter.claimed"},
	{name: "after hold", sms: "sms.held", mail: "letter.held"},
	{name: "after record", sms: "sms.recorded", mail: "letter.recorded"},
	{name: "handed, before the call", sms: "sms.handed", mail: "letter.handed", charged: true},
	{name: "provider received, no answer", received: true, charged: true},
	{name: "provider answered", sms: "sms.answered", mail: "letter.answered", charged: true},
	{name: "answer recorded", answered: true, sms: "sms.answer-recorded", mail: "letter.answer-recorded", charged: true},
	{name: "after capture", answered: true, sms: "sms.captured", mail: "letter.captured", charged: true},
	{name: "after final record", answered: true, sms: "sms.final", mail: "letter.final", charged: true},
}

// settleRow is one line of the printed table.
type settleRow struct {
	step, svc                 string
	receivedCrash, afterRetry int
	settled, retried          settleAccount
	answer                    string
	startup                   time.Duration
}

func TestAbuseSettleAfterCrash(t *testing.T) {
	var rows []settleRow
	for _, st := range settleSteps {
		rows = append(rows, settleSMS(t, st, false), settleLetter(t, st, false))
	}
	abuseFigure(t, "kill -9 at each step of a send, restart, Odoo retries the same uuids / document (SMS: 2 messages at 1 credit; letter: 1 at 2.5):")
	printSettleRows(t, rows)
}

// TestAbuseSettleCrashDuringSettlement kills iapd again while it settles
// (after the hold's capture or cancel, before the records): the next
// start settles the rest, and nothing is charged or sent twice.
func TestAbuseSettleCrashDuringSettlement(t *testing.T) {
	var rows []settleRow
	for _, st := range settleSteps {
		switch st.name {
		case "after hold", "provider received, no answer", "answer recorded":
			rows = append(rows, settleSMS(t, st, true), settleLetter(t, st, true))
		}
	}
	abuseFigure(t, "kill -9 at a step of a send, then again during the settlement at the next start, restart, Odoo retries:")
	printSettleRows(t, rows)
}

func printSettleRows(t *testing.T, rows []settleRow) {
	abuseFigure(t, "%-30s %-7s %9s %-42s %-30s %9s %s", "step", "service", "received", "after restart", "retry answer", "received", "start")
	for _, r := range rows {
		abuseFigure(t, "%-30s %-7s %9d %-42s %-30s %9d %.2fs", r.step, r.svc, r.receivedCrash, r.settled, r.answer, r.afterRetry, r.startup.Seconds())
	}
}

// killedCall makes a call that the server does not live to answer.
func killedCall(t *testing.T, p *abuseProc, path string, params any) {
	t.Helper()
	res, rerr, err := p.Call(path, params, 60*time.Second)
	if err == nil {
		t.Fatalf("the call was answered (%s %v): the failpoint did not fire", res, rerr)
	}
	p.Kill()
}

// waitFor polls cond for up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// crashAtStart starts the failpoint binary on data with IAPD_FAILPOINT=fp
// and waits for it to die there (during the start-up settlement).
func crashAtStart(t *testing.T, config, data, fp string) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "iapd.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(abuseBinary(t, "iapd_failpoints"), "serve", "-listen", "127.0.0.1:0", "-ops-listen", "127.0.0.1:0",
		"-data", data, "-log-level", "warn", "-config", cfg)
	cmd.Env = append(os.Environ(), "IAPD_ADMIN_TOKEN="+randHex(16), "IAPD_FAILPOINT="+fp)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("iapd did not die at %s during settlement: %v\n%s", fp, err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("iapd did not reach %s: nothing was settled\n%s", fp, stderr.String())
	}
}

func settleSMS(t *testing.T, st settleStep, settleCrash bool) (row settleRow) {
	row = settleRow{step: st.name, svc: "sms"}
	t.Run("sms/"+st.name, func(t *testing.T) {
		hang, ok := newSMSFakeTwilio(t, "hang"), newSMSFakeTwilio(t, "ok")
		odoo := newSMSOdoo(t)
		config := func(base string) string {
			return fmt.Sprintf(`services:
  sms:
    settings:
      providers: [tw]
      webhooks: {allow_cidrs: ["127.0.0.0/8"], retry_min: 10ms, retry_max: 50ms}
providers:
  tw: {type: twilio, account_sid: %s, auth_token: %s, from: "+15005550006", base_url: %q, timeout: 60s}
`, smsTwilioSID, smsTwilioToken, base)
		}
		first := ok
		var env []string
		if st.received {
			first = hang
		} else {
			env = []string{"IAPD_FAILPOINT=" + st.sms}
		}
		p := startSettleProc(t, abuseOpts{Config: config(first.URL), Env: env})
		tok := randHex(16)
		settleCredit(t, p, "sms", tok, "10")
		u1, u2 := randHex(16), randHex(16)
		params := map[string]any{"account_token": tok, "dbuuid": "7ee805fc-eac7-11f1-8369-02fc00000001", "webhook_url": odoo.URL + "/sms/status",
			"messages": []any{map[string]any{"content": "Your order is ready", "numbers": []any{
				map[string]string{"uuid": u1, "number": "+32470123456"},
				map[string]string{"uuid": u2, "number": "+32470123457"},
			}}}}
		if st.received {
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _, _ = p.Call("/api/sms/3/send", params, 60*time.Second)
			}()
			waitFor(t, "twilio to receive both messages", func() bool { return len(hang.messages()) == 2 })
			p.Kill()
			<-done
		} else {
			killedCall(t, p, "/api/sms/3/send", params)
		}
		received := func() int { return len(hang.messages()) + len(ok.messages()) }
		row.receivedCrash = received()
		if settleCrash {
			crashAtStart(t, config(ok.URL), p.Data, "sms.settling")
		}

		start := time.Now()
		p = startSettleProc(t, abuseOpts{Config: config(ok.URL), Data: p.Data})
		row.startup = time.Since(start)
		row.settled = settleShow(t, p, "sms", tok)
		one := storage.Credits(storage.Scale)
		want := settleAccount{Available: 10 * one}
		if st.charged {
			want = settleAccount{Available: 8 * one, Captured: 2 * one}
		}
		if row.settled != want {
			t.Errorf("after restart: %s, want %s\n%s", row.settled, want, p.Stderr.String())
		}

		// Odoo's retry of the same uuids.
		res, rerr, err := p.Call("/api/sms/3/send", params, 60*time.Second)
		if err != nil || rerr != nil {
			t.Fatalf("retry: %v %v", rerr, err)
		}
		var rs []struct {
			UUID   string           `json:"uuid"`
			State  string           `json:"state"`
			Credit *storage.Credits `json:"credit"`
		}
		if err := json.Unmarshal(res, &rs); err != nil {
			t.Fatalf("retry answer %s", res)
		}
		var states []string
		for _, r := range rs {
			states = append(states, r.State)
			if r.State != "success" || r.Credit == nil || *r.Credit != one {
				t.Errorf("retry: %s, want success with credit 1 for each uuid", res)
			}
		}
		if len(rs) != 2 {
			t.Errorf("retry answered %s, want both uuids", res)
		}
		row.answer = strings.Join(states, ",")
		row.retried = settleShow(t, p, "sms", tok)
		row.afterRetry = received()
		if row.retried != (settleAccount{Available: 8 * one, Captured: 2 * one}) {
			t.Errorf("after the retry: %s, want 2 captured once", row.retried)
		}
		// Sent once: by the crashed send if it charged, else by the retry
		// (a send that never reached the provider is charged as sent when
		// its trace says it was handed over: the price of the policy).
		wantSent := 2
		if st.charged && row.receivedCrash == 0 {
			wantSent = 0
		}
		if row.afterRetry != wantSent {
			t.Errorf("twilio received %d messages in all, want %d", row.afterRetry, wantSent)
		}
		// Twilio's delivery reports of messages whose answer was
		// recorded before the crash reach Odoo (PROTOCOL §6.4).
		if st.answered {
			for _, m := range append(hang.messages(), ok.messages()...) {
				form := url.Values{"AccountSid": {smsTwilioSID}, "MessageSid": {m.Get("Sid")}, "SmsSid": {m.Get("Sid")},
					"MessageStatus": {"delivered"}, "To": {m.Get("To")}, "From": {"+15005550006"}, "ApiVersion": {"2010-04-01"}}
				cb := p.Public + "/providers/tw/status"
				req, _ := http.NewRequest("POST", cb, strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("X-Twilio-Signature", twilio.Signature(smsTwilioToken, cb, form))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("status callback: HTTP %d", resp.StatusCode)
				}
			}
			waitFor(t, "the delivery reports at Odoo", func() bool { return odoo.got(u1) == "delivered" && odoo.got(u2) == "delivered" })
		}
		p.Stop()
	})
	return row
}

func settleLetter(t *testing.T, st settleStep, settleCrash bool) (row settleRow) {
	row = settleRow{step: st.name, svc: "letter"}
	t.Run("letter/"+st.name, func(t *testing.T) {
		pg := pingentest.New(t)
		config := fmt.Sprintf(`
providers:
  pingen-ch:
    type: pingen
    client_id: %s
    client_secret: %s
    organisation_id: %s
    api_url: %s
    identity_url: %s
    timeout: 60s
services:
  snailmail:
    settings:
      providers: [pingen-ch]
      prices:
        default: 2
        color: 0.5
`, pingentest.ClientID, pingentest.ClientSecret, pingentest.Organisation, pg.URL, pg.URL)
		var env []string
		if st.received {
			pg.SetMode(pingentest.Hang)
		} else {
			env = []string{"IAPD_FAILPOINT=" + st.mail}
		}
		p := startSettleProc(t, abuseOpts{Config: config, Env: env})
		req := rpctest.Load(t, "odoo19", func(r *rpctest.Request) bool { return r.Name == "013_iap_snailmail_1_print.json" })[0]
		params := req.Params(t)
		tok := params["account_token"].(string)
		settleCredit(t, p, "snailmail", tok, "10")
		if st.received {
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _, _ = p.Call("/iap/snailmail/1/print", params, 60*time.Second)
			}()
			waitFor(t, "Pingen to receive the letter", func() bool { return pg.CreateCalls() == 1 })
			p.Kill()
			<-done
			pg.SetMode(pingentest.OK)
		} else {
			killedCall(t, p, "/iap/snailmail/1/print", params)
		}
		row.receivedCrash = pg.CreateCalls()
		if settleCrash {
			crashAtStart(t, config, p.Data, "letter.settling")
		}

		start := time.Now()
		p = startSettleProc(t, abuseOpts{Config: config, Data: p.Data})
		row.startup = time.Since(start)
		row.settled = settleShow(t, p, "snailmail", tok)
		one := storage.Credits(storage.Scale)
		price := 2*one + one/2
		want := settleAccount{Available: 10 * one}
		if st.charged {
			want = settleAccount{Available: 10*one - price, Captured: price}
		}
		if row.settled != want {
			t.Errorf("after restart: %s, want %s\n%s", row.settled, want, p.Stderr.String())
		}

		res, rerr, err := p.Call("/iap/snailmail/1/print", params, 60*time.Second)
		if err != nil || rerr != nil {
			t.Fatalf("retry: %v %v", rerr, err)
		}
		var out struct {
			Request struct {
				Documents []struct {
					Sent   bool   `json:"sent"`
					SendID string `json:"send_id"`
					Error  string `json:"error"`
				} `json:"documents"`
			} `json:"request"`
		}
		if err := json.Unmarshal(res, &out); err != nil || len(out.Request.Documents) != 1 {
			t.Fatalf("retry answer %s", res)
		}
		d := out.Request.Documents[0]
		row.answer = fmt.Sprintf("sent=%v %s", d.Sent, d.SendID)
		if !d.Sent || d.SendID == "" {
			t.Errorf("retry: %s, want sent with a send_id", res)
		}
		letters := pg.Letters()
		switch {
		case len(letters) > 1:
			t.Errorf("Pingen created %d letters", len(letters))
		case strings.HasPrefix(d.SendID, "iapd-unconfirmed-"):
			// Charged as sent without the provider's answer.
			if !st.charged {
				t.Errorf("retry answered send_id %q for a letter the settlement released", d.SendID)
			}
		case len(letters) != 1 || d.SendID != letters[0].ID:
			t.Errorf("retry answered send_id %q, Pingen created %+v", d.SendID, letters)
		}
		row.retried = settleShow(t, p, "snailmail", tok)
		row.afterRetry = pg.CreateCalls()
		if row.retried != (settleAccount{Available: 10*one - price, Captured: price}) {
			t.Errorf("after the retry: %s, want %s captured once", row.retried, price)
		}
		wantCalls := 1
		if st.charged && row.receivedCrash == 0 {
			wantCalls = 0
		}
		if row.afterRetry != wantCalls {
			t.Errorf("Pingen received %d letter creations in all, want %d", row.afterRetry, wantCalls)
		}
		if bad := pg.BadRequests(); len(bad) > 0 {
			t.Errorf("protocol violations: %v", bad)
		}
		p.Stop()
	})
	return row
}

// TestAbuseSettleMessageSendAfterCrash: 16.0's /iap/message_send goes
// through the same send, trace and start-up settlement as every SMS.
// Killed (-9) at a step of it, the next start settles its hold exactly
// once: nothing left held, charged exactly when the trace says the
// provider was handed the messages, and the provider got them at most
// once.
func TestAbuseSettleMessageSendAfterCrash(t *testing.T) {
	one := storage.Credits(storage.Scale)
	n := 0
	for _, st := range settleSteps {
		switch st.name {
		case "after hold", "handed, before the call", "provider answered", "after capture":
		default:
			continue
		}
		n++
		t.Run(st.name, func(t *testing.T) {
			tw := newSMSFakeTwilio(t, "ok")
			config := fmt.Sprintf(`services:
  sms:
    settings:
      providers: [tw]
providers:
  tw: {type: twilio, account_sid: %s, auth_token: %s, from: "+15005550006", base_url: %q, timeout: 60s}
`, smsTwilioSID, smsTwilioToken, tw.URL)
			p := startSettleProc(t, abuseOpts{Config: config, Env: []string{"IAPD_FAILPOINT=" + st.sms}})
			tok := randHex(16)
			settleCredit(t, p, "sms", tok, "10")
			// The params odoo@16.0:addons/sms/models/sms_api.py _send_sms builds.
			params := map[string]any{"numbers": []any{"+32470123456", "+32470123457"}, "message": "Your order is ready", "account_token": tok}
			killedCall(t, p, "/iap/message_send", params)
			received := len(tw.messages())

			p = startSettleProc(t, abuseOpts{Config: config, Data: p.Data})
			got := settleShow(t, p, "sms", tok)
			want := settleAccount{Available: 10 * one}
			if st.charged {
				want = settleAccount{Available: 8 * one, Captured: 2 * one}
			}
			if got != want {
				t.Errorf("after restart: %s, want %s\n%s", got, want, p.Stderr.String())
			}
			if received > 2 || (!st.charged && received != 0) {
				t.Errorf("provider received %d messages before the crash (charged: %v)", received, st.charged)
			}
			abuseFigure(t, "message_send killed at %-26s received %d, after restart %s", st.name, received, got)
		})
	}
	if n != 4 {
		t.Fatalf("%d steps run, want 4", n)
	}
}
