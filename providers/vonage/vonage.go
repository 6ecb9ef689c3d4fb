// Package vonage is the Vonage (formerly Nexmo) SMS adapter (type
// "vonage"): it sends through Vonage's SMS API (POST
// https://rest.nexmo.com/sms/json with api_key and api_secret, one answer
// entry per message part with a status code) and receives its delivery
// receipts (GET or POST, form or JSON, with messageId, status and
// err-code), verified with Vonage's signed-webhook scheme when a
// signature secret is configured, and otherwise with a token derived from
// the API secret that only the callback URL given to Vonage carries.
//
// It imports providers, providers/vendorhttp and the standard
// library.
package vonage

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/vendorhttp"
)

// Type is the adapter type in the configuration.
const Type = "vonage"

func init() { providers.Register(Type, New) }

// DefaultBaseURL is the SMS API host.
const DefaultBaseURL = "https://rest.nexmo.com"

// Config is the configuration of a vonage instance.
//
//	providers:
//	  vonage:
//	    type: vonage
//	    api_key: abcd1234
//	    api_secret: ${VONAGE_API_SECRET}
//	    from: iapd                       # sender id or number
//	    signature_secret: ${VONAGE_SIGNATURE_SECRET}   # optional
//	    signature_method: sha256         # md5hash (default), md5, sha1, sha256, sha512
type Config struct {
	APIKey    string `yaml:"api_key"`
	APISecret string `yaml:"api_secret"`
	// From is the default sender (alphanumeric sender id or number);
	// SMS.Sender overrides it when UseSender is set.
	From string `yaml:"from"`
	// UseSender sends with SMS.Sender (the Odoo account's sender name)
	// when one is given; default false: always the configured sender
	// (alphanumeric sender ids need the vendor's and the country's
	// consent).
	UseSender bool `yaml:"use_sender"`
	// SignatureSecret, when set, is the account's signature secret:
	// delivery receipts must be signed with it (ask Vonage to sign
	// webhooks), with SignatureMethod.
	SignatureSecret string `yaml:"signature_secret"`
	SignatureMethod string `yaml:"signature_method"`
	// BaseURL is the API host; default https://rest.nexmo.com.
	BaseURL string `yaml:"base_url"`
	// Timeout bounds each API call; default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// Concurrency is how many messages are sent at once; default 4
	// (Vonage's default throughput is 30 API requests per second).
	Concurrency int `yaml:"concurrency"`
}

// Validate checks c and fills defaults. Its errors never hold secrets.
func (c *Config) Validate() error {
	if c.APIKey == "" || c.APISecret == "" {
		return errors.New("api_key and api_secret are required")
	}
	if c.From == "" {
		return errors.New("from is required")
	}
	switch c.SignatureMethod {
	case "":
		c.SignatureMethod = "md5hash"
	case "md5hash", "md5", "sha1", "sha256", "sha512":
	default:
		return fmt.Errorf("signature_method: %q is not md5hash, md5, sha1, sha256 or sha512", c.SignatureMethod)
	}
	if err := vendorhttp.CheckBaseURL(&c.BaseURL, DefaultBaseURL); err != nil {
		return err
	}
	return vendorhttp.CheckLimits(&c.Timeout, &c.Concurrency)
}

// Vonage is a vonage instance.
type Vonage struct {
	name  string
	cfg   Config
	http  *http.Client
	log   *slog.Logger
	now   func() time.Time
	token string // the callback token, when receipts are not signed
	sink  providers.DeliverySink
}

// New is the factory registered for type "vonage".
func New(cfg providers.Config, deps providers.Deps) (providers.Provider, error) {
	var c Config
	if err := cfg.Decode(&c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	v := &Vonage{name: cfg.Name, cfg: c, http: deps.HTTP, log: deps.Logger, now: deps.Now}
	if c.SignatureSecret == "" {
		mac := hmac.New(sha256.New, []byte(c.APISecret))
		mac.Write([]byte("iapd vonage delivery receipts " + cfg.Name))
		v.token = hex.EncodeToString(mac.Sum(nil))[:32]
	}
	return v, nil
}

// Name implements providers.Provider.
func (v *Vonage) Name() string { return v.name }

// Type implements providers.Provider.
func (v *Vonage) Type() string { return Type }

// Close implements providers.Provider.
func (v *Vonage) Close() error { return nil }

// answer is the SMS API's answer.
type answer struct {
	MessageCount string `json:"message-count"`
	Messages     []struct {
		To        string `json:"to"`
		MessageID string `json:"message-id"`
		Status    string `json:"status"`
		ErrorText string `json:"error-text"`
	} `json:"messages"`
}

// SendSMS implements providers.SMSSender: one SMS API call per message,
// Concurrency at a time. Failures: a number that is not E.164 or an empty
// body → Invalid without calling Vonage; the per-message status codes per
// Vonage's table (see statusKind); HTTP 5xx, 429, 401/403 and connection
// failures → Unavailable; a timeout after sending, an unreadable answer,
// or a long message of which only some parts were accepted →
// Indeterminate.
//
// A long message is split by Vonage into parts, each with its own
// message-id and delivery receipt: the result's ProviderID is the first
// part's, and its Segments the part count.
func (v *Vonage) SendSMS(ctx context.Context, msgs []providers.SMS) ([]providers.SMSResult, error) {
	return vendorhttp.SendEach(ctx, v.name, msgs, v.cfg.Concurrency, v.send), nil
}

func (v *Vonage) send(ctx context.Context, m providers.SMS) providers.SMSResult {
	if r, bad := vendorhttp.CheckSMS(v.name, m); bad {
		return r
	}
	fail := func(k providers.Kind, code, msg string) providers.SMSResult {
		return vendorhttp.Fail(v.name, k, code, msg)
	}
	from := v.cfg.From
	if m.Sender != "" && v.cfg.UseSender {
		from = m.Sender
	}
	form := url.Values{
		"api_key":    {v.cfg.APIKey},
		"api_secret": {v.cfg.APISecret},
		"from":       {from},
		"to":         {strings.TrimPrefix(m.To, "+")},
		"text":       {m.Body},
	}
	if !vendorhttp.IsGSM7(m.Body) {
		form.Set("type", "unicode")
	}
	if m.ID != "" {
		form.Set("client-ref", truncate(m.ID, 100))
	}
	if m.StatusURL != "" {
		form.Set("status-report-req", "1")
		form.Set("callback", v.callbackURL(m.StatusURL))
	}
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequest(http.MethodPost, v.cfg.BaseURL+"/sms/json", strings.NewReader(form.Encode()))
	if err != nil {
		return fail(providers.Unavailable, "", "bad request: "+err.Error())
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, perr := vendorhttp.Do(ctx, v.http, v.name, req)
	if perr != nil {
		v.log.Warn("vonage send failed", "to", vendorhttp.Phone(m.To), "kind", perr.Kind.String(), "err", perr.Error())
		return providers.SMSResult{Err: perr}
	}
	if resp.Status/100 != 2 {
		k := vendorhttp.ClassifyStatus(resp.Status)
		v.log.Warn("vonage refused", "to", vendorhttp.Phone(m.To), "http_status", resp.Status, "kind", k.String())
		return fail(k, "", fmt.Sprintf("HTTP %d", resp.Status))
	}
	var a answer
	if err := json.Unmarshal(resp.Body, &a); err != nil || len(a.Messages) == 0 {
		return fail(providers.Indeterminate, "", "answer unreadable")
	}
	var ok, failed int
	var first string
	var bad struct{ status, text string }
	for _, p := range a.Messages {
		if p.Status == "0" && p.MessageID != "" {
			ok++
			if first == "" {
				first = p.MessageID
			}
		} else {
			failed++
			if bad.status == "" {
				bad.status, bad.text = p.Status, p.ErrorText
			}
		}
	}
	switch {
	case failed == 0:
		v.log.Debug("vonage accepted", "to", vendorhttp.Phone(m.To), "message_id", first, "parts", ok)
		return providers.SMSResult{ProviderID: first, Status: providers.SMSAccepted, Segments: ok}
	case ok > 0:
		v.log.Warn("vonage accepted part of a message", "to", vendorhttp.Phone(m.To), "parts_ok", ok, "parts_failed", failed, "status", bad.status)
		return fail(providers.Indeterminate, bad.status, fmt.Sprintf("%d of %d parts accepted: %s", ok, ok+failed, truncate(bad.text, 200)))
	}
	k := statusKind(bad.status)
	v.log.Warn("vonage refused", "to", vendorhttp.Phone(m.To), "status", bad.status, "kind", k.String())
	return fail(k, bad.status, truncate(bad.text, 200))
}

// statusKind classifies a non-zero SMS API status code: account,
// credential, throughput and configuration problems (1 throttled, 4
// invalid credentials, 5 internal error, 8 account barred, 9 quota, 10
// binds, 11 HTTP not enabled, 14 invalid signature, 15 invalid sender, 23
// invalid callback URL, 32 signature and secret disallowed) are
// Unavailable — nothing was sent, another provider may send it; the
// message's own problems (2 missing and 3 invalid parameters, 6 invalid
// message, 7 number barred, 12 too long, 22 invalid network code, 29
// non-whitelisted destination, 33 number de-activated, and unknown codes)
// are Invalid.
func statusKind(status string) providers.Kind {
	switch status {
	case "1", "4", "5", "8", "9", "10", "11", "14", "15", "23", "32":
		return providers.Unavailable
	}
	return providers.Invalid
}

// callbackURL is the delivery-receipt URL given to Vonage: the status URL
// with the instance's token when receipts are not signed.
func (v *Vonage) callbackURL(statusURL string) string {
	if v.token == "" {
		return statusURL
	}
	sep := "?"
	if strings.Contains(statusURL, "?") {
		sep = "&"
	}
	return statusURL + sep + "iapd_token=" + v.token
}

func truncate(s string, n int) string {
	if len(s) > n {
		return strings.ToValidUTF8(s[:n], "")
	}
	return s
}

// Hosts implements providers.Endpoints: the API host.
func (v *Vonage) Hosts() []string { return []string{vendorhttp.Host(v.cfg.BaseURL)} }

// Interface guards.
var (
	_ providers.SMSSender        = (*Vonage)(nil)
	_ providers.DeliveryReporter = (*Vonage)(nil)
	_ providers.Endpoints        = (*Vonage)(nil)
)
