package providers

import (
	"context"
	"net"
	"net/http"
	"time"
)

// Endpoints is implemented by provider instances that open network
// connections (vendor APIs, SMTP relays). In air-gapped mode iapd's
// outbound dialer refuses every address that no configured provider
// declares, so an adapter that calls out must implement it, or its calls
// fail with a refused dial (an Unavailable failure for the adapter).
type Endpoints interface {
	// Hosts lists the host names or host:port the instance connects to,
	// as configured (e.g. "api.twilio.com", "smtp.example.org:587"); a
	// name without a port allows every port. It must not change after
	// the instance is built. An instance that calls nothing returns nil.
	Hosts() []string
}

// DialFunc dials a network address, as net.Dialer.DialContext.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// DialerOf returns the dialer behind an adapter's Deps.HTTP, for adapters
// that open raw connections (SMTP): iapd's outbound transport exposes its
// guarded dialer (air-gapped mode refuses hosts no provider declares), so
// raw connections obey the same rule as HTTP calls. For any other client
// it returns a plain net.Dialer's DialContext with a 30 s timeout.
func DialerOf(c *http.Client) DialFunc {
	if c != nil {
		if d, ok := c.Transport.(interface {
			DialContext(ctx context.Context, network, addr string) (net.Conn, error)
		}); ok {
			return d.DialContext
		}
	}
	d := &net.Dialer{Timeout: 30 * time.Second}
	return d.DialContext
}
