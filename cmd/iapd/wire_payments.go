package main

import (
	"fmt"
	"strings"

	"github.com/iapd/iapd/providers/payments/stripe"
	"github.com/iapd/iapd/rpc/portal"
)

// PaymentsConfig is the payments section: online payment of the portal's
// packs (issue 17). Unset: no Buy buttons, the shop link as before.
type PaymentsConfig struct {
	Stripe *StripePayments `yaml:"stripe"`
}

// StripePayments configures Stripe Checkout. Each secret is given inline
// (${ENV} works) or as *_file, never both; neither is ever logged.
type StripePayments struct {
	SecretKey         string `yaml:"secret_key"`
	SecretKeyFile     string `yaml:"secret_key_file"`
	WebhookSecret     string `yaml:"webhook_secret"`
	WebhookSecretFile string `yaml:"webhook_secret_file"`
	// APIURL is Stripe's API; default https://api.stripe.com.
	APIURL string `yaml:"api_url"`
}

// resolve reads the *_file secrets.
func (c *PaymentsConfig) resolve(readFile func(string) ([]byte, error)) error {
	s := c.Stripe
	if s == nil {
		return nil
	}
	for _, x := range []struct {
		name       string
		value, ref *string
		file       string
	}{
		{"payments.stripe.secret_key", &s.SecretKey, &s.SecretKeyFile, s.SecretKeyFile},
		{"payments.stripe.webhook_secret", &s.WebhookSecret, &s.WebhookSecretFile, s.WebhookSecretFile},
	} {
		if x.file == "" {
			continue
		}
		if *x.value != "" {
			return fmt.Errorf("%s and %s_file are both set; keep one", x.name, x.name)
		}
		b, err := readFile(x.file)
		if err != nil {
			return fmt.Errorf("%s_file: %w", x.name, err)
		}
		if *x.value = strings.TrimSpace(string(b)); *x.value == "" {
			return fmt.Errorf("%s_file %s is empty", x.name, x.file)
		}
	}
	return nil
}

// paymentsProvider builds the configured payment provider; nil when none.
func (w *wiring) paymentsProvider() (portal.Payments, error) {
	s := w.cfg.Payments.Stripe
	if s == nil {
		return nil, nil
	}
	cfg := stripe.Config{SecretKey: s.SecretKey, WebhookSecret: s.WebhookSecret, APIURL: s.APIURL}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("payments: %w", err)
	}
	p, err := stripe.New(cfg, w.outbound)
	if err != nil {
		return nil, fmt.Errorf("payments: %w", err)
	}
	w.report = append(w.report, fmt.Sprintf("payments: stripe, webhook %s%s", w.publicURL, portal.WebhookPath(p.Name())))
	return p, nil
}
