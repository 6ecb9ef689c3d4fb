package rpc

import (
	"bytes"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	gorilla "github.com/gorilla/rpc/v2"
	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/storage"
)

// Served is a Route as one Server serves it (Server.Lookup).
type Served struct {
	Route
	maxBody      int           // MaxBody capped by Config.MaxBodyBytes
	creditErrors bool          // the route may answer InsufficientCreditError
	budget       time.Duration // the request's deadline, from its start (budgetOf)
	srv          *Server       // the server whose table holds it
	index        int           // its position in srv.Routes()
}

// Index is the route's position in the Routes() of its Server: a front
// that keeps its own per-route state (the proxy) finds it by Index
// without a second lookup of the path.
func (r *Served) Index() int { return r.index }

// servedKey is the user-value key under which Lookup notes a request's
// route.
type servedKey struct{}

// Lookup returns the route of ctx's path (normalised, PROTOCOL §1.1), nil
// for a path outside the routes table. A route found is noted on ctx, so
// that Front, a front such as the proxy and the router look a clean path
// up once per request; a noted route is reused only while ctx's path is
// still its path. It does not allocate.
func (s *Server) Lookup(ctx *fasthttp.RequestCtx) *Served {
	if v, ok := ctx.UserValue(servedKey{}).(*Served); ok && v.srv == s && string(ctx.Path()) == v.Path {
		return v
	}
	rt := s.routes[string(normalizePathBytes(ctx.Path()))]
	if rt != nil {
		ctx.SetUserValue(servedKey{}, rt)
	}
	return rt
}

// budgetOf is the time a request of a route whose client waits timeout
// may take: timeout less a margin (a tenth, between 0.5 s and 3 s) for
// the answer to reach the client before it gives up.
func budgetOf(timeout time.Duration) time.Duration {
	return timeout - min(max(timeout/10, 500*time.Millisecond), 3*time.Second)
}

// serve is the public handler: the router in front of the seam.
//
// gorilla/rpc alone would answer wrong methods (405) and content types
// (415) in plain text before any codec runs, and route on the JSON
// "method"; so the router decides first:
//
//   - POST to a route of the table → the seam, content type forced to
//     application/json whatever the client sent;
//   - body over the route's limit (but within the server's) → a JSON-RPC
//     error, HTTP 200;
//   - POST to an unknown path → HTTP 200 with the JSON-RPC error Odoo's
//     own server sends (werkzeug NotFound, code 404);
//   - GET/HEAD to a page registered with HandleGET or HandlePage, or
//     POST to one registered with HandlePage → that handler;
//   - another method on a known path → 405 with Allow;
//   - anything else → 404.
//
// With a Config.Observer, every request is then reported to it (see
// observation), a panic included; with a Config.AccessLog, its outcome
// is left for Front's access line.
func (s *Server) serve(ctx *fasthttp.RequestCtx) {
	o := observation{route: RouteUnknown, outcome: outcomeInternal} // what a panic leaves
	if s.observer != nil || s.access != nil {
		o.start = time.Now()
		defer s.observe(ctx, &o)
	}
	defer s.recoverPanic(ctx)
	s.route(ctx, &o)
}

// route answers ctx and notes in o the route label and the outcome.
func (s *Server) route(ctx *fasthttp.RequestCtx, o *observation) {
	rt := s.Lookup(ctx)
	post := ctx.IsPost()
	if rt != nil && post {
		o.route = rt.Path
		if len(ctx.PostBody()) > rt.maxBody {
			b := s.appendError(nil, decodeIDSmall(ctx.PostBody(), s.maxBody), rt.Method, ctx.RemoteIP().String(), errBodyTooLarge(int64(rt.maxBody)))
			writeJSON(ctx, b)
			o.outcome = kindOutcomes[storage.Invalid]
			return
		}
		s.seam.serve(ctx, rt)
		if s.observer != nil || s.access != nil {
			o.outcome = callOutcome(ctx, rt)
		}
		return
	}
	path := normalizePathBytes(ctx.Path())
	gets := *s.gets.Load()
	page, isPage := gets[string(path)]
	if rt != nil {
		o.route = rt.Path
	} else if isPage {
		o.route = page.path
	}
	if isPage && (ctx.IsGet() || ctx.IsHead() || (post && page.post && rt == nil)) {
		page.h(ctx)
		o.outcome = OutcomeOK
		if ctx.Response.StatusCode() >= 400 {
			o.outcome = OutcomeHTTPError
		}
		return
	}
	if rt == nil && !isPage {
		if post {
			s.log.Debug("POST to an unknown route", "path", truncate(string(path), 200), "client", ctx.RemoteIP().String())
			writeJSON(ctx, appendNotFound(nil, decodeIDSmall(ctx.PostBody(), defaultRouteBody)))
			o.outcome = kindOutcomes[storage.NotFound]
			return
		}
		ctx.Error("404 Not Found", fasthttp.StatusNotFound)
		o.outcome = OutcomeHTTPError
		return
	}
	var allow []string
	if rt != nil {
		allow = append(allow, http.MethodPost)
	}
	if isPage {
		allow = append(allow, http.MethodGet, http.MethodHead)
		if page.post && rt == nil {
			allow = append(allow, http.MethodPost)
		}
	}
	ctx.Error("405 Method Not Allowed", fasthttp.StatusMethodNotAllowed)
	ctx.Response.Header.Set("Allow", strings.Join(allow, ", "))
	o.outcome = OutcomeHTTPError
}

// RouteUnknown is the route reported to the Observer for a path that is
// neither in the routes table nor a page registered with HandleGET.
const RouteUnknown = "unknown"

// Outcomes reported to the Observer besides the error kinds.
const (
	// OutcomeOK: a JSON-RPC result, or a page answered below 400.
	OutcomeOK = "ok"
	// OutcomeHTTPError: an answer at the HTTP level, not a JSON-RPC
	// error: a wrong method (405), an unknown path other than by POST
	// (404), a page answered 400 or above.
	OutcomeHTTPError = "http_error"
)

// outcomeInternal is the outcome of a request whose handler panicked.
const outcomeInternal = "internal"

// kindOutcomes is the outcome reported for a JSON-RPC error of each kind:
// the kind, snake_case. An unknown POST path is "not_found".
var kindOutcomes = [...]string{
	storage.Other:              "other",
	storage.Invalid:            "invalid",
	storage.NotFound:           "not_found",
	storage.Exists:             "exists",
	storage.Conflict:           "conflict",
	storage.InsufficientCredit: "insufficient_credit",
	storage.Forbidden:          "forbidden",
	storage.Unauthorized:       "unauthorized",
	storage.Unavailable:        "unavailable",
	storage.Internal:           outcomeInternal,
}

// Outcomes returns every outcome the router reports to an Observer: "ok",
// "http_error" and one per error kind ("invalid", "not_found", "exists",
// "conflict", "insufficient_credit", "forbidden", "unauthorized",
// "unavailable", "internal", "other").
func Outcomes() []string {
	out := []string{OutcomeOK, OutcomeHTTPError}
	for _, o := range kindOutcomes {
		out = append(out, o)
	}
	return out
}

// observation is what the router reports of one request.
type observation struct {
	start   time.Time
	route   string
	outcome string
}

// observe reports o to the Observer and leaves its outcome for the
// access log; deferred by serve, it runs after recoverPanic.
func (s *Server) observe(ctx *fasthttp.RequestCtx, o *observation) {
	if s.observer != nil {
		s.observer.ObserveRequest(o.route, o.outcome, time.Since(o.start))
	}
	s.noteAccessOutcome(ctx, o.outcome)
}

// callResult is how a call that reached its gorilla method ended, kept
// as a user value of the fasthttp request from noteOutcome (gorilla's
// after-function, registered only with an Observer) to the router: 0 for
// success, 1 + the error's kind for an error. A one-byte value: storing it
// does not allocate.
type callResult uint8

// callResultKey is the user-value key of the callResult.
type callResultKey struct{}

// noteOutcome is gorilla's after-function: it records how the method
// call ended on the fasthttp request the seam is serving.
func noteOutcome(info *gorilla.RequestInfo) {
	rc, ok := info.Request.Context().Value(fasthttpCtxKey{}).(*fasthttp.RequestCtx)
	if !ok {
		return // not through the seam
	}
	var res callResult
	if info.Error != nil {
		res = 1 + callResult(storage.KindOf(info.Error))
	}
	rc.SetUserValue(callResultKey{}, res)
}

// callOutcome is the outcome of a request the seam served: the kind of
// the error the method returned, mapped as the codec maps it; "invalid"
// when no method ran (the codec refused the envelope or the params).
func callOutcome(ctx *fasthttp.RequestCtx, rt *Served) string {
	res, ran := ctx.UserValue(callResultKey{}).(callResult)
	switch {
	case !ran:
		return kindOutcomes[storage.Invalid]
	case res == 0:
		return OutcomeOK
	}
	k := storage.Kind(res - 1)
	if int(k) >= len(kindOutcomes) {
		k = storage.Other
	}
	if k == storage.InsufficientCredit && !rt.creditErrors {
		k = storage.Internal // the codec answers it so (codecRequest.WriteError)
	}
	return kindOutcomes[k]
}

// defaultRouteBody bounds the body the router reads an id from when it
// answers an unknown route.
const defaultRouteBody = 64 << 10

// decodeIDSmall returns the raw id of body if body is not larger than
// limit, nil otherwise.
func decodeIDSmall(body []byte, limit int) []byte {
	if len(body) > limit {
		return nil
	}
	return decodeID(body)
}

// writeJSON answers b, a JSON-RPC envelope, with HTTP 200.
func writeJSON(ctx *fasthttp.RequestCtx, b []byte) {
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

// recoverPanic answers a well-formed error instead of letting a panic take
// the server down (fasthttp does not recover).
func (s *Server) recoverPanic(ctx *fasthttp.RequestCtx) {
	v := recover()
	if v == nil {
		return
	}
	s.log.Error("panic serving request", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	ctx.Response.Reset()
	if ctx.IsPost() {
		writeJSON(ctx, appendErrorEnvelope(nil, nil, codeServerError, nameUserError, msgInternal))
		return
	}
	ctx.Error("500 Internal Server Error", fasthttp.StatusInternalServerError)
}

// normalizePathBytes collapses runs of '/' and strips a trailing '/'
// (Odoo builds URLs by concatenation, so an endpoint ending in '/' gives
// "//iap/…": PROTOCOL §1.1). A clean path is returned as is, without
// allocating.
func normalizePathBytes(p []byte) []byte {
	if len(p) == 0 {
		return []byte{'/'}
	}
	if p[0] == '/' && !bytes.Contains(p, []byte("//")) && (len(p) == 1 || p[len(p)-1] != '/') {
		return p
	}
	out := make([]byte, 0, len(p)+1)
	if p[0] != '/' {
		out = append(out, '/')
	}
	for _, c := range p {
		if c == '/' && len(out) > 0 && out[len(out)-1] == '/' {
			continue
		}
		out = append(out, c)
	}
	for len(out) > 1 && out[len(out)-1] == '/' {
		out = out[:len(out)-1]
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// normalizePath is normalizePathBytes for strings.
func normalizePath(p string) string { return string(normalizePathBytes([]byte(p))) }
