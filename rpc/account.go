package rpc

import (
	"context"
	"crypto/sha1" // #nosec G505 -- Odoo's account_uuid_hashed is SHA-1 (PROTOCOL §4.2, §4.7); an identifier, not a security use
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/iapd/iapd/storage"
)

// Account serves the account-management routes on iap.endpoint (PROTOCOL
// §4). None of them ever answers InsufficientCreditError: 17.0 and 18.0
// do not catch it there and their Settings page and account form break
// (§4.1); an account without credit simply has a balance of 0.
type Account struct{ s *Server }

// BalanceArgs are the params of /iap/1/balance (§4.1).
type BalanceArgs struct {
	DBUUID       string `json:"dbuuid"`
	AccountToken string `json:"account_token"`
	ServiceName  string `json:"service_name"`
}

// BalanceReply is the available credit (held credit is not available),
// encoded as a bare exact JSON number.
type BalanceReply struct{ Balance storage.Credits }

func (r *BalanceReply) appendJSON(b []byte) []byte { return r.Balance.AppendJSON(b) }

// MarshalJSON encodes the reply as the client reads it.
func (r *BalanceReply) MarshalJSON() ([]byte, error) { return r.appendJSON(nil), nil }

// Balance answers the available credit of one account, creating the
// account on first sight. A "+disabled" token reads the balance of its
// account (reading is not paid work). An unknown service is an
// AccessError (the client then shows -1).
func (a *Account) Balance(r *http.Request, args *BalanceArgs, reply *BalanceReply) error {
	const op = "balance"
	tok, _, err := accountToken(op, "account_token", args.AccountToken)
	if err != nil {
		return err
	}
	svc, err := serviceName(op, "service_name", args.ServiceName)
	if err != nil {
		return err
	}
	acct, err := a.s.ledger.Account(r.Context(), svc, tok, storage.FirstSight{DBUUID: args.DBUUID})
	if kindIs(err, storage.NotFound) {
		return &storage.Error{Op: op, Kind: storage.NotFound, Msg: "Unknown service.", Err: err}
	}
	if err != nil {
		return err
	}
	reply.Balance = acct.Available
	return nil
}

// ServicesTokenArgs are the params of /iap/services-token (17.0, §4.2).
type ServicesTokenArgs struct {
	DBUUID      string   `json:"dbuuid"`
	IAPAccounts []string `json:"iap_accounts"`
}

// AccountInfo is one row of Odoo 17's iap.account.info. It has exactly the
// keys that model accepts: any other key makes the 17.0 list view fail.
type AccountInfo struct {
	AccountToken      string              `json:"account_token"` // byte-identical to the token sent, suffix included
	Balance           storage.Credits     `json:"balance"`
	AccountUUIDHashed string              `json:"account_uuid_hashed"` // SHA-1 hex of the token without suffix
	ServiceName       storage.ServiceName `json:"service_name"`
	Description       string              `json:"description"`
	WarnMe            bool                `json:"warn_me"`
	WarningThreshold  storage.Credits     `json:"warning_threshold"`
	WarningEmail      string              `json:"warning_email"`
	UnitName          string              `json:"unit_name"`
}

// ServicesTokenReply is a list, never null (a null result crashes the
// 17.0 view).
type ServicesTokenReply []AccountInfo

// MarshalJSON encodes the reply as a list, [] when empty.
func (r ServicesTokenReply) MarshalJSON() ([]byte, error) {
	if r == nil {
		return []byte("[]"), nil
	}
	return json.Marshal([]AccountInfo(r))
}

// ServicesToken lists the accounts, in every service, of the tokens sent.
// Unknown tokens are left out; nothing is created (no service is named).
func (a *Account) ServicesToken(r *http.Request, args *ServicesTokenArgs, reply *ServicesTokenReply) error {
	if args.IAPAccounts == nil {
		return missing("services-token", "iap_accounts")
	}
	if len(args.IAPAccounts) > maxAccountsPerCall {
		return tooManyAccounts("services-token")
	}
	ctx := r.Context()
	out := make(ServicesTokenReply, 0, len(args.IAPAccounts))
	var services map[storage.ServiceName]storage.Service
	seen := make(map[string]bool, len(args.IAPAccounts))
	for _, raw := range args.IAPAccounts {
		if seen[raw] {
			continue
		}
		seen[raw] = true
		tok, _, ok := storage.SplitToken(raw)
		if !ok {
			continue
		}
		accts, err := a.s.ledger.AccountsByToken(ctx, tok)
		if err != nil {
			return err
		}
		if len(accts) == 0 {
			continue
		}
		if services == nil {
			if services, err = a.services(ctx); err != nil {
				return err
			}
		}
		slices.SortFunc(accts, func(x, y storage.Account) int { return strings.Compare(string(x.Service), string(y.Service)) })
		for _, acct := range accts {
			svc := services[acct.Service]
			info := AccountInfo{
				AccountToken:      raw,
				Balance:           acct.Available,
				AccountUUIDHashed: sha1Hex(string(tok)),
				ServiceName:       acct.Service,
				Description:       svc.Description,
				WarnMe:            acct.Alerts.Enabled,
				WarningThreshold:  acct.Alerts.Threshold,
				WarningEmail:      joinEmails(acct.Alerts.Recipients),
				UnitName:          svc.UnitName,
			}
			if info.Description == "" {
				info.Description = string(acct.Service)
			}
			if info.UnitName == "" {
				info.UnitName = "Credits"
			}
			out = append(out, info)
		}
	}
	*reply = out
	return nil
}

func (a *Account) services(ctx context.Context) (map[storage.ServiceName]storage.Service, error) {
	list, err := a.s.ledger.Services(ctx)
	if err != nil {
		return nil, err
	}
	m := make(map[storage.ServiceName]storage.Service, len(list))
	for _, s := range list {
		m[s.Name] = s
	}
	return m, nil
}

func sha1Hex(s string) string {
	sum := sha1.Sum([]byte(s)) // #nosec G401 -- protocol identifier, see import
	return hex.EncodeToString(sum[:])
}

func joinEmails(rs []storage.Recipient) string {
	var b strings.Builder
	for _, r := range rs {
		if r.Email == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(r.Email)
	}
	return b.String()
}

// UpdateWarningOdooArgs are the params of /iap/update-warning-odoo (17.0,
// §4.3). Each value is null when it was not part of Odoo's write.
type UpdateWarningOdooArgs struct {
	AccountToken     string `json:"account_token"`
	DBUUID           string `json:"dbuuid"`
	WarnMe           *bool  `json:"warn_me"`
	WarningThreshold Number `json:"warning_threshold"`
	WarningEmail     Text   `json:"warning_email"` // false: the field was cleared
}

// warningThreshold reads Odoo's warning_threshold: nil when absent (left
// alone), zero for false (cleared), else the amount (Invalid if it is not
// one).
func warningThreshold(op string, n Number) (*storage.Credits, error) {
	switch {
	case n.Set():
		c, err := credits(op, "warning_threshold", n)
		if err != nil {
			return nil, err
		}
		return &c, nil
	case n.False:
		return new(storage.Credits), nil
	}
	return nil, nil
}

// UpdateWarningOdoo stores the alert settings on every account having the
// token, and answers true (the client ignores the result).
func (a *Account) UpdateWarningOdoo(r *http.Request, args *UpdateWarningOdooArgs, reply *bool) error {
	const op = "update-warning-odoo"
	tok, _, err := accountToken(op, "account_token", args.AccountToken)
	if err != nil {
		return err
	}
	threshold, err := warningThreshold(op, args.WarningThreshold)
	if err != nil {
		return err
	}
	var recipients []storage.Recipient
	for _, e := range strings.Split(args.WarningEmail.S, ",") {
		if e = strings.TrimSpace(e); e != "" {
			recipients = append(recipients, storage.Recipient{Email: e})
		}
	}
	if err := a.checkRecipients(op, recipients); err != nil {
		return err
	}
	err = a.updateAlerts(r.Context(), op, tok, func(al *storage.Alerts) {
		if args.WarnMe != nil {
			al.Enabled = *args.WarnMe
		}
		if threshold != nil {
			al.Threshold = *threshold
		}
		if args.WarningEmail.Set || args.WarningEmail.False {
			al.Recipients = recipients
		}
	})
	*reply = err == nil
	return err
}

// updateAlerts applies change to the alert settings of every account
// having tok. Having none is not an error: the client pushes settings of
// accounts it may not have used yet, and a token names no service.
func (a *Account) updateAlerts(ctx context.Context, op string, tok storage.AccountToken, change func(*storage.Alerts)) error {
	accts, err := a.s.ledger.AccountsByToken(ctx, tok)
	if err != nil {
		return err
	}
	if len(accts) == 0 {
		a.s.log.Debug("alert settings for an unknown token", "op", op, "token", tokenID(string(tok)))
	}
	for _, acct := range accts {
		al := acct.Alerts
		al.Recipients = slices.Clone(al.Recipients)
		change(&al)
		if _, err := a.s.ledger.UpdateAccount(ctx, acct.Service, acct.Token, storage.AccountUpdate{Alerts: &al}); err != nil {
			return err
		}
	}
	return nil
}

// AccountRef names one account in get-accounts-information.
type AccountRef struct {
	Token   string `json:"token"`
	Service string `json:"service"`
}

// GetAccountsInformationArgs are the params of
// /iap/1/get-accounts-information (18.0+, §4.4).
type GetAccountsInformationArgs struct {
	IAPAccounts []AccountRef `json:"iap_accounts"`
	DBUUID      string       `json:"dbuuid"`
}

// AccountInformation is what 18.0+ stores on its account record. balance,
// warning_threshold and registered are required by the client (missing or
// null crashes the form); sender_name is sent for SMS accounts only.
type AccountInformation struct {
	Balance          storage.Credits      `json:"balance"`
	WarningThreshold storage.Credits      `json:"warning_threshold"` // the client overwrites its own with it: iapd owns it
	Registered       storage.AccountState `json:"registered"`        // registered | unregistered | banned
	SenderName       *string              `json:"sender_name,omitempty"`
	// Service is sent only for services with packs or a price
	// description configured (the portal's, SetServiceInfo): post-19.0
	// clients store it; 18.0 and 19.0 ignore it (§4.4).
	Service *ServiceInfo `json:"service,omitempty"`
}

// GetAccountsInformationReply is keyed by the token strings as sent
// (the client compares them with its own, suffix included).
type GetAccountsInformationReply map[string]AccountInformation

// MarshalJSON encodes the reply as an object, {} when empty.
func (r GetAccountsInformationReply) MarshalJSON() ([]byte, error) {
	if r == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(map[string]AccountInformation(r))
}

// GetAccountsInformation answers the details of the accounts sent,
// creating them on first sight. Accounts of unknown services and invalid
// tokens are left out; the client keeps its local data for them.
func (a *Account) GetAccountsInformation(r *http.Request, args *GetAccountsInformationArgs, reply *GetAccountsInformationReply) error {
	const op = "get-accounts-information"
	if args.IAPAccounts == nil {
		return missing(op, "iap_accounts")
	}
	if len(args.IAPAccounts) > maxAccountsPerCall {
		return tooManyAccounts(op)
	}
	ctx := r.Context()
	out := make(GetAccountsInformationReply, len(args.IAPAccounts))
	for _, ref := range args.IAPAccounts {
		tok, _, ok := storage.SplitToken(ref.Token)
		if !ok || !storage.ValidServiceName(ref.Service) {
			continue
		}
		acct, err := a.s.ledger.Account(ctx, storage.ServiceName(ref.Service), tok, storage.FirstSight{DBUUID: args.DBUUID})
		if kindIs(err, storage.NotFound) {
			a.s.log.Debug("account of an unknown service", "op", op, "service", ref.Service)
			continue
		}
		if kindIs(err, storage.Forbidden) {
			// Its creation refused (rpc/admit): left out like an unknown
			// service, the client keeps its local data.
			continue
		}
		if err != nil {
			return err
		}
		info := AccountInformation{
			Balance:          acct.Available,
			WarningThreshold: acct.Alerts.Threshold,
			Registered:       acct.State,
		}
		if !info.Registered.Valid() {
			info.Registered = storage.Unregistered
		}
		if acct.Service == storage.SMS {
			info.SenderName = &acct.SenderName
		}
		info.Service = a.s.serviceInfoOf(acct.Service)
		out[ref.Token] = info
	}
	*reply = out
	return nil
}

// AlertRecipient is one recipient in update-warning-email-alerts.
type AlertRecipient struct {
	Email    Text `json:"email"`
	LangCode Text `json:"lang_code"`
}

// UpdateWarningEmailAlertsArgs are the params of
// /iap/1/update-warning-email-alerts (18.0+, §4.5).
type UpdateWarningEmailAlertsArgs struct {
	AccountToken     string           `json:"account_token"`
	WarningThreshold Number           `json:"warning_threshold"`
	WarningEmails    []AlertRecipient `json:"warning_emails"` // null: left alone; []: no recipient
}

// UpdateWarningEmailAlerts stores the threshold and the recipients (with
// their language) on every account having the token, and answers true.
func (a *Account) UpdateWarningEmailAlerts(r *http.Request, args *UpdateWarningEmailAlertsArgs, reply *bool) error {
	const op = "update-warning-email-alerts"
	tok, _, err := accountToken(op, "account_token", args.AccountToken)
	if err != nil {
		return err
	}
	threshold, err := warningThreshold(op, args.WarningThreshold)
	if err != nil {
		return err
	}
	var recipients []storage.Recipient
	for _, e := range args.WarningEmails {
		if addr := strings.TrimSpace(e.Email.S); addr != "" {
			recipients = append(recipients, storage.Recipient{Email: addr, Lang: e.LangCode.S})
		}
	}
	if err := a.checkRecipients(op, recipients); err != nil {
		return err
	}
	err = a.updateAlerts(r.Context(), op, tok, func(al *storage.Alerts) {
		if threshold != nil {
			al.Enabled = true
			al.Threshold = *threshold
		}
		if args.WarningEmails != nil {
			al.Recipients = recipients
		}
	})
	*reply = err == nil
	return err
}

// checkRecipients refuses more distinct alert recipients than the
// server allows (Invalid: a UserError Odoo logs, PROTOCOL §4.3, §4.5; the
// settings are left as they were). Counted as alert_recipients.
func (a *Account) checkRecipients(op string, rs []storage.Recipient) error {
	if len(rs) <= a.s.maxRecipients {
		return nil
	}
	seen := make(map[string]bool, len(rs))
	for _, r := range rs {
		seen[strings.ToLower(r.Email)] = true
		if len(seen) > a.s.maxRecipients {
			a.s.refusals.Refuse("alert_recipients", "alert settings refused: too many recipients", "op", op, "recipients", len(rs))
			return storage.Ef(op, storage.Invalid, "At most %d low-credit alert recipients per account.", a.s.maxRecipients)
		}
	}
	return nil
}

// maxAccountsPerCall bounds iap_accounts in one call. A database sends all
// its IAP accounts at once (one per service and company: a handful);
// without a bound one anonymous request could create thousands of
// accounts on first sight.
const maxAccountsPerCall = 500

func tooManyAccounts(op string) error {
	return storage.E(op, storage.Invalid, msgTooManyAccounts)
}

// msgTooManyAccounts is the answer to more than maxAccountsPerCall
// accounts (or any other list that long) in one call.
var msgTooManyAccounts = fmt.Sprintf("iap_accounts: at most %d accounts per call", maxAccountsPerCall)

// maxRecipientsPerCall bounds warning_emails in one call (the decoder
// stops at it): a database sends the few users who should be warned.
const maxRecipientsPerCall = 100
