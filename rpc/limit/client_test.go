package limit

import (
	"net"
	"testing"

	"github.com/valyala/fasthttp"
)

// ClientIP and ClientKey resolve the client alike: the header when set
// and valid (X-Forwarded-For: its last address), else the peer; the key
// cuts IPv6 to its /64, the address stays whole (for logs).
func TestClientIPAndKey(t *testing.T) {
	peer := &net.TCPAddr{IP: net.ParseIP("192.0.2.9"), Port: 4000}
	for _, c := range []struct {
		header, value, ip, key string
	}{
		{"", "", "192.0.2.9", "192.0.2.9"},
		{"X-Real-IP", "", "192.0.2.9", "192.0.2.9"},
		{"X-Real-IP", "not an address", "192.0.2.9", "192.0.2.9"},
		{"X-Real-IP", "2001:db8:1:2:3:4:5:6", "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"X-Forwarded-For", "198.51.100.1, 203.0.113.7", "203.0.113.7", "203.0.113.7"},
	} {
		var ctx fasthttp.RequestCtx
		ctx.Init(&fasthttp.Request{}, peer, nil)
		if c.value != "" {
			ctx.Request.Header.Set(c.header, c.value)
		}
		if got := ClientIP(&ctx, c.header).String(); got != c.ip {
			t.Errorf("%s %q: ClientIP %s, want %s", c.header, c.value, got, c.ip)
		}
		if got := KeyString(ClientKey(&ctx, c.header)); got != c.key {
			t.Errorf("%s %q: ClientKey %s, want %s", c.header, c.value, got, c.key)
		}
	}
}
