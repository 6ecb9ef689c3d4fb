package rpc

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// The seam: the only place fasthttp meets net/http. A net/http handler
// (gorilla/rpc's server) is called synchronously on the fasthttp
// goroutine with a pooled *http.Request and http.ResponseWriter; nothing
// is copied, nothing is allocated and no goroutine is started
// (fasthttpadaptor, not used here, starts one per request and copies the
// request: BenchmarkSeam compares the three).
//
// What the handler sees of the request: Method "POST", URL.Path and
// RequestURI (the normalised route path), Header with only Content-Type
// (forced to application/json, so that gorilla picks the Odoo codec),
// ContentLength, Body (a *body over the fasthttp buffer) and a Context
// that is the fasthttp.RequestCtx's. All of it is valid only until
// ServeHTTP returns: handlers must not keep the request, its body or its
// context.

// seam serves fasthttp requests with a net/http handler.
type seam struct {
	h    http.Handler
	pool sync.Pool // of *exchange
}

func newSeam(h http.Handler) *seam {
	s := &seam{h: h}
	s.pool.New = func() any { return newExchange() }
	return s
}

// exchange is one request crossing the seam; pooled.
type exchange struct {
	req  *http.Request
	ctx  requestContext
	url  url.URL
	body body
	w    responseWriter
}

func newExchange() *exchange {
	e := &exchange{}
	e.req = (&http.Request{}).WithContext(&e.ctx) // the one allocation of WithContext, per pooled exchange
	e.req.Method = http.MethodPost
	e.req.Proto, e.req.ProtoMajor, e.req.ProtoMinor = "HTTP/1.1", 1, 1
	e.req.URL = &e.url
	e.req.Header = http.Header{"Content-Type": {"application/json"}} // gorilla picks the Odoo codec by it
	e.req.Body = &e.body
	e.w.hdr = make(http.Header, 4)
	return e
}

// serve hands ctx to the handler; rt is the route the router found.
func (s *seam) serve(ctx *fasthttp.RequestCtx, rt *routeEntry) {
	e := s.pool.Get().(*exchange)
	b := ctx.PostBody()
	e.ctx.rc = ctx
	e.url.Path = rt.Path
	e.req.RequestURI = rt.Path
	e.req.ContentLength = int64(len(b))
	e.body.data, e.body.off, e.body.route = b, 0, rt
	e.w.ctx, e.w.wrote = ctx, false

	s.h.ServeHTTP(&e.w, e.req)
	if !e.w.wrote {
		e.w.WriteHeader(http.StatusOK)
	}

	// Not deferred: after a panic the exchange is dropped, not reused.
	e.ctx.rc = nil
	e.body.data, e.body.route = nil, nil
	e.body.codec = codecRequest{buf: e.body.codec.buf} // keep only the output buffer
	e.w.ctx = nil
	clear(e.w.hdr)
	s.pool.Put(e)
}

// body is the request body handed over without a copy. The codec
// type-asserts it to reach the bytes, the route and its own per-request
// state.
type body struct {
	data  []byte
	off   int
	route *routeEntry
	codec codecRequest // the codec's state for this request, reused with the exchange
}

// Bytes returns the whole body, whatever has been read.
func (b *body) Bytes() []byte { return b.data }

func (b *body) Read(p []byte) (int, error) {
	if b.off >= len(b.data) {
		return 0, io.EOF
	}
	n := copy(p, b.data[b.off:])
	b.off += n
	return n, nil
}

func (b *body) Close() error { return nil }

// responseWriter writes into the fasthttp response.
type responseWriter struct {
	ctx   *fasthttp.RequestCtx
	hdr   http.Header
	wrote bool
}

func (w *responseWriter) Header() http.Header { return w.hdr }

func (w *responseWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	for k, vs := range w.hdr {
		for i, v := range vs {
			if i == 0 {
				w.ctx.Response.Header.Set(k, v)
			} else {
				w.ctx.Response.Header.Add(k, v)
			}
		}
	}
	w.ctx.SetStatusCode(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ctx.Write(p)
}

// requestContext is the request's context.Context: the fasthttp
// RequestCtx's values and deadline, but never cancelled: the RequestCtx's
// Done closes when the server starts shutting down, and a request in flight
// then must be finished (Shutdown waits for it), not refused.
type requestContext struct{ rc *fasthttp.RequestCtx }

type fasthttpCtxKey struct{}

func (c *requestContext) Deadline() (time.Time, bool) { return c.rc.Deadline() }
func (c *requestContext) Done() <-chan struct{}       { return nil }
func (c *requestContext) Err() error                  { return nil }
func (c *requestContext) Value(key any) any {
	if key == (fasthttpCtxKey{}) {
		return c.rc
	}
	return c.rc.Value(key)
}

// remoteAddr returns the client address of a request that came through
// the seam ("" otherwise), for logs.
func remoteAddr(ctx context.Context) string {
	if rc, ok := ctx.Value(fasthttpCtxKey{}).(*fasthttp.RequestCtx); ok {
		return rc.RemoteIP().String()
	}
	return ""
}

var (
	_ http.ResponseWriter = (*responseWriter)(nil)
	_ io.ReadCloser       = (*body)(nil)
	_ context.Context     = (*requestContext)(nil)
)
