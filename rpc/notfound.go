package rpc

import "github.com/valyala/fasthttp"

// AnswerNotFound answers ctx as the router answers a POST to an unknown
// path: HTTP 200 with the JSON-RPC NotFound error Odoo's own server sends
// (werkzeug NotFound, code 404), the request's id echoed. A page
// registered with HandlePage whose path Odoo never posts to (the portal's
// /iap/1/credit) uses it so that a JSON-RPC POST there gets what it got
// before the page existed.
func AnswerNotFound(ctx *fasthttp.RequestCtx) {
	writeJSON(ctx, appendNotFound(nil, decodeIDSmall(ctx.PostBody(), defaultRouteBody)))
}
