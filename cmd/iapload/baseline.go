package main

import (
	"encoding/json"
	"net"

	"github.com/valyala/fasthttp"
)

// durableRecord is what the durable echo makes durable per request: about
// what iapd's journal writes per authorize or capture (365 bytes measured
// under iapload -mix authcap=1).
const durableRecord = 384

// startBaseline serves a minimal native fasthttp JSON-RPC echo on loopback:
// it decodes the envelope's id and answers {"jsonrpc":"2.0","id":…,"result":true}.
// It is the yardstick iapd is compared with in the same run. With gs, it
// is the durable echo: each answer waits until a record of durableRecord
// bytes is durable in gs (an error answers HTTP 500).
func startBaseline(gs *groupSync) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	record := make([]byte, durableRecord)
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if gs != nil {
				if err := gs.commit(record); err != nil {
					ctx.Error(err.Error(), fasthttp.StatusInternalServerError)
					return
				}
			}
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
