package limit

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Config is the limits section of iapd's configuration: the abuse limits
// of the public listener, each with a default a legitimate caller never
// meets. A rate is written "N/duration": "1000/1h" allows 1000 at once,
// refilled continuously at 1000 an hour.
//
//	limits:
//	  accounts_per_address: 1000/1h
//	  accounts_per_database: 100/24h
//	  accounts_total: 20000/1h
//	  trials_per_address: 20/24h
//	  trials_total: 1000/24h
//	  alert_recipients: 10
//	  alert_emails_per_account: 20/24h
//	  alert_emails_per_recipient: 10/24h
type Config struct {
	// AccountsPerAddress bounds the accounts created (first sight of a
	// token) per client address.
	AccountsPerAddress Rate `yaml:"accounts_per_address"`
	// AccountsPerDatabase bounds the accounts created per dbuuid.
	AccountsPerDatabase Rate `yaml:"accounts_per_database"`
	// AccountsTotal bounds all accounts created, whoever asks: the
	// backstop against many addresses (existing accounts are never
	// affected).
	AccountsTotal Rate `yaml:"accounts_total"`
	// TrialsPerAddress bounds the trial credits granted per client
	// address (a trial is also granted once per database and service).
	TrialsPerAddress Rate `yaml:"trials_per_address"`
	// TrialsTotal bounds all trial credits granted.
	TrialsTotal Rate `yaml:"trials_total"`
	// AlertRecipients is the most alert recipients an account may have;
	// a settings call with more is refused.
	AlertRecipients int `yaml:"alert_recipients"`
	// AlertEmailsPerAccount bounds the alert e-mails per account token
	// (all its services together).
	AlertEmailsPerAccount Rate `yaml:"alert_emails_per_account"`
	// AlertEmailsPerRecipient bounds the alert e-mails per recipient
	// address, all accounts together.
	AlertEmailsPerRecipient Rate `yaml:"alert_emails_per_recipient"`
}

// Defaults of Config.
var (
	DefaultAccountsPerAddress      = Rate{Burst: 1000, Per: time.Hour}
	DefaultAccountsPerDatabase     = Rate{Burst: 100, Per: 24 * time.Hour}
	DefaultAccountsTotal           = Rate{Burst: 20000, Per: time.Hour}
	DefaultTrialsPerAddress        = Rate{Burst: 20, Per: 24 * time.Hour}
	DefaultTrialsTotal             = Rate{Burst: 1000, Per: 24 * time.Hour}
	DefaultAlertEmailsPerAccount   = Rate{Burst: 20, Per: 24 * time.Hour}
	DefaultAlertEmailsPerRecipient = Rate{Burst: 10, Per: 24 * time.Hour}
)

// Default values of Config that are not rates.
const (
	DefaultAlertRecipients = 10
	// MaxAlertRecipients is the ledger's own bound on recipients.
	MaxAlertRecipients = 50
)

// Validate fills the defaults of the zero fields and checks the rest.
func (c *Config) Validate() error {
	for _, r := range []struct {
		name string
		r    *Rate
		def  Rate
	}{
		{"accounts_per_address", &c.AccountsPerAddress, DefaultAccountsPerAddress},
		{"accounts_per_database", &c.AccountsPerDatabase, DefaultAccountsPerDatabase},
		{"accounts_total", &c.AccountsTotal, DefaultAccountsTotal},
		{"trials_per_address", &c.TrialsPerAddress, DefaultTrialsPerAddress},
		{"trials_total", &c.TrialsTotal, DefaultTrialsTotal},
		{"alert_emails_per_account", &c.AlertEmailsPerAccount, DefaultAlertEmailsPerAccount},
		{"alert_emails_per_recipient", &c.AlertEmailsPerRecipient, DefaultAlertEmailsPerRecipient},
	} {
		if *r.r == (Rate{}) {
			*r.r = r.def
		}
		if r.r.Burst < 0 || r.r.Per < 0 || (r.r.Burst > 0) != (r.r.Per > 0) {
			return fmt.Errorf("limits: %s: %q is not N/duration", r.name, r.r.String())
		}
	}
	if c.AlertRecipients == 0 {
		c.AlertRecipients = DefaultAlertRecipients
	}
	if c.AlertRecipients < 0 || c.AlertRecipients > MaxAlertRecipients {
		return fmt.Errorf("limits: alert_recipients must be from 1 to %d", MaxAlertRecipients)
	}
	return nil
}

// String writes r as "N/duration" (Go's duration syntax).
func (r Rate) String() string { return strconv.Itoa(r.Burst) + "/" + r.Per.String() }

// ParseRate reads "N/duration" ("1000/1h", "20/24h"); N >= 1 and the
// duration positive. "0" is refused: a limit is lifted by a large N, not
// by zero (which would refuse everything).
func ParseRate(s string) (Rate, error) {
	n, d, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Rate{}, fmt.Errorf("%q: want N/duration, e.g. 100/1h", s)
	}
	burst, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || burst < 1 {
		return Rate{}, fmt.Errorf("%q: N must be a positive integer", s)
	}
	per, err := time.ParseDuration(strings.TrimSpace(d))
	if err != nil || per <= 0 {
		return Rate{}, fmt.Errorf("%q: the duration must be positive (Go syntax: 30s, 1h, 24h)", s)
	}
	return Rate{Burst: burst, Per: per}, nil
}

// UnmarshalText reads a rate written as ParseRate takes it (YAML and
// JSON decoders use it).
func (r *Rate) UnmarshalText(b []byte) error {
	x, err := ParseRate(string(b))
	if err != nil {
		return err
	}
	*r = x
	return nil
}

// MarshalText writes r as String does.
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }
