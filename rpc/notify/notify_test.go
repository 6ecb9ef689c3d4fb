package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/outbound"
	"github.com/iapd/iapd/storage"
)

// memOutbox is an in-memory storage.AlertOutbox with the contract's
// semantics (due by NextTry, oldest first; AlertFailed NotFound when
// gone).
type memOutbox struct {
	mu sync.Mutex
	q  map[uint64]storage.AlertNotice
}

func newMemOutbox(ns ...storage.AlertNotice) *memOutbox {
	o := &memOutbox{q: map[uint64]storage.AlertNotice{}}
	for _, n := range ns {
		o.q[n.ID] = n
	}
	return o
}

func (o *memOutbox) DueAlerts(_ context.Context, now time.Time, max int) ([]storage.AlertNotice, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []storage.AlertNotice
	for _, n := range o.q {
		if !n.NextTry.After(now) {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if len(out) > max {
		out = out[:max]
	}
	return out, nil
}

func (o *memOutbox) AlertSent(_ context.Context, id uint64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.q, id)
	return nil
}

func (o *memOutbox) AlertFailed(_ context.Context, id uint64, next time.Time, reason string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, ok := o.q[id]
	if !ok {
		return storage.Ef("alert-failed", storage.NotFound, "no alert %d", id)
	}
	n.Attempts++
	n.NextTry, n.LastError = next, reason
	o.q[id] = n
	return nil
}

func (o *memOutbox) get(id uint64) (storage.AlertNotice, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, ok := o.q[id]
	return n, ok
}

// memRecords is an in-memory storage.Records (no expiry handling needed
// here).
type memRecords struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (r *memRecords) PutRecordIfAbsent(_ context.Context, ns, key string, v []byte, _ time.Time) ([]byte, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.m[ns+"\x00"+key]; ok {
		return old, false, nil
	}
	r.m[ns+"\x00"+key] = v
	return v, true, nil
}
func (r *memRecords) PutRecord(_ context.Context, ns, key string, v []byte, _ time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[ns+"\x00"+key] = v
	return nil
}
func (r *memRecords) GetRecord(_ context.Context, ns, key string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.m[ns+"\x00"+key]; ok {
		return v, nil
	}
	return nil, storage.Ef("get-record", storage.NotFound, "absent")
}
func (r *memRecords) DeleteRecord(_ context.Context, ns, key string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, ns+"\x00"+key)
	return nil
}
func (r *memRecords) len() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.m) }

// fakeSender records e-mails and fails as told per recipient.
type fakeSender struct {
	mu   sync.Mutex
	sent []providers.Email
	fail map[string]providers.Kind // recipient → failure kind
}

func (f *fakeSender) Name() string { return "fake" }
func (f *fakeSender) Type() string { return "fake" }
func (f *fakeSender) Close() error { return nil }
func (f *fakeSender) SendEmail(_ context.Context, m providers.Email) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if k, ok := f.fail[m.To[0]]; ok {
		return providers.Errorf("fake", k, "told to fail")
	}
	f.sent = append(f.sent, m)
	return nil
}
func (f *fakeSender) setFail(to string, k providers.Kind) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if k == 0 {
		delete(f.fail, to)
	} else {
		f.fail[to] = k
	}
}
func (f *fakeSender) to(addr string) []providers.Email {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []providers.Email
	for _, m := range f.sent {
		if m.To[0] == addr {
			out = append(out, m)
		}
	}
	return out
}

// fakeDir is a Directory.
type fakeDir struct{}

func (fakeDir) Service(_ context.Context, name storage.ServiceName) (storage.Service, error) {
	return storage.Service{Name: name, Description: "SMS", UnitName: "Credits"}, nil
}
func (fakeDir) LookupAccount(_ context.Context, svc storage.ServiceName, tok storage.AccountToken) (storage.Account, error) {
	return storage.Account{Service: svc, Token: tok, DBUUID: "0e5f2c6a-db"}, nil
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

var t0 = time.Date(2026, 11, 28, 9, 30, 0, 0, time.UTC)

const rawToken = "a4a09dd3-5c1e-4b7a-9f3e-1d2c3b4a94b9"

func notice(id uint64, rs ...storage.Recipient) storage.AlertNotice {
	return storage.AlertNotice{ID: id, Service: "sms", Account: rawToken, Available: 125000, Threshold: 200000,
		Recipients: rs, At: t0, NextTry: t0}
}

type rig struct {
	d      *Dispatcher
	ob     *memOutbox
	marks  *memRecords
	sender *fakeSender
	clk    *clock
	reg    *prometheus.Registry
}

func newRig(t *testing.T, cfg Config, ns ...storage.AlertNotice) *rig {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := &rig{ob: newMemOutbox(ns...), marks: &memRecords{m: map[string][]byte{}},
		sender: &fakeSender{fail: map[string]providers.Kind{}}, clk: &clock{t0}, reg: prometheus.NewRegistry()}
	d, err := New(cfg, Deps{Outbox: r.ob, Sender: r.sender, Marks: r.marks, Dir: fakeDir{}, Reg: r.reg,
		Now: r.clk.now, PublicURL: "https://iap.example.com/", HTTP: http.DefaultClient})
	if err != nil {
		t.Fatal(err)
	}
	r.d = d
	return r
}

func (r *rig) pass(t *testing.T) int {
	t.Helper()
	n, err := r.d.Pass(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (r *rig) count(channel, outcome string) float64 {
	return testutil.ToFloat64(r.d.sent.WithLabelValues(channel, outcome))
}

func TestRenderLanguages(t *testing.T) {
	r := newRig(t, Config{}, notice(1,
		storage.Recipient{Email: "anne@example.be", Lang: "fr_BE"},
		storage.Recipient{Email: "Zoe@Example.fr", Lang: "fr_FR"},
		storage.Recipient{Email: "zoe@example.fr", Lang: "fr_FR"}, // same address: one e-mail
		storage.Recipient{Email: "bob@example.com", Lang: "en_US"},
		storage.Recipient{Email: "hans@example.de", Lang: "de_DE"},
		storage.Recipient{Email: "joe@example.pt", Lang: "pt_PT"}, // no Portuguese: English
		storage.Recipient{Email: "  ", Lang: "fr_FR"},
	))
	if n := r.pass(t); n != 1 {
		t.Fatalf("pass handled %d", n)
	}
	if _, queued := r.ob.get(1); queued {
		t.Fatal("alert still queued after delivery")
	}
	if got := len(r.sender.sent); got != 5 {
		t.Fatalf("%d e-mails, want 5 (one per distinct recipient)", got)
	}
	link := "https://iap.example.com/iap/1/credit?dbuuid=0e5f2c6a-db&service_name=sms&account_token=" + HashedToken(rawToken) + "&hashed=1"
	for _, c := range []struct {
		to, lang, subject string
		body              []string
	}{
		{"anne@example.be", "fr_BE", "Crédit faible : SMS — il reste 12,5 crédits", []string{"Solde :  12,5 crédits", "Seuil :  20 crédits", "28/11/2026 à 09:30 UTC", link}},
		{"Zoe@Example.fr", "fr_FR", "Crédit faible : SMS — il reste 12,5 crédits", []string{"12,5 crédits"}},
		{"bob@example.com", "en_US", "Low credit: SMS — 12.5 credits left", []string{"Balance:   12.5 credits", "Threshold: 20 credits", "2026-11-28 at 09:30 UTC", link}},
		{"hans@example.de", "de_DE", "Niedriges Guthaben: SMS — noch 12,5 Credits", []string{"Guthaben:       12,5 Credits", "Schwellenwert:  20 Credits", "28.11.2026 um 09:30 UTC", link}},
		{"joe@example.pt", "en", "Low credit: SMS — 12.5 credits left", []string{"12.5 credits"}},
	} {
		ms := r.sender.to(c.to)
		if len(ms) != 1 {
			t.Fatalf("%s got %d e-mails", c.to, len(ms))
		}
		m := ms[0]
		if m.Subject != c.subject || m.Language != c.lang {
			t.Errorf("%s: subject %q lang %q, want %q %q", c.to, m.Subject, m.Language, c.subject, c.lang)
		}
		for _, want := range c.body {
			if !strings.Contains(m.Text, want) {
				t.Errorf("%s: text lacks %q:\n%s", c.to, want, m.Text)
			}
		}
		if !strings.Contains(m.HTML, `href="`+strings.ReplaceAll(link, "&", "&amp;")+`"`) {
			t.Errorf("%s: HTML lacks the link:\n%s", c.to, m.HTML)
		}
		if strings.Contains(m.Text+m.HTML+m.Subject, rawToken) {
			t.Errorf("%s: the raw account token is in the e-mail", c.to)
		}
		if !strings.HasPrefix(m.ID, "iapd-alert-1-") {
			t.Errorf("ID %q", m.ID)
		}
	}
	if r.count(ChannelEmail, OutcomeSent) != 5 {
		t.Fatalf("sent metric %v", r.count(ChannelEmail, OutcomeSent))
	}
	if r.marks.len() != 0 {
		t.Fatalf("%d marks left after the alert was removed", r.marks.len())
	}
}

// TestHashedTokenIsOdoos pins the hash on the value checked against a
// real 19.0 (fixtures/odoo19/README.md).
func TestHashedTokenIsOdoos(t *testing.T) {
	if got := HashedToken("abc"); got != "a9993e364706816aba3e25717850c26c9cd0d89d" {
		t.Fatalf("HashedToken = %s", got)
	}
	if u := CreditURL("https://h", "reveal", "abc", ""); u != "https://h/iap/1/credit?service_name=reveal&account_token=a9993e364706816aba3e25717850c26c9cd0d89d&hashed=1" {
		t.Fatalf("CreditURL = %s", u)
	}
}

func TestRetryWithBackoff(t *testing.T) {
	r := newRig(t, Config{RetryMin: 30 * time.Second, RetryMax: 2 * time.Minute},
		notice(7, storage.Recipient{Email: "ops@example.com"}))
	r.sender.setFail("ops@example.com", providers.Unavailable)
	waits := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 2 * time.Minute}
	for i, w := range waits {
		r.pass(t)
		n, ok := r.ob.get(7)
		if !ok || n.Attempts != i+1 || !n.NextTry.Equal(r.clk.t.Add(w)) || !strings.Contains(n.LastError, "told to fail") {
			t.Fatalf("after failure %d: %+v (want next try in %v)", i+1, n, w)
		}
		r.clk.add(w - time.Second)
		if r.pass(t) != 0 {
			t.Fatalf("retried before its time (failure %d)", i+1)
		}
		r.clk.add(time.Second)
	}
	if r.sender.setFail("ops@example.com", providers.Indeterminate); r.pass(t) != 1 {
		t.Fatal("indeterminate not handled")
	}
	if n, _ := r.ob.get(7); n.Attempts != 5 {
		t.Fatalf("indeterminate not retried: %+v", n)
	}
	r.clk.add(2 * time.Minute)
	r.sender.setFail("ops@example.com", 0)
	r.pass(t)
	if _, ok := r.ob.get(7); ok || len(r.sender.to("ops@example.com")) != 1 {
		t.Fatal("not delivered once after the server came back")
	}
	if r.count(ChannelEmail, OutcomeRetry) != 5 || r.count(ChannelEmail, OutcomeSent) != 1 {
		t.Fatalf("metrics retry=%v sent=%v", r.count(ChannelEmail, OutcomeRetry), r.count(ChannelEmail, OutcomeSent))
	}
}

// TestPartialFailure: a retry sends only the deliveries that failed.
func TestPartialFailure(t *testing.T) {
	r := newRig(t, Config{}, notice(3, storage.Recipient{Email: "a@example.com"}, storage.Recipient{Email: "b@example.com"}))
	r.sender.setFail("b@example.com", providers.Unavailable)
	r.pass(t)
	r.sender.setFail("b@example.com", 0)
	r.clk.add(time.Minute)
	r.pass(t)
	if a, b := len(r.sender.to("a@example.com")), len(r.sender.to("b@example.com")); a != 1 || b != 1 {
		t.Fatalf("a got %d, b got %d; want 1 each", a, b)
	}
	if _, ok := r.ob.get(3); ok {
		t.Fatal("still queued")
	}
}

func TestInvalidNotRetried(t *testing.T) {
	r := newRig(t, Config{}, notice(4, storage.Recipient{Email: "bad@example.com"}, storage.Recipient{Email: "ok@example.com"}))
	r.sender.setFail("bad@example.com", providers.Invalid)
	r.pass(t)
	if _, ok := r.ob.get(4); ok {
		t.Fatal("an alert whose only failure is Invalid stays queued")
	}
	if r.count(ChannelEmail, OutcomeInvalid) != 1 || len(r.sender.to("ok@example.com")) != 1 {
		t.Fatal("invalid recipient blocked the other")
	}
}

func TestGiveUpAfter(t *testing.T) {
	r := newRig(t, Config{RetryMin: time.Hour, RetryMax: time.Hour, GiveUpAfter: 3 * time.Hour},
		notice(5, storage.Recipient{Email: "ops@example.com"}))
	r.sender.setFail("ops@example.com", providers.Unavailable)
	for i := 0; i < 3; i++ {
		r.pass(t)
		r.clk.add(time.Hour)
	}
	if _, ok := r.ob.get(5); !ok {
		t.Fatal("dropped before give_up_after")
	}
	r.pass(t)
	if _, ok := r.ob.get(5); ok {
		t.Fatal("still queued after give_up_after")
	}
	if r.count(ChannelEmail, OutcomeExpired) != 1 || r.count(ChannelEmail, OutcomeRetry) != 3 {
		t.Fatal("metrics")
	}
}

func TestWebhookSignedAndRetried(t *testing.T) {
	secret := "whsec-0123456789abcdef"
	var mu sync.Mutex
	status := http.StatusInternalServerError
	var bodies [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		if err := VerifySignature([]byte(secret), req.Header.Get(SignatureHeader), b, t0, 5*time.Minute); err != nil {
			t.Errorf("signature: %v", err)
		}
		if req.Header.Get("Content-Type") != "application/json" || req.Method != http.MethodPost {
			t.Errorf("request %s %s", req.Method, req.Header.Get("Content-Type"))
		}
		mu.Lock()
		defer mu.Unlock()
		bodies = append(bodies, b)
		w.WriteHeader(status)
	}))
	defer srv.Close()
	cfg := Config{Webhook: &WebhookConfig{AllowPrivateNetworks: true,
		URL: "https://unused.example.com/hook", Secret: "another-secret-0123456789",
		Services: map[string]WebhookTarget{"sms": {URL: srv.URL + "/hook", Secret: secret}}}}
	r := newRig(t, cfg, notice(9)) // no e-mail recipient: webhook only
	r.pass(t)
	if n, ok := r.ob.get(9); !ok || n.Attempts != 1 {
		t.Fatalf("500 not retried: %+v", n)
	}
	mu.Lock()
	status = http.StatusNoContent
	mu.Unlock()
	r.clk.add(time.Minute)
	r.pass(t)
	if _, ok := r.ob.get(9); ok {
		t.Fatal("webhook success left the alert queued")
	}
	if len(bodies) != 2 {
		t.Fatalf("%d calls", len(bodies))
	}
	var p map[string]json.RawMessage
	if err := json.Unmarshal(bodies[1], &p); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"id": "9", "service": `"sms"`, "account_hash": `"` + HashedToken(rawToken) + `"`,
		"available": "12.5", "threshold": "20", "at": `"2026-11-28T09:30:00Z"`}
	for k, v := range want {
		if string(p[k]) != v {
			t.Errorf("payload %s = %s, want %s", k, p[k], v)
		}
	}
	if bytes.Contains(bodies[1], []byte(rawToken)) {
		t.Fatal("raw token in the webhook")
	}
	if r.count(ChannelWebhook, OutcomeRetry) != 1 || r.count(ChannelWebhook, OutcomeSent) != 1 {
		t.Fatal("webhook metrics")
	}

	// A 4xx is the receiver refusing: not retried.
	mu.Lock()
	status = http.StatusBadRequest
	mu.Unlock()
	r.ob.q[10] = notice(10)
	r.pass(t)
	if _, ok := r.ob.get(10); ok || r.count(ChannelWebhook, OutcomeInvalid) != 1 {
		t.Fatal("400 retried")
	}
}

func TestVerifySignature(t *testing.T) {
	body := []byte(`{"id":1}`)
	h := Sign([]byte("k-0123456789abcdef"), t0, body)
	if err := VerifySignature([]byte("k-0123456789abcdef"), h, body, t0.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		secret, header string
		body           []byte
		now            time.Time
	}{
		"wrong secret": {"x-0123456789abcdef", h, body, t0},
		"tampered":     {"k-0123456789abcdef", h, []byte(`{"id":2}`), t0},
		"replayed":     {"k-0123456789abcdef", h, body, t0.Add(time.Hour)},
		"malformed":    {"k-0123456789abcdef", "v1=00", body, t0},
	} {
		if VerifySignature([]byte(c.secret), c.header, c.body, c.now, 5*time.Minute) == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestWebhookSSRFGuard: without allow_private_networks the dialer refuses
// loopback (and the config refuses http://).
func TestWebhookSSRFGuard(t *testing.T) {
	hit := false
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hit = true }))
	defer srv.Close()
	w := &webhook{cfg: &WebhookConfig{Timeout: 5 * time.Second}, client: webhookClient(false, 5*time.Second), now: time.Now}
	err := w.post(ctx(t), WebhookTarget{URL: srv.URL, Secret: "s-0123456789abcdef"}, WebhookPayload{ID: 1})
	if providers.KindOf(err) != providers.Unavailable || hit || !strings.Contains(err.Error(), "non-public") {
		t.Fatalf("loopback dialled: %v (hit %v)", err, hit)
	}
	for _, c := range []WebhookConfig{
		{URL: "http://hooks.example.com/x", Secret: "s-0123456789abcdef"},
		{URL: "https://user:pw@hooks.example.com/x", Secret: "s-0123456789abcdef"},
		{URL: "https://hooks.example.com/x", Secret: "short"},
		{URL: "ftp://hooks.example.com/x", Secret: "s-0123456789abcdef", AllowPrivateNetworks: true},
		{Services: map[string]WebhookTarget{"bad name!": {URL: "https://h/x", Secret: "s-0123456789abcdef"}}},
		{},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
	for _, a := range []string{"127.0.0.1", "10.1.2.3", "192.168.1.1", "172.16.0.1", "169.254.169.254", "100.64.0.1", "::1", "fd00::1", "fe80::1", "::ffff:127.0.0.1", "0.0.0.0", "64:ff9b::a00:1"} {
		if outbound.PublicAddr(mustAddr(t, a)) {
			t.Errorf("%s taken as public", a)
		}
	}
	for _, a := range []string{"93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"} {
		if !outbound.PublicAddr(mustAddr(t, a)) {
			t.Errorf("%s taken as non-public", a)
		}
	}
}

func TestRunLoopUsesTheInjectedTimer(t *testing.T) {
	r := newRig(t, Config{PollInterval: time.Hour}, notice(11, storage.Recipient{Email: "ops@example.com"}))
	tick := make(chan time.Time)
	asked := make(chan time.Duration, 4)
	r.d.after = func(d time.Duration) <-chan time.Time { asked <- d; return tick }
	c, cancel := context.WithCancel(ctx(t))
	done := make(chan struct{})
	go func() { r.d.Run(c); close(done) }()
	if d := <-asked; d != time.Hour { // first pass done, now waiting
		t.Fatalf("waits %v", d)
	}
	if len(r.sender.to("ops@example.com")) != 1 {
		t.Fatal("the first pass did not run at start")
	}
	r.ob.mu.Lock()
	r.ob.q[12] = notice(12, storage.Recipient{Email: "ops@example.com"})
	r.ob.mu.Unlock()
	tick <- t0
	<-asked
	if len(r.sender.to("ops@example.com")) != 2 {
		t.Fatal("the tick did not run a pass")
	}
	cancel()
	<-done
}

func TestConfigValidate(t *testing.T) {
	c := Config{}
	if err := c.Validate(); err != nil || c.Notifier != "outbox" || c.PollInterval != 15*time.Second || c.Batch != 50 {
		t.Fatalf("defaults: %v %+v", err, c)
	}
	for _, bad := range []Config{{RetryMin: time.Hour, RetryMax: time.Minute}, {PollInterval: -1}, {Batch: -1}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

func TestTemplatesComplete(t *testing.T) {
	tm, err := loadTemplates(templateFS)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tm.languages(), ","); got != "de,en,es,fr,nl" {
		t.Fatalf("languages %s", got)
	}
	for _, code := range []string{"fr", "fr_FR", "fr_BE", "FR-ca", "en_GB", "", "xx"} {
		m, err := tm.render(code, facts{Service: "sms", Available: 1, Threshold: 2, At: t0, Link: "https://x/iap/1/credit?a=1&b=2"})
		if err != nil || m.Subject == "" || strings.Contains(m.Subject, "\n") || !strings.Contains(m.Text, "https://x/iap/1/credit?a=1&b=2") {
			t.Fatalf("%q: %v %+v", code, err, m)
		}
	}
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// stuckOutbox fails AlertSent for one alert.
type stuckOutbox struct {
	*memOutbox
	stuck uint64
}

func (o stuckOutbox) AlertSent(ctx context.Context, id uint64) error {
	if id == o.stuck {
		return storage.Ef("alert-sent", storage.Unavailable, "disk full")
	}
	return o.memOutbox.AlertSent(ctx, id)
}

// TestOneAlertDoesNotHoldUpTheOthers: an alert whose bookkeeping fails
// does not block the queue behind it.
func TestOneAlertDoesNotHoldUpTheOthers(t *testing.T) {
	r := newRig(t, Config{}, notice(1, storage.Recipient{Email: "a@example.com"}), notice(2, storage.Recipient{Email: "b@example.com"}))
	r.d.outbox = stuckOutbox{r.ob, 1}
	n, err := r.d.Pass(ctx(t))
	if err == nil || !strings.Contains(err.Error(), "alert 1") || n != 1 {
		t.Fatalf("Pass = %d, %v", n, err)
	}
	if _, ok := r.ob.get(2); ok || len(r.sender.to("b@example.com")) != 1 {
		t.Fatal("alert 2 held up by alert 1")
	}
	// The next pass does not e-mail a again: its delivery was marked.
	r.d.outbox = r.ob
	r.pass(t)
	if len(r.sender.to("a@example.com")) != 1 {
		t.Fatalf("a got %d e-mails", len(r.sender.to("a@example.com")))
	}
}

// FuzzVerifySignature: any header is judged without panicking, and only
// the genuine signature passes.
func FuzzVerifySignature(f *testing.F) {
	secret := []byte("fuzz-secret-0123456789")
	body := []byte(`{"id":1,"service":"sms"}`)
	f.Add(Sign(secret, t0, body))
	f.Add("t=1,v1=zz")
	f.Add("v1=,t=,,=")
	// Found by the fuzzer: the genuine MAC in mixed-case hex is the same
	// MAC (hex decodes either case), and is accepted.
	genuine := Sign(secret, t0, body)
	f.Add(genuine[:strings.Index(genuine, "v1=")+3] + strings.ToUpper(genuine[strings.Index(genuine, "v1=")+3:]))
	f.Fuzz(func(t *testing.T, header string) {
		err := VerifySignature(secret, header, body, t0, time.Minute)
		mac := genuine[strings.Index(genuine, "v1=")+3:]
		if err == nil && !strings.Contains(strings.ToLower(header), "v1="+mac) {
			// A pass needs the real MAC somewhere in the header (t may
			// be written differently, e.g. with leading zeros; hex in
			// either case).
			t.Fatalf("accepted %q", header)
		}
	})
}

// denyGate refuses the e-mails to the addresses in deny and records what
// it was asked.
type denyGate struct {
	deny  map[string]bool
	asked []string
}

func (g *denyGate) AllowEmail(svc, tok, addr string, now time.Time) bool {
	g.asked = append(g.asked, svc+"|"+tok+"|"+addr)
	return !g.deny[addr]
}

// TestGateDropsRefusedEmails: an e-mail the gate refuses is not sent and
// not retried; the other recipients of the alert are served and the
// alert leaves the queue; the gate sees the service, the token and the
// normalised address.
func TestGateDropsRefusedEmails(t *testing.T) {
	r := newRig(t, Config{}, notice(9, storage.Recipient{Email: "Spam@Example.com"}, storage.Recipient{Email: "ok@example.com"}))
	g := &denyGate{deny: map[string]bool{"spam@example.com": true}}
	r.d.gate = g
	r.pass(t)
	r.clk.add(time.Hour)
	r.pass(t)
	if len(r.sender.to("Spam@Example.com")) != 0 || len(r.sender.to("ok@example.com")) != 1 {
		t.Fatalf("sent: %d to the refused, %d to the other", len(r.sender.to("Spam@Example.com")), len(r.sender.to("ok@example.com")))
	}
	if _, ok := r.ob.get(9); ok {
		t.Fatal("the alert stays queued")
	}
	if len(g.asked) != 2 || g.asked[0] != "sms|"+rawToken+"|spam@example.com" {
		t.Fatalf("gate asked %q", g.asked)
	}
	if r.count(ChannelEmail, OutcomeSent) != 1 || r.count(ChannelEmail, OutcomeRetry) != 0 {
		t.Fatal("a refused e-mail counted as sent or retried")
	}
}

// Each language's e-mail, with the unit's plural right ("1 credit",
// "2 credits"; French "1,5 crédit").
func TestAlertLanguagesAndPlurals(t *testing.T) {
	tm, err := loadTemplates(templateFS)
	if err != nil {
		t.Fatal(err)
	}
	c := func(s string) storage.Credits { v, _ := storage.ParseCredits(s); return v }
	for _, x := range []struct {
		code, balance, subject, threshold string
	}{
		{"en_US", "1", "Low credit: sms — 1 credit left", "Threshold: 2 credits"},
		{"en_GB", "0.5", "Low credit: sms — 0.5 credits left", ""},
		{"fr_BE", "1.5", "Crédit faible : sms — il reste 1,5 crédit", "Seuil :  2 crédits"},
		{"de_CH", "1", "Niedriges Guthaben: sms — noch 1 Credit", "Schwellenwert:  2 Credits"},
		{"nl_BE", "3", "Laag tegoed: sms — nog 3 credits", "Drempel: 2 credits"},
		{"es_ES", "1", "Crédito bajo: sms — saldo de 1 crédito", "Umbral:  2 créditos"},
	} {
		m, err := tm.render(x.code, facts{Service: "sms", Available: c(x.balance), Threshold: c("2"), At: t0, Link: "https://x/iap/1/credit"})
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != x.subject || !strings.Contains(m.Text, x.threshold) || !strings.Contains(m.HTML, `lang="`+m.Lang+`"`) {
			t.Errorf("%s: subject %q, text:\n%s", x.code, m.Subject, m.Text)
		}
	}
}
