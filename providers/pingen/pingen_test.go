package pingen

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/pingen/pingentest"
	"github.com/iapd/iapd/providers/providertest"
)

const webhookSecret = "whsec-0123456789abcdef"

// clock is a settable clock for the token cache.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newPingen(t *testing.T, api, identity string, timeout time.Duration, clk *clock) *Pingen {
	t.Helper()
	settings := map[string]any{
		"client_id": pingentest.ClientID, "client_secret": pingentest.ClientSecret,
		"organisation_id": pingentest.Organisation, "webhook_secret": webhookSecret,
		"api_url": api, "identity_url": identity, "timeout": timeout.String(),
	}
	b, _ := yaml.Marshal(settings)
	var node yaml.Node
	if err := yaml.Unmarshal(b, &node); err != nil {
		t.Fatal(err)
	}
	deps := providers.Deps{HTTP: &http.Client{}}
	if clk != nil {
		deps.Now = clk.now
	}
	p, err := providers.Builtin.New(providers.Config{Name: "pingen-ch", Type: Type, Settings: *node.Content[0]}, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p.(*Pingen)
}

func checkProtocol(t *testing.T, s *pingentest.Server) {
	t.Cleanup(func() {
		if bad := s.BadRequests(); len(bad) > 0 {
			t.Errorf("the adapter broke Pingen's protocol: %v", bad)
		}
	})
}

func TestConformance(t *testing.T) {
	servers := map[providers.LetterSender]*pingentest.Server{}
	var mu sync.Mutex
	fresh := func(t *testing.T, mode pingentest.Mode, timeout time.Duration) providers.LetterSender {
		s := pingentest.New(t)
		checkProtocol(t, s)
		s.SetMode(mode)
		p := newPingen(t, s.URL, s.URL, timeout, nil)
		mu.Lock()
		servers[p] = s
		mu.Unlock()
		return p
	}
	providertest.TestLetterSender(t, providertest.LetterHarness{
		New: func(t *testing.T) providers.LetterSender { return fresh(t, pingentest.OK, 5*time.Second) },
		Refuse: func(l *providers.Letter) {
			// US Letter paper: Pingen prints A4 only (422).
			l.PDF = bytes.Replace(providertest.OnePagePDF, []byte("/MediaBox [0 0 595 842]"), []byte("/MediaBox [0 0 612 792]"), 1)
		},
		Down: func(t *testing.T) providers.LetterSender {
			s := pingentest.New(t)
			url := s.URL
			s.Close() // connection refused
			return newPingen(t, url, url, 5*time.Second, nil)
		},
		Hung: func(t *testing.T) providers.LetterSender { return fresh(t, pingentest.Hang, 300*time.Millisecond) },
		Holds: func(t *testing.T, sender providers.LetterSender, l providers.Letter, res providers.LetterResult) bool {
			mu.Lock()
			s := servers[sender]
			mu.Unlock()
			for _, got := range s.Letters() {
				if got.ID == res.ProviderID {
					return bytes.Equal(got.PDF, l.PDF)
				}
			}
			return false
		},
		Callback: func(t *testing.T, l providers.Letter, res providers.LetterResult) (good, forged providers.CallbackRequest) {
			body := pingentest.Webhook("webhook_sent", res.ProviderID, "")
			req := func(sig string) providers.CallbackRequest {
				h := http.Header{"Content-Type": {"application/json"}}
				if sig != "" {
					h.Set("Signature", sig)
				}
				return providers.CallbackRequest{Method: "POST", URL: "https://iap.example.org/providers/pingen-ch/webhook", Header: h, Body: body}
			}
			return req(Sign(webhookSecret, body)), req(Sign("another-secret", body))
		},
	})
}

// TestLetterRequest pins the letter creation Pingen receives.
func TestLetterRequest(t *testing.T) {
	s := pingentest.New(t)
	checkProtocol(t, s)
	p := newPingen(t, s.URL, s.URL, 5*time.Second, nil)
	l := providertest.Letter(0) // colour
	l.Duplex, l.ID = true, "0123456789abcdef0123456789abcdef"
	res, err := p.SendLetter(t.Context(), l)
	if err != nil {
		t.Fatal(err)
	}
	got := s.Letters()
	if len(got) != 1 || got[0].ID != res.ProviderID || res.Status != providers.LetterAccepted {
		t.Fatalf("letters %+v, result %+v", got, res)
	}
	a := got[0].Attributes
	want := map[string]any{"print_mode": "duplex", "print_spectrum": "color", "auto_send": true,
		"delivery_product": "cheap", "address_position": "right", "file_original_name": l.ID + ".pdf"}
	for k, v := range want {
		if a[k] != v {
			t.Errorf("attribute %s = %v, want %v", k, a[k], v)
		}
	}
	l2 := providertest.Letter(1) // grayscale, simplex
	if _, err := p.SendLetter(t.Context(), l2); err != nil {
		t.Fatal(err)
	}
	a = s.Letters()[1].Attributes
	if a["print_mode"] != "simplex" || a["print_spectrum"] != "grayscale" {
		t.Errorf("second letter: %v %v", a["print_mode"], a["print_spectrum"])
	}
}

// TestTokenCache: one token for many letters, a new one when it expires
// or when Pingen revokes it (401 on the letter call: retried once).
func TestTokenCache(t *testing.T) {
	s := pingentest.New(t)
	checkProtocol(t, s)
	clk := &clock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
	p := newPingen(t, s.URL, s.URL, 5*time.Second, clk)
	send := func() {
		t.Helper()
		if _, err := p.SendLetter(t.Context(), providertest.Letter(1)); err != nil {
			t.Fatal(err)
		}
	}
	send()
	send()
	if n := s.TokenCalls(); n != 1 {
		t.Fatalf("%d tokens for two letters, want 1 (cached)", n)
	}
	clk.add(12 * time.Hour) // the token lives 43200 s
	send()
	if n := s.TokenCalls(); n != 2 {
		t.Fatalf("%d tokens after expiry, want 2", n)
	}
	s.SetMode(pingentest.ExpireOnce)
	send()
	if n, c := s.TokenCalls(), len(s.Letters()); n != 3 || c != 4 {
		t.Fatalf("after a revoked token: %d tokens, %d letters; want 3 and 4", n, c)
	}
}

// TestFailureKinds: what each Pingen answer means for the letter (and so
// for the credit held for it).
func TestFailureKinds(t *testing.T) {
	for _, tc := range []struct {
		mode    pingentest.Mode
		want    providers.Kind
		created bool // a letter creation call was made
	}{
		{pingentest.BadAuth, providers.Unavailable, false},
		{pingentest.UploadDown, providers.Unavailable, false},
		{pingentest.Throttled, providers.Unavailable, true},
		{pingentest.CreateDown, providers.Unavailable, true},
		{pingentest.CreateFailed, providers.Indeterminate, true},
		{pingentest.Hang, providers.Indeterminate, true},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			s := pingentest.New(t)
			checkProtocol(t, s)
			s.SetMode(tc.mode)
			p := newPingen(t, s.URL, s.URL, 300*time.Millisecond, nil)
			_, err := p.SendLetter(t.Context(), providertest.Letter(2))
			if k := providers.KindOf(err); err == nil || k != tc.want {
				t.Fatalf("SendLetter: %v (%v), want %s", err, k, tc.want)
			}
			if (s.CreateCalls() > 0) != tc.created {
				t.Errorf("%d letter creation calls; want some: %v", s.CreateCalls(), tc.created)
			}
			if strings.Contains(err.Error(), pingentest.ClientSecret) || strings.Contains(err.Error(), "access-token-") {
				t.Errorf("error shows a secret: %v", err)
			}
		})
	}
}

func TestWebhook(t *testing.T) {
	p := newPingen(t, "https://api.example.org", "https://identity.example.org", time.Second, nil)
	var got []providers.LetterReport
	p.SetLetterSink(func(_ context.Context, _ string, rs []providers.LetterReport) { got = append(got, rs...) })
	routes := p.CallbackRoutes()
	if len(routes) != 1 || routes[0].Path != "/providers/pingen-ch/webhook" {
		t.Fatalf("routes %+v", routes)
	}
	call := func(body []byte, sig string) int {
		h := http.Header{}
		if sig != "" {
			h.Set("Signature", sig)
		}
		return routes[0].Handler(t.Context(), &providers.CallbackRequest{Method: "POST", Header: h, Body: body}).Status
	}
	for typ, want := range map[string]providers.LetterStatus{
		"webhook_sent": providers.LetterSent, "webhook_issues": providers.LetterFailed,
		"webhook_undeliverable": providers.LetterUndeliverable, "webhook_delivered": providers.LetterDelivered,
	} {
		got = nil
		body := pingentest.Webhook(typ, "letter-1", "reason "+typ)
		if st := call(body, Sign(webhookSecret, body)); st != 200 || len(got) != 1 || got[0].Status != want || got[0].ProviderID != "letter-1" || got[0].Code != "reason "+typ {
			t.Errorf("%s: %d %+v", typ, st, got)
		}
	}
	got = nil
	body := pingentest.Webhook("webhook_sent", "letter-2", "")
	for name, sig := range map[string]string{"missing": "", "wrong key": Sign("nope", body), "garbage": "zz", "other body": Sign(webhookSecret, []byte("{}"))} {
		if st := call(body, sig); st != 403 {
			t.Errorf("%s signature: %d, want 403", name, st)
		}
	}
	unknown := pingentest.Webhook("webhook_future_kind", "letter-3", "")
	if st := call(unknown, Sign(webhookSecret, unknown)); st != 200 {
		t.Errorf("unknown category: %d, want 200 (acknowledged, not retried)", st)
	}
	if len(got) != 0 {
		t.Errorf("reports from refused or unknown webhooks: %+v", got)
	}
	if st := call([]byte("not json"), Sign(webhookSecret, []byte("not json"))); st != 400 {
		t.Errorf("authentic garbage: %d, want 400", st)
	}
	// Without a secret nothing is accepted.
	p.cfg.WebhookSecret = ""
	if r := p.CallbackRoutes(); len(r) != 0 {
		t.Errorf("routes without a webhook secret: %+v", r)
	}
}

func TestConfig(t *testing.T) {
	for name, y := range map[string]string{
		"no credentials":   "organisation_id: x",
		"no organisation":  "client_id: a\nclient_secret: b",
		"bad position":     "client_id: a\nclient_secret: b\norganisation_id: o\naddress_position: top",
		"bad url":          "client_id: a\nclient_secret: b\norganisation_id: o\napi_url: ftp://x",
		"credentials url":  "client_id: a\nclient_secret: b\norganisation_id: o\napi_url: https://u:p@x",
		"unknown key":      "client_id: a\nclient_secret: b\norganisation_id: o\norganization_id: o",
		"negative timeout": "client_id: a\nclient_secret: b\norganisation_id: o\ntimeout: -1s",
	} {
		var node yaml.Node
		if err := yaml.Unmarshal([]byte(y), &node); err != nil {
			t.Fatal(err)
		}
		_, err := providers.Builtin.New(providers.Config{Name: "p", Type: Type, Settings: *node.Content[0]}, providers.Deps{})
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "client_secret: b") {
			t.Errorf("%s: error shows the secret: %v", name, err)
		}
	}
	p := newPingen(t, "https://api-staging.v2.pingen.com", "https://identity-staging.pingen.com", time.Second, nil)
	if h := p.Hosts(); len(h) != 2 || h[0] != "api-staging.v2.pingen.com" || h[1] != "identity-staging.pingen.com" {
		t.Errorf("Hosts() = %v", h)
	}
}
