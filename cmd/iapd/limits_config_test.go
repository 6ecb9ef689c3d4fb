package main

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/iapd/iapd/rpc/limit"
)

// TestLimitsConfig: the limits section reads N/duration rates (with
// ${ENV}), fills the defaults, refuses unknown keys and bad rates; one
// client_ip_header serves every limit, the portal's own key is a
// fallback, and two different ones are an error.
func TestLimitsConfig(t *testing.T) {
	env := map[string]string{"PER_DB": "50/24h"}
	getenv := func(k string) string { return env[k] }
	load := func(yml string) (*abuseLimits, error) {
		t.Helper()
		c, err := ParseConfig([]byte(yml), getenv)
		if err != nil {
			return nil, err
		}
		return newAbuseLimits(c, nil, slog.New(slog.DiscardHandler))
	}
	a, err := load("client_ip_header: X-Real-IP\nlimits:\n  accounts_per_address: 5000/1h\n  accounts_per_database: ${PER_DB}\n  alert_recipients: 3\n  alert_emails_per_recipient: 2/12h\n")
	if err != nil {
		t.Fatal(err)
	}
	if a.header != "X-Real-IP" || a.cfg.AccountsPerAddress != (limit.Rate{Burst: 5000, Per: time.Hour}) ||
		a.cfg.AccountsPerDatabase != (limit.Rate{Burst: 50, Per: 24 * time.Hour}) || a.cfg.AlertRecipients != 3 ||
		a.cfg.AlertEmailsPerRecipient != (limit.Rate{Burst: 2, Per: 12 * time.Hour}) ||
		a.cfg.TrialsPerAddress != limit.DefaultTrialsPerAddress || a.cfg.AccountsTotal != limit.DefaultAccountsTotal {
		t.Fatalf("parsed %+v header %q", a.cfg, a.header)
	}
	if line := a.reportLine(); !strings.Contains(line, "header X-Real-IP") || !strings.Contains(line, "5000/1h0m0s per address") {
		t.Fatalf("report line %q", line)
	}
	a, err = load("")
	if err != nil || a.header != "" || a.cfg.AccountsPerAddress != limit.DefaultAccountsPerAddress || a.cfg.AlertRecipients != limit.DefaultAlertRecipients {
		t.Fatalf("defaults: %+v %v", a, err)
	}
	a, err = load("portal:\n  client_ip_header: X-Forwarded-For\n")
	if err != nil || a.header != "X-Forwarded-For" {
		t.Fatalf("the portal's header as a fallback: %v %v", a, err)
	}
	for name, yml := range map[string]string{
		"unknown key":       "limits:\n  accounts_per_hour: 5\n",
		"not a rate":        "limits:\n  accounts_per_address: 5000\n",
		"zero":              "limits:\n  trials_per_address: 0/1h\n",
		"recipients":        "limits:\n  alert_recipients: 51\n",
		"headers differ":    "client_ip_header: X-Real-IP\nportal:\n  client_ip_header: X-Forwarded-For\n",
		"bad header":        "client_ip_header: \"X Real IP\"\n",
		"negative duration": "limits:\n  alert_emails_per_account: 5/-1h\n",
	} {
		if _, err := load(yml); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
