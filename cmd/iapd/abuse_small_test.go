package main

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/iapd/iapd/rpc/admin"
	"github.com/iapd/iapd/storage"
)

// smallAbuse is an iapd of the abuse suite with a provider service
// ("geocoding", keyed) and helpers for its provider API (PROTOCOL §5).
type smallAbuse struct {
	*abuseProc
	key string
}

const smallService = "geocoding"

func startSmallAbuse(t *testing.T) *smallAbuse {
	t.Helper()
	p := startAbuse(t, abuseOpts{Config: "services:\n  " + smallService + ":\n    auto_register: true\n    trial_credits: 0\n"})
	s := &smallAbuse{abuseProc: p, key: randHex(24)}
	s.admin(t, "POST", "/v1/services/"+smallService+"/key", map[string]any{"key": s.key}, nil)
	return s
}

func (s *smallAbuse) admin(t *testing.T, method, path string, body, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Admin.call(ctx, method, path, nil, body, out); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
}

func (s *smallAbuse) account(t *testing.T, tok string) admin.Account {
	t.Helper()
	var a admin.Account
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q := url.Values{"service": {smallService}, "token": {tok}}
	if err := s.Admin.call(ctx, "GET", "/v1/account", q, nil, &a); err != nil {
		t.Fatalf("show account: %v", err)
	}
	return a
}

// provider calls a provider route; a transport failure fails the test.
func (s *smallAbuse) provider(t *testing.T, path string, params map[string]any) (json.RawMessage, *rpcError) {
	t.Helper()
	params["key"] = s.key
	res, rerr, err := s.Call(path, params, time.Minute)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return res, rerr
}

func (s *smallAbuse) authorize(t *testing.T, tok string, credit float64) string {
	t.Helper()
	res, rerr := s.provider(t, "/iap/1/authorize", map[string]any{"account_token": tok, "credit": credit, "description": "abuse", "ttl": 1})
	var txn string
	if rerr != nil || json.Unmarshal(res, &txn) != nil {
		t.Fatalf("authorize: %s %v", res, rerr)
	}
	return txn
}

// TestAbuseSmallFindings reproduces issue 13's finding 8 (first two
// items) against the real binary: a capture above the hold on a banned
// account, and "+disabled" spelt with whitespace, NUL or control
// characters. Each refusal must be an AccessError (the error §5.2 lists
// for capture, and the answer to a neutralised database on authorize)
// and take no credit.
func TestAbuseSmallFindings(t *testing.T) {
	s := startSmallAbuse(t)
	tok := randHex(16)
	s.admin(t, "POST", "/v1/account/credit", map[string]any{"service": smallService, "token": tok, "amount": "10", "ref": "abuse"}, nil)

	// A capture above the hold of an account banned since the authorize.
	over, fair := s.authorize(t, tok, 2), s.authorize(t, tok, 2)
	s.admin(t, "POST", "/v1/account/ban", map[string]any{"service": smallService, "token": tok}, nil)
	overs := []float64{2.0001, 5, 8}
	refused := 0
	for _, c := range overs {
		res, rerr := s.provider(t, "/iap/1/capture", map[string]any{"token": over, "credit_to_capture": c})
		if rerr == nil || !strings.HasSuffix(rerr.Name, "AccessError") || !strings.Contains(rerr.Message, "banned") {
			t.Errorf("capture of %v over a hold of 2 on a banned account: %s %v", c, res, rerr)
			continue
		}
		refused++
	}
	if a := s.account(t, tok); a.Available != 6*storage.Scale || a.Held != 4*storage.Scale || a.Captured != 0 {
		t.Fatalf("account after refused over-captures: %+v", a)
	}
	for _, txn := range []string{over, fair} {
		if res, rerr := s.provider(t, "/iap/1/capture", map[string]any{"token": txn, "credit_to_capture": 2}); rerr != nil || string(res) != "true" {
			t.Fatalf("capture up to the hold of a banned account: %s %v", res, rerr)
		}
	}
	a := s.account(t, tok)
	if a.Available != 6*storage.Scale || a.Held != 0 || a.Captured != 4*storage.Scale {
		t.Fatalf("account after the captures up to the hold: %+v", a)
	}
	abuseFigure(t, "banned account: %d of %d captures above the hold refused (AccessError), credit drawn beyond the holds %s, captures up to the hold settled %s",
		refused, len(overs), a.Captured-4*storage.Scale, a.Captured)

	// "+disabled" mangled: never spends.
	rich := randHex(16)
	s.admin(t, "POST", "/v1/account/credit", map[string]any{"service": smallService, "token": rich, "amount": "100", "ref": "abuse"}, nil)
	spellings := []string{"disabled", "disabled ", " disabled", "disabled\x00", "\x00disabled", "disabled\n", "disabled\r\n", "\tdisabled",
		"DISABLED", "Disabled", "disabled\u00a0", "\ufeffdisabled", "disable", "x", "x+disabled"}
	refused = 0
	for _, sfx := range spellings {
		res, rerr := s.provider(t, "/iap/1/authorize", map[string]any{"account_token": rich + "+" + sfx, "credit": 1, "ttl": 1})
		if rerr == nil || !strings.HasSuffix(rerr.Name, "AccessError") || !strings.Contains(rerr.Message, "neutralised") {
			t.Errorf("authorize with suffix %q: %s %v", sfx, res, rerr)
			continue
		}
		refused++
	}
	// The balance stays readable through a mangled suffix.
	res, rerr, err := s.Call("/iap/1/balance", map[string]any{"account_token": rich + "+disabled\x00", "service_name": smallService}, time.Minute)
	if err != nil || rerr != nil || string(res) != "100" {
		t.Errorf("balance through a mangled suffix: %s %v %v", res, rerr, err)
	}
	b := s.account(t, rich)
	if b.Available != 100*storage.Scale || b.Held != 0 || b.Captured != 0 {
		t.Fatalf("account after the hostile suffixes: %+v", b)
	}
	abuseFigure(t, "+disabled spellings: %d of %d authorizes refused (AccessError), credit held %s", refused, len(spellings), b.Held)
}
