package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iapd/iapd/proxy"
	"github.com/iapd/iapd/rpc/admin"
	"github.com/iapd/iapd/rpc/rpctest"
	"github.com/iapd/iapd/storage"
)

// ledgerOf lists every account of p's ledger, keyed "service token".
func ledgerOf(t *testing.T, p *abuseProc) map[string]admin.Account {
	t.Helper()
	out := map[string]admin.Account{}
	after := ""
	for {
		var page admin.AccountList
		q := url.Values{"limit": {"500"}}
		if after != "" {
			q.Set("after", after)
		}
		if err := p.Admin.call(context.Background(), "GET", "/v1/accounts", q, nil, &page); err != nil {
			t.Fatalf("admin: accounts: %v", err)
		}
		for _, a := range page.Accounts {
			out[string(a.Service)+" "+string(a.Token)] = a
		}
		if page.Next == "" {
			return out
		}
		after = page.Next
	}
}

// capturedBy sums, per service, the credit captured on the accounts of l.
func capturedBy(l map[string]admin.Account) map[string]storage.Credits {
	out := map[string]storage.Credits{}
	for _, a := range l {
		out[string(a.Service)] += a.Captured
	}
	return out
}

// TestMixedRoutingTwoIapd (issue 19) runs two real iapd: A serves partner
// autocomplete itself, forwards sms and snailmail to B (every upstream
// role pointed at B) and refuses reveal. It replays the captured Odoo 17
// and 18 requests through A and checks where each credit moved (SMS and
// letters captured on B only, autocomplete on A only, reveal nowhere) and
// what each account route answered: Odoo 17's account list and alert
// settings (§4.2, §4.3) and 18's account form and alert settings (§4.4,
// §4.5) combine A's and B's accounts and reach B's ledger; the balance of
// a forwarded service is B's, audited under its service. With B stopped,
// the account routes answer like an unreachable IAP (AccessError; the
// list: A's accounts), an SMS fails as server_error, nothing held on A.
func TestMixedRoutingTwoIapd(t *testing.T) {
	b := startAbuse(t, abuseOpts{Config: `services:
  sms:
    trial_credits: 1000
  snailmail:
    trial_credits: 1000
`})
	dir := t.TempDir()
	audit := filepath.Join(dir, "audit.jsonl")
	a := startAbuse(t, abuseOpts{Config: `services:
  sms:
    mode: upstream
  snailmail:
    mode: upstream
  reveal:
    mode: refuse
  partner_autocomplete:
    trial_credits: 1000
upstream:
` + hostsYAML(b.Public) + "  audit_log: " + audit + "\n"})

	const wait = 60 * time.Second
	post := func(what, path string, body []byte) (json.RawMessage, string) {
		t.Helper()
		res, rerr, err := a.Post(path, body, wait)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if rerr != nil {
			return nil, rerr.Name
		}
		return res, ""
	}
	call := func(p *abuseProc, path string, params any) (json.RawMessage, string) {
		t.Helper()
		res, rerr, err := p.Call(path, params, wait)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if rerr != nil {
			return nil, rerr.Name
		}
		return res, ""
	}

	replayed := 0
	threshold18 := "" // the last warning_threshold Odoo 18 pushed for its SMS account
	for _, v := range []string{"odoo17", "odoo18"} {
		for _, r := range rpctest.Load(t, v, fixturePath) {
			replayed++
			what := v + "/" + r.Name
			res, name := post(what, r.Path, r.Wire(t))
			svc := serviceOfPath(r.Path)
			if svc == "" && r.Path != "/iap/1/authorize" && r.Path != "/iap/1/capture" && r.Path != "/iap/1/cancel" {
				// An account route: never an error Odoo does not catch
				// there (§4.1); B is up, so none at all.
				if name != "" {
					t.Errorf("%s: account route answered %s", what, name)
				}
			}
			switch r.Path {
			case "/iap/update-warning-odoo", "/iap/1/update-warning-email-alerts":
				if ps := r.Params(t); v == "odoo18" && ps["account_token"] == "e1c341df746e42af93b5587c490dc106" {
					c, err := storage.ParseCredits(fmt.Sprint(ps["warning_threshold"]))
					if err != nil {
						t.Fatal(err)
					}
					threshold18 = c.String()
				}
				if string(res) != "true" {
					t.Errorf("%s: %s %s, want true (taken on A and B)", what, name, res)
				}
			case "/api/sms/3/send":
				if name != "" || strings.Contains(string(res), "server_error") {
					t.Errorf("%s: %s %s", what, name, res)
				}
			}
		}
	}
	if replayed < 60 {
		t.Fatalf("only %d requests replayed", replayed)
	}

	// Where the credit moved.
	la, lb := ledgerOf(t, a), ledgerOf(t, b)
	for k := range la {
		if strings.HasPrefix(k, "sms ") || strings.HasPrefix(k, "snailmail ") || strings.HasPrefix(k, "reveal ") {
			t.Errorf("A's ledger holds %s", k)
		}
	}
	for k := range lb {
		if strings.HasPrefix(k, "partner_autocomplete ") || strings.HasPrefix(k, "reveal ") {
			t.Errorf("B's ledger holds %s", k)
		}
	}
	ca, cb := capturedBy(la), capturedBy(lb)
	t.Logf("captured on A: %v; on B: %v", ca, cb)
	if cb["sms"] <= 0 || cb["snailmail"] <= 0 || ca["partner_autocomplete"] <= 0 {
		t.Errorf("captured on A %v, on B %v: want sms and snailmail on B, partner_autocomplete on A", ca, cb)
	}
	const (
		sms17, pa17, snail17, reveal17 = "84b071e7d48f4e1592471d501ab8594d", "553778f732534f01bc82e81c597f9f00", "672393ad8dbb4015b377f97c91479b55", "6b92d4120d4f4570a80bbdbfed085859"
		sms18, snail18, pa18, reveal18 = "e1c341df746e42af93b5587c490dc106", "6e89d5b38eb848c782fb212fb15d4643", "a93313b02ad94d5da089241933597940", "dc75593f02fd43cead7ce79519ffcfe5"
	)
	// Odoo 17's warn_me write reached B's SMS account (§4.3, fixture 003).
	if acc, ok := lb["sms "+sms17]; !ok || !acc.Alerts.Enabled || acc.Alerts.Threshold.String() != "10" {
		t.Errorf("B's 17.0 sms account alerts: %+v (present %v)", acc.Alerts, ok)
	}
	// Odoo 18's last threshold for its SMS account reached B (§4.5).
	if acc := lb["sms "+sms18]; threshold18 == "" || acc.Alerts.Threshold.String() != threshold18 {
		t.Errorf("B's 18.0 sms account alerts: %+v", acc.Alerts)
	}

	// Odoo 17's account list through A, with every token of the database
	// (§4.2): partner autocomplete from A, sms and snailmail from B (their
	// balances B's), reveal left out.
	res, name := call(a, "/iap/services-token", map[string]any{"dbuuid": "7ee805fc-eac7-11f1-8369-02fc00000001",
		"iap_accounts": []string{sms17, pa17, snail17, reveal17}})
	var list []struct {
		Token   string  `json:"account_token"`
		Service string  `json:"service_name"`
		Balance float64 `json:"balance"`
		WarnMe  bool    `json:"warn_me"`
	}
	if name != "" || json.Unmarshal(res, &list) != nil {
		t.Fatalf("services-token: %s %s", name, res)
	}
	var got []string
	for _, it := range list {
		got = append(got, it.Service+" "+it.Token)
		where := lb
		if it.Service == "partner_autocomplete" {
			where = la
		}
		if want := where[it.Service+" "+it.Token].Available.String(); fmt.Sprint(it.Balance) != want {
			t.Errorf("services-token: %s balance %v, want %s", it.Service, it.Balance, want)
		}
		if it.Service == "sms" && !it.WarnMe {
			t.Error("services-token: the sms account's warn_me is off")
		}
	}
	if want := []string{"sms " + sms17, "partner_autocomplete " + pa17, "snailmail " + snail17}; !slices.Equal(got, want) {
		t.Errorf("services-token through A: %v, want %v", got, want)
	}

	// Odoo 18's account form through A (§4.4).
	res, name = call(a, "/iap/1/get-accounts-information", map[string]any{"dbuuid": "d", "iap_accounts": []map[string]string{
		{"token": sms18, "service": "sms"}, {"token": snail18, "service": "snailmail"}, {"token": pa18, "service": "partner_autocomplete"}, {"token": reveal18, "service": "reveal"}}})
	var form map[string]struct {
		Balance          float64 `json:"balance"`
		WarningThreshold float64 `json:"warning_threshold"`
		Registered       string  `json:"registered"`
		SenderName       *string `json:"sender_name"`
	}
	if name != "" || json.Unmarshal(res, &form) != nil || len(form) != 4 {
		t.Fatalf("get-accounts-information: %s %s", name, res)
	}
	if f := form[sms18]; fmt.Sprint(f.Balance) != lb["sms "+sms18].Available.String() || fmt.Sprint(f.WarningThreshold) != threshold18 || f.SenderName == nil {
		t.Errorf("18.0 form, sms: %+v", f)
	}
	if f := form[pa18]; fmt.Sprint(f.Balance) != la["partner_autocomplete "+pa18].Available.String() {
		t.Errorf("18.0 form, autocomplete: %+v", f)
	}
	if f := form[reveal18]; f.Registered != "unregistered" || f.Balance != 0 {
		t.Errorf("18.0 form, reveal: %+v", f)
	}
	// The balance of a forwarded service is B's (§4.1).
	res, _ = call(a, "/iap/1/balance", map[string]any{"dbuuid": "d", "account_token": sms18, "service_name": "sms"})
	if string(res) != lb["sms "+sms18].Available.String() {
		t.Errorf("sms balance through A: %s, B has %s", res, lb["sms "+sms18].Available)
	}

	// B stopped: the unreachable-IAP answers, nothing held on A.
	b.Stop()
	if _, name := call(a, "/iap/1/balance", map[string]any{"dbuuid": "d", "account_token": sms18, "service_name": "sms"}); name != "odoo.exceptions.AccessError" {
		t.Errorf("balance with B down: %q, want AccessError (get_credits -1)", name)
	}
	for _, p := range []string{"/iap/update-warning-odoo", "/iap/1/update-warning-email-alerts"} {
		if _, name := call(a, p, map[string]any{"dbuuid": "d", "account_token": sms18, "warning_threshold": 3}); name != "odoo.exceptions.AccessError" {
			t.Errorf("%s with B down: %q, want AccessError (logged by Odoo)", p, name)
		}
	}
	res, name = call(a, "/iap/services-token", map[string]any{"dbuuid": "d", "iap_accounts": []string{sms17, pa17, snail17}})
	if name != "" || !strings.Contains(string(res), pa17) || strings.Contains(string(res), sms17) {
		t.Errorf("services-token with B down: %s %s, want A's accounts", name, res)
	}
	sms := rpctest.Load(t, "odoo18", func(r *rpctest.Request) bool { return r.Name == "008_api_sms_3_send.json" })[0]
	if res, name := post("sms with B down", sms.Path, sms.Wire(t)); name != "" || !strings.Contains(string(res), `"state":"server_error"`) {
		t.Errorf("sms with B down: %s %s", name, res)
	}
	for k, acc := range ledgerOf(t, a) {
		if acc.Held != 0 {
			t.Errorf("A holds credit on %s: %s", k, acc.Held)
		}
	}

	// The audit log names the service of forwarded balance calls.
	raw, err := os.ReadFile(audit)
	if err != nil {
		t.Fatal(err)
	}
	balances := 0
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var rec proxy.AuditRecord
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		if rec.Route == "/iap/1/balance" {
			balances++
			if rec.Service != "sms" {
				t.Errorf("audit: a forwarded balance names service %q", rec.Service)
			}
		}
	}
	if balances < 5 || strings.Contains(string(raw), sms18) {
		t.Errorf("audit: %d balance records; raw token present: %v", balances, strings.Contains(string(raw), sms18))
	}
}

// TestUpstreamCancelledWhenClientGoes: a forwarded request runs in the
// request's context (rpc.Server.RunRequest), so when the Odoo client
// closes its connection the upstream call is cancelled (the upstream sees
// its request end) and audited "canceled", long before the route's
// deadline would have ended it ("timeout").
func TestUpstreamCancelledWhenClientGoes(t *testing.T) {
	got, gone := make(chan struct{}, 1), make(chan struct{}, 1)
	release := make(chan struct{})
	defer close(release)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // net/http notices a closed connection once the body is read
		got <- struct{}{}
		select {
		case <-r.Context().Done():
			gone <- struct{}{}
		case <-release:
		}
	}))
	defer up.Close()
	dir := t.TempDir()
	audit := filepath.Join(dir, "audit.jsonl")
	cfg := filepath.Join(dir, "iapd.yaml")
	if err := os.WriteFile(cfg, []byte("services:\n  sms:\n    mode: upstream\nupstream:\n"+hostsYAML(up.URL)+"  audit_log: "+audit+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, nil, "-config", cfg)
	sms := rpctest.Load(t, "odoo18", func(r *rpctest.Request) bool { return r.Name == "008_api_sms_3_send.json" })[0]
	body := sms.Wire(t)
	c, err := net.Dial("tcp", strings.TrimPrefix(s.public, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: iap\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", sms.Path, len(body), body)
	select {
	case <-got:
	case <-time.After(60 * time.Second):
		t.Fatal("the upstream never got the SMS")
	}
	c.Close() // the client goes
	select {
	case <-gone:
	case <-time.After(60 * time.Second):
		t.Fatal("the upstream call was not cancelled")
	}
	s.stop(t)
	raw, err := os.ReadFile(audit)
	if err != nil {
		t.Fatal(err)
	}
	var rec proxy.AuditRecord
	if err := json.Unmarshal(raw, &rec); err != nil || rec.Outcome != proxy.OutcomeCanceled || rec.Service != "sms" {
		t.Errorf("audit: %s (%v), want one sms record, outcome canceled", raw, err)
	}
}

// TestUpstreamEndlessAnswer: an upstream answering an endless body to 50
// SMS sent at once costs A a bounded read per request
// (upstream.max_answer_bytes): every SMS is answered server_error, A
// keeps serving, and its resident memory (peak included) is reported.
func TestUpstreamEndlessAnswer(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		chunk := []byte(strings.Repeat(`{"result": [`, 1<<12))
		for range 1 << 14 { // up to 800 MB, unless the reader stops
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer up.Close()
	a := startAbuse(t, abuseOpts{Config: "services:\n  sms:\n    mode: upstream\nupstream:\n" + hostsYAML(up.URL)})
	sms := rpctest.Load(t, "odoo18", func(r *rpctest.Request) bool { return r.Name == "008_api_sms_3_send.json" })[0]
	body := sms.Wire(t)
	before := a.Memory()
	const n = 50
	errs := make(chan string, n)
	for range n {
		go func() {
			res, rerr, err := a.Post(sms.Path, body, 120*time.Second)
			switch {
			case err != nil:
				errs <- err.Error()
			case rerr != nil || !strings.Contains(string(res), `"state":"server_error"`):
				errs <- fmt.Sprintf("%v %s", rerr, res)
			default:
				errs <- ""
			}
		}()
	}
	for range n {
		if e := <-errs; e != "" {
			t.Errorf("sms against an endless upstream: %s", e)
		}
	}
	after := a.Memory()
	if code, _ := a.Readyz(); code != 200 {
		t.Errorf("A not ready after the endless answers: %d", code)
	}
	st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.Pid()))
	peak := ""
	for _, l := range strings.Split(string(st), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			peak = strings.Join(strings.Fields(l)[1:], " ")
		}
	}
	abuseFigure(t, "%d SMS at once against an endless upstream answer (upstream.max_answer_bytes 4 MiB each): all server_error; A's memory %s before, %s after, peak RSS %s", n, before, after, peak)
}
