package rpc

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// RunRequest gives fn a context that ends at the budget (DeadlineExceeded)
// and carries the request's values; kept past the call (as net/http's
// transport keeps a request's context in a background dial), it answers
// no values instead of crashing.
func TestRunRequest(t *testing.T) {
	s := newTestServer(t, newMemLedger())
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI("/iap/sms/3/send")
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
	ctx.SetUserValue("k", "v")
	var kept context.Context
	var during any
	var err error
	s.RunRequest(&ctx, 50*time.Millisecond, func(c context.Context) {
		kept, during = c, c.Value("k")
		if _, ok := c.Deadline(); !ok {
			t.Error("no deadline")
		}
		select {
		case <-c.Done():
			err = c.Err()
		case <-time.After(60 * time.Second):
		}
	})
	if during != "v" || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("during the call: value %v, err %v", during, err)
	}
	if v := kept.Value("k"); v != nil {
		t.Errorf("after the call: value %v, want none", v)
	}
	if remoteAddr(kept) != "" {
		t.Error("after the call: a remote address")
	}
}
