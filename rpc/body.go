package rpc

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/storage"
)

// Request bodies. The public fasthttp server streams them
// (NewHTTPServer sets StreamRequestBody): fasthttp itself then holds at
// most 8 KiB of a body before the handler runs, instead of allocating
// the declared Content-Length up front. Front reads the rest, within the
// limit of the request's path known from the headers, into a buffer that
// grows with what has arrived and is pooled.

// Body limits of the paths outside the routes table.
const (
	// pageMaxBody bounds a POST to a page (portal forms, provider
	// callbacks registered with HandlePage).
	pageMaxBody = 1 << 20
	// maxDrain is the most of an oversized body read and discarded so
	// that the client, which sends its whole body before it reads the
	// answer (Python's requests does), gets the answer instead of a
	// connection reset. A larger body is answered at once and the
	// connection closed.
	maxDrain = 64 << 20
	// keptBody bounds the body buffers kept in the pool.
	keptBody = 256 << 10
)

// Front returns next behind the body reader: a request body is read
// before next runs, and next finds it with ctx.PostBody(). The limit is
// the route's MaxBody for a path of the routes table, 1 MiB for a page,
// Config.MaxBodyBytes (default 32 MiB) for any other path (the proxy may
// forward it). A Content-Length over the limit is refused from the
// headers, before any of the body is kept; a body without Content-Length
// (chunked) when it passes the limit. Either is answered at once
// (refuseBody) and counted as the refusal "body_too_large"; the rest of
// the body is then read and discarded (up to 64 MiB, within 30 s) so that
// the client, still sending, reads the answer instead of a reset, and the
// connection closed. A body that does not arrive whole closes the
// connection without calling next (408 after the read timeout, 400 when
// the client went away). Memory held for a body is at most about twice
// what has arrived.
//
// With Config.AccessLog, Front writes each request's access line once it
// is answered (access.go).
//
// Every handler of the public listener (the proxy included) must be
// behind Front when the server streams bodies: ctx.PostBody() on an
// unread stream would read it whole, without limit.
func (s *Server) Front(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if !ctx.Request.IsBodyStream() {
			// Read whole by fasthttp (a server without streaming, within
			// its MaxRequestBodySize): only the limit to check.
			if limit, rt := s.bodyLimit(ctx); len(ctx.PostBody()) > limit {
				s.refuseBody(ctx, rt)
				s.accessLine(ctx, nil)
				return
			}
			next(ctx)
			s.accessLine(ctx, ctx.PostBody())
			return
		}
		limit, rt := s.bodyLimit(ctx)
		cl := ctx.Request.Header.ContentLength()
		stream := ctx.RequestBodyStream()
		if cl > limit {
			s.refuseBody(ctx, rt)
			s.accessLine(ctx, nil) // the body: not read, or not whole
			drainAfter(ctx, stream, cl, 0)
			return
		}
		bb := s.bodies.Get().(*bodyBuffer)
		b, err := readBody(stream, bb.b[:0], cl, limit)
		switch {
		case errors.Is(err, errOverLimit):
			s.refuseBody(ctx, rt)
			s.accessLine(ctx, nil) // the body: not read, or not whole
			drainAfter(ctx, stream, -1, len(b))
		case err != nil || (cl >= 0 && len(b) != cl):
			// The client went away, or was too slow (the server's
			// ReadTimeout counts from the request's start).
			ctx.SetConnectionClose()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				ctx.Error("408 Request Timeout", fasthttp.StatusRequestTimeout)
			} else {
				ctx.Error("400 Bad Request", fasthttp.StatusBadRequest)
			}
			s.accessLine(ctx, nil) // the body: not read, or not whole
		default:
			ctx.Request.SetBodyRaw(b)
			next(ctx)
			s.accessLine(ctx, b)        // before the body goes
			ctx.Request.SetBodyRaw(nil) // the buffer goes back to the pool
		}
		if cap(b) <= keptBody {
			bb.b = b[:0]
			s.bodies.Put(bb)
		}
	}
}

// bodyBuffer is a pooled body buffer (a pointer, so that Put does not
// allocate).
type bodyBuffer struct{ b []byte }

func newBodyPool() *sync.Pool {
	return &sync.Pool{New: func() any { return &bodyBuffer{} }}
}

// bodyLimit returns the body limit of ctx's path, and its route (nil for
// a path outside the routes table).
func (s *Server) bodyLimit(ctx *fasthttp.RequestCtx) (int, *Served) {
	if rt := s.Lookup(ctx); rt != nil {
		return rt.maxBody, rt
	}
	if _, ok := (*s.gets.Load())[string(normalizePathBytes(ctx.Path()))]; ok {
		return min(pageMaxBody, s.maxBody), nil
	}
	return s.maxBody, nil
}

// errOverLimit: the body went past its limit while being read.
var errOverLimit = errors.New("rpc: request body over its limit")

// readBody appends the body read from r to dst and returns it: cl is the
// declared length (-1 unknown), limit the most accepted. The buffer grows
// as data arrives (doubling, never past cl or limit), so its size follows what the
// client sent, not what it declared. errOverLimit when the body is longer
// than limit; r's error otherwise (io.EOF is the end).
func readBody(r io.Reader, dst []byte, cl, limit int) ([]byte, error) {
	end := limit // never read more than one byte past the limit…
	if cl >= 0 && cl < end {
		end = cl // …nor past the declared length
	}
	for {
		if len(dst) == cap(dst) {
			want := min(max(4096, len(dst)), end-len(dst)+1) // +1: room for the EOF read
			dst = slices.Grow(dst, max(want, 1))
		}
		room := min(cap(dst), max(end+1, len(dst)+1)) // Grow may give more than asked
		n, err := r.Read(dst[len(dst):room])
		dst = dst[:len(dst)+n]
		if len(dst) > limit {
			return dst, errOverLimit
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

// drainAfter has the rest of an oversized body read and discarded after
// the answer is sent, up to maxDrain bytes in all (read: what was read
// already; cl the declared length, -1 unknown) and within drainTimeout,
// so that a client that sends its whole body before reading gets to read
// the answer; the connection is closed then. Beyond maxDrain, the
// connection is closed after the answer.
func drainAfter(ctx *fasthttp.RequestCtx, r io.Reader, cl, read int) {
	if cl > maxDrain || r == nil {
		ctx.SetConnectionClose()
		return
	}
	n := int64(maxDrain - read)
	if cl >= 0 {
		n = int64(cl - read)
	}
	// fasthttp hands over the connection (on its own goroutine, with its
	// buffered reader, which r reads from) and closes it when this
	// returns. The answer, with "Connection: close", is written here: had
	// fasthttp seen that header, it would close the connection at once,
	// and the client, still sending, would get a reset.
	ctx.Response.Header.SetConnectionClose()
	var answer bytes.Buffer
	_, _ = ctx.Response.WriteTo(&answer)
	ctx.Response.Header.ResetConnectionClose()
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		if c.SetDeadline(time.Now().Add(drainTimeout)) != nil {
			return
		}
		if _, err := c.Write(answer.Bytes()); err != nil {
			return
		}
		_, _ = io.CopyN(io.Discard, r, n) // io.Discard reads into a pooled buffer
	})
}

// drainTimeout bounds the discarding of an oversized body (as the
// server's ReadTimeout bounds reading one).
const drainTimeout = 30 * time.Second

// refuseBody answers a body over its limit: a JSON-RPC error to a POST
// to a route or an unknown path (HTTP 200, what every Odoo reads; the
// route's TooLarge message), 413 to a page or another method.
func (s *Server) refuseBody(ctx *fasthttp.RequestCtx, rt *Served) {
	s.refused("body_too_large")
	route, isPage := RouteUnknown, false
	if rt != nil {
		route = rt.Path
	} else if page, ok := (*s.gets.Load())[string(normalizePathBytes(ctx.Path()))]; ok {
		route, isPage = page.path, true
	}
	if s.observer != nil {
		s.observer.ObserveRequest(route, kindOutcomes[storage.Invalid], time.Since(ctx.Time()))
	}
	s.noteAccessOutcome(ctx, kindOutcomes[storage.Invalid])
	if !ctx.IsPost() || (isPage && rt == nil) {
		ctx.Error("413 Request Entity Too Large", fasthttp.StatusRequestEntityTooLarge)
		return
	}
	err := errBodyTooLarge(int64(s.maxBody))
	method := ""
	if rt != nil {
		err, method = errTooLarge(rt), rt.Method
	}
	writeJSON(ctx, s.appendError(nil, nil, method, ctx.RemoteIP().String(), err))
}

// refused counts a protective refusal and logs it (at most a line per
// reason per minute); a nil reporter does nothing.
func (s *Server) refused(reason string) {
	s.refusals.Refuse(reason, "public request refused: "+reason)
}
