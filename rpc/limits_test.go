package rpc

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/rpc/limit"
	"github.com/iapd/iapd/storage"
)

// TestAlertRecipientsCap (issue 13, finding 3): an alert-settings call
// with more recipients than allowed is refused with a UserError (Odoo
// 17/18/19 log it: the result and errors of PROTOCOL §4.3 and §4.5 are
// only logged) and changes nothing; at the cap it is stored; duplicate
// addresses count once.
func TestAlertRecipientsCap(t *testing.T) {
	l := newMemLedger()
	setupServices(t, l)
	s, err := New(Config{Ledger: l, PublicURL: testPublicURL, Logger: testLogger(t), MaxAlertRecipients: 3})
	if err != nil {
		t.Fatal(err)
	}
	addr := startServer(t, s)
	tok := "0123456789abcdef0123456789abcdef"
	call(t, addr, "/iap/1/balance", map[string]any{"dbuuid": "db", "account_token": tok, "service_name": "sms"})
	emails := func(n int, dup bool) []map[string]string {
		var out []map[string]string
		for i := range n {
			e := fmt.Sprintf("u%d@example.com", i)
			if dup && i%2 == 1 {
				e = strings.ToUpper(fmt.Sprintf("u%d@example.com", i-1))
			}
			out = append(out, map[string]string{"email": e, "lang_code": "en_US"})
		}
		return out
	}
	recipients := func() int {
		a, err := l.LookupAccount(context.Background(), "sms", storage.AccountToken(tok))
		if err != nil {
			t.Fatal(err)
		}
		return len(a.Alerts.Recipients)
	}
	env := call(t, addr, "/iap/1/update-warning-email-alerts", map[string]any{"account_token": tok, "warning_threshold": 5, "warning_emails": emails(3, false)})
	if errorName(env) != "" || recipients() != 3 {
		t.Fatalf("3 recipients: %v, %d stored", env, recipients())
	}
	env = call(t, addr, "/iap/1/update-warning-email-alerts", map[string]any{"account_token": tok, "warning_threshold": 1, "warning_emails": emails(50, false)})
	if !strings.HasSuffix(errorName(env), ".UserError") || recipients() != 3 {
		t.Fatalf("50 recipients: %v, %d stored", env, recipients())
	}
	env = call(t, addr, "/iap/1/update-warning-email-alerts", map[string]any{"account_token": tok, "warning_threshold": 1, "warning_emails": emails(6, true)})
	if errorName(env) != "" || recipients() != 6 {
		t.Fatalf("6 addresses, 3 distinct: %v, %d stored", env, recipients())
	}
	// 17.0: a comma-separated string.
	list := ""
	for i := range 4 {
		list += fmt.Sprintf("x%d@example.com,", i)
	}
	env = call(t, addr, "/iap/update-warning-odoo", map[string]any{"account_token": tok, "dbuuid": "db", "warn_me": true, "warning_threshold": 1, "warning_email": list})
	if !strings.HasSuffix(errorName(env), ".UserError") || recipients() != 6 {
		t.Fatalf("17.0, 4 recipients: %v", env)
	}
}

// TestRefusedCreationLeftOut: get-accounts-information leaves out an
// account whose creation the ledger refuses (Forbidden, rpc/admit), as
// it does an unknown service; balance answers AccessError (Odoo shows -1,
// PROTOCOL §4.1).
func TestRefusedCreationLeftOut(t *testing.T) {
	l := refusingLedger{newMemLedger()}
	setupServices(t, l)
	addr := startServer(t, newTestServer(t, l))
	tok := "0123456789abcdef0123456789abcdef"
	env := call(t, addr, "/iap/1/get-accounts-information", map[string]any{"dbuuid": "db",
		"iap_accounts": []map[string]string{{"token": tok, "service": "sms"}}})
	if res, ok := env["result"].(map[string]any); !ok || len(res) != 0 {
		t.Fatalf("get-accounts-information: %v", env)
	}
	env = call(t, addr, "/iap/1/balance", map[string]any{"dbuuid": "db", "account_token": tok, "service_name": "sms"})
	if !strings.HasSuffix(errorName(env), ".AccessError") {
		t.Fatalf("balance: %v", env)
	}
}

// refusingLedger refuses every account creation as rpc/admit does past
// its limits.
type refusingLedger struct{ *memLedger }

func (l refusingLedger) Account(ctx context.Context, svc storage.ServiceName, tok storage.AccountToken, fs storage.FirstSight) (storage.Account, error) {
	if a, err := l.memLedger.LookupAccount(ctx, svc, tok); err == nil {
		return a, nil
	}
	return storage.Account{}, storage.E("account", storage.Forbidden, "Too many new IAP accounts")
}

// clientSeen records the client key the ledger sees through the
// request's context.
type clientSeen struct {
	*memLedger
	mu  sync.Mutex
	got []string
}

func (l *clientSeen) Account(ctx context.Context, svc storage.ServiceName, tok storage.AccountToken, fs storage.FirstSight) (storage.Account, error) {
	l.mu.Lock()
	l.got = append(l.got, limit.Client(ctx))
	l.mu.Unlock()
	return l.memLedger.Account(ctx, svc, tok, fs)
}

// TestClientKeyReachesTheLedger: the client key limit.TagClient stores on
// the fasthttp request reaches the ledger through the seam's context
// (rpc/admit keys its limits by it): from the trusted header when one is
// configured, else the peer.
func TestClientKeyReachesTheLedger(t *testing.T) {
	for _, c := range []struct{ header, want string }{
		{"X-Real-IP", "\xcb\x00\x71\x07"}, // 203.0.113.7
		{"", "\x7f\x00\x00\x01"},          // the peer, 127.0.0.1
	} {
		l := &clientSeen{memLedger: newMemLedger()}
		setupServices(t, l)
		s := newTestServer(t, l)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		h := s.Handler()
		srv := NewHTTPServer(func(ctx *fasthttp.RequestCtx) { limit.TagClient(ctx, c.header); h(ctx) }, testLogger(t))
		go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
		body := []byte(`{"jsonrpc":"2.0","method":"call","id":1,"params":{"dbuuid":"db","account_token":"0123456789abcdef0123456789abcdef","service_name":"sms"}}`)
		hdr := odooHeaders(len(body))
		hdr["X-Real-IP"] = "203.0.113.7"
		mustEnvelope(t, rawRequest(t, ln.Addr().String(), "POST", "/iap/1/balance", hdr, body))
		_ = srv.Shutdown()
		l.mu.Lock()
		got := l.got
		l.mu.Unlock()
		if len(got) != 1 || got[0] != c.want {
			t.Fatalf("header %q: the ledger saw client keys %q, want %q", c.header, got, c.want)
		}
	}
}
