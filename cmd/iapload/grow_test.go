package main

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// TestGrow: iapload -grow creates new sms accounts in a real iapd through
// /iap/1/balance (PROTOCOL §4.1), one per call, and fails, saying so, when
// iapd refuses some: with accounts_per_address 30/1h, growing 20 succeeds,
// growing 20 more creates 10 and reports the 10 refusals, and iapd then
// counts 30 registered sms accounts.
func TestGrow(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs iapd")
	}
	const token = "iapload-test-admin-token-0123456789"
	const cfg = "limits:\n  accounts_per_address: 30/1h\nservices:\n  sms:\n    auto_register: true\n    trial_credits: 0\n"
	addrs, _, stderr := startIapd(t, t.TempDir(), token, cfg)
	getenv := func(string) string { return "" } // -grow needs no admin token
	args := []string{"-url", "http://" + addrs["public"], "-grow", "20", "-c", "4"}

	var out, errOut bytes.Buffer
	if err := run(context.Background(), args, getenv, &out, &errOut); err != nil {
		t.Fatalf("first grow: %v\n%s%s\n%s", err, out.String(), errOut.String(), stderr.String())
	}
	t.Logf("first grow:\n%s", out.String())
	if !strings.Contains(out.String(), "grow      20 new accounts of service sms in ") || strings.Contains(out.String(), "errors") {
		t.Errorf("first grow's report:\n%s", out.String())
	}

	out.Reset()
	err := run(context.Background(), args, getenv, &out, &errOut)
	t.Logf("second grow:\n%s", out.String())
	if err == nil || !strings.Contains(err.Error(), "10 of 20 balance calls failed") {
		t.Errorf("second grow: err = %v, want 10 of 20 failed", err)
	}
	if !strings.Contains(out.String(), "grow      10 new accounts of service sms in ") || !strings.Contains(out.String(), "errors") {
		t.Errorf("second grow's report:\n%s", out.String())
	}

	if n := registeredSMS(t, addrs["ops"]); n != 30 {
		t.Errorf("iap_accounts{service=\"sms\",state=\"registered\"} = %d, want 30", n)
	}
}

// registeredSMS reads iapd's count of registered sms accounts from the
// ops listener's /metrics.
func registeredSMS(t *testing.T, ops string) int {
	t.Helper()
	resp, err := http.Get("http://" + ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `iap_accounts{service="sms",state="registered"} `); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("iap_accounts: %q", v)
			}
			return n
		}
	}
	t.Fatal("no iap_accounts{service=\"sms\",state=\"registered\"} in /metrics")
	return 0
}
