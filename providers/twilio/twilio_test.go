package twilio

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
	testSID    = "AC0123456789abcdef0123456789abcdef"
	testToken  = "s3cr3t-auth-token-0123456789abcd"
	testKey    = "SKfedcba9876543210fedcba9876543210"
	testSecret = "api-key-secret-do-not-log"
	statusURL  = "https://iapd.example.com/providers/twilio-test/status"
)

// fakeTwilio speaks the Messages API as Twilio documents it: basic auth,
// form-encoded create, 201 with the Message resource, 4xx with
// {code, message, more_info, status}, and Twilio's magic test numbers
// (+15005550001 invalid, +15005550009 not SMS-capable, +15005550003 no
// permission for the region).
type fakeTwilio struct {
	t          *testing.T
	srv        *httptest.Server
	user, pass string
	mode       string // "", "hang", "garbage", or an HTTP status to answer
	mu         sync.Mutex
	got        []url.Values
}

func newFake(t *testing.T, user, pass string) *fakeTwilio {
	f := &fakeTwilio{t: t, user: user, pass: pass}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeTwilio) fail(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg, "more_info": fmt.Sprintf("https://www.twilio.com/docs/errors/%d", code), "status": status})
}

func (f *fakeTwilio) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/2010-04-01/Accounts/"+testSID+"/Messages.json" {
		f.fail(w, 404, 20404, "The requested resource was not found")
		return
	}
	if u, p, ok := r.BasicAuth(); !ok || u != f.user || p != f.pass {
		f.fail(w, 401, 20003, "Authenticate")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		f.fail(w, 400, 20001, "bad content type "+ct)
		return
	}
	if err := r.ParseForm(); err != nil {
		f.fail(w, 400, 20001, "bad form")
		return
	}
	form := r.PostForm
	f.mu.Lock()
	f.got = append(f.got, form)
	n := len(f.got)
	f.mu.Unlock()
	switch f.mode {
	case "":
	case "hang":
		<-r.Context().Done() // the client gave up
		return
	case "garbage":
		w.WriteHeader(201)
		w.Write([]byte("<html>proxy error</html>"))
		return
	case "429":
		f.fail(w, 429, 20429, "Too Many Requests")
		return
	case "500":
		f.fail(w, 500, 20500, "Internal Server Error")
		return
	case "21606":
		f.fail(w, 400, 21606, "The From phone number is not a valid, SMS-capable inbound phone number or short code for your account.")
		return
	}
	to := form.Get("To")
	switch {
	case to == "":
		f.fail(w, 400, 21604, "A 'To' phone number is required.")
		return
	case form.Get("From") == "" && form.Get("MessagingServiceSid") == "":
		f.fail(w, 400, 21603, "A 'From' phone number is required.")
		return
	case form.Get("Body") == "":
		f.fail(w, 400, 21602, "Message body is required.")
		return
	case to == "+15005550001":
		f.fail(w, 400, 21211, "The 'To' number "+to+" is not a valid phone number.")
		return
	case to == "+15005550009":
		f.fail(w, 400, 21614, "'To' number is not a valid mobile number")
		return
	case to == "+15005550003":
		f.fail(w, 400, 21408, "Permission to send an SMS has not been enabled for the region indicated by the 'To' number")
		return
	}
	segs := (len([]rune(form.Get("Body"))) + 152) / 153
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(201)
	json.NewEncoder(w).Encode(map[string]any{
		"sid": fmt.Sprintf("SM%032x", n), "account_sid": testSID, "to": to, "from": form.Get("From"),
		"messaging_service_sid": nil, "body": form.Get("Body"), "status": "queued",
		"num_segments": fmt.Sprint(segs), "error_code": nil, "error_message": nil, "api_version": "2010-04-01",
	})
}

func settings(t *testing.T, s string) yaml.Node {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(s), &doc); err != nil {
		t.Fatal(err)
	}
	return *doc.Content[0]
}

func newTwilio(t *testing.T, base, extra string, log *slog.Logger) *Twilio {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := providers.Config{Name: "twilio-test", Type: Type, Settings: settings(t, fmt.Sprintf(
		"account_sid: %s\nauth_token: %s\nfrom: \"+15005550006\"\nbase_url: %s\n%s", testSID, testToken, base, extra))}
	p, err := providers.Builtin.New(cfg, providers.Deps{Logger: log, HTTP: &http.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p.(*Twilio)
}

func downURL(t *testing.T) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close() // nothing listens there any more: connection refused
	return u
}

// signedCallback is the status callback Twilio posts for a message.
func signedCallback(token, sid, status, errorCode string) providers.CallbackRequest {
	form := url.Values{
		"AccountSid": {testSID}, "ApiVersion": {"2010-04-01"}, "From": {"+15005550006"}, "To": {"+32470000001"},
		"MessageSid": {sid}, "SmsSid": {sid}, "MessageStatus": {status}, "SmsStatus": {status},
	}
	if errorCode != "" {
		form.Set("ErrorCode", errorCode)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	h.Set("X-Twilio-Signature", Signature(token, statusURL, form))
	return providers.CallbackRequest{Method: "POST", URL: statusURL, Header: h, Body: []byte(form.Encode()), Remote: "54.172.60.1"}
}

func TestConformance(t *testing.T) {
	providertest.TestSMSSender(t, providertest.SMSHarness{
		New: func(t *testing.T) providers.SMSSender {
			return newTwilio(t, newFake(t, testSID, testToken).srv.URL, "", nil)
		},
		Rejected: "+15005550001",
		Down:     func(t *testing.T) providers.SMSSender { return newTwilio(t, downURL(t), "", nil) },
		Hung: func(t *testing.T) providers.SMSSender {
			f := newFake(t, testSID, testToken)
			f.mode = "hang"
			return newTwilio(t, f.srv.URL, "timeout: 200ms\nconcurrency: 1", nil)
		},
		Callback: func(t *testing.T, _ providers.SMS, res providers.SMSResult) (good, forged providers.CallbackRequest) {
			return signedCallback(testToken, res.ProviderID, "delivered", ""),
				signedCallback("not-the-token", res.ProviderID, "delivered", "")
		},
		StatusURL: statusURL,
	})
}

// TestRequestShape checks what reaches Twilio: To, From or
// MessagingServiceSid, Body, StatusCallback, API-key auth.
func TestRequestShape(t *testing.T) {
	f := newFake(t, testKey, testSecret)
	tw := newTwilio(t, f.srv.URL, "use_sender: true\napi_key_sid: "+testKey+"\napi_key_secret: "+testSecret+"\nmessaging_service_sid: MG0123456789abcdef0123456789abcdef", nil)
	res, err := tw.SendSMS(context.Background(), []providers.SMS{
		{ID: "a", To: "+32470123456", Body: "héllo", StatusURL: statusURL},
		{ID: "b", To: "+32470123457", Body: "x", Sender: "iapd"},
	})
	if err != nil || res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("%+v %v", res, err)
	}
	if res[0].ProviderID != "SM00000000000000000000000000000001" && res[0].ProviderID != "SM00000000000000000000000000000002" {
		t.Errorf("provider id %q", res[0].ProviderID)
	}
	if res[0].Segments != 1 || res[0].Status != providers.SMSAccepted {
		t.Errorf("result %+v", res[0])
	}
	byTo := map[string]url.Values{}
	for _, g := range f.got {
		byTo[g.Get("To")] = g
	}
	a, b := byTo["+32470123456"], byTo["+32470123457"]
	if a.Get("Body") != "héllo" || a.Get("MessagingServiceSid") != "MG0123456789abcdef0123456789abcdef" || a.Get("From") != "" || a.Get("StatusCallback") != statusURL {
		t.Errorf("first request %v", a)
	}
	if b.Get("From") != "iapd" || b.Get("MessagingServiceSid") != "" || b.Has("StatusCallback") {
		t.Errorf("second request %v", b)
	}
}

// TestErrorAnswers covers Twilio's refusals and the transport failures,
// with what becomes of the message (the hold): Invalid → cancel and tell
// the user; Unavailable → cancel or fail over; Indeterminate → keep.
func TestErrorAnswers(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, c := range []struct {
		name, mode, to string
		user, pass     string
		timeout        string
		down           bool
		kind           providers.Kind
		code           string
	}{
		{name: "invalid To", to: "+15005550001", kind: providers.Invalid, code: "21211"},
		{name: "not a mobile", to: "+15005550009", kind: providers.Invalid, code: "21614"},
		{name: "region", to: "+15005550003", kind: providers.Invalid, code: "21408"},
		{name: "bad From", mode: "21606", kind: providers.Unavailable, code: "21606"},
		{name: "wrong credentials", user: testSID, pass: "other", kind: providers.Unavailable, code: "20003"},
		{name: "rate limited", mode: "429", kind: providers.Unavailable, code: "20429"},
		{name: "server error", mode: "500", kind: providers.Unavailable, code: "20500"},
		{name: "unreadable 201", mode: "garbage", kind: providers.Indeterminate},
		{name: "timeout after sending", mode: "hang", timeout: "timeout: 100ms", kind: providers.Indeterminate},
		{name: "connection refused", down: true, kind: providers.Unavailable},
	} {
		t.Run(c.name, func(t *testing.T) {
			user, pass := testSID, testToken
			if c.user != "" {
				user, pass = c.user, c.pass
			}
			f := newFake(t, user, pass)
			f.mode = c.mode
			base := f.srv.URL
			if c.down {
				base = downURL(t)
			}
			to := c.to
			if to == "" {
				to = "+32470123456"
			}
			res, err := newTwilio(t, base, c.timeout, log).SendSMS(context.Background(), []providers.SMS{{ID: "m", To: to, Body: "x"}})
			if err != nil {
				t.Fatal(err)
			}
			e := res[0].Err
			if e == nil || e.Kind != c.kind || e.Code != c.code {
				t.Fatalf("got %v (code %q), want %s code %q", e, codeOf(e), c.kind, c.code)
			}
			if strings.Contains(e.Error(), testToken) || strings.Contains(e.Error(), testSID+":") {
				t.Errorf("error leaks credentials: %v", e)
			}
		})
	}
	for _, secret := range []string{testToken, "+32470123456", "+15005550001"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("logs hold %q:\n%s", secret, logs.String())
		}
	}
}

func codeOf(e *providers.Error) string {
	if e == nil {
		return ""
	}
	return e.Code
}

// TestSignatureVector pins Signature to the example of Twilio's
// "Validating requests" documentation.
func TestSignatureVector(t *testing.T) {
	params := url.Values{
		"CallSid": {"CA1234567890ABCDE"}, "Caller": {"+12349013030"}, "Digits": {"1234"},
		"From": {"+12349013030"}, "To": {"+18005551212"},
	}
	const u = "https://mycompany.com/myapp.php?foo=1&bar=2"
	if got := Signature("12345", u, params); got != "0/KCTR6DLpKmkAf8muzZqo1nDgQ=" {
		t.Fatalf("Signature = %q", got)
	}
	if !ValidSignature("12345", u, params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=") {
		t.Error("documented signature refused")
	}
	if !ValidSignature("12345", "https://mycompany.com:443/myapp.php?foo=1&bar=2", params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=") {
		t.Error("signature refused with the default port in the URL")
	}
	params.Set("Digits", "1235")
	if ValidSignature("12345", u, params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=") {
		t.Error("tampered parameter accepted")
	}
	if ValidSignature("12345", u, params, "") {
		t.Error("empty signature accepted")
	}
}

// TestStatusCallbacks maps Twilio's statuses and refuses forged,
// tampered and unsigned callbacks.
func TestStatusCallbacks(t *testing.T) {
	tw := newTwilio(t, "http://127.0.0.1:1", "", nil)
	var got []providers.DeliveryReport
	tw.SetSink(func(_ context.Context, p string, r []providers.DeliveryReport) { got = append(got, r...) })
	h := tw.CallbackRoutes()[0]
	if h.Path != "/providers/twilio-test/status" {
		t.Fatalf("path %q", h.Path)
	}
	sid := "SM0123456789abcdef0123456789abcdef"
	for _, c := range []struct {
		status, code string
		want         providers.SMSStatus
	}{
		{"queued", "", providers.SMSAccepted},
		{"sent", "", providers.SMSAccepted},
		{"delivered", "", providers.SMSDelivered},
		{"undelivered", "30003", providers.SMSUndelivered},
		{"undelivered", "30036", providers.SMSExpired},
		{"failed", "30005", providers.SMSRejected},
		{"failed", "30008", providers.SMSUndelivered},
		{"received", "", ""},
	} {
		got = nil
		resp := h.Handler(context.Background(), ptr(signedCallback(testToken, sid, c.status, c.code)))
		if resp.Status != 200 {
			t.Fatalf("%s: status %d", c.status, resp.Status)
		}
		switch {
		case c.want == "" && len(got) != 0:
			t.Errorf("%s: reported %+v", c.status, got)
		case c.want != "" && (len(got) != 1 || got[0] != providers.DeliveryReport{ProviderID: sid, Status: c.want, Code: c.code}):
			t.Errorf("%s/%s: reported %+v, want %s", c.status, c.code, got, c.want)
		}
	}
	got = nil
	tampered := signedCallback(testToken, sid, "failed", "30005")
	tampered.Body = bytes.Replace(tampered.Body, []byte("failed"), []byte("delivered"), 2)
	unsigned := signedCallback(testToken, sid, "delivered", "")
	unsigned.Header.Del("X-Twilio-Signature")
	otherURL := signedCallback(testToken, sid, "delivered", "")
	otherURL.URL = strings.Replace(otherURL.URL, "iapd.example.com", "evil.example.net", 1)
	for i, req := range []providers.CallbackRequest{signedCallback("forged", sid, "delivered", ""), tampered, unsigned, otherURL} {
		if resp := h.Handler(context.Background(), &req); resp.Status != 403 {
			t.Errorf("forgery %d answered %d", i, resp.Status)
		}
	}
	if len(got) != 0 {
		t.Errorf("forgeries reported %+v", got)
	}
}

func ptr[T any](v T) *T { return &v }

func TestConfig(t *testing.T) {
	for _, s := range []string{
		"account_sid: AC123\nauth_token: x\nfrom: y",
		"account_sid: " + testSID + "\nfrom: y",
		"account_sid: " + testSID + "\nauth_token: x",
		"account_sid: " + testSID + "\nauth_token: x\nfrom: y\nbase_url: ftp://x",
		"account_sid: " + testSID + "\nauth_token: x\nfrom: y\napi_key_sid: " + testKey,
		"account_sid: " + testSID + "\nauth_token: x\nfrom: y\ncolour: red",
		"account_sid: " + testSID + "\nauth_token: x\nfrom: y\ntimeout: -1s",
	} {
		_, err := providers.Builtin.New(providers.Config{Name: "x", Type: Type, Settings: settings(t, s)}, providers.Deps{})
		if err == nil {
			t.Errorf("accepted:\n%s", s)
		} else if strings.Contains(err.Error(), "auth_token: x") {
			t.Errorf("error echoes the secret: %v", err)
		}
	}
	p, err := providers.Builtin.New(providers.Config{Name: "x", Type: Type, Settings: settings(t, "account_sid: "+testSID+"\nauth_token: x\nfrom: y\ntimeout: 3s")}, providers.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if c := p.(*Twilio).cfg; c.Timeout != 3*time.Second || c.BaseURL != DefaultBaseURL || c.Concurrency != 4 {
		t.Errorf("defaults %+v", c)
	}
	if h := p.(providers.Endpoints).Hosts(); len(h) != 1 || h[0] != "api.twilio.com" {
		t.Errorf("Hosts() = %v", h)
	}
}
