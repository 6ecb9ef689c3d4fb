//go:build !linux

package rpc

import "github.com/valyala/fasthttp"

// Without Linux's POLLRDHUP the client of a request in flight is not
// watched: a request ends at its deadline or at shutdown.

type probeWatch struct{}

func canWatch(*fasthttp.RequestCtx) bool           { return false }
func (*probeWatch) wait(*fasthttp.RequestCtx) bool { return false }
func stopWatch(*fasthttp.RequestCtx)               {}

const watchSupported = false
