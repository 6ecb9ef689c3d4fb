package rpc

import (
	"errors"
	"io"
	"net/http"

	gorilla "github.com/gorilla/rpc/v2"

	"github.com/iapd/iapd/storage"
)

// codec is the gorilla/rpc codec of Odoo's JSON-RPC dialect (PROTOCOL
// §1): the operation comes from the URL path, never from the JSON
// "method" (always "call"); id is echoed as raw JSON whatever its type;
// params is an object decoded into the route's args struct; a success is
// {"jsonrpc":"2.0","id":…,"result":…} with no "error" key (§1.2); a
// failure is Odoo's error envelope (§1.3) with HTTP status 200.
type codec struct{ s *Server }

// errUnknownRoute is returned by Method for a path outside the routes
// table (only possible when the codec is used without the router).
var errUnknownRoute = errors.New("rpc: unknown route")

// NewRequest implements gorilla.Codec.
func (c *codec) NewRequest(r *http.Request) gorilla.CodecRequest {
	if b, ok := r.Body.(*body); ok { // through the seam: no copy, no allocation
		cr := &b.codec
		*cr = codecRequest{s: c.s, r: r, route: b.route, body: b.data, buf: cr.buf[:0]}
		return cr
	}
	// Plain net/http (tests, or a future caller): route on the path, read
	// the body within the route's limit.
	cr := &codecRequest{s: c.s, r: r, route: c.s.routes[normalizePath(r.URL.Path)]}
	limit := int64(c.s.maxBody)
	if cr.route != nil {
		limit = int64(cr.route.maxBody)
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	switch {
	case err != nil:
		cr.err = storage.Wrap(opDecode, storage.Invalid, err)
	case int64(len(data)) > limit:
		cr.err = errBodyTooLarge(limit)
	}
	cr.body = data
	return cr
}

// codecRequest is the codec's state for one request.
type codecRequest struct {
	s       *Server
	r       *http.Request
	route   *Served
	body    []byte
	id      []byte // raw JSON id; nil means null
	decoded bool   // ReadRequest ran (id is known)
	err     error  // reading the body failed
	buf     []byte // output buffer, reused with the exchange
}

// Method implements gorilla.CodecRequest: the gorilla method of the
// route, from the URL path.
func (c *codecRequest) Method() (string, error) {
	if c.route == nil {
		return "", errUnknownRoute
	}
	if c.err != nil {
		return "", c.err
	}
	return c.route.Method, nil
}

// ReadRequest implements gorilla.CodecRequest: decodes the envelope and
// the params into args.
func (c *codecRequest) ReadRequest(args any) error {
	maxItems := DefaultMaxItems
	if c.route != nil {
		maxItems = c.route.MaxItems
	}
	id, err := decodeRequestLimited(c.body, args, maxItems)
	c.id, c.decoded = id, true
	if err == errTooManyItems {
		c.s.refused("too_many_items")
		return errTooMany(c.route)
	}
	return err
}

// WriteResponse implements gorilla.CodecRequest.
func (c *codecRequest) WriteResponse(w http.ResponseWriter, reply any) {
	b := append(c.buf[:0], `{"jsonrpc":"2.0","id":`...)
	b = appendID(b, c.id)
	b = append(b, `,"result":`...)
	b, err := appendResult(b, reply)
	if err != nil {
		c.WriteError(w, http.StatusInternalServerError, storage.Wrap("encode", storage.Internal, err))
		return
	}
	b = append(b, '}')
	c.write(w, b)
}

// WriteError implements gorilla.CodecRequest. The status gorilla suggests
// is ignored: Odoo reads errors only from HTTP 200 answers (§1.2).
func (c *codecRequest) WriteError(w http.ResponseWriter, _ int, err error) {
	if !c.decoded {
		c.id = decodeID(c.body)
	}
	method := ""
	if c.route != nil {
		method = c.route.Method
		if !c.route.creditErrors && storage.Is(err, storage.InsufficientCredit) {
			// Account routes never answer InsufficientCreditError: 17.0 and
			// 18.0 let it escape and break Settings and the account form
			// (§4.1). A ledger should never return it here; if it does, it
			// is our bug.
			err = storage.Wrap(method, storage.Internal, err)
		}
	}
	var b []byte
	if errors.Is(err, errUnknownRoute) {
		b = appendNotFound(c.buf[:0], c.id)
	} else {
		client := remoteAddr(c.r.Context())
		if client == "" {
			client = c.r.RemoteAddr
		}
		b = c.s.appendError(c.buf[:0], c.id, method, client, err)
	}
	c.write(w, b)
}

var jsonContentType = []string{"application/json"}

func (c *codecRequest) write(w http.ResponseWriter, b []byte) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b) // a write error is the client's connection: nothing to answer
	if cap(b) <= maxKeptBuffer {
		c.buf = b[:0]
	} else {
		c.buf = nil
	}
	c.r = nil
}

// maxKeptBuffer bounds the output buffer an exchange keeps between
// requests.
const maxKeptBuffer = 64 << 10

func errBodyTooLarge(limit int64) error {
	return storage.Ef(opDecode, storage.Invalid, "The request body is larger than the %d bytes this route accepts.", limit)
}

// errTooLarge is the answer to a body over the route's limit: its
// TooLarge message, or a generic one.
func errTooLarge(rt *Served) error {
	if rt.TooLarge != "" {
		return storage.E(opDecode, storage.Invalid, rt.TooLarge)
	}
	return errBodyTooLarge(int64(rt.maxBody))
}

// errTooMany is the answer to a list over the route's MaxItems: its
// TooMany message, or a generic one.
func errTooMany(rt *Served) error {
	if rt == nil || rt.TooMany == "" {
		n := DefaultMaxItems
		if rt != nil {
			n = rt.MaxItems
		}
		return storage.Ef(opDecode, storage.Invalid, "A list in the request has more than %d elements.", n)
	}
	return storage.E(opDecode, storage.Invalid, rt.TooMany)
}

var (
	_ gorilla.Codec        = (*codec)(nil)
	_ gorilla.CodecRequest = (*codecRequest)(nil)
)
