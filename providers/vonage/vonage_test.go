package vonage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/providertest"
)

const (
	testKey    = "abcd1234"
	testSecret = "v0nage-api-secret-xyz"
	testSig    = "v0nage-signature-secret"
	statusURL  = "https://iapd.example.com/providers/vonage-test/status"
)

var now = time.Date(2026, 11, 28, 14, 0, 0, 0, time.UTC)

// fakeVonage speaks the SMS API as Vonage documents it: POST /sms/json
// with api_key/api_secret, HTTP 200 with one entry per part and a status
// code (non-zero with error-text), and the parts of a long message.
type fakeVonage struct {
	srv  *httptest.Server
	mode string // "", "hang", "garbage", "partial", an HTTP status, or "status=N"
	mu   sync.Mutex
	got  []url.Values
}

func newFake(t *testing.T) *fakeVonage {
	f := &fakeVonage{}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeVonage) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/sms/json" {
		w.WriteHeader(404)
		return
	}
	r.ParseForm()
	form := r.PostForm
	f.mu.Lock()
	f.got = append(f.got, form)
	n := len(f.got)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	one := func(status, text string) {
		json.NewEncoder(w).Encode(map[string]any{"message-count": "1", "messages": []map[string]string{{"status": status, "error-text": text}}})
	}
	if form.Get("api_key") != testKey || form.Get("api_secret") != testSecret {
		one("4", "Bad Credentials")
		return
	}
	switch {
	case f.mode == "hang":
		<-r.Context().Done()
		return
	case f.mode == "garbage":
		w.Write([]byte("{\"message-count\":"))
		return
	case f.mode == "500" || f.mode == "429":
		w.WriteHeader(map[string]int{"500": 500, "429": 429}[f.mode])
		return
	case strings.HasPrefix(f.mode, "status="):
		one(strings.TrimPrefix(f.mode, "status="), "refused")
		return
	}
	to, text := form.Get("to"), form.Get("text")
	switch {
	case to == "" || text == "" || form.Get("from") == "":
		one("2", "Missing to param")
		return
	case strings.HasPrefix(to, "+"):
		one("3", "Invalid to address")
		return
	case to == "447700900001":
		one("7", "Number barred")
		return
	case to == "447700900002":
		one("29", "Non White-listed Destination - rejected")
		return
	}
	per := 153
	if form.Get("type") == "unicode" {
		per = 67
	}
	parts := (len([]rune(text)) + per - 1) / per
	var msgs []map[string]string
	for i := range parts {
		m := map[string]string{"to": to, "message-id": fmt.Sprintf("%04X%012X", n, i), "status": "0",
			"remaining-balance": "15.53590000", "message-price": "0.03330000", "network": "23410"}
		if f.mode == "partial" && i > 0 {
			m = map[string]string{"status": "5", "error-text": "Internal Error"}
		}
		msgs = append(msgs, m)
	}
	json.NewEncoder(w).Encode(map[string]any{"message-count": fmt.Sprint(parts), "messages": msgs})
}

func settings(t *testing.T, s string) yaml.Node {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(s), &doc); err != nil {
		t.Fatal(err)
	}
	return *doc.Content[0]
}

func newVonage(t *testing.T, base, extra string, log *slog.Logger) *Vonage {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := providers.Config{Name: "vonage-test", Type: Type, Settings: settings(t, fmt.Sprintf(
		"api_key: %s\napi_secret: %s\nfrom: iapd\nbase_url: %s\n%s", testKey, testSecret, base, extra))}
	p, err := providers.Builtin.New(cfg, providers.Deps{Logger: log, HTTP: &http.Client{}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p.(*Vonage)
}

func downURL() string {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	return u
}

// receipt builds a delivery receipt as Vonage sends it to the callback
// URL the adapter gave (GET, fields in the query), signed when secret is
// set.
func receipt(callback, messageID, status, errCode, method, secret string) providers.CallbackRequest {
	u, _ := url.Parse(callback)
	q := u.Query()
	for k, v := range map[string]string{
		"msisdn": "447700900000", "to": "iapd", "network-code": "23410", "messageId": messageID, "price": "0.03330000",
		"status": status, "scts": "2611281400", "err-code": errCode, "api-key": testKey,
		"message-timestamp": "2026-11-28 14:00:00", "client-ref": "0000000000000000000000000000000a",
	} {
		q.Set(k, v)
	}
	if secret != "" {
		q.Set("timestamp", fmt.Sprint(now.Add(-time.Minute).Unix()))
		q.Set("nonce", "6f9a1c2e-0b5d-4e7a-9c3f-1d2e3f4a5b6c")
		q.Set("sig", Sign(method, secret, q))
	}
	u.RawQuery = q.Encode()
	return providers.CallbackRequest{Method: "GET", URL: u.String(), Header: http.Header{}, Remote: "174.37.245.34"}
}

func TestConformance(t *testing.T) {
	for _, signed := range []bool{false, true} {
		t.Run(fmt.Sprintf("signed=%v", signed), func(t *testing.T) {
			extra := ""
			if signed {
				extra = "signature_secret: " + testSig + "\nsignature_method: sha256"
			}
			var last *fakeVonage
			providertest.TestSMSSender(t, providertest.SMSHarness{
				New: func(t *testing.T) providers.SMSSender {
					last = newFake(t)
					return newVonage(t, last.srv.URL, extra, nil)
				},
				Rejected: "+447700900001",
				Down:     func(t *testing.T) providers.SMSSender { return newVonage(t, downURL(), extra, nil) },
				Hung: func(t *testing.T) providers.SMSSender {
					f := newFake(t)
					f.mode = "hang"
					return newVonage(t, f.srv.URL, extra+"\ntimeout: 200ms\nconcurrency: 1", nil)
				},
				Callback: func(t *testing.T, _ providers.SMS, res providers.SMSResult) (good, forged providers.CallbackRequest) {
					cb := last.got[len(last.got)-1].Get("callback")
					if signed {
						if cb != statusURL {
							t.Errorf("callback %q, want %q", cb, statusURL)
						}
						return receipt(cb, res.ProviderID, "delivered", "0", "sha256", testSig),
							receipt(cb, res.ProviderID, "delivered", "0", "sha256", "guessed")
					}
					if !strings.HasPrefix(cb, statusURL+"?iapd_token=") {
						t.Errorf("callback %q lacks the token", cb)
					}
					return receipt(cb, res.ProviderID, "delivered", "0", "", ""),
						receipt(statusURL+"?iapd_token=0123456789abcdef0123456789abcdef", res.ProviderID, "delivered", "0", "", "")
				},
				StatusURL: statusURL,
			})
		})
	}
}

// TestRequestShape checks what reaches Vonage: credentials in the form,
// to without "+", type=unicode only when needed, client-ref, callback,
// and a long message's parts.
func TestRequestShape(t *testing.T) {
	f := newFake(t)
	v := newVonage(t, f.srv.URL, "concurrency: 1\nuse_sender: true", nil)
	long := strings.Repeat("é", 70) // é is GSM-7: 1 part of 153
	res, err := v.SendSMS(context.Background(), []providers.SMS{
		{ID: "0a1b", To: "+447700900000", Body: "Ünïcödé ✓ " + strings.Repeat("x", 60), StatusURL: statusURL},
		{ID: "0a1c", To: "+447700900003", Body: long, Sender: "Shop"},
	})
	if err != nil || res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("%+v %v", res, err)
	}
	a, b := f.got[0], f.got[1]
	if a.Get("to") != "447700900000" || a.Get("type") != "unicode" || a.Get("client-ref") != "0a1b" || a.Get("from") != "iapd" ||
		a.Get("status-report-req") != "1" || !strings.HasPrefix(a.Get("callback"), statusURL+"?iapd_token=") {
		t.Errorf("first request %v", a)
	}
	if res[0].Segments != 2 || res[0].ProviderID != "0001000000000000" || res[0].Status != providers.SMSAccepted {
		t.Errorf("first result %+v", res[0])
	}
	if b.Has("type") || b.Get("from") != "Shop" || b.Has("callback") {
		t.Errorf("second request %v", b)
	}
	if res[1].Segments != 1 {
		t.Errorf("second result %+v", res[1])
	}
}

func TestErrorAnswers(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, c := range []struct {
		name, mode, to, extra string
		down                  bool
		kind                  providers.Kind
		code                  string
	}{
		{name: "number barred", to: "+447700900001", kind: providers.Invalid, code: "7"},
		{name: "not whitelisted", to: "+447700900002", kind: providers.Invalid, code: "29"},
		{name: "invalid message", mode: "status=6", kind: providers.Invalid, code: "6"},
		{name: "too long", mode: "status=12", kind: providers.Invalid, code: "12"},
		{name: "throttled", mode: "status=1", kind: providers.Unavailable, code: "1"},
		{name: "quota", mode: "status=9", kind: providers.Unavailable, code: "9"},
		{name: "internal error", mode: "status=5", kind: providers.Unavailable, code: "5"},
		{name: "bad credentials", extra: "api_secret: wrong", kind: providers.Unavailable, code: "4"},
		{name: "http 500", mode: "500", kind: providers.Unavailable},
		{name: "http 429", mode: "429", kind: providers.Unavailable},
		{name: "unreadable answer", mode: "garbage", kind: providers.Indeterminate},
		{name: "some parts accepted", mode: "partial", kind: providers.Indeterminate, code: "5"},
		{name: "timeout after sending", mode: "hang", extra: "timeout: 100ms", kind: providers.Indeterminate},
		{name: "connection refused", down: true, kind: providers.Unavailable},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFake(t)
			f.mode = c.mode
			base := f.srv.URL
			if c.down {
				base = downURL()
			}
			extra := c.extra
			var v *Vonage
			if strings.HasPrefix(extra, "api_secret:") {
				cfg := providers.Config{Name: "vonage-test", Type: Type, Settings: settings(t, "api_key: "+testKey+"\napi_secret: wrong\nfrom: iapd\nbase_url: "+base)}
				p, err := providers.Builtin.New(cfg, providers.Deps{Logger: log})
				if err != nil {
					t.Fatal(err)
				}
				v = p.(*Vonage)
			} else {
				v = newVonage(t, base, extra, log)
			}
			to := c.to
			if to == "" {
				to = "+447700900000"
			}
			body := "x"
			if c.mode == "partial" {
				body = strings.Repeat("long ", 80)
			}
			res, err := v.SendSMS(context.Background(), []providers.SMS{{ID: "m", To: to, Body: body}})
			if err != nil {
				t.Fatal(err)
			}
			e := res[0].Err
			if e == nil || e.Kind != c.kind || e.Code != c.code {
				t.Fatalf("got %v, want %s code %q", e, c.kind, c.code)
			}
			if strings.Contains(e.Error(), testSecret) {
				t.Errorf("error leaks the secret: %v", e)
			}
		})
	}
	for _, s := range []string{testSecret, "447700900000", "447700900001"} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("logs hold %q", s)
		}
	}
}

// TestSignatureVectors pins Sign to the vectors of Vonage's own SDK
// tests (params a=1, b=2, timestamp=1461605396, secret "secret").
func TestSignatureVectors(t *testing.T) {
	p := url.Values{"a": {"1"}, "b": {"2"}, "timestamp": {"1461605396"}}
	for method, want := range map[string]string{
		"md5hash": "6af838ef94998832dbfc29020b564830",
		"md5":     "c15c21ced558c93a226c305f58f902f2",
		"sha1":    "3e19a4e6880fdc2c1426bfd0587c98b9532f0210",
		"sha256":  "a321e824b9b816be7c3f28859a31749a098713d39f613c80d455bbaffae1cd24",
		"sha512":  "812a18f76680fa0fe1b8bd9ee1625466ceb1bd96242e4d050d2cfd9a7b40166c63ed26ec9702168781b6edcf1633db8ff95af9341701004eec3fcf9550572ee8",
	} {
		if got := Sign(method, "secret", p); got != want {
			t.Errorf("%s: %s, want %s", method, got, want)
		}
	}
	p.Set("sig", "ignored")
	if Sign("md5hash", "secret", p) != "6af838ef94998832dbfc29020b564830" {
		t.Error("sig is part of what is signed")
	}
}

// TestReceipts maps receipts (GET query, POST form, POST JSON) and
// refuses forged, stale and tampered ones.
func TestReceipts(t *testing.T) {
	v := newVonage(t, "http://127.0.0.1:1", "signature_secret: "+testSig+"\nsignature_method: md5hash", nil)
	var got []providers.DeliveryReport
	v.SetSink(func(_ context.Context, _ string, r []providers.DeliveryReport) { got = append(got, r...) })
	h := v.CallbackRoutes()[0]
	if h.Path != "/providers/vonage-test/status" {
		t.Fatalf("path %q", h.Path)
	}
	for _, c := range []struct {
		status, code string
		want         providers.SMSStatus
	}{
		{"delivered", "0", providers.SMSDelivered},
		{"accepted", "0", providers.SMSAccepted},
		{"buffered", "0", providers.SMSAccepted},
		{"expired", "0", providers.SMSExpired},
		{"failed", "2", providers.SMSUndelivered},
		{"failed", "9", providers.SMSRejected},
		{"rejected", "99", providers.SMSRejected},
		{"unknown", "1", ""},
	} {
		got = nil
		req := receipt(statusURL, "0B0000004B65F62F", c.status, c.code, "md5hash", testSig)
		if resp := h.Handler(context.Background(), &req); resp.Status != 200 {
			t.Fatalf("%s: answered %d", c.status, resp.Status)
		}
		wantCode := c.code
		if wantCode == "0" {
			wantCode = ""
		}
		switch {
		case c.want == "" && len(got) != 0:
			t.Errorf("%s: reported %+v", c.status, got)
		case c.want != "" && (len(got) != 1 || got[0] != providers.DeliveryReport{ProviderID: "0B0000004B65F62F", Status: c.want, Code: wantCode}):
			t.Errorf("%s/%s: reported %+v, want %s", c.status, c.code, got, c.want)
		}
	}
	// POST form and POST JSON carry the same fields.
	get := receipt(statusURL, "0B0000004B65F62F", "delivered", "0", "md5hash", testSig)
	u, _ := url.Parse(get.URL)
	form := providers.CallbackRequest{Method: "POST", URL: statusURL, Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, Body: []byte(u.RawQuery)}
	m := map[string]string{}
	for k := range u.Query() {
		m[k] = u.Query().Get(k)
	}
	body, _ := json.Marshal(m)
	js := providers.CallbackRequest{Method: "POST", URL: statusURL, Header: http.Header{"Content-Type": {"application/json"}}, Body: body}
	for _, req := range []providers.CallbackRequest{form, js} {
		got = nil
		if resp := h.Handler(context.Background(), &req); resp.Status != 200 || len(got) != 1 {
			t.Errorf("%s %s: answered %d, reported %+v", req.Method, req.Header.Get("Content-Type"), resp.Status, got)
		}
	}
	// Forgeries.
	got = nil
	stale := receipt(statusURL, "0B0000004B65F62F", "delivered", "0", "md5hash", testSig)
	su, _ := url.Parse(stale.URL)
	sq := su.Query()
	sq.Set("timestamp", fmt.Sprint(now.Add(-time.Hour).Unix()))
	sq.Set("sig", Sign("md5hash", testSig, sq))
	su.RawQuery = sq.Encode()
	stale.URL = su.String()
	tampered := receipt(statusURL, "0B0000004B65F62F", "failed", "9", "md5hash", testSig)
	tampered.URL = strings.Replace(tampered.URL, "status=failed", "status=delivered", 1)
	unsigned := receipt(statusURL, "0B0000004B65F62F", "delivered", "0", "", "")
	for i, req := range []providers.CallbackRequest{receipt(statusURL, "x", "delivered", "0", "md5hash", "guess"), stale, tampered, unsigned} {
		if resp := h.Handler(context.Background(), &req); resp.Status != 403 {
			t.Errorf("forgery %d answered %d", i, resp.Status)
		}
	}
	if len(got) != 0 {
		t.Errorf("forgeries reported %+v", got)
	}
}

func TestConfig(t *testing.T) {
	for _, s := range []string{
		"api_key: k\nfrom: x",
		"api_key: k\napi_secret: s",
		"api_key: k\napi_secret: s\nfrom: x\nsignature_method: crc32",
		"api_key: k\napi_secret: s\nfrom: x\nbase_url: rest.nexmo.com",
		"api_key: k\napi_secret: s\nfrom: x\nsender: y",
	} {
		if _, err := providers.Builtin.New(providers.Config{Name: "x", Type: Type, Settings: settings(t, s)}, providers.Deps{}); err == nil {
			t.Errorf("accepted:\n%s", s)
		}
	}
	p, err := providers.Builtin.New(providers.Config{Name: "x", Type: Type, Settings: settings(t, "api_key: k\napi_secret: s\nfrom: x")}, providers.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if h := p.(providers.Endpoints).Hosts(); len(h) != 1 || h[0] != "rest.nexmo.com" {
		t.Errorf("Hosts() = %v", h)
	}
}
