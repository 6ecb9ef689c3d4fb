package limit

import (
	"context"
	"net"
	"strings"

	"github.com/valyala/fasthttp"
)

// ClientKey is the rate-limit key of a request's client: its address,
// from header when header is set and the request carries a valid address
// in it (for X-Forwarded-For, the last one: the address the operator's
// proxy appended), else the peer's. IPv4 addresses are kept whole, IPv6
// addresses cut to their /64 (one host owns a whole /64). The key is
// binary, not for display.
func ClientKey(ctx *fasthttp.RequestCtx, header string) string {
	ip := ClientIP(ctx, header)
	if v4 := ip.To4(); v4 != nil {
		return string(v4)
	}
	if len(ip) == net.IPv6len {
		return string(ip[:8])
	}
	return ip.String()
}

// ClientIP is the client address of a request as ClientKey resolves it
// (header when set and valid, for X-Forwarded-For its last address; else
// the peer's), whole: for logs.
func ClientIP(ctx *fasthttp.RequestCtx, header string) net.IP {
	ip := ctx.RemoteIP()
	if header != "" {
		if v := string(ctx.Request.Header.Peek(header)); v != "" {
			if i := strings.LastIndexByte(v, ','); i >= 0 {
				v = v[i+1:]
			}
			if p := net.ParseIP(strings.TrimSpace(v)); p != nil {
				ip = p
			}
		}
	}
	return ip
}

// clientCtxKey is the fasthttp user-value key of the client key.
type clientCtxKey struct{}

// TagClient stores the client key of ctx (ClientKey with header) in the
// request, where Client finds it through the request's context. The
// public handler's outermost wrap calls it.
func TagClient(ctx *fasthttp.RequestCtx, header string) {
	ctx.SetUserValue(clientCtxKey{}, ClientKey(ctx, header))
}

// Client returns the client key TagClient stored, reached through the
// context of a request served by the rpc seam; "" when there is none.
func Client(ctx context.Context) string {
	s, _ := ctx.Value(clientCtxKey{}).(string)
	return s
}

// WithClient returns a context carrying the client key (for callers
// outside the seam, and tests).
func WithClient(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, clientCtxKey{}, key)
}

// KeyString writes a client key for logs: the IPv4 address, or the IPv6
// /64 as "2001:db8:1:2::/64"; "" for an empty key.
func KeyString(key string) string {
	switch len(key) {
	case 0:
		return ""
	case net.IPv4len:
		return net.IP(key).String()
	case 8:
		ip := make(net.IP, net.IPv6len)
		copy(ip, key)
		return ip.String() + "/64"
	}
	return key
}
