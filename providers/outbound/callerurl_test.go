package outbound

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// CallerURL refuses every non-public address at dial time unless allowed,
// and its refusal names the setting that allows more.
func TestCallerURL(t *testing.T) {
	g := &CallerURL{Allow: []netip.Prefix{netip.MustParsePrefix("10.8.0.0/16")}, Hint: "x.allow", DialTimeout: time.Second}
	for a, want := range map[string]bool{
		"127.0.0.1": false, "::1": false, "10.0.0.1": false, "192.168.1.1": false, "169.254.169.254": false,
		"100.64.0.1": false, "0.0.0.0": false, "::ffff:127.0.0.1": false, "64:ff9b::a00:1": false,
		"2002:7f00:1::1": false, "fd00::1": false, "ff02::1": false, "224.0.0.1": false,
		"10.8.1.2": true, "::ffff:10.8.1.2": true, "93.184.216.34": true, "2606:4700::1111": true,
	} {
		if got := g.Permits(netip.MustParseAddr(a)); got != want {
			t.Errorf("Permits(%s) = %v, want %v", a, got, want)
		}
	}
	hit := false
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hit = true }))
	defer srv.Close()
	_, err := g.Client().Get(srv.URL)
	if !errors.Is(err, ErrNonPublicAddress) || !strings.Contains(err.Error(), "x.allow") || hit {
		t.Fatalf("loopback: %v (hit %v)", err, hit)
	}
	open := &CallerURL{AllowPrivate: true}
	resp, err := open.Client().Get(srv.URL)
	if err != nil || !hit {
		t.Fatalf("AllowPrivate: %v (hit %v)", err, hit)
	}
	resp.Body.Close()
}
