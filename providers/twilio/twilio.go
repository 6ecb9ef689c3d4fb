// Package twilio is the Twilio SMS adapter (type "twilio"): it sends
// through Twilio's Programmable Messaging API (POST
// /2010-04-01/Accounts/{AccountSid}/Messages.json, form-encoded, HTTP
// basic auth with the Account SID and Auth Token or an API key) and
// receives Twilio's status callbacks, verified with X-Twilio-Signature
// (HMAC-SHA1 of the full URL and the sorted POST parameters, keyed with
// the Auth Token).
//
// It imports providers, providers/vendorhttp and the standard
// library.
package twilio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/vendorhttp"
)

// Type is the adapter type in the configuration.
const Type = "twilio"

func init() { providers.Register(Type, New) }

// DefaultBaseURL is Twilio's REST API host.
const DefaultBaseURL = "https://api.twilio.com"

// Config is the configuration of a twilio instance.
//
//	providers:
//	  twilio-eu:
//	    type: twilio
//	    account_sid: ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
//	    auth_token: ${TWILIO_AUTH_TOKEN}
//	    from: "+15005550006"          # or messaging_service_sid: MG…
//	    timeout: 10s
type Config struct {
	// AccountSID is the account ("AC" and 32 hex digits).
	AccountSID string `yaml:"account_sid"`
	// AuthToken authenticates API calls (unless an API key is set) and
	// is the key Twilio signs status callbacks with: without it, no
	// status callback is requested.
	AuthToken string `yaml:"auth_token"`
	// APIKeySID and APIKeySecret, when set, authenticate API calls
	// instead of the Auth Token ("SK" and 32 hex digits).
	APIKeySID    string `yaml:"api_key_sid"`
	APIKeySecret string `yaml:"api_key_secret"`
	// From is the default sender (an E.164 Twilio number or an
	// alphanumeric sender ID); MessagingServiceSID ("MG…") may be used
	// instead. SMS.Sender overrides both when UseSender is set.
	From                string `yaml:"from"`
	MessagingServiceSID string `yaml:"messaging_service_sid"`
	// UseSender sends with SMS.Sender (the Odoo account's sender name)
	// when one is given; default false: always the configured sender
	// (alphanumeric sender ids need the vendor's and the country's
	// consent).
	UseSender bool `yaml:"use_sender"`
	// BaseURL is the API host; default https://api.twilio.com (tests
	// point it at a local server).
	BaseURL string `yaml:"base_url"`
	// Timeout bounds each API call; default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// Concurrency is how many messages are sent at once; default 4.
	Concurrency int `yaml:"concurrency"`
}

var (
	accountRE = regexp.MustCompile(`^AC[0-9a-f]{32}$`)
	keyRE     = regexp.MustCompile(`^SK[0-9a-f]{32}$`)
	serviceRE = regexp.MustCompile(`^MG[0-9a-f]{32}$`)
)

// Validate checks c and fills defaults. Its errors never hold secrets.
func (c *Config) Validate() error {
	if !accountRE.MatchString(c.AccountSID) {
		return errors.New("account_sid: want AC followed by 32 hex digits")
	}
	switch {
	case c.APIKeySID != "" || c.APIKeySecret != "":
		if !keyRE.MatchString(c.APIKeySID) || c.APIKeySecret == "" {
			return errors.New("api_key_sid (SK followed by 32 hex digits) and api_key_secret go together")
		}
	case c.AuthToken == "":
		return errors.New("auth_token (or api_key_sid and api_key_secret) is required")
	}
	if c.From == "" && c.MessagingServiceSID == "" {
		return errors.New("from or messaging_service_sid is required")
	}
	if c.MessagingServiceSID != "" && !serviceRE.MatchString(c.MessagingServiceSID) {
		return errors.New("messaging_service_sid: want MG followed by 32 hex digits")
	}
	if err := vendorhttp.CheckBaseURL(&c.BaseURL, DefaultBaseURL); err != nil {
		return err
	}
	return vendorhttp.CheckLimits(&c.Timeout, &c.Concurrency)
}

// Twilio is a twilio instance.
type Twilio struct {
	name string
	cfg  Config
	http *http.Client
	log  *slog.Logger
	sink providers.DeliverySink
}

// New is the factory registered for type "twilio".
func New(cfg providers.Config, deps providers.Deps) (providers.Provider, error) {
	var c Config
	if err := cfg.Decode(&c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	t := &Twilio{name: cfg.Name, cfg: c, http: deps.HTTP, log: deps.Logger}
	if c.AuthToken == "" {
		t.log.Warn("no auth_token: Twilio status callbacks cannot be verified and are not requested")
	}
	return t, nil
}

// Name implements providers.Provider.
func (t *Twilio) Name() string { return t.name }

// Type implements providers.Provider.
func (t *Twilio) Type() string { return Type }

// Close implements providers.Provider.
func (t *Twilio) Close() error { return nil }

// message is the part of Twilio's Message resource read here.
type message struct {
	SID         string `json:"sid"`
	Status      string `json:"status"`
	NumSegments string `json:"num_segments"`
}

// apiError is Twilio's error answer.
type apiError struct {
	Code     int    `json:"code"`
	Message  string `json:"message"`
	MoreInfo string `json:"more_info"`
	Status   int    `json:"status"`
}

// SendSMS implements providers.SMSSender: one Messages API call per
// message, Concurrency at a time. Failures: a number that is not E.164 or
// an empty body → Invalid without calling Twilio; Twilio's 4xx answers
// per their error code (see classify); 5xx, 429, auth failures and
// connection failures → Unavailable; a timeout after the request was sent
// or an unreadable 2xx answer → Indeterminate.
func (t *Twilio) SendSMS(ctx context.Context, msgs []providers.SMS) ([]providers.SMSResult, error) {
	return vendorhttp.SendEach(ctx, t.name, msgs, t.cfg.Concurrency, t.send), nil
}

func (t *Twilio) send(ctx context.Context, m providers.SMS) providers.SMSResult {
	if r, bad := vendorhttp.CheckSMS(t.name, m); bad {
		return r
	}
	fail := func(k providers.Kind, code, msg string) providers.SMSResult {
		return vendorhttp.Fail(t.name, k, code, msg)
	}
	form := url.Values{"To": {m.To}, "Body": {m.Body}}
	switch {
	case m.Sender != "" && t.cfg.UseSender:
		form.Set("From", m.Sender)
	case t.cfg.MessagingServiceSID != "":
		form.Set("MessagingServiceSid", t.cfg.MessagingServiceSID)
	default:
		form.Set("From", t.cfg.From)
	}
	if m.StatusURL != "" && t.cfg.AuthToken != "" {
		form.Set("StatusCallback", m.StatusURL)
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.Timeout)
	defer cancel()
	endpoint := t.cfg.BaseURL + "/2010-04-01/Accounts/" + t.cfg.AccountSID + "/Messages.json"
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return fail(providers.Unavailable, "", "bad request: "+err.Error())
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if t.cfg.APIKeySID != "" {
		req.SetBasicAuth(t.cfg.APIKeySID, t.cfg.APIKeySecret)
	} else {
		req.SetBasicAuth(t.cfg.AccountSID, t.cfg.AuthToken)
	}
	resp, perr := vendorhttp.Do(ctx, t.http, t.name, req)
	if perr != nil {
		t.log.Warn("twilio send failed", "to", vendorhttp.Phone(m.To), "kind", perr.Kind.String(), "err", perr.Error())
		return providers.SMSResult{Err: perr}
	}
	if resp.Status/100 == 2 {
		var msg message
		if err := json.Unmarshal(resp.Body, &msg); err != nil || msg.SID == "" {
			return fail(providers.Indeterminate, "", fmt.Sprintf("accepted (HTTP %d) but the answer has no message sid", resp.Status))
		}
		segs, _ := strconv.Atoi(msg.NumSegments)
		st := providers.SMSAccepted
		if s, ok := mapStatus(msg.Status, ""); ok && s != providers.SMSUndelivered && s != providers.SMSRejected {
			st = s
		}
		t.log.Debug("twilio accepted", "to", vendorhttp.Phone(m.To), "sid", msg.SID, "status", msg.Status)
		return providers.SMSResult{ProviderID: msg.SID, Status: st, Segments: segs}
	}
	var ae apiError
	_ = json.Unmarshal(resp.Body, &ae)
	k := classify(resp.Status, ae.Code)
	code := ""
	if ae.Code != 0 {
		code = strconv.Itoa(ae.Code)
	}
	t.log.Warn("twilio refused", "to", vendorhttp.Phone(m.To), "http_status", resp.Status, "code", code, "kind", k.String())
	return fail(k, code, fmt.Sprintf("HTTP %d: %s", resp.Status, truncate(ae.Message, 200)))
}

// unavailableCodes are Twilio error codes that say the account or the
// instance's configuration, not the message, is at fault: another
// provider may send it.
var unavailableCodes = map[int]bool{
	20003: true, // authentication error
	20005: true, // account not active
	20404: true, // resource not found (wrong account)
	20429: true, // too many requests
	21212: true, // invalid From number
	21606: true, // From is not a valid, SMS-capable Twilio number for this account
	21659: true, // From is not a Twilio number
	21703: true, // messaging service has no sender
	30001: true, // queue overflow
	30002: true, // account suspended
}

// classify returns the kind of a Twilio error answer. Codes the message
// is at fault for (21211 invalid To, 21408 region not enabled, 21610
// recipient unsubscribed, 21612 cannot route, 21614 not a mobile, 21617
// body too long, …) are Invalid, as any other 4xx; account and
// configuration errors (unavailableCodes), 401/403/429 and 5xx are
// Unavailable.
func classify(status, code int) providers.Kind {
	if unavailableCodes[code] {
		return providers.Unavailable
	}
	return vendorhttp.ClassifyStatus(status)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return strings.ToValidUTF8(s[:n], "") + "…"
	}
	return s
}

// Hosts implements providers.Endpoints: the API host.
func (t *Twilio) Hosts() []string { return []string{vendorhttp.Host(t.cfg.BaseURL)} }

// Interface guards.
var (
	_ providers.SMSSender        = (*Twilio)(nil)
	_ providers.DeliveryReporter = (*Twilio)(nil)
	_ providers.Endpoints        = (*Twilio)(nil)
)
