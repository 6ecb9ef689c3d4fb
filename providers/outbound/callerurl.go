package outbound

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// Calls to URLs a caller chose (the SMS delivery-report webhook_url an
// Odoo database sends, the alert webhooks) must not become a way into
// iapd's own network (SSRF). CallerURL's client checks, in the dialer's
// Control hook, after name resolution, the very address being connected
// to: a hostname that resolves to 127.0.0.1, a DNS answer that changes
// between check and use, or a redirect cannot get past it. It uses no
// proxy (the proxy's address would be the one checked) and follows no
// redirect.

// ErrNonPublicAddress is the dial error for a refused address.
var ErrNonPublicAddress = errors.New("refusing to dial a non-public address")

// CallerURL is the policy and the limits of a client for caller-chosen
// URLs.
type CallerURL struct {
	// AllowPrivate lets every address through (a site whose Odoo is on
	// its own network and trusts its callers).
	AllowPrivate bool
	// Allow are networks allowed besides public addresses.
	Allow []netip.Prefix
	// Hint names the setting that allows more, for the refusal.
	Hint string

	DialTimeout           time.Duration // 0: 10 s
	Timeout               time.Duration // whole request; 0: none (the caller's context bounds it)
	ResponseHeaderTimeout time.Duration // 0: none
	MaxIdleConns          int           // 0: 4
}

// Permits reports whether a may be dialled: a public unicast address
// (PublicAddr), one in Allow, or any with AllowPrivate.
func (c *CallerURL) Permits(a netip.Addr) bool {
	if c.AllowPrivate {
		return true
	}
	a = a.Unmap()
	for _, p := range c.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return PublicAddr(a)
}

// Client returns an HTTP client that dials only what Permits allows.
func (c *CallerURL) Client() *http.Client {
	dt := c.DialTimeout
	if dt == 0 {
		dt = 10 * time.Second
	}
	idle := c.MaxIdleConns
	if idle == 0 {
		idle = 4
	}
	d := &net.Dialer{Timeout: dt, KeepAlive: 30 * time.Second, Control: c.control}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           d.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          idle,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   dt,
			ResponseHeaderTimeout: c.ResponseHeaderTimeout,
		},
		Timeout:       c.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// control is the dialer's Control hook: address is the resolved ip:port.
func (c *CallerURL) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || !c.Permits(ap.Addr()) {
		host, _, _ := net.SplitHostPort(address)
		if c.Hint != "" {
			return fmt.Errorf("%w %s (see %s)", ErrNonPublicAddress, host, c.Hint)
		}
		return fmt.Errorf("%w %s", ErrNonPublicAddress, host)
	}
	return nil
}

// nonPublic are ranges no public receiver lives in beyond what netip's
// predicates cover.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),   // reserved, broadcast
	netip.MustParsePrefix("64:ff9b::/96"),  // NAT64: may map to a private IPv4
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2002::/16"), // 6to4: embeds an IPv4
}

// PublicAddr reports whether a is a globally routable unicast address:
// not loopback, private, link-local, multicast, unspecified, carrier-grade
// NAT, reserved, nor an IPv6 form embedding an IPv4 one (mapped, NAT64,
// 6to4).
func PublicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() || !a.IsGlobalUnicast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}
