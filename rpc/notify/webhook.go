package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/outbound"
	"github.com/iapd/iapd/providers/vendorhttp"
	"github.com/iapd/iapd/storage"
)

// SignatureHeader carries the webhook signature:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>".
const SignatureHeader = "X-Iapd-Signature"

// WebhookConfig is the optional low-credit webhook: a JSON POST per
// alert, in addition to the e-mails, to one URL for every service or to
// one per service.
//
//	webhook:
//	  url: https://hooks.example.com/iap-low-credit
//	  secret: ${IAPD_ALERT_WEBHOOK_SECRET}
//	  services:
//	    sms: {url: https://sms-team.example.com/hook, secret: ${SMS_HOOK_SECRET}}
type WebhookConfig struct {
	// URL and Secret are the default target; empty URL: only the services
	// listed get a webhook.
	URL    string `yaml:"url"`
	Secret string `yaml:"secret"`
	// Services override the target per service name.
	Services map[string]WebhookTarget `yaml:"services"`
	// Timeout bounds one POST; default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// AllowPrivateNetworks lets the webhook reach loopback, private and
	// link-local addresses, and use http:// (a receiver on the operator's
	// own network). Off, the dialer refuses them (SSRF guard, checked on
	// the address actually dialled, so DNS cannot smuggle one in) and the
	// URL must be https.
	AllowPrivateNetworks bool `yaml:"allow_private_networks"`
}

// WebhookTarget is one webhook URL and its signing secret.
type WebhookTarget struct {
	URL    string `yaml:"url"`
	Secret string `yaml:"secret"`
}

// MinSecret is the shortest signing secret accepted.
const MinSecret = 16

// Validate checks the configuration and fills defaults.
func (c *WebhookConfig) Validate() error {
	if c.URL == "" && len(c.Services) == 0 {
		return errors.New("webhook: set url or services")
	}
	if c.URL != "" || c.Secret != "" {
		if err := c.checkTarget(WebhookTarget{URL: c.URL, Secret: c.Secret}); err != nil {
			return fmt.Errorf("webhook: %w", err)
		}
	}
	for svc, t := range c.Services {
		if !storage.ValidServiceName(svc) {
			return fmt.Errorf("webhook.services: %q is not a service name", svc)
		}
		if err := c.checkTarget(t); err != nil {
			return fmt.Errorf("webhook.services.%s: %w", svc, err)
		}
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Timeout < 0 {
		return errors.New("webhook.timeout: negative")
	}
	return nil
}

func (c *WebhookConfig) checkTarget(t WebhookTarget) error {
	u, err := url.Parse(t.URL)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("url: %q is not an absolute URL without credentials", t.URL)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && c.AllowPrivateNetworks:
	default:
		return fmt.Errorf("url: %q: want https:// (http:// only with allow_private_networks)", t.URL)
	}
	if len(t.Secret) < MinSecret {
		return fmt.Errorf("secret: at least %d characters", MinSecret)
	}
	return nil
}

// target returns the webhook of a service, ok false when it has none.
func (c *WebhookConfig) target(svc storage.ServiceName) (WebhookTarget, bool) {
	if c == nil {
		return WebhookTarget{}, false
	}
	if t, ok := c.Services[string(svc)]; ok {
		return t, true
	}
	if c.URL != "" {
		return WebhookTarget{URL: c.URL, Secret: c.Secret}, true
	}
	return WebhookTarget{}, false
}

// WebhookPayload is the JSON body of a webhook call. Amounts are exact
// JSON numbers; account_hash is the hashed account token of Odoo 19's
// links (SHA-1 hex), never the token.
type WebhookPayload struct {
	ID          uint64              `json:"id"` // the alert id: a receiver drops repeats
	Service     storage.ServiceName `json:"service"`
	AccountHash string              `json:"account_hash"`
	Available   storage.Credits     `json:"available"`
	Threshold   storage.Credits     `json:"threshold"`
	At          time.Time           `json:"at"`
}

// Sign returns the SignatureHeader value of body at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// VerifySignature checks a SignatureHeader value as a receiver does: a
// v1 signature of "t.body" under secret (compared in constant time), and
// t within tolerance of now (replays of old calls are refused).
func VerifySignature(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return errors.New("signature header malformed")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errors.New("signature timestamp out of tolerance")
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return errors.New("signature mismatch")
}

// webhook posts alerts.
type webhook struct {
	cfg    *WebhookConfig
	client *http.Client
	now    func() time.Time
}

const webhookProvider = "webhook" // the Provider of its *providers.Error

// post sends one signed call. Errors are *providers.Error: transport
// failures as vendorhttp classifies them; 2xx is success; 408, 425, 429
// and 5xx are Unavailable (retried); any other status (redirects are not
// followed) is Invalid.
func (w *webhook) post(ctx context.Context, t WebhookTarget, p WebhookPayload) error {
	body, err := json.Marshal(p)
	if err != nil {
		return &providers.Error{Provider: webhookProvider, Kind: providers.Invalid, Msg: "payload", Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		return &providers.Error{Provider: webhookProvider, Kind: providers.Invalid, Msg: "bad url"}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "iapd-alerts")
	req.Header.Set(SignatureHeader, Sign([]byte(t.Secret), w.now(), body))
	resp, perr := vendorhttp.Do(ctx, w.client, webhookProvider, req)
	if perr != nil {
		return perr
	}
	switch s := resp.Status; {
	case s >= 200 && s < 300:
		return nil
	case s == http.StatusRequestTimeout, s == http.StatusTooEarly, s == http.StatusTooManyRequests, s >= 500:
		return &providers.Error{Provider: webhookProvider, Kind: providers.Unavailable, Code: strconv.Itoa(s), Msg: "receiver unavailable"}
	default:
		return &providers.Error{Provider: webhookProvider, Kind: providers.Invalid, Code: strconv.Itoa(s), Msg: "receiver refused the call"}
	}
}

// webhookClient is the client for the configured webhook URLs, through
// outbound.CallerURL's guard: no proxy, no redirects, non-public addresses
// refused unless allowPrivate.
func webhookClient(allowPrivate bool, timeout time.Duration) *http.Client {
	g := &outbound.CallerURL{AllowPrivate: allowPrivate, Hint: "alerts.webhook.allow_private_networks",
		DialTimeout: timeout, Timeout: timeout, ResponseHeaderTimeout: timeout}
	return g.Client()
}
