package limit

import (
	"strings"
	"time"
)

// Alert e-mail refusal reasons (iap_refusals_total{reason}).
const (
	ReasonAlertAccount   = "alert_email_account"
	ReasonAlertRecipient = "alert_email_recipient"
)

// alertSlots is the size of each alert table.
const alertSlots = 16384

// AlertGate bounds the low-credit alert e-mails per account token (its
// services together) and per recipient address. (A settings change queues
// no alert in the ledger, and one alert goes once to each distinct
// recipient: toggling a threshold sends nothing.) Safe for concurrent
// use; its memory is fixed (two tables of 16384 slots).
type AlertGate struct {
	account   *Table
	recipient *Table
	report    *Reporter
}

// NewAlertGate returns the gate of cfg (validated), reporting refusals
// to report (may be nil).
func NewAlertGate(cfg Config, report *Reporter) *AlertGate {
	return &AlertGate{
		account:   NewTable(alertSlots, cfg.AlertEmailsPerAccount),
		recipient: NewTable(alertSlots, cfg.AlertEmailsPerRecipient),
		report:    report,
	}
}

// AllowEmail reports whether the alert e-mail of account (service svc,
// token tok) to addr may be sent now, and counts it if so. A refusal is
// reported, the address redacted.
func (g *AlertGate) AllowEmail(svc, tok, addr string, now time.Time) bool {
	norm := strings.ToLower(strings.TrimSpace(addr))
	switch {
	case !g.account.Allow(tok, now):
		g.report.Refuse(ReasonAlertAccount, "alert e-mail dropped: too many for one account", "service", svc, "to", redact(norm))
	case !g.recipient.Allow(norm, now):
		g.report.Refuse(ReasonAlertRecipient, "alert e-mail dropped: too many for one recipient", "service", svc, "to", redact(norm))
	default:
		return true
	}
	return false
}

// redact keeps the first letter and the domain of an address.
func redact(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 {
		return "***"
	}
	return addr[:1] + "***" + addr[at:]
}
