package rpc

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
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
// ContentLength, Body (a *body over the request's bytes) and a Context
// (requestContext) that carries the route's deadline and is cancelled
// when that deadline passes, when the client is seen gone (probe_linux.go)
// or when the server gives up on in-flight requests at shutdown
// (Server.CancelRequests). All of it is valid only until ServeHTTP
// returns: handlers must not keep the request, its body or its context.

// seam serves fasthttp requests with a net/http handler.
type seam struct {
	h    http.Handler
	pool sync.Pool // of *exchange

	// watched holds the exchanges whose request has run longer than
	// watchDelay (the others are about to end), for cancelAll; sharded so
	// that requests do not contend on one lock.
	watched [watchShards]struct {
		mu  sync.Mutex
		set map[*exchange]struct{}
		_   [40]byte // a cache line each
	}
	next     atomic.Uint32 // shard of the next new exchange
	stopping atomic.Bool   // cancelAll was called
}

const watchShards = 8

// watchDelay is how long a request runs before its deadline and its
// client are watched (watch): most answers are ready before and cost a
// timer's Reset and Stop, nothing more.
const watchDelay = 20 * time.Millisecond

func newSeam(h http.Handler) *seam {
	s := &seam{h: h}
	for i := range s.watched {
		s.watched[i].set = make(map[*exchange]struct{})
	}
	s.pool.New = func() any { return s.newExchange() }
	return s
}

// exchange is one request crossing the seam; pooled.
type exchange struct {
	s     *seam
	req   *http.Request
	ctx   requestContext
	url   url.URL
	body  body
	w     responseWriter
	shard uint32

	timer   *time.Timer   // starts watch after watchDelay
	ended   atomic.Bool   // the handler returned: watch must end
	wake    chan struct{} // ends a watch without a socket (buffered)
	watched chan struct{} // watch returned (buffered)
	pw      probeWatch    // the socket watch (probe_linux.go)
}

func (s *seam) newExchange() *exchange {
	e := &exchange{s: s, shard: s.next.Add(1) % watchShards,
		wake: make(chan struct{}, 1), watched: make(chan struct{}, 1)}
	e.req = (&http.Request{}).WithContext(&e.ctx) // the one allocation of WithContext, per pooled exchange
	e.req.Method = http.MethodPost
	e.req.Proto, e.req.ProtoMajor, e.req.ProtoMinor = "HTTP/1.1", 1, 1
	e.req.URL = &e.url
	e.req.Header = http.Header{"Content-Type": {"application/json"}} // gorilla picks the Odoo codec by it
	e.req.Body = &e.body
	e.w.hdr = make(http.Header, 4)
	e.ctx.done = make(chan struct{})
	e.timer = time.AfterFunc(time.Hour, e.watch)
	e.timer.Stop()
	return e
}

// serve hands ctx to the handler; rt is the route the router found.
func (s *seam) serve(ctx *fasthttp.RequestCtx, rt *Served) { s.run(ctx, rt, nil) }

// run is serve, calling fn with the request's context instead of the
// handler when fn is not nil (RunRequest).
func (s *seam) run(ctx *fasthttp.RequestCtx, rt *Served, fn func(context.Context)) {
	e := s.pool.Get().(*exchange)
	b := ctx.PostBody()
	e.url.Path = rt.Path
	e.req.RequestURI = rt.Path
	e.req.ContentLength = int64(len(b))
	e.body.data, e.body.off, e.body.route = b, 0, rt
	e.w.ctx, e.w.wrote = ctx, false

	// The deadline counts from the request's start (fasthttp's time:
	// before the body was read), as the client's timeout does.
	start := ctx.Time()
	if start.IsZero() {
		start = time.Now()
	}
	budget := rt.budget
	if budget <= 0 {
		budget = budgetOf(DefaultTimeout)
	}
	e.ctx.mu.Lock() // for the watch's goroutine too
	e.ctx.rc = ctx
	e.ctx.deadline = start.Add(budget)
	e.ctx.active = true
	e.ctx.mu.Unlock()
	e.ended.Store(false)
	e.timer.Reset(min(watchDelay, time.Until(e.ctx.deadline)))

	panicked := true
	defer func() {
		if panicked {
			// The exchange is dropped, not reused; but its watch must end
			// before fasthttp reuses ctx.
			e.endWatch(ctx)
		}
	}()
	if fn != nil {
		fn(&e.ctx)
	} else {
		s.h.ServeHTTP(&e.w, e.req)
		if !e.w.wrote {
			e.w.WriteHeader(http.StatusOK)
		}
	}
	panicked = false

	e.endWatch(ctx)
	e.ctx.mu.Lock()
	e.ctx.active = false
	if e.ctx.err != nil {
		e.ctx.err, e.ctx.done = nil, make(chan struct{})
	}
	e.ctx.rc = nil
	e.ctx.mu.Unlock()
	e.body.data, e.body.route = nil, nil
	e.body.codec = codecRequest{buf: e.body.codec.buf} // keep only the output buffer
	e.w.ctx = nil
	clear(e.w.hdr)
	s.pool.Put(e)
}

// endWatch stops the watch of the request on ctx, waiting for it to
// return if it has started.
func (e *exchange) endWatch(ctx *fasthttp.RequestCtx) {
	e.ended.Store(true)
	if e.timer.Stop() {
		return // never started
	}
	if canWatch(ctx) {
		stopWatch(ctx) // a socket watch returns at once, now or when it starts
	}
	select {
	case e.wake <- struct{}{}:
	default:
	}
	<-e.watched
	select { // a wake-up the watch did not take
	case <-e.wake:
	default:
	}
}

// watch runs on the timer's goroutine once a request has run watchDelay:
// until the handler returns, it cancels the request's context when the
// deadline passes, when the client is seen gone (probe_linux.go) or when
// cancelAll is called (it is listed in watched for that).
func (e *exchange) watch() {
	e.ctx.mu.Lock()
	rc, deadline := e.ctx.rc, e.ctx.deadline
	e.ctx.mu.Unlock()
	s := e.s
	sh := &s.watched[e.shard]
	sh.mu.Lock()
	sh.set[e] = struct{}{}
	sh.mu.Unlock()
	if s.stopping.Load() {
		e.ctx.cancel(context.Canceled)
	}
	// A socket is watched until the read deadline, set to the request's:
	// the wait then ends at the deadline, a client gone, or stopWatch
	// (which sets a deadline in the past). ended is read after the
	// deadline is set: either serve's stopWatch came after (and wakes the
	// wait) or ended is seen.
	if canWatch(rc) && rc.SetReadDeadline(deadline) == nil {
		switch {
		case e.ended.Load():
		case e.pw.wait(rc):
			e.ctx.cancel(context.Canceled)
		case !e.ended.Load() && !time.Now().Before(deadline):
			e.ctx.cancel(context.DeadlineExceeded)
		}
	} else if !e.ended.Load() {
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-t.C:
			e.ctx.cancel(context.DeadlineExceeded)
		case <-e.wake:
		}
		t.Stop()
	}
	sh.mu.Lock()
	delete(sh.set, e)
	sh.mu.Unlock()
	e.watched <- struct{}{}
}

// cancelAll cancels the context of every request that has run longer
// than watchDelay, and of every one that reaches it after.
func (s *seam) cancelAll() {
	s.stopping.Store(true)
	for i := range s.watched {
		sh := &s.watched[i]
		sh.mu.Lock()
		for e := range sh.set {
			e.ctx.cancel(context.Canceled)
		}
		sh.mu.Unlock()
	}
}

// body is the request body handed over without a copy. The codec
// type-asserts it to reach the bytes, the route and its own per-request
// state.
type body struct {
	data  []byte
	off   int
	route *Served
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
// RequestCtx's values, the route's deadline, and a Done channel closed on
// cancel (deadline, client gone, shutdown). Err is
// context.DeadlineExceeded or context.Canceled once Done is closed.
type requestContext struct {
	rc       *fasthttp.RequestCtx
	deadline time.Time

	mu     sync.Mutex
	done   chan struct{} // replaced after a cancelled request
	err    error
	active bool // a request is being served
}

type fasthttpCtxKey struct{}

func (c *requestContext) Deadline() (time.Time, bool) { return c.deadline, true }
func (c *requestContext) Done() <-chan struct{}       { return c.done }
func (c *requestContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
func (c *requestContext) Value(key any) any {
	c.mu.Lock()
	rc := c.rc
	c.mu.Unlock()
	if rc == nil {
		// Kept past its request (an HTTP transport's background dial
		// keeps its request's context): no values, no crash.
		return nil
	}
	if key == (fasthttpCtxKey{}) {
		return rc
	}
	return rc.Value(key)
}

// cancel ends the request's context with err, once, if a request is being
// served.
func (c *requestContext) cancel(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.active && c.err == nil {
		c.err = err
		close(c.done)
	}
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
