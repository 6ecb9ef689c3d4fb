package sms

import (
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/iapd/iapd/providers/outbound"
)

// allowCIDRsKey is the setting that lets delivery reports reach
// non-public networks, named by the refusal.
const allowCIDRsKey = "services.sms.settings.webhooks.allow_cidrs"

// webhookGuard is the relay's policy for the webhook_url a database
// sends: a caller-chosen URL, so dialled only through outbound.CallerURL's
// guard (public addresses, plus what the settings allow).
func webhookGuard(w WebhookSettings) (*outbound.CallerURL, error) {
	g := &outbound.CallerURL{
		AllowPrivate:          w.AllowPrivate,
		Hint:                  allowCIDRsKey,
		DialTimeout:           5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		MaxIdleConns:          16,
	}
	for _, c := range w.AllowCIDRs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("webhooks.allow_cidrs: %w", err)
		}
		g.Allow = append(g.Allow, p.Masked())
	}
	return g, nil
}

// newWebhookClient returns the relay's HTTP client.
func newWebhookClient(w WebhookSettings) (*http.Client, error) {
	g, err := webhookGuard(w)
	if err != nil {
		return nil, err
	}
	return g.Client(), nil
}
