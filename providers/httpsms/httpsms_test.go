package httpsms

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/providertest"
)

const (
	kUser     = "iapd"
	kPass     = "kannel-sendsms-pw"
	dlrSecret = "dlr-shared-secret-0123456789"
	statusURL = "https://iapd.example.com/providers/gw/status"
)

// fakeKannel speaks Kannel's smsbox sendsms interface: GET
// /cgi-bin/sendsms with username/password/from/to/text/charset/coding/
// dlr-mask/dlr-url; 202 "0: Accepted for delivery"; 403 "Authorization
// failed for sendsms"; 400 for a missing or black-listed receiver; 503
// "Sending failed." when the queue is full.
type fakeKannel struct {
	srv  *httptest.Server
	mode string // "", "hang", "503", "odd"
	mu   sync.Mutex
	got  []url.Values
}

func newKannel(t *testing.T) *fakeKannel {
	f := &fakeKannel{}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeKannel) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Path != "/cgi-bin/sendsms" {
		http.Error(w, "Unknown service", 404)
		return
	}
	q := r.URL.Query()
	f.mu.Lock()
	f.got = append(f.got, q)
	f.mu.Unlock()
	reply := func(status int, body string) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
	switch {
	case q.Get("username") != kUser || q.Get("password") != kPass:
		reply(403, "Authorization failed for sendsms")
	case f.mode == "hang":
		<-r.Context().Done()
	case f.mode == "503":
		reply(503, "Sending failed.")
	case f.mode == "odd":
		reply(202, "<html>captive portal</html>")
	case q.Get("to") == "":
		reply(400, "Missing receiver number, rejected")
	case q.Get("to") == "+30690000666":
		reply(400, "Number(s) has/have been denied by white- and/or black-lists.")
	default:
		reply(202, "0: Accepted for delivery")
	}
}

// kannelDLR is the request Kannel makes to a dlr-url: its escapes
// replaced (%d the DLR type, %A the SMSC answer, URL-encoded).
func kannelDLR(dlrURL, typ, answer string) providers.CallbackRequest {
	u := strings.NewReplacer("%d", typ, "%A", url.QueryEscape(answer)).Replace(dlrURL)
	return providers.CallbackRequest{Method: "GET", URL: u, Header: http.Header{"User-Agent": {"Kannel/1.4.5"}}, Remote: "10.0.0.5"}
}

func settings(t *testing.T, s string) yaml.Node {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(s), &doc); err != nil {
		t.Fatal(err)
	}
	return *doc.Content[0]
}

func newGateway(t *testing.T, s string, log *slog.Logger) *HTTP {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p, err := providers.Builtin.New(providers.Config{Name: "gw", Type: Type, Settings: settings(t, s)}, providers.Deps{Logger: log, HTTP: &http.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p.(*HTTP)
}

func kannelConfig(base, extra string) string {
	return fmt.Sprintf("preset: kannel\nurl: %s/cgi-bin/sendsms\nusername: %s\npassword: %s\nfrom: iapd\ndlr: {secret: %s}\n%s", base, kUser, kPass, dlrSecret, extra)
}

func downURL() string {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	return u
}

func TestKannelConformance(t *testing.T) {
	var last *fakeKannel
	providertest.TestSMSSender(t, providertest.SMSHarness{
		New: func(t *testing.T) providers.SMSSender {
			last = newKannel(t)
			return newGateway(t, kannelConfig(last.srv.URL, ""), nil)
		},
		Rejected: "+30690000666",
		Down:     func(t *testing.T) providers.SMSSender { return newGateway(t, kannelConfig(downURL(), ""), nil) },
		Hung: func(t *testing.T) providers.SMSSender {
			f := newKannel(t)
			f.mode = "hang"
			return newGateway(t, kannelConfig(f.srv.URL, "timeout: 200ms\nconcurrency: 1"), nil)
		},
		Callback: func(t *testing.T, _ providers.SMS, _ providers.SMSResult) (good, forged providers.CallbackRequest) {
			dlr := last.got[len(last.got)-1].Get("dlr-url")
			return kannelDLR(dlr, "1", "ACK/"), kannelDLR(strings.Replace(dlr, dlrSecret, "dlr-shared-secret-0123456780", 1), "1", "ACK/")
		},
		StatusURL: statusURL,
	})
}

// TestKannelRequest pins the sendsms query the preset builds.
func TestKannelRequest(t *testing.T) {
	f := newKannel(t)
	g := newGateway(t, kannelConfig(f.srv.URL, "concurrency: 1\nuse_sender: true"), nil)
	res, err := g.SendSMS(context.Background(), []providers.SMS{
		{ID: "0a1b2c3d4e5f60718293a4b5c6d7e8f9", To: "+32470123456", Body: "Ünïcödé ✓ & more", StatusURL: statusURL},
		{ID: "1a1b2c3d4e5f60718293a4b5c6d7e8f9", To: "+32470123457", Body: "plain", Sender: "Shop"},
	})
	if err != nil || res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("%+v %v", res, err)
	}
	if res[0].ProviderID != "0a1b2c3d4e5f60718293a4b5c6d7e8f9" || res[0].Status != providers.SMSAccepted {
		t.Errorf("result %+v", res[0])
	}
	a, b := f.got[0], f.got[1]
	want := map[string]string{
		"username": kUser, "password": kPass, "from": "iapd", "to": "+32470123456", "text": "Ünïcödé ✓ & more",
		"charset": "UTF-8", "coding": "2", "dlr-mask": "31",
		"dlr-url": statusURL + "?token=" + dlrSecret + "&id=0a1b2c3d4e5f60718293a4b5c6d7e8f9&answer=%A&status=%d",
	}
	for k, v := range want {
		if a.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, a.Get(k), v)
		}
	}
	if b.Get("coding") != "0" || b.Get("from") != "Shop" || b.Has("dlr-url") {
		t.Errorf("second request %v", b)
	}
}

// TestKannelDLR maps Kannel's DLR types and refuses callbacks without
// the secret.
func TestKannelDLR(t *testing.T) {
	g := newGateway(t, kannelConfig("http://127.0.0.1:1", ""), nil)
	var got []providers.DeliveryReport
	g.SetSink(func(_ context.Context, _ string, r []providers.DeliveryReport) { got = append(got, r...) })
	routes := g.CallbackRoutes()
	if len(routes) != 1 || routes[0].Path != "/providers/gw/status" {
		t.Fatalf("routes %+v", routes)
	}
	dlr := g.dlrURL(statusURL, "0a1b")
	for typ, want := range map[string]providers.SMSStatus{
		"1": providers.SMSDelivered, "2": providers.SMSUndelivered, "4": providers.SMSAccepted,
		"8": providers.SMSAccepted, "16": providers.SMSRejected, "34": "",
	} {
		got = nil
		req := kannelDLR(dlr, typ, "NACK/0x0000000b/Invalid Destination Address")
		if resp := routes[0].Handler(context.Background(), &req); resp.Status != 200 {
			t.Fatalf("type %s: answered %d", typ, resp.Status)
		}
		switch {
		case want == "" && len(got) != 0:
			t.Errorf("type %s reported %+v", typ, got)
		case want != "" && (len(got) != 1 || got[0] != providers.DeliveryReport{ProviderID: "0a1b", Status: want, Code: "NACK/0x0000000b/Invalid Destination Address"}):
			t.Errorf("type %s reported %+v, want %s", typ, got, want)
		}
	}
	got = nil
	noSecret := kannelDLR(strings.Replace(dlr, "token="+dlrSecret+"&", "", 1), "1", "ACK/")
	bodySecret := kannelDLR(strings.Replace(dlr, "token="+dlrSecret, "token=x", 1), "1", "ACK/")
	bodySecret.Method, bodySecret.Body = "POST", []byte("token="+url.QueryEscape(dlrSecret))
	bodySecret.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i, req := range []providers.CallbackRequest{noSecret, bodySecret} {
		if resp := routes[0].Handler(context.Background(), &req); resp.Status != 403 {
			t.Errorf("forgery %d answered %d", i, resp.Status)
		}
	}
	if len(got) != 0 {
		t.Errorf("forgeries reported %+v", got)
	}
	// Without a secret there is no callback route and no dlr-url.
	h := newGateway(t, "preset: kannel\nurl: http://127.0.0.1:1/cgi-bin/sendsms", nil)
	if len(h.CallbackRoutes()) != 0 || h.dlrURL(statusURL, "x") != "" {
		t.Error("callbacks without a secret")
	}
}

// TestJSONGateway drives a JSON API gateway: POST, bearer header, JSON
// body with escaped values, 201, id extracted, reports by the gateway's
// own id posted as a form.
func TestJSONGateway(t *testing.T) {
	var got []map[string]string
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]string
		if r.Method != "POST" || r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&m) != nil {
			http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
			return
		}
		got = append(got, m)
		auth = append(auth, r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") != "Bearer tok-123" {
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		if m["to"] == "+447700900666" {
			http.Error(w, `{"error":"invalid destination"}`, http.StatusUnprocessableEntity)
			return
		}
		w.WriteHeader(201)
		fmt.Fprintf(w, `{"id":"gw-%d","status":"queued"}`, len(got))
	}))
	t.Cleanup(srv.Close)
	cfg := fmt.Sprintf(`method: POST
url: %s/api/v1/messages
headers: {Authorization: "Bearer {{password}}"}
password: tok-123
from: iapd
json: '{"to":"{{to}}","from":"{{from}}","text":"{{text}}","ref":"{{id}}","callback":"{{dlr_url}}"}'
success_status: [201]
id_regexp: '"id":"([^"]+)"'
concurrency: 1
dlr: {secret: %s, id_param: msg, status_param: state, code_param: reason, statuses: {DELIVERED: delivered, FAILED: undelivered}}
`, srv.URL, dlrSecret)
	g := newGateway(t, cfg, nil)
	res, err := g.SendSMS(context.Background(), []providers.SMS{
		{ID: "r1", To: "+447700900000", Body: "a \"quoted\"\nline ✓", StatusURL: statusURL},
		{ID: "r2", To: "+447700900666", Body: "x", Sender: "Ignored"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || res[0].ProviderID != "gw-1" {
		t.Errorf("first %+v", res[0])
	}
	if res[1].Err == nil || res[1].Err.Kind != providers.Invalid || res[1].Err.Code != "422" {
		t.Errorf("second %+v", res[1])
	}
	if got[1]["from"] != "iapd" {
		t.Errorf("without use_sender the sender is %q, want the configured one", got[1]["from"])
	}
	if got[0]["text"] != "a \"quoted\"\nline ✓" || got[0]["ref"] != "r1" || got[0]["callback"] != statusURL+"?token="+dlrSecret || auth[0] != "Bearer tok-123" {
		t.Errorf("request %v %v", got[0], auth[0])
	}
	var reps []providers.DeliveryReport
	g.SetSink(func(_ context.Context, _ string, r []providers.DeliveryReport) { reps = append(reps, r...) })
	req := providers.CallbackRequest{Method: "POST", URL: got[0]["callback"], Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
		Body: []byte("msg=gw-1&state=FAILED&reason=absent+subscriber")}
	if resp := g.CallbackRoutes()[0].Handler(context.Background(), &req); resp.Status != 200 {
		t.Fatalf("answered %d", resp.Status)
	}
	if len(reps) != 1 || reps[0] != (providers.DeliveryReport{ProviderID: "gw-1", Status: providers.SMSUndelivered, Code: "absent subscriber"}) {
		t.Errorf("reports %+v", reps)
	}
}

func TestErrorAnswers(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, c := range []struct {
		name, mode, to, pass, extra string
		down                        bool
		kind                        providers.Kind
		code                        string
	}{
		{name: "black-listed", to: "+30690000666", kind: providers.Invalid, code: "400"},
		{name: "auth failed", pass: "wrong-password", kind: providers.Unavailable, code: "403"},
		{name: "queue full", mode: "503", kind: providers.Unavailable, code: "503"},
		{name: "unexpected 202 body", mode: "odd", kind: providers.Indeterminate},
		{name: "timeout after sending", mode: "hang", extra: "timeout: 100ms", kind: providers.Indeterminate},
		{name: "connection refused", down: true, kind: providers.Unavailable},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newKannel(t)
			f.mode = c.mode
			base := f.srv.URL
			if c.down {
				base = downURL()
			}
			cfg := kannelConfig(base, c.extra)
			if c.pass != "" {
				cfg = strings.Replace(cfg, kPass, c.pass, 1)
			}
			to := c.to
			if to == "" {
				to = "+30690000001"
			}
			res, err := newGateway(t, cfg, log).SendSMS(context.Background(), []providers.SMS{{ID: "m", To: to, Body: "x", StatusURL: statusURL}})
			if err != nil {
				t.Fatal(err)
			}
			e := res[0].Err
			if e == nil || e.Kind != c.kind || e.Code != c.code {
				t.Fatalf("got %v, want %s code %q", e, c.kind, c.code)
			}
			for _, s := range []string{kPass, "wrong-password", dlrSecret} {
				if strings.Contains(e.Error(), s) {
					t.Errorf("error leaks %q: %v", s, e)
				}
			}
		})
	}
	for _, s := range []string{kPass, "wrong-password", dlrSecret, "30690000666", "30690000001"} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("logs hold %q", s)
		}
	}
}

func TestConfig(t *testing.T) {
	for _, s := range []string{
		"url: http://x/{{nope}}",
		"url: ftp://x/",
		"url: http://x/\njson: '{\"to\": {{to}}}'",
		"url: http://x/\nmethod: GET\nform: {to: '{{to}}'}",
		"url: http://x/\nform: {to: '{{to}}'}\njson: '{}'",
		"url: http://x/\ndlr: {secret: short, statuses: {'1': delivered}}",
		"url: http://x/\ndlr: {secret: " + dlrSecret + "}",
		"url: http://x/\ndlr: {secret: " + dlrSecret + ", statuses: {'1': read}}",
		"url: http://x/\nid_regexp: 'id'",
		"url: http://x/\npreset: smsbox",
		"url: http://x/\nheaders: {'Bad Name': x}",
		"url: http://x/\nsuccess_status: [99]",
		"url: http://x/\nmethod: DELETE",
		"url: http://x/\ncolour: red",
	} {
		if _, err := providers.Builtin.New(providers.Config{Name: "x", Type: Type, Settings: settings(t, s)}, providers.Deps{}); err == nil {
			t.Errorf("accepted:\n%s", s)
		}
	}
	g := newGateway(t, "preset: kannel\nurl: http://kannel.internal:13013/cgi-bin/sendsms", nil)
	if h := g.Hosts(); len(h) != 1 || h[0] != "kannel.internal:13013" {
		t.Errorf("Hosts() = %v", h)
	}
}
