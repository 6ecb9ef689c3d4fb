// Package stripe is the Stripe Checkout adapter of online payment
// (providers/payments): it creates Checkout Sessions through Stripe's API
// (github.com/stripe/stripe-go/v82), reads them back, finds the session of
// a refunded or disputed payment, lists a payment's refunds, and verifies
// and decodes webhook events (the Stripe-Signature scheme: HMAC-SHA256 of
// "t.payload" with the endpoint's secret, compared in constant time, at
// most 5 minutes old).
//
// The secret key and the webhook secret are given by the caller (cmd
// resolves ${ENV} and *_file); they are never logged nor returned. It
// makes no decision about credit: rpc/portal does.
//
// It imports providers/payments and stripe-go.
package stripe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	stripeapi "github.com/stripe/stripe-go/v82"
	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/iapd/iapd/providers/payments"
)

// Name is the provider's name: the metric label and the webhook path
// (/payments/stripe/webhook).
const Name = "stripe"

// DefaultAPIURL is Stripe's API.
const DefaultAPIURL = "https://api.stripe.com"

// Tolerance is how old a signed webhook delivery may be.
const Tolerance = 300 * time.Second

// Metadata keys of the sessions iapd creates.
const (
	metaService = "iapd_service"
	metaAccount = "iapd_account"
	metaPack    = "iapd_pack"
	metaCredits = "iapd_credits"
)

// Config configures the adapter.
type Config struct {
	// SecretKey is the API secret key (sk_live_…, sk_test_… or a
	// restricted rk_… key allowed to write Checkout Sessions).
	SecretKey string
	// WebhookSecret is the endpoint's signing secret (whsec_…).
	WebhookSecret string
	// APIURL is Stripe's API base URL; empty is DefaultAPIURL.
	APIURL string
}

// Validate checks the configuration and fills the default.
func (c *Config) Validate() error {
	if c.APIURL == "" {
		c.APIURL = DefaultAPIURL
	}
	u, err := url.Parse(c.APIURL)
	switch {
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		return fmt.Errorf("stripe: api_url %q: an absolute http(s) URL is required", c.APIURL)
	case u.RawQuery != "" || u.User != nil:
		return fmt.Errorf("stripe: api_url %q: no query or credentials", c.APIURL)
	case c.SecretKey == "":
		return errors.New("stripe: secret_key (or secret_key_file) is required")
	case c.WebhookSecret == "":
		return errors.New("stripe: webhook_secret (or webhook_secret_file) is required")
	}
	return nil
}

// Provider talks to Stripe. Safe for concurrent use.
type Provider struct {
	client        *stripeapi.Client
	webhookSecret string
}

// New builds the adapter from a validated config; hc is the HTTP client of
// the API calls (nil: http.DefaultClient).
func New(cfg Config, hc *http.Client) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	backends := stripeapi.NewBackendsWithConfig(&stripeapi.BackendConfig{
		HTTPClient:        hc,
		URL:               stripeapi.String(strings.TrimRight(cfg.APIURL, "/")),
		LeveledLogger:     &stripeapi.LeveledLogger{Level: stripeapi.LevelNull},
		MaxNetworkRetries: stripeapi.Int64(2),
		EnableTelemetry:   stripeapi.Bool(false),
	})
	return &Provider{
		client:        stripeapi.NewClient(cfg.SecretKey, stripeapi.WithBackends(backends)),
		webhookSecret: cfg.WebhookSecret,
	}, nil
}

// Name returns Name.
func (p *Provider) Name() string { return Name }

// SignatureHeader is the header of a webhook delivery's signature.
func (p *Provider) SignatureHeader() string { return "Stripe-Signature" }

// Checkout creates a Checkout Session (mode payment, one line of the
// pack's price) carrying the order's service, reference, pack and credits
// as metadata. ErrInvalid when Stripe refuses it; another error when
// Stripe could not be reached or failed.
func (p *Provider) Checkout(ctx context.Context, o payments.Order) (payments.Checkout, error) {
	minor, err := payments.MinorUnits(o.Price)
	if err != nil {
		return payments.Checkout{}, fmt.Errorf("%w: %v", payments.ErrInvalid, err)
	}
	params := &stripeapi.CheckoutSessionCreateParams{
		Mode:       stripeapi.String(string(stripeapi.CheckoutSessionModePayment)),
		SuccessURL: stripeapi.String(o.SuccessURL),
		CancelURL:  stripeapi.String(o.CancelURL),
		LineItems: []*stripeapi.CheckoutSessionCreateLineItemParams{{
			Quantity: stripeapi.Int64(1),
			PriceData: &stripeapi.CheckoutSessionCreateLineItemPriceDataParams{
				Currency:    stripeapi.String(strings.ToLower(o.Price.Currency)),
				UnitAmount:  stripeapi.Int64(minor),
				ProductData: &stripeapi.CheckoutSessionCreateLineItemPriceDataProductDataParams{Name: stripeapi.String(o.PackName)},
			},
		}},
	}
	meta := map[string]string{metaService: o.Service, metaAccount: o.Reference, metaPack: strconv.Itoa(o.Pack), metaCredits: o.Credits}
	for k, v := range meta {
		params.AddMetadata(k, v)
	}
	s, err := p.client.V1CheckoutSessions.Create(ctx, params)
	if err != nil {
		return payments.Checkout{}, classify("creating a Checkout Session", err)
	}
	if s.URL == "" || s.ID == "" {
		return payments.Checkout{}, errors.New("stripe: the Checkout Session has no id or URL")
	}
	return payments.Checkout{ID: s.ID, URL: s.URL}, nil
}

// Session retrieves a Checkout Session. ErrNotFound when Stripe has none
// of that id.
func (p *Provider) Session(ctx context.Context, id string) (payments.Session, error) {
	if !validID(id, "cs_") {
		return payments.Session{}, payments.ErrNotFound
	}
	s, err := p.client.V1CheckoutSessions.Retrieve(ctx, id, nil)
	if err != nil {
		return payments.Session{}, classify("retrieving a Checkout Session", err)
	}
	return session(s), nil
}

// SessionOfPayment finds the Checkout Session that made the PaymentIntent
// id. ErrNotFound when none did (a payment not made through iapd).
func (p *Provider) SessionOfPayment(ctx context.Context, paymentID string) (payments.Session, error) {
	if !validID(paymentID, "pi_") {
		return payments.Session{}, payments.ErrNotFound
	}
	params := &stripeapi.CheckoutSessionListParams{PaymentIntent: stripeapi.String(paymentID)}
	params.Limit = stripeapi.Int64(1)
	for s, err := range p.client.V1CheckoutSessions.List(ctx, params) {
		if err != nil {
			return payments.Session{}, classify("listing Checkout Sessions", err)
		}
		return session(s), nil
	}
	return payments.Session{}, payments.ErrNotFound
}

// maxRefunds bounds the refunds read of one payment (Stripe lists 100 a
// page; a payment refunded more often than this is left to the operator).
const maxRefunds = 1000

// Refunds lists the refunds of the PaymentIntent paymentID (all pages),
// in Stripe's order (newest first). ErrNotFound when paymentID is not a
// PaymentIntent id; ErrInvalid when it has more than 1000 refunds.
func (p *Provider) Refunds(ctx context.Context, paymentID string) ([]payments.Refund, error) {
	if !validID(paymentID, "pi_") {
		return nil, payments.ErrNotFound
	}
	params := &stripeapi.RefundListParams{PaymentIntent: stripeapi.String(paymentID)}
	params.Limit = stripeapi.Int64(100)
	var out []payments.Refund
	for r, err := range p.client.V1Refunds.List(ctx, params) {
		if err != nil {
			return nil, classify("listing refunds", err)
		}
		if len(out) == maxRefunds {
			return nil, fmt.Errorf("%w: more than %d refunds of one payment", payments.ErrInvalid, maxRefunds)
		}
		out = append(out, payments.Refund{
			ID: r.ID, Amount: payments.FromMinorUnits(r.Amount, string(r.Currency)), Status: string(r.Status),
			Returned: r.Status != stripeapi.RefundStatusFailed && r.Status != stripeapi.RefundStatusCanceled,
		})
	}
	return out, nil
}

// Event verifies a webhook delivery (payload as received, the
// Stripe-Signature header's value) and decodes it: ErrSignature when the
// signature is missing, wrong or older than Tolerance; another error when
// a signed payload cannot be decoded. Event types iapd does not use are
// Ignored.
func (p *Provider) Event(payload []byte, signature string) (payments.Event, error) {
	ev, err := webhook.ConstructEventWithOptions(payload, signature, p.webhookSecret,
		webhook.ConstructEventOptions{Tolerance: Tolerance, IgnoreAPIVersionMismatch: true})
	if err != nil {
		if errors.Is(err, webhook.ErrNotSigned) || errors.Is(err, webhook.ErrInvalidHeader) ||
			errors.Is(err, webhook.ErrNoValidSignature) || errors.Is(err, webhook.ErrTooOld) {
			return payments.Event{}, payments.ErrSignature
		}
		return payments.Event{}, fmt.Errorf("stripe: event: %w", err)
	}
	out := payments.Event{ID: ev.ID, Type: string(ev.Type)}
	if ev.Data == nil {
		return out, nil
	}
	switch ev.Type {
	case "checkout.session.completed", "checkout.session.async_payment_succeeded":
		var s stripeapi.CheckoutSession
		if err := json.Unmarshal(ev.Data.Raw, &s); err != nil {
			return payments.Event{}, fmt.Errorf("stripe: %s: %w", ev.Type, err)
		}
		out.Kind, out.Session = payments.Paid, session(&s)
	case "charge.refunded":
		var c stripeapi.Charge
		if err := json.Unmarshal(ev.Data.Raw, &c); err != nil {
			return payments.Event{}, fmt.Errorf("stripe: %s: %w", ev.Type, err)
		}
		if c.PaymentIntent == nil || c.PaymentIntent.ID == "" {
			return out, nil // not a payment of a Checkout Session
		}
		out.Kind, out.PaymentID = payments.Refunded, c.PaymentIntent.ID
		out.Refunded = payments.FromMinorUnits(c.AmountRefunded, string(c.Currency))
	case "charge.dispute.closed":
		var d stripeapi.Dispute
		if err := json.Unmarshal(ev.Data.Raw, &d); err != nil {
			return payments.Event{}, fmt.Errorf("stripe: %s: %w", ev.Type, err)
		}
		if d.Status == stripeapi.DisputeStatusLost && d.PaymentIntent != nil && d.PaymentIntent.ID != "" {
			out.Kind, out.PaymentID = payments.Reversed, d.PaymentIntent.ID
		}
	}
	return out, nil
}

// session maps a Checkout Session.
func session(s *stripeapi.CheckoutSession) payments.Session {
	out := payments.Session{
		ID:        s.ID,
		Service:   s.Metadata[metaService],
		Reference: s.Metadata[metaAccount],
		Credits:   s.Metadata[metaCredits],
		Paid:      s.PaymentStatus == stripeapi.CheckoutSessionPaymentStatusPaid,
		Amount:    payments.FromMinorUnits(s.AmountTotal, string(s.Currency)),
	}
	if n, err := strconv.Atoi(s.Metadata[metaPack]); err == nil && n > 0 {
		out.Pack = n
	}
	if s.PaymentIntent != nil {
		out.PaymentID = s.PaymentIntent.ID
	}
	return out
}

// validID accepts a Stripe id of the prefix: letters, digits and '_', at
// most 255 bytes (it goes into a URL path).
func validID(id, prefix string) bool {
	if !strings.HasPrefix(id, prefix) || len(id) > 255 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// classify turns a stripe-go error into ErrNotFound, ErrInvalid or a
// plain error (Stripe unreachable or failing: try again later). The
// message names Stripe's error type and code, never the request.
func classify(op string, err error) error {
	var se *stripeapi.Error
	if errors.As(err, &se) {
		switch {
		case se.HTTPStatusCode == http.StatusNotFound:
			return fmt.Errorf("stripe: %s: %w", op, payments.ErrNotFound)
		case se.HTTPStatusCode >= 400 && se.HTTPStatusCode < 500 && se.HTTPStatusCode != http.StatusTooManyRequests:
			return fmt.Errorf("stripe: %s: %w (%s %s, HTTP %d)", op, payments.ErrInvalid, se.Type, se.Code, se.HTTPStatusCode)
		}
		return fmt.Errorf("stripe: %s: HTTP %d %s", op, se.HTTPStatusCode, se.Type)
	}
	return fmt.Errorf("stripe: %s: %w", op, err)
}
