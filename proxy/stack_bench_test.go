package proxy

import (
	"net/http"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

// benchLocalStack is a request to a local route through the public
// listener's chain as serve wires it (rpc Front, proxy Wrap, router, seam,
// codec, the route's method), another service being forwarded so that
// the proxy is in front; shared: the proxy finds the route with the
// router's Lookup (one path lookup per request) instead of its own copy.
func benchLocalStack(b *testing.B, shared bool) {
	ledger, err := badger.Open(badger.Options{InMemory: true})
	if err != nil {
		b.Fatal(err)
	}
	defer ledger.Close()
	srv, err := rpc.New(rpc.Config{Ledger: ledger, PublicURL: "https://iap.example.org"})
	if err != nil {
		b.Fatal(err)
	}
	rs := append([]rpc.Route(nil), fixtureRoutes...)
	for i := range rs {
		rs[i].Method, rs[i].MaxBody = "Fix.Call", 64<<10
	}
	if err := srv.Register("Fix", Fix{}, rs); err != nil {
		b.Fatal(err)
	}
	o := Options{Routes: srv.Routes(), Modes: map[storage.ServiceName]Mode{storage.Snailmail: Upstream},
		Errors: srv, Transport: http.DefaultTransport, Pages: srv.HasPage}
	if shared {
		o.Lookup = srv.Lookup
	}
	px, err := New(o)
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Front(px.Wrap(srv.Handler()))
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("POST")
	ctx.Request.SetRequestURI("/api/sms/3/send")
	ctx.Request.SetBody([]byte(`{"jsonrpc":"2.0","method":"call","id":1,"params":{}}`))
	b.ReportAllocs()
	for b.Loop() {
		ctx.ResetUserValues() // as fasthttp does between requests
		ctx.Response.Reset()
		h(&ctx)
	}
	if got := string(ctx.Response.Body()); got != `{"jsonrpc":"2.0","id":1,"result":true}` {
		b.Fatalf("answer %s", got)
	}
}

// BenchmarkLocalStack: see benchLocalStack; the two variants in one run
// give the cost of the proxy's own lookup.
func BenchmarkLocalStack(b *testing.B) {
	b.Run("lookup=proxy-copy", func(b *testing.B) { benchLocalStack(b, false) })
	b.Run("lookup=shared", func(b *testing.B) { benchLocalStack(b, true) })
}
