package main

import (
	"encoding/json"
	"net"

	"github.com/valyala/fasthttp"
)

// startBaseline serves a minimal native fasthttp JSON-RPC echo on loopback:
// it decodes the envelope's id and answers {"jsonrpc":"2.0","id":…,"result":true}.
// It is the yardstick iapd is compared with in the same run.
func startBaseline() (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			var env struct {
				ID json.RawMessage `json:"id"`
			}
			if err := json.Unmarshal(ctx.PostBody(), &env); err != nil || len(env.ID) == 0 {
				env.ID = json.RawMessage("null")
			}
			ctx.SetContentType("application/json")
			b := append(ctx.Response.Body()[:0], `{"jsonrpc":"2.0","id":`...)
			b = append(b, env.ID...)
			b = append(b, `,"result":true}`...)
			ctx.Response.SetBodyRaw(b)
		},
		NoDefaultServerHeader: true,
	}
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Shutdown() }, nil
}
