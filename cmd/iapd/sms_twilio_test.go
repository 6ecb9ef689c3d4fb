package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/iapd/iapd/providers/twilio"
	"github.com/iapd/iapd/storage"
)

const (
	smsTwilioSID   = "AC0123456789abcdef0123456789abcdef"
	smsTwilioToken = "twilio-auth-token-for-tests"
)

// smsFakeTwilio speaks the shape of Twilio's Messages API
// (POST /2010-04-01/Accounts/{AccountSid}/Messages.json, HTTP basic auth,
// form-encoded, 201 with the Message resource; errors as {code, message,
// more_info, status}); mode "ok" accepts, "down" answers 503, "hang"
// never answers before the client gives up.
type smsFakeTwilio struct {
	*httptest.Server
	mode string
	mu   sync.Mutex
	sent []url.Values
	seq  int
}

func newSMSFakeTwilio(t *testing.T, mode string) *smsFakeTwilio {
	f := &smsFakeTwilio{mode: mode}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *smsFakeTwilio) serve(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	w.Header().Set("Content-Type", "application/json")
	if r.Method != "POST" || r.URL.Path != "/2010-04-01/Accounts/"+smsTwilioSID+"/Messages.json" {
		w.WriteHeader(404)
		fmt.Fprint(w, `{"code": 20404, "message": "The requested resource was not found", "status": 404}`)
		return
	}
	if !ok || user != smsTwilioSID || pass != smsTwilioToken {
		w.WriteHeader(401)
		fmt.Fprint(w, `{"code": 20003, "message": "Authenticate", "status": 401}`)
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("To") == "" || r.PostForm.Get("Body") == "" || r.PostForm.Get("From") == "" {
		w.WriteHeader(400)
		fmt.Fprint(w, `{"code": 21604, "message": "A 'To' phone number is required.", "status": 400}`)
		return
	}
	f.mu.Lock()
	f.seq++
	sid := fmt.Sprintf("SM%s%030x", f.mode[:2], f.seq)
	sent := url.Values{"Sid": {sid}}
	for k, v := range r.PostForm {
		sent[k] = v
	}
	f.sent = append(f.sent, sent)
	f.mu.Unlock()
	switch f.mode {
	case "down":
		w.WriteHeader(503)
		fmt.Fprint(w, `{"code": 20503, "message": "Service unavailable", "status": 503}`)
	case "hang":
		<-r.Context().Done()
	default:
		w.WriteHeader(201)
		fmt.Fprintf(w, `{"sid": %q, "status": "queued", "num_segments": "1", "to": %q, "account_sid": %q}`, sid, r.PostForm.Get("To"), smsTwilioSID)
	}
}

func (f *smsFakeTwilio) messages() []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]url.Values(nil), f.sent...)
}

// smsOdoo is a local endpoint that validates delivery reports exactly as
// Odoo's /sms/status controller does (odoo@17.0+:
// addons/sms/controllers/main.py; PROTOCOL §6.4): params.message_statuses,
// each sms_status matching ^\w+$ and each uuid ^[0-9a-f]{32}$, or a
// JSON-RPC error "Bad parameters"; "OK" otherwise.
type smsOdoo struct {
	*httptest.Server
	mu       sync.Mutex
	statuses map[string][]string
	calls    int
}

var (
	smsStatusRE = regexp.MustCompile(`^\w+$`)
	smsUUIDRE   = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

func newSMSOdoo(t *testing.T) *smsOdoo {
	o := &smsOdoo{statuses: map[string][]string{}}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.calls++
		var req struct {
			ID     json.RawMessage `json:"id"`
			Params struct {
				MessageStatuses []struct {
					Status string   `json:"sms_status"`
					UUIDs  []string `json:"uuids"`
				} `json:"message_statuses"`
			} `json:"params"`
		}
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/sms/status" || json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, "not found", 404)
			return
		}
		for _, st := range req.Params.MessageStatuses {
			ok := smsStatusRE.MatchString(st.Status)
			for _, u := range st.UUIDs {
				ok = ok && smsUUIDRE.MatchString(u)
			}
			if !ok {
				fmt.Fprintf(w, `{"jsonrpc": "2.0", "id": %s, "error": {"code": 200, "message": "Odoo Server Error", "data": {"name": "odoo.exceptions.UserError", "message": "Bad parameters"}}}`, req.ID)
				return
			}
		}
		for _, st := range req.Params.MessageStatuses {
			for _, u := range st.UUIDs {
				o.statuses[u] = append(o.statuses[u], st.Status)
			}
		}
		fmt.Fprintf(w, `{"jsonrpc": "2.0", "id": %s, "result": "OK"}`, req.ID)
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *smsOdoo) got(u string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.Join(o.statuses[u], ",")
}

// TestSMSTwilioThroughRun is issue 4's acceptance test for delivery
// reports, through run() and the real twilio adapter against a local
// server speaking Twilio's API: routing by prefix, failover on an
// unavailable provider, an indeterminate send keeping its hold, a retried
// batch neither sent nor charged twice, then Twilio-signed status
// callbacks relayed as JSON-RPC message_statuses to an endpoint that
// validates them as Odoo does; a forged signature is refused and relays
// nothing.
func TestSMSTwilioThroughRun(t *testing.T) {
	ok, down, hang := newSMSFakeTwilio(t, "ok"), newSMSFakeTwilio(t, "down"), newSMSFakeTwilio(t, "hang")
	odoo := newSMSOdoo(t)
	prov := func(base, extra string) string {
		return fmt.Sprintf("{type: twilio, account_sid: %s, auth_token: %s, from: \"+15005550006\", base_url: %q%s}", smsTwilioSID, smsTwilioToken, base, extra)
	}
	yaml := `services:
  sms:
    settings:
      providers: [twilio-ok]
      routes:
        - prefixes: ["+33"]
          providers: [twilio-down, twilio-ok]
        - prefixes: ["+44"]
          providers: [twilio-hang]
      webhooks: {allow_cidrs: ["127.0.0.0/8"], retry_min: 10ms, retry_max: 50ms}
providers:
  twilio-ok: ` + prov(ok.URL, "") + `
  twilio-down: ` + prov(down.URL, "") + `
  twilio-hang: ` + prov(hang.URL, ", timeout: 300ms") + `
`
	cfg := filepath.Join(t.TempDir(), "iapd.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, map[string]string{"IAPD_ADMIN_TOKEN": testAdminToken}, "-config", cfg)
	const tok = "84b071e7d48f4e1592471d501ab8594d"
	s.mustCLI(t, "", "credit", "sms", tok, "10")

	u1, u2, u3 := strings.Repeat("1", 32), strings.Repeat("2", 32), strings.Repeat("3", 32)
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": "x", "params": map[string]any{
		"account_token": tok, "dbuuid": "7ee805fc-eac7-11f1-8369-02fc00000001", "webhook_url": odoo.URL + "/sms/status",
		"messages": []any{map[string]any{"content": "Your order is ready", "numbers": []any{
			map[string]string{"uuid": u1, "number": "+32470123456"},
			map[string]string{"uuid": u2, "number": "+33612345678"},
			map[string]string{"uuid": u3, "number": "+447700900123"},
		}}}}})
	states := func() map[string]string {
		env := smsPost(t, s.public+"/api/sms/3/send", body)
		var rs []struct{ UUID, State string }
		if err := json.Unmarshal(env["result"], &rs); err != nil {
			t.Fatalf("result: %s", env["result"])
		}
		out := map[string]string{}
		for _, r := range rs {
			out[r.UUID] = r.State
		}
		return out
	}
	first := states()
	if first[u1] != "success" || first[u2] != "success" || first[u3] != "server_error" {
		t.Fatalf("first send: %v", first)
	}
	if len(down.messages()) != 1 || len(ok.messages()) != 2 || len(hang.messages()) != 1 {
		t.Fatalf("provider calls: down %d, ok %d, hang %d; want the +33 message failed over", len(down.messages()), len(ok.messages()), len(hang.messages()))
	}
	avail, held, captured, _, _ := smsAccount(t, s, tok)
	one := storage.Credits(storage.Scale)
	if captured != 2*one || held != one || avail != 7*one {
		t.Fatalf("after send: available %s, held %s, captured %s; want 7, 1 (indeterminate), 2", avail, held, captured)
	}
	// The retry: nothing sent, nothing charged; the indeterminate one is
	// never sent twice.
	again := states()
	if again[u1] != "success" || again[u2] != "success" || again[u3] != "duplicate_message" {
		t.Fatalf("retry: %v", again)
	}
	if len(ok.messages()) != 2 || len(hang.messages()) != 1 {
		t.Fatal("the retried batch was sent again")
	}
	if a2, h2, c2, _, _ := smsAccount(t, s, tok); a2 != avail || h2 != held || c2 != captured {
		t.Fatal("the retried batch was charged")
	}

	// Status callbacks as Twilio sends them: form-encoded, signed with
	// the auth token over the StatusCallback URL and the sorted params.
	callback := func(form url.Values, signed bool) int {
		t.Helper()
		cbURL := ok.messages()[0].Get("StatusCallback")
		sig := twilio.Signature(smsTwilioToken, cbURL, form)
		if !signed {
			sig = twilio.Signature("not-the-token", cbURL, form)
		}
		req, _ := http.NewRequest("POST", cbURL, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Twilio-Signature", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	sids := map[string]string{}
	for _, m := range ok.messages() {
		if want := s.public + "/providers/twilio-ok/status"; m.Get("StatusCallback") != want {
			t.Fatalf("StatusCallback %q, want %q", m.Get("StatusCallback"), want)
		}
		sids[m.Get("To")] = m.Get("Sid")
	}
	status := func(to, st, code string) url.Values {
		v := url.Values{"AccountSid": {smsTwilioSID}, "MessageSid": {sids[to]}, "SmsSid": {sids[to]}, "MessageStatus": {st}, "To": {to}, "From": {"+15005550006"}, "ApiVersion": {"2010-04-01"}}
		if code != "" {
			v.Set("ErrorCode", code)
		}
		return v
	}
	if c := callback(status("+33612345678", "delivered", ""), false); c != 403 {
		t.Fatalf("forged signature: HTTP %d, want 403", c)
	}
	for _, cb := range []url.Values{
		status("+32470123456", "sent", ""),
		status("+33612345678", "sent", ""),
		status("+32470123456", "delivered", ""),
		status("+33612345678", "undelivered", "30003"),
	} {
		if c := callback(cb, true); c != 200 {
			t.Fatalf("signed callback: HTTP %d", c)
		}
	}
	smsWaitFor(t, "the delivery reports at the Odoo endpoint", func() bool {
		return odoo.got(u1) == "sent,delivered" && odoo.got(u2) == "sent,not_delivered"
	})
	if odoo.got(u3) != "" {
		t.Fatalf("a report for the indeterminate message: %s", odoo.got(u3))
	}
}

// The webhook guard through run(): by default a webhook_url on loopback
// is refused at dial time and the endpoint is never called.
func TestSMSWebhookGuardThroughRun(t *testing.T) {
	odoo := newSMSOdoo(t)
	s := startServer(t, map[string]string{"IAPD_ADMIN_TOKEN": testAdminToken})
	const tok = "84b071e7d48f4e1592471d501ab8594d"
	s.mustCLI(t, "", "credit", "sms", tok, "10")
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": "x", "params": map[string]any{
		"account_token": tok, "webhook_url": strings.Replace(odoo.URL, "127.0.0.1", "localhost", 1) + "/sms/status",
		"messages": []any{map[string]any{"content": "x", "numbers": []any{map[string]string{"uuid": strings.Repeat("4", 32), "number": "+32470123456"}}}}}})
	if env := smsPost(t, s.public+"/api/sms/3/send", body); !strings.Contains(string(env["result"]), `"success"`) {
		t.Fatalf("send: %s", env["result"])
	}
	// The outbox reports delivered; the relay tries and is refused.
	smsWaitFor(t, "the guard's refusal in the log", func() bool { return strings.Contains(s.stderr.String(), "refusing to dial a non-public address") })
	odoo.mu.Lock()
	defer odoo.mu.Unlock()
	if odoo.calls != 0 {
		t.Fatalf("the loopback webhook was called %d times", odoo.calls)
	}
}
