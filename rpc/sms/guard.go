package sms

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"
)

// The delivery-report relay posts to a URL the caller chose (webhook_url),
// so it must not become a way into iapd's own network (SSRF). The guard
// runs in the dialer's Control hook, after name resolution, on the very
// address being connected to: a hostname that resolves to 127.0.0.1, a DNS
// answer that changes between check and use, or a redirect cannot get
// past it. No proxy is used (the proxy's address would be the one
// checked), and redirects are not followed.

// errBlockedAddress is the dial error for a refused address.
var errBlockedAddress = errors.New("webhook address refused: loopback, private, link-local, unspecified or multicast (see services.sms.settings.webhooks)")

// addressGuard decides which addresses the relay may dial.
type addressGuard struct {
	allowAll bool
	allow    []*net.IPNet
}

func newAddressGuard(w WebhookSettings) (*addressGuard, error) {
	g := &addressGuard{allowAll: w.AllowPrivate}
	for _, c := range w.AllowCIDRs {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			return nil, fmt.Errorf("webhooks.allow_cidrs: %w", err)
		}
		g.allow = append(g.allow, n)
	}
	return g, nil
}

// nat64 is the well-known NAT64 prefix, whose addresses embed IPv4 ones.
var nat64 = &net.IPNet{IP: net.ParseIP("64:ff9b::"), Mask: net.CIDRMask(96, 128)}

// special are IPv4 ranges that are neither private nor public Internet.
var special = func() []*net.IPNet {
	var out []*net.IPNet
	for _, c := range []string{"0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15", "240.0.0.0/4"} {
		_, n, _ := net.ParseCIDR(c)
		out = append(out, n)
	}
	return out
}()

// allowed reports whether ip may be dialled.
func (g *addressGuard) allowed(ip net.IP) bool {
	if g.allowAll {
		return true
	}
	for _, n := range g.allow {
		if n.Contains(ip) {
			return true
		}
	}
	if nat64.Contains(ip) {
		ip = net.IP(ip.To16()[12:16])
	}
	if ip4 := ip.To4(); ip4 != nil {
		ip = ip4
	}
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() || ip.IsLinkLocalUnicast() ||
		ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsMulticast() {
		return false
	}
	for _, n := range special {
		if n.Contains(ip) {
			return false
		}
	}
	return true
}

// control is the dialer's Control hook: address is the resolved ip:port.
func (g *addressGuard) control(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return errBlockedAddress
	}
	ip := net.ParseIP(host)
	if ip == nil || !g.allowed(ip) {
		return errBlockedAddress
	}
	return nil
}

// newWebhookClient returns the relay's HTTP client: the guard at dial
// time, no proxy, no redirects.
func newWebhookClient(w WebhookSettings) (*http.Client, error) {
	g, err := newAddressGuard(w)
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second, Control: g.control}
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          16,
		IdleConnTimeout:       60 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, nil
}
