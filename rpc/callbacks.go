package rpc

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/providers"
)

// callbackTimeout bounds a provider callback handler (a vendor retries a
// webhook that is not answered in time).
const callbackTimeout = 10 * time.Second

// CallbackHandler serves one provider callback (an SMS delivery report,
// a letter status webhook) on the public listener, for HandlePage: the
// request is
// copied into a providers.CallbackRequest (URL as the vendor called it:
// publicURL + path + query) and the handler's answer written back. The
// handler verifies the vendor's signature itself.
func CallbackHandler(publicURL string, cb providers.Callback) fasthttp.RequestHandler {
	base := strings.TrimRight(publicURL, "/") + cb.Path
	return func(ctx *fasthttp.RequestCtx) {
		u := base
		if q := ctx.URI().QueryString(); len(q) > 0 {
			u += "?" + string(q)
		}
		req := &providers.CallbackRequest{
			Method: string(ctx.Method()),
			URL:    u,
			Header: make(http.Header),
			Body:   append([]byte(nil), ctx.PostBody()...),
			Remote: ctx.RemoteIP().String(),
		}
		for k, v := range ctx.Request.Header.All() {
			req.Header.Add(string(k), string(v))
		}
		c, cancel := context.WithTimeout(context.Background(), callbackTimeout)
		defer cancel()
		resp := cb.Handler(c, req)
		if resp.Status == 0 {
			resp.Status = fasthttp.StatusOK
		}
		ctx.SetStatusCode(resp.Status)
		if resp.ContentType != "" {
			ctx.SetContentType(resp.ContentType)
		}
		ctx.SetBody(resp.Body)
	}
}
