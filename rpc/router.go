package rpc

import (
	"bytes"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"

	"github.com/valyala/fasthttp"
)

// routeEntry is a Route as the server uses it.
type routeEntry struct {
	Route
	maxBody      int  // MaxBody capped by Config.MaxBodyBytes
	creditErrors bool // the route may answer InsufficientCreditError
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
//   - GET/HEAD to a page registered with HandleGET → that handler;
//   - another method on a known path → 405 with Allow;
//   - anything else → 404.
func (s *Server) serve(ctx *fasthttp.RequestCtx) {
	defer s.recoverPanic(ctx)
	path := normalizePathBytes(ctx.Path())
	rt := s.routes[string(path)]
	post := ctx.IsPost()
	if rt != nil && post {
		if len(ctx.PostBody()) > rt.maxBody {
			b := s.appendError(nil, decodeIDSmall(ctx.PostBody(), s.maxBody), rt.Method, ctx.RemoteIP().String(), errBodyTooLarge(int64(rt.maxBody)))
			writeJSON(ctx, b)
			return
		}
		s.seam.serve(ctx, rt)
		return
	}
	gets := *s.gets.Load()
	page := gets[string(path)]
	if page != nil && (ctx.IsGet() || ctx.IsHead()) {
		page(ctx)
		return
	}
	if rt == nil && page == nil {
		if post {
			s.log.Debug("POST to an unknown route", "path", truncate(string(path), 200), "client", ctx.RemoteIP().String())
			writeJSON(ctx, appendNotFound(nil, decodeIDSmall(ctx.PostBody(), defaultRouteBody)))
			return
		}
		ctx.Error("404 Not Found", fasthttp.StatusNotFound)
		return
	}
	var allow []string
	if rt != nil {
		allow = append(allow, http.MethodPost)
	}
	if page != nil {
		allow = append(allow, http.MethodGet, http.MethodHead)
	}
	ctx.Error("405 Method Not Allowed", fasthttp.StatusMethodNotAllowed)
	ctx.Response.Header.Set("Allow", strings.Join(allow, ", "))
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
