package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iapd/iapd/providers/smtp/smtptest"
	"github.com/iapd/iapd/rpc/notify"
	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

// TestLowCreditAlerts is issue 5's acceptance for the alerts: a real SMTP
// server (emersion/go-smtp, STARTTLS and AUTH) in process, an account
// driven across its threshold by real authorize+capture calls over
// JSON-RPC, exactly one e-mail per recipient per crossing with the right
// content and language, re-armed by a recharge; then a crossing while the
// SMTP server is down, iapd stopped with the alert queued, restarted: the
// alert is sent once.
func TestLowCreditAlerts(t *testing.T) {
	smtpSrv := smtptest.Start(t, smtptest.Options{TLS: "starttls", User: "alerts@example.com", Password: "smtp-pw-7Hq"})
	hook := newHookReceiver(t, "hook-secret-0123456789")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfgPath := filepath.Join(dir, "iapd.yaml")
	cfg := fmt.Sprintf(`admin_token: %s
public_url: https://iap.example.com
providers:
  mail:
    type: smtp
    host: 127.0.0.1
    port: %d
    tls: starttls
    username: alerts@example.com
    password: ${SMTP_PASSWORD}
    from: "IAP credits <alerts@example.com>"
    helo_name: iapd.example.com
    timeout: 5s
    ca_pem: |
      %s
alerts:
  notifier: mail
  poll_interval: 20ms
  retry_min: 20ms
  retry_max: 100ms
  webhook:
    allow_private_networks: true
    services:
      geo: {url: "%s/iap-alert", secret: "hook-secret-0123456789"}
`, testAdminToken, smtpSrv.Port(), strings.ReplaceAll(strings.TrimSpace(smtpSrv.CAPEM), "\n", "\n      "), hook.srv.URL)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SMTP_PASSWORD": "smtp-pw-7Hq"}
	start := func() *testServer {
		t.Helper()
		s, err := startRun(t, env, []string{"serve", "-config", cfgPath, "-listen", "127.0.0.1:0", "-ops-listen", "127.0.0.1:0", "-data", data})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := start()
	if strings.Contains(s.stderr.String(), "smtp-pw-7Hq") {
		t.Fatal("SMTP password in the log")
	}

	out := s.mustCLI(t, "", "services", "create", "geo", "-auto-register=false", "-description", "Geocoding", "-unit", "Credits")
	key := regexp.MustCompile(`(?m)^key: ([0-9a-f]{64})$`).FindStringSubmatch(out)
	if key == nil {
		t.Fatalf("services create:\n%s", out)
	}
	const tok = "5f8e2b1c0d4a4e6f9b3c7a1d2e3f4a5b"
	s.mustCLI(t, "", "credit", "geo", tok, "30", "-ref", "order-1")
	hc := &http.Client{Timeout: 10 * time.Second}
	if _, err := rpcCall(hc, s.public, "/iap/1/update-warning-email-alerts", map[string]any{
		"account_token": tok, "warning_threshold": 20,
		"warning_emails": []map[string]string{{"email": "anne@example.be", "lang_code": "fr_BE"}, {"email": "bob@example.com", "lang_code": "en_US"}},
	}); err != nil {
		t.Fatal(err)
	}
	charge := func(s *testServer, amount string) {
		t.Helper()
		res, err := rpcCall(hc, s.public, "/iap/1/authorize", map[string]any{
			"account_token": tok, "key": key[1], "credit": json.Number(amount), "description": "geocoding batch", "ttl": 1})
		if err != nil {
			t.Fatalf("authorize %s: %v", amount, err)
		}
		var txn string
		if err := json.Unmarshal(res, &txn); err != nil {
			t.Fatal(err)
		}
		if _, err := rpcCall(hc, s.public, "/iap/1/capture", map[string]any{"token": txn, "key": key[1], "credit_to_capture": json.Number(amount)}); err != nil {
			t.Fatalf("capture %s: %v", amount, err)
		}
	}
	link := "https://iap.example.com/iap/1/credit?service_name=geo&account_token=" + notify.HashedToken(tok) + "&hashed=1"

	// Above the threshold: nothing.
	charge(s, "5") // 25 left
	// First crossing: 12.5 left; one e-mail to each recipient, in their language.
	charge(s, "12.5")
	first := receive(t, smtpSrv, 2)
	checkAlert(t, first, "anne@example.be", "Crédit faible : Geocoding — il reste 12,5 crédits", []string{"Solde :  12,5 crédits", "Seuil :  20 crédits", link})
	checkAlert(t, first, "bob@example.com", "Low credit: Geocoding — 12.5 credits left", []string{"Balance:   12.5 credits", "Threshold: 20 credits", link})
	waitMetric(t, s, `iap_alerts_sent_total{channel="email",outcome="sent"}`, 2, true)
	hook.expect(t, 1, "12.5", notify.HashedToken(tok))
	// Still below: no new crossing, no e-mail.
	charge(s, "1") // 11.5
	// A recharge re-arms; the next crossing sends a second alert.
	s.mustCLI(t, "", "credit", "geo", tok, "20", "-ref", "order-2") // 31.5
	charge(s, "15")                                                 // 16.5
	second := receive(t, smtpSrv, 2)
	checkAlert(t, second, "anne@example.be", "Crédit faible : Geocoding — il reste 16,5 crédits", []string{link})
	checkAlert(t, second, "bob@example.com", "Low credit: Geocoding — 16.5 credits left", []string{link})
	waitMetric(t, s, `iap_alerts_sent_total{channel="email",outcome="sent"}`, 4, true)
	hook.expect(t, 2, "16.5", notify.HashedToken(tok))
	if ids := messageIDs(t, append(first, second...)); len(ids) != 4 {
		t.Fatalf("Message-IDs not distinct per recipient and crossing: %v", ids)
	}

	// Restart case: the SMTP server is down at the third crossing; iapd
	// retries, is stopped with the alert queued, comes back with the
	// SMTP server: the alert goes out once.
	smtpSrv.Close()
	s.mustCLI(t, "", "credit", "geo", tok, "10", "-ref", "order-3") // 26.5: re-armed
	charge(s, "10")                                                 // 16.5: third crossing
	waitMetric(t, s, `iap_alerts_sent_total{channel="email",outcome="retry"}`, 2, false)
	// The webhook went out at the first try; its delivery mark keeps the
	// retries after the restart from posting it again.
	hook.expect(t, 3, "16.5", notify.HashedToken(tok))
	s.stop(t)
	queued := queuedAlerts(t, data)
	if len(queued) != 1 || queued[0].Attempts < 1 || queued[0].Available != 165000 || !strings.Contains(queued[0].LastError, "unavailable") {
		t.Fatalf("queued after the stop: %+v", queued)
	}
	if n := len(smtpSrv.Messages()); n != 4 {
		t.Fatalf("%d messages before the restart, want 4", n)
	}
	smtp2, err := smtptest.StartAt(smtpSrv.Addr, smtptest.Options{TLS: "starttls", User: "alerts@example.com", Password: "smtp-pw-7Hq"})
	if err != nil {
		t.Fatal(err)
	}
	defer smtp2.Close()
	// The restarted server has a new certificate.
	rewriteCA(t, cfgPath, smtpSrv.CAPEM, smtp2)
	s = start()
	third := receive(t, smtp2, 2)
	checkAlert(t, third, "anne@example.be", "Crédit faible : Geocoding — il reste 16,5 crédits", []string{link})
	checkAlert(t, third, "bob@example.com", "Low credit: Geocoding — 16.5 credits left", []string{link})
	waitMetric(t, s, `iap_alerts_sent_total{channel="email",outcome="sent"}`, 2, true)
	s.stop(t)
	if q := queuedAlerts(t, data); len(q) != 0 {
		t.Fatalf("still queued after delivery: %+v", q)
	}
	if n := len(smtp2.Messages()); n != 2 {
		t.Fatalf("%d messages after the restart, want exactly 2", n)
	}
	if n := hook.count(); n != 3 {
		t.Fatalf("%d webhook calls, want 3 (one per crossing)", n)
	}
}

// hookReceiver is a webhook receiver that checks the signature.
type hookReceiver struct {
	srv    *httptest.Server
	secret string
	mu     sync.Mutex
	calls  []notify.WebhookPayload
	got    chan struct{}
	errs   []string
}

func newHookReceiver(t *testing.T, secret string) *hookReceiver {
	h := &hookReceiver{secret: secret, got: make(chan struct{}, 16)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if err := notify.VerifySignature([]byte(h.secret), r.Header.Get(notify.SignatureHeader), b, time.Now(), time.Minute); err != nil || r.URL.Path != "/iap-alert" {
			h.errs = append(h.errs, fmt.Sprintf("%s: %v", r.URL.Path, err))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var p notify.WebhookPayload
		if err := json.Unmarshal(b, &p); err != nil {
			h.errs = append(h.errs, err.Error())
		}
		h.calls = append(h.calls, p)
		h.got <- struct{}{}
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) count() int { h.mu.Lock(); defer h.mu.Unlock(); return len(h.calls) }

// expect waits for the n-th call and checks it.
func (h *hookReceiver) expect(t *testing.T, n int, available, hash string) {
	t.Helper()
	for h.count() < n {
		select {
		case <-h.got:
		case <-time.After(time.Minute):
			t.Fatalf("webhook call %d not received", n)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.errs) > 0 || len(h.calls) != n {
		t.Fatalf("webhook: %d calls, errors %v", len(h.calls), h.errs)
	}
	p := h.calls[n-1]
	if p.Service != "geo" || p.AccountHash != hash || p.Available.String() != available || p.Threshold.String() != "20" || p.At.IsZero() {
		t.Fatalf("webhook payload %+v", p)
	}
}

// receive waits for n more messages and returns the last n.
func receive(t *testing.T, srv *smtptest.Server, n int) []smtptest.Message {
	t.Helper()
	timeout := time.After(time.Minute)
	for i := 0; i < n; i++ {
		select {
		case <-srv.Received():
		case <-timeout:
			t.Fatalf("received %d of %d messages", i, n)
		}
	}
	ms := srv.Messages()
	return ms[len(ms)-n:]
}

// checkAlert finds the message to addr and checks its subject and text
// part, and that it carries the hashed token only.
func checkAlert(t *testing.T, ms []smtptest.Message, addr, subject string, text []string) {
	t.Helper()
	for _, m := range ms {
		if len(m.To) != 1 || m.To[0] != addr {
			continue
		}
		if !m.TLS || m.User != "alerts@example.com" || m.From != "alerts@example.com" {
			t.Errorf("%s: session TLS %v user %q from %q", addr, m.TLS, m.User, m.From)
		}
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatal(err)
		}
		subj, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
		if subj != subject {
			t.Errorf("%s: subject %q, want %q", addr, subj, subject)
		}
		body := textPart(t, msg)
		for _, want := range text {
			if !strings.Contains(body, want) {
				t.Errorf("%s: text lacks %q:\n%s", addr, want, body)
			}
		}
		if strings.Contains(string(m.Data), "5f8e2b1c0d4a") {
			t.Errorf("%s: the raw account token is in the e-mail", addr)
		}
		return
	}
	t.Fatalf("no message to %s among %d", addr, len(ms))
}

func textPart(t *testing.T, msg *mail.Message) string {
	t.Helper()
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err != nil {
			t.Fatalf("no text/plain part: %v", err)
		}
		if strings.HasPrefix(p.Header.Get("Content-Type"), "text/plain") {
			b, err := io.ReadAll(quotedprintable.NewReader(p))
			if err != nil {
				t.Fatal(err)
			}
			return strings.ReplaceAll(string(b), "\r\n", "\n")
		}
	}
}

func messageIDs(t *testing.T, ms []smtptest.Message) map[string]bool {
	ids := map[string]bool{}
	for _, m := range ms {
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatal(err)
		}
		ids[msg.Header.Get("Message-Id")] = true
	}
	return ids
}

// waitMetric waits until the ops listener's /metrics shows series at
// want (at least want unless exact): the dispatcher's bookkeeping after
// a send is asynchronous.
func waitMetric(t *testing.T, s *testServer, series string, want float64, exact bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var got float64
	for time.Now().Before(deadline) {
		_, body := get(t, s.ops+"/metrics", "")
		got = 0
		for _, line := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(line, series+" "); ok {
				got, _ = strconv.ParseFloat(v, 64)
			}
		}
		if got == want || !exact && got > want {
			return
		}
		if got > want {
			t.Fatalf("%s = %v, want %v", series, got, want)
		}
		<-time.After(10 * time.Millisecond)
	}
	t.Fatalf("%s = %v, want %v; server log:\n%s", series, got, want, s.stderr.String())
}

// queuedAlerts opens the stopped server's ledger and lists its queue.
func queuedAlerts(t *testing.T, data string) []storage.AlertNotice {
	t.Helper()
	l, err := badger.Open(badger.Options{Dir: data})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	q, err := l.DueAlerts(context.Background(), time.Now().Add(24*time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// rewriteCA puts the restarted SMTP server's certificate in the config.
func rewriteCA(t *testing.T, cfgPath, oldPEM string, srv *smtptest.Server) {
	t.Helper()
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	indent := func(p string) string { return strings.ReplaceAll(strings.TrimSpace(p), "\n", "\n      ") }
	nb := strings.Replace(string(b), indent(oldPEM), indent(srv.CAPEM), 1)
	if err := os.WriteFile(cfgPath, []byte(nb), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestAlertQueuedBeforeTheDispatcherRuns: the crossing is committed while
// the dispatcher is off (alerts.disabled); after a restart with it on,
// the default notifier (the "outbox" sandbox) writes the alert once, as
// an .eml file.
func TestAlertQueuedBeforeTheDispatcherRuns(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfgPath := filepath.Join(dir, "iapd.yaml")
	write := func(disabled bool) {
		src := fmt.Sprintf("admin_token: %s\npublic_url: https://iap.example.com\nalerts:\n  disabled: %v\n  poll_interval: 20ms\n", testAdminToken, disabled)
		if err := os.WriteFile(cfgPath, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	start := func() *testServer {
		t.Helper()
		s, err := startRun(t, nil, []string{"serve", "-config", cfgPath, "-listen", "127.0.0.1:0", "-ops-listen", "127.0.0.1:0", "-data", data})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	write(true)
	s := start()
	const tok = "0c1d2e3f4a5b6c7d8e9fa0b1c2d3e4f5"
	s.mustCLI(t, "", "credit", "sms", tok, "10")
	hc := &http.Client{Timeout: 10 * time.Second}
	if _, err := rpcCall(hc, s.public, "/iap/1/update-warning-email-alerts", map[string]any{
		"account_token": tok, "warning_threshold": 5, "warning_emails": []map[string]string{{"email": "ops@example.fr", "lang_code": "fr_FR"}},
	}); err != nil {
		t.Fatal(err)
	}
	s.mustCLI(t, "", "credit", "sms", tok, "-6") // adjustment: 4 left, below 5
	s.stop(t)
	if q := queuedAlerts(t, data); len(q) != 1 || q[0].Attempts != 0 || q[0].Available.String() != "4" {
		t.Fatalf("queued: %+v", q)
	}
	write(false)
	s = start()
	waitMetric(t, s, `iap_alerts_sent_total{channel="email",outcome="sent"}`, 1, true)
	s.stop(t)
	if q := queuedAlerts(t, data); len(q) != 0 {
		t.Fatalf("still queued: %+v", q)
	}
	files, err := filepath.Glob(filepath.Join(data, "providers", "outbox", "mail", "*.eml"))
	if err != nil || len(files) != 1 {
		t.Fatalf("outbox mail: %v %v", files, err)
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	subj, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	// (The subject names the service by its description.)
	if !strings.HasPrefix(subj, "Crédit faible : ") || !strings.HasSuffix(subj, " — il reste 4 crédits") || msg.Header.Get("To") != "<ops@example.fr>" {
		t.Fatalf("subject %q to %q", subj, msg.Header.Get("To"))
	}
	if body := textPart(t, msg); !strings.Contains(body, "account_token="+notify.HashedToken(tok)+"&hashed=1") {
		t.Fatalf("no hashed link:\n%s", body)
	}
}

// TestAlertsConfigRefused: the alerts section is decoded strictly and
// checked at start-up.
func TestAlertsConfigRefused(t *testing.T) {
	for _, c := range []struct{ section, want string }{
		{"alerts:\n  notifer: mail\n", "field notifer not found"},
		{"alerts:\n  notifier: nope\n", `no provider named "nope"`},
		{"alerts:\n  retry_min: 1h\n  retry_max: 1m\n", "retry_max is below retry_min"},
		{"alerts:\n  webhook: {url: \"http://hooks.example.com/x\", secret: \"0123456789abcdef\"}\n", "want https://"},
		{"alerts:\n  webhook: {url: \"https://hooks.example.com/x\", secret: \"short\"}\n", "secret: at least 16"},
	} {
		cfgPath := filepath.Join(t.TempDir(), "iapd.yaml")
		if err := os.WriteFile(cfgPath, []byte(c.section), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := tryStartServer(t, nil, "-config", cfgPath)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "alerts") {
			t.Errorf("%q: %v, want an alerts error with %q", c.section, err, c.want)
		}
	}
}
