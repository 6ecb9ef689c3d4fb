package rpc

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/iapd/iapd/storage"
)

// -update rewrites the golden files from the current answers (as
// go/printer's tests do); review the diff before committing it.
var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// Golden answers pin the wire format: the success envelope (PROTOCOL
// §1.2, no "error" key), Odoo's error envelope (§1.3) for every error
// name iapd uses, the InsufficientCreditError payload (§1.5) and the key
// sets of §4.1–§4.5 and §5. Each file holds the HTTP status, the
// Content-Type and the exact body. Transaction tokens, random, are
// replaced by <txn>.
func TestGolden(t *testing.T) {
	l := newMemLedger()
	setupServices(t, l)
	const tok = "0123456789abcdef0123456789abcdef"
	recharge(t, l, storage.SMS, tok, "12.5")
	recharge(t, l, stubService, tok, "3")
	ctx := context.Background()
	name := "ACME"
	if _, err := l.UpdateAccount(ctx, storage.SMS, tok, storage.AccountUpdate{SenderName: &name, Alerts: &storage.Alerts{
		Enabled: true, Threshold: 25_000, Recipients: []storage.Recipient{{Email: "a@example.org", Lang: "fr_BE"}, {Email: "b@example.org"}}}}); err != nil {
		t.Fatal(err)
	}
	h := newTestServer(t, l).Handler()

	txn := ""
	cases := []struct {
		name, method, path, ctype, body string
	}{
		{"balance", "POST", "/iap/1/balance", "application/json",
			`{"jsonrpc": "2.0", "method": "call", "params": {"dbuuid": "db", "account_token": "` + tok + `", "service_name": "sms"}, "id": "a1"}`},
		{"balance_disabled_token", "POST", "/iap/1/balance", "application/json",
			`{"jsonrpc": "2.0", "method": "call", "params": {"account_token": "` + tok + `+disabled", "service_name": "sms"}, "id": 7}`},
		{"balance_unknown_service", "POST", "/iap/1/balance", "application/json",
			`{"jsonrpc": "2.0", "method": "call", "params": {"account_token": "` + tok + `", "service_name": "nope"}, "id": null}`},
		{"services_token", "POST", "/iap/services-token", "application/json",
			`{"jsonrpc": "2.0", "method": "call", "params": {"dbuuid": "db", "iap_accounts": ["` + tok + `", "ffffffffffffffffffffffffffffffff", "dummy_value+disabled"]}, "id": "a2"}`},
		{"services_token_empty", "POST", "/iap/services-token", "application/json",
			`{"jsonrpc": "2.0", "method": "call", "params": {"dbuuid": "db", "iap_accounts": []}, "id": "a3"}`},
		{"get_accounts_information", "POST", "/iap/1/get-accounts-information", "application/json",
			`{"jsonrpc": "2.0", "method": "call", "params": {"iap_accounts": [{"token": "` + tok + `", "service": "sms"}, {"token": "` + tok + `+disabled", "service": "snailmail"}, {"token": "` + tok + `", "service": "unknown"}], "dbuuid": "db"}, "id": "a4"}`},
		{"update_warning_email_alerts", "POST", "/iap/1/update-warning-email-alerts", "application/json",
			`{"jsonrpc": "2.0", "method": "call", "params": {"account_token": "` + tok + `", "warning_threshold": 2.5, "warning_emails": [{"email": "a@example.org", "lang_code": "en_US"}]}, "id": "a5"}`},
		{"update_warning_odoo", "POST", "/iap/update-warning-odoo", "application/json",
			`{"jsonrpc": "2.0", "method": "call", "params": {"account_token": "` + tok + `", "dbuuid": "db", "warn_me": null, "warning_threshold": null, "warning_email": "x@example.org"}, "id": "a6"}`},
		{"authorize", "POST", "/iap/1/authorize", "application/json",
			`{"jsonrpc": "2.0", "method": "call", "params": {"account_token": "` + tok + `", "credit": 1.5, "key": "stub-service-key", "description": "d", "ttl": 24}, "id": "a7"}`},
		{"authorize_insufficient", "POST", "/iap/1/authorize", "application/json",
			`{"jsonrpc": "2.0", "method": "call", "params": {"account_token": "` + tok + `", "credit": 100, "key": "stub-service-key", "description": null, "ttl": 4320}, "id": "a8"}`},
		{"authorize_disabled", "POST", "/iap/1/authorize", "application/json",
			`{"jsonrpc": "2.0", "method": "call", "params": {"account_token": "` + tok + `+disabled", "credit": 1, "key": "stub-service-key"}, "id": "a9"}`},
		{"authorize_wrong_key", "POST", "/iap/1/authorize", "application/json",
			`{"jsonrpc": "2.0", "method": "call", "params": {"account_token": "` + tok + `", "credit": 1, "key": "wrong"}, "id": "b1"}`},
		{"authorize_bad_credit", "POST", "/iap/1/authorize", "application/json",
			`{"jsonrpc": "2.0", "method": "call", "params": {"account_token": "` + tok + `", "credit": "1", "key": "stub-service-key"}, "id": "b2"}`},
		{"authorize_dust", "POST", "/iap/1/authorize", "application/json",
			`{"jsonrpc": "2.0", "method": "call", "params": {"account_token": "` + tok + `", "credit": 0.00001, "key": "stub-service-key"}, "id": "b3"}`},
		{"capture", "POST", "/iap/1/capture", "application/json",
			`{"jsonrpc": "2.0", "method": "call", "params": {"token": "<txn>", "key": "stub-service-key", "credit_to_capture": false}, "id": "b4"}`},
		{"cancel_after_capture", "POST", "/iap/1/cancel", "application/json",
			`{"jsonrpc": "2.0", "method": "call", "params": {"token": "<txn>", "key": "stub-service-key"}, "id": "b5"}`},
		{"capture_unknown", "POST", "/iap/1/capture", "application/json",
			`{"jsonrpc": "2.0", "method": "call", "params": {"token": "ffffffffffffffffffffffffffffffff", "key": "stub-service-key"}, "id": "b6"}`},
		{"malformed_json", "POST", "/iap/1/balance", "application/json", `{"jsonrpc": "2.0", "params": {`},
		{"params_array", "POST", "/iap/1/balance", "application/json", `{"jsonrpc": "2.0", "method": "call", "params": ["a", "b"], "id": 1.5}`},
		{"wrong_type", "POST", "/iap/1/get-accounts-information", "", `{"params": {"iap_accounts": [{"token": 12, "service": "sms"}]}, "id": ["x"]}`},
		{"unknown_route", "POST", "/iap/1/nope", "text/plain", `{"jsonrpc": "2.0", "method": "call", "params": {}, "id": "c1"}`},
		{"get_on_rpc_route", "GET", "/iap/1/balance", "", ``},
		{"get_unknown", "GET", "/nothing", "", ``},
	}
	tokRE := regexp.MustCompile(`"result":"([0-9a-f]{32})"`)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := bytes.ReplaceAll([]byte(c.body), []byte("<txn>"), []byte(txn))
			resp := serveInProcess(h, c.method, c.path, c.ctype, body)
			out := resp.Body()
			if m := tokRE.FindSubmatch(out); m != nil {
				txn = string(m[1])
				out = bytes.ReplaceAll(out, m[1], []byte("<txn>"))
			}
			got := fmt.Sprintf("HTTP %d\nContent-Type: %s\n", resp.StatusCode(), resp.Header.ContentType())
			if allow := resp.Header.Peek("Allow"); len(allow) > 0 {
				got += fmt.Sprintf("Allow: %s\n", allow)
			}
			got += "\n" + string(out) + "\n"
			golden(t, filepath.Join("testdata", c.name+".golden"), got)
		})
	}
}

func golden(t *testing.T, file, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -run TestGolden -update rewrites it):\n--- got\n%s--- want\n%s", file, got, want)
	}
}
