package rpc

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// TestLookupOncePerRequest: Lookup normalises the path (PROTOCOL §1.1),
// notes the route on the request, and trusts that note only for the
// same server and while the request's path is still the route's.
func TestLookupOncePerRequest(t *testing.T) {
	s := newTestServer(t, newMemLedger())
	other := newTestServer(t, newMemLedger())
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("POST")

	ctx.Request.SetRequestURI("/iap/1/balance/")
	rt := s.Lookup(&ctx)
	if rt == nil || rt.Path != "/iap/1/balance" || s.Routes()[rt.Index()].Path != rt.Path {
		t.Fatalf("lookup of /iap/1/balance/: %+v", rt)
	}

	ctx.Request.SetRequestURI("/iap/1/authorize")
	rt = s.Lookup(&ctx)
	if rt == nil || rt.Path != "/iap/1/authorize" {
		t.Fatalf("a noted route was reused for another path: %+v", rt)
	}
	if v, _ := ctx.UserValue(servedKey{}).(*Served); v != rt {
		t.Fatalf("route not noted on the request: %v", v)
	}
	if again := s.Lookup(&ctx); again != rt {
		t.Fatalf("second lookup: %p, want the noted %p", again, rt)
	}
	if o := other.Lookup(&ctx); o == rt || o == nil || o.srv != other {
		t.Fatalf("another server's note was trusted: %p", o)
	}

	ctx.Request.SetRequestURI("/iap/1/nothing")
	if rt := s.Lookup(&ctx); rt != nil {
		t.Fatalf("unknown path found %+v", rt)
	}
}

// BenchmarkLookup: Lookup of a request whose route is already noted
// (Front and the router after the proxy), of a new request (noting it),
// and the bare normalisation and map lookup each layer made before.
func BenchmarkLookup(b *testing.B) {
	s := newTestServer(b, newMemLedger())
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/iap/1/authorize")
	b.Run("noted", func(b *testing.B) {
		s.Lookup(&ctx)
		b.ReportAllocs()
		for b.Loop() {
			s.Lookup(&ctx)
		}
	})
	b.Run("new", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ctx.ResetUserValues()
			s.Lookup(&ctx)
		}
	})
	b.Run("map", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = s.routes[string(normalizePathBytes(ctx.Path()))]
		}
	})
}
