package rpc

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/rpc/limit"
)

// The access log: with Config.AccessLog set, Front writes one line per
// public request once it is answered, whoever answered it (a route, a
// page, the proxy, a refusal of the body). The line names the account by
// TokenRef, never by its token; the body is not logged.

// accessOutcomeKey is the user-value key under which the router leaves
// the outcome it reported (a string) for the access log.
type accessOutcomeKey struct{}

// accessParams are the params the access log reads from a request body.
type accessParams struct {
	AccountToken string `json:"account_token"`
	ServiceName  string `json:"service_name"`
	DBVersion    string `json:"db_version"` // sent by Odoo 19.0 on some routes
}

// accessLine writes ctx's access line if the access log is on; body is
// the request body as read (nil when it was refused or not read whole:
// ctx.PostBody() would read an unread stream without limit).
func (s *Server) accessLine(ctx *fasthttp.RequestCtx, body []byte) {
	if s.access != nil {
		s.logAccess(ctx, body, s.routes[string(normalizePathBytes(ctx.Path()))])
	}
}

// logAccess writes the access line of the request ctx answered; body is
// its body (see accessLine), rt its route (nil for a path outside the
// routes table).
func (s *Server) logAccess(ctx *fasthttp.RequestCtx, body []byte, rt *Served) {
	path := normalizePathBytes(ctx.Path())
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs,
		slog.String("method", string(ctx.Method())),
		slog.String("path", truncate(string(path), 200)),
	)
	service := ""
	if rt != nil {
		service = string(rt.Service)
	}
	var p accessParams
	if len(body) > 0 {
		if _, ok := decodeFast(body, &p); !ok {
			p = accessParams{}
		}
	}
	if service == "" {
		service = p.ServiceName
	}
	if service != "" {
		attrs = append(attrs, slog.String("service", truncate(printable(service), 64)))
	}
	if p.AccountToken != "" {
		attrs = append(attrs, slog.String("account", tokenID(p.AccountToken)))
	}
	var answer []byte
	answerBytes := ctx.Response.Header.ContentLength()
	if !ctx.Response.IsBodyStream() { // Body would read a stream whole
		answer = ctx.Response.Body()
		answerBytes = len(answer)
	}
	outcome, _ := ctx.UserValue(accessOutcomeKey{}).(string)
	errName := answerError(answer)
	if outcome == "" { // the router did not answer (the proxy did)
		switch {
		case ctx.Response.StatusCode() >= 300:
			outcome = OutcomeHTTPError
		case errName != "":
			outcome = "rpc_error"
		default:
			outcome = OutcomeOK
		}
	}
	attrs = append(attrs, slog.String("outcome", outcome))
	if errName != "" {
		attrs = append(attrs, slog.String("error", errName))
	}
	attrs = append(attrs,
		slog.Int("status", ctx.Response.StatusCode()),
		slog.Duration("duration", time.Since(ctx.Time()).Round(time.Microsecond)),
		slog.Int("request_bytes", requestBytes(ctx, body)),
		slog.Int("response_bytes", max(answerBytes, 0)),
		slog.String("client", limit.ClientIP(ctx, s.clientHeader).String()),
	)
	if p.DBVersion != "" {
		attrs = append(attrs, slog.String("odoo_version", truncate(printable(p.DBVersion), 40)))
	}
	s.access.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
}

// requestBytes is the request body's size: what was read, else the
// declared Content-Length (0 when none).
func requestBytes(ctx *fasthttp.RequestCtx, body []byte) int {
	if body != nil {
		return len(body)
	}
	return max(ctx.Request.Header.ContentLength(), 0)
}

// answerError returns the last dotted segment of error.data.name of a
// JSON-RPC error envelope ("InsufficientCreditError"), "" for anything
// else (a result, a page, plain text).
func answerError(b []byte) string {
	if !bytes.Contains(b, []byte(`"error"`)) {
		return ""
	}
	sc := scanner{b: b}
	sc.space()
	name, ok := sc.path("error", "data", "name")
	if !ok {
		return ""
	}
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	return truncate(printable(name), 80)
}

// path reads the object at the scanner and returns the string at the
// member path keys (each an object but the last), ok false when there is
// none or the JSON is not valid up to it.
func (s *scanner) path(keys ...string) (string, bool) {
	if !s.open('{') {
		return "", false
	}
	for first := true; ; first = false {
		more, ok := s.more('}', first)
		if !ok || !more {
			return "", false
		}
		key, ok := s.member()
		if !ok {
			return "", false
		}
		if string(key) != keys[0] {
			if !s.skip() {
				return "", false
			}
			continue
		}
		if len(keys) == 1 {
			if s.peek() != '"' {
				return "", false
			}
			return s.str()
		}
		return s.path(keys[1:]...)
	}
}

// printable replaces the control characters of a client's string, for
// logs.
func printable(v string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, v)
}

// noteAccessOutcome leaves the router's outcome for the access log.
func (s *Server) noteAccessOutcome(ctx *fasthttp.RequestCtx, outcome string) {
	if s.access != nil {
		ctx.SetUserValue(accessOutcomeKey{}, outcome)
	}
}
