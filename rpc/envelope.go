package rpc

import (
	"context"
	"time"

	"github.com/valyala/fasthttp"
)

// Helpers for the proxy (package proxy), which answers some requests in
// front of the router: refusals and upstream failures go through the same
// error table and envelope writer as every local answer, and paths are
// normalised the same way.

// NormalizePath returns p with runs of '/' collapsed and no trailing '/',
// as the router looks paths up (PROTOCOL §1.1: "//iap/…" is tolerated). A
// clean path is returned as is, without allocating.
func NormalizePath(p []byte) []byte { return normalizePathBytes(p) }

// AppendErrorEnvelope appends Odoo's error envelope for err (§1.3), mapped
// by the one error table (errors.go) exactly as a local handler's error
// is: a *storage.Error of kind Forbidden carries its message to the
// client, Unavailable shows the generic "temporarily unavailable" text and
// logs the cause. id is the raw JSON id to echo (nil: null); route names
// the request in logs.
func (s *Server) AppendErrorEnvelope(b, id []byte, route string, err error) []byte {
	return s.appendError(b, id, route, "", err)
}

// AppendResultEnvelope appends a success envelope around result, raw JSON
// (§1.2: no "error" key).
func AppendResultEnvelope(b, id, result []byte) []byte {
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	b = appendID(b, id)
	b = append(b, `,"result":`...)
	b = append(b, result...)
	return append(b, '}')
}

// HasPage reports whether a page or callback registered with HandleGET or
// HandlePage answers path (normalised first), so that the proxy never
// forwards what a local page serves.
func (s *Server) HasPage(path []byte) bool {
	_, ok := (*s.gets.Load())[string(normalizePathBytes(path))]
	return ok
}

// RunRequest calls fn with a request context as a local handler gets
// one: its deadline is budget after the request's start, and it is
// cancelled at that deadline, when the client is seen gone, or by
// CancelRequests at shutdown (after the grace period, as local requests).
// fn must not keep the context. For the proxy's upstream calls; not to be
// called from within a handler of the same ctx.
func (s *Server) RunRequest(ctx *fasthttp.RequestCtx, budget time.Duration, fn func(context.Context)) {
	s.seam.run(ctx, &Served{budget: budget}, fn)
}
