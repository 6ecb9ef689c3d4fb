package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxIdleConnsPerHost is NewOutbound's default idle connections
// per host.
const DefaultMaxIdleConnsPerHost = 16

// ErrRefused is wrapped by the error of a dial the Guard refused.
var ErrRefused = errors.New("outbound connection refused: iapd runs air-gapped and this host is not a configured provider's")

// Guard is the dialer of every outbound connection iapd opens. When it
// enforces (air-gapped mode), it refuses any address whose host (or
// host:port) was not allowed, before the name is resolved: a refused name
// is not even looked up. Otherwise it dials anything. Safe for concurrent
// use; hosts may be allowed while it serves.
type Guard struct {
	enforce bool
	dialer  net.Dialer
	log     *slog.Logger

	mu      sync.RWMutex
	allowed map[string]string // normalised host or host:port → why
	refused atomic.Int64
}

// NewGuard returns a Guard; enforce makes it refuse what is not allowed.
// log receives one warning per refused dial (nil discards).
func NewGuard(enforce bool, log *slog.Logger) *Guard {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Guard{
		enforce: enforce,
		dialer:  net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second},
		log:     log,
		allowed: map[string]string{},
	}
}

// Enforcing reports whether the guard refuses unknown hosts.
func (g *Guard) Enforcing() bool { return g.enforce }

// Allow permits connections to host (any port) or host:port; why says
// whose it is, for the startup report. It fails on a malformed entry.
func (g *Guard) Allow(why string, hosts ...string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, h := range hosts {
		n, err := NormHost(h)
		if err != nil {
			return err
		}
		if _, ok := g.allowed[n]; !ok {
			g.allowed[n] = why
		}
	}
	return nil
}

// Allowed lists the allowed entries as "host[:port] (why)", sorted.
func (g *Guard) Allowed() []string {
	g.mu.RLock()
	defer g.mu.RUnlock()
	out := make([]string, 0, len(g.allowed))
	for h, why := range g.allowed {
		out = append(out, h+" ("+why+")")
	}
	sort.Strings(out)
	return out
}

// Permits reports whether a dial to addr (host:port) would go through.
func (g *Guard) Permits(addr string) bool {
	if !g.enforce {
		return true
	}
	n, err := NormHost(addr)
	if err != nil {
		return false
	}
	host := n
	if h, _, err := net.SplitHostPort(n); err == nil {
		host = h
	}
	g.mu.RLock()
	defer g.mu.RUnlock()
	_, exact := g.allowed[n]
	_, anyPort := g.allowed[host]
	return exact || anyPort
}

// Refused counts the dials refused so far.
func (g *Guard) Refused() int64 { return g.refused.Load() }

// DialContext dials addr if the guard permits it; it has the signature of
// http.Transport.DialContext.
func (g *Guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if !g.Permits(addr) {
		g.refused.Add(1)
		g.log.Warn("outbound connection refused (air-gapped)", "addr", addr)
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("%s: %w", addr, ErrRefused)}
	}
	return g.dialer.DialContext(ctx, network, addr)
}

// Outbound is the transport of iapd's outbound HTTP: pooled connections
// through the Guard. It is what the providers' *http.Client uses, and
// the proxy's transport to Odoo's hosts is another Outbound on the same
// Guard.
type Outbound struct {
	*http.Transport
	Guard *Guard
}

// NewOutbound returns a transport dialing through g, keeping up to
// maxIdlePerHost idle connections per host (0: 16). In air-gapped mode it
// ignores HTTP(S)_PROXY (a proxy would be a way out); otherwise it honours
// them.
func NewOutbound(g *Guard, maxIdlePerHost int) *Outbound {
	if maxIdlePerHost <= 0 {
		maxIdlePerHost = DefaultMaxIdleConnsPerHost
	}
	t := &http.Transport{
		DialContext:            g.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           4 * maxIdlePerHost,
		MaxIdleConnsPerHost:    maxIdlePerHost,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		ResponseHeaderTimeout:  0, // bounded by each request's context
		MaxResponseHeaderBytes: 64 << 10,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
	}
	if !g.Enforcing() {
		t.Proxy = http.ProxyFromEnvironment
	}
	return &Outbound{Transport: t, Guard: g}
}

// DialContext dials through the guard, for connections that are not HTTP
// (an SMTP relay): providers.DialerOf finds it behind Deps.HTTP. It
// shadows the embedded transport's DialContext field.
func (o *Outbound) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return o.Guard.DialContext(ctx, network, addr)
}

// Client returns an *http.Client on o with an overall timeout per request
// (0: none; callers then bound requests with their contexts).
func (o *Outbound) Client(timeout time.Duration) *http.Client {
	return &http.Client{Transport: o, Timeout: timeout}
}

// HostsOfURLs returns the host[:port] of every absolute URL among urls
// (schemes http, https, smtp, smtps, ws, wss), for allowing a provider's
// configured endpoints; other strings are ignored.
func HostsOfURLs(urls []string) []string {
	var out []string
	for _, s := range urls {
		s = strings.TrimSpace(s)
		i := strings.Index(s, "://")
		if i <= 0 {
			continue
		}
		switch strings.ToLower(s[:i]) {
		case "http", "https", "smtp", "smtps", "ws", "wss":
		default:
			continue
		}
		rest := s[i+3:]
		if j := strings.IndexAny(rest, "/?#"); j >= 0 {
			rest = rest[:j]
		}
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			rest = rest[at+1:]
		}
		if rest != "" {
			out = append(out, rest)
		}
	}
	return out
}

// NormHost lower-cases a host or host:port (IPv6 in brackets) as Guard.Allow
// keeps it, or fails on a malformed one (a URL, a user, an empty port).
func NormHost(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || strings.ContainsAny(s, "/@ ") {
		return "", fmt.Errorf("%q: want a host name or host:port", s)
	}
	if h, p, err := net.SplitHostPort(s); err == nil {
		if h == "" || p == "" {
			return "", fmt.Errorf("%q: want a host name or host:port", s)
		}
		return net.JoinHostPort(h, p), nil
	}
	return strings.Trim(s, "[]"), nil
}
