package rpc

import (
	"context"
	"net"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/providers"
)

// CallbackHandler hands the vendor's request to the provider as it came:
// the public URL (what the vendor signed), headers, body.
func TestCallbackHandler(t *testing.T) {
	var got *providers.CallbackRequest
	h := CallbackHandler("https://iap.example.test/", providers.Callback{Path: "/providers/tw/status", Handler: func(ctx context.Context, req *providers.CallbackRequest) providers.CallbackResponse {
		got = req
		return providers.CallbackResponse{Status: 403, ContentType: "text/plain", Body: []byte("no")}
	}})
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI("/providers/tw/status?a=1&b=2")
	req.Header.Set("X-Twilio-Signature", "sig")
	req.Header.SetContentType("application/x-www-form-urlencoded")
	req.SetBodyString("MessageSid=SM1&MessageStatus=delivered")
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1)}, nil)
	h(&ctx)
	if got == nil || got.URL != "https://iap.example.test/providers/tw/status?a=1&b=2" || got.Header.Get("X-Twilio-Signature") != "sig" ||
		string(got.Body) != "MessageSid=SM1&MessageStatus=delivered" || got.Method != "POST" || got.Remote != "192.0.2.1" {
		t.Fatalf("request %+v", got)
	}
	if ctx.Response.StatusCode() != 403 || string(ctx.Response.Body()) != "no" {
		t.Fatalf("response %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
}
