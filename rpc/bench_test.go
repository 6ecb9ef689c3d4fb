package rpc

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/iapd/iapd/rpc/rpctest"
	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

// inMemoryServer serves h on an in-memory listener and returns a client
// for it.
func inMemoryServer(tb testing.TB, h fasthttp.RequestHandler) *fasthttp.HostClient {
	tb.Helper()
	ln := fasthttputil.NewInmemoryListener()
	srv := NewHTTPServer(h, nil)
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.ShutdownWithContext(ctx)
	})
	return &fasthttp.HostClient{Addr: "iapd", Dial: func(string) (net.Conn, error) { return ln.Dial() }, MaxConns: 1024}
}

// postVia sends one JSON-RPC request through c and returns the body.
func postVia(tb testing.TB, c *fasthttp.HostClient, path string, body []byte) []byte {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://iapd" + path)
	req.Header.SetMethod("POST")
	req.Header.SetContentType("application/json")
	req.SetBody(body)
	if err := c.Do(req, resp); err != nil {
		tb.Fatal(err)
	}
	if resp.StatusCode() != 200 {
		tb.Fatalf("HTTP %d", resp.StatusCode())
	}
	return append([]byte(nil), resp.Body()...)
}

func rpcBody(id string, params any) []byte {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "params": params, "id": id})
	return b
}

// Many clients at once on one server: each answer carries its own request's
// id and result (the pooled seam leaks nothing between requests), and the
// ledger invariant holds at the end.
func TestConcurrentRequests(t *testing.T) {
	l := testLedger(t)
	setupServices(t, l)
	const workers, rounds = 16, 30
	for w := range workers {
		recharge(t, l, stubService, storage.AccountToken(fmt.Sprintf("%032x", w)), "1000")
		recharge(t, l, storage.SMS, storage.AccountToken(fmt.Sprintf("%032x", w)), strconv.Itoa(w+1))
	}
	c := inMemoryServer(t, newTestServer(t, l).Handler())
	var wg sync.WaitGroup
	var failures atomic.Int32
	for w := range workers {
		wg.Go(func() {
			tok := fmt.Sprintf("%032x", w)
			for i := range rounds {
				id := fmt.Sprintf("w%d-%d", w, i)
				var env struct {
					ID     string          `json:"id"`
					Result json.RawMessage `json:"result"`
					Error  json.RawMessage `json:"error"`
				}
				b := postVia(t, c, "/iap/1/balance", rpcBody(id, map[string]any{"account_token": tok, "service_name": "sms"}))
				if json.Unmarshal(b, &env) != nil || env.ID != id || string(env.Result) != strconv.Itoa(w+1) {
					t.Errorf("balance %s: %s", id, b)
					failures.Add(1)
				}
				b = postVia(t, c, "/iap/1/authorize", rpcBody(id+"a", map[string]any{"account_token": tok, "key": stubKey, "credit": 1}))
				if json.Unmarshal(b, &env) != nil || env.ID != id+"a" || env.Error != nil {
					t.Errorf("authorize %s: %s", id, b)
					failures.Add(1)
					continue
				}
				var txn string
				_ = json.Unmarshal(env.Result, &txn)
				path := "/iap/1/capture"
				if i%2 == 1 {
					path = "/iap/1/cancel"
				}
				b = postVia(t, c, path, rpcBody(id+"c", map[string]any{"token": txn, "key": stubKey}))
				if json.Unmarshal(b, &env) != nil || env.ID != id+"c" || string(env.Result) != "true" {
					t.Errorf("%s %s: %s", path, id, b)
					failures.Add(1)
				}
				if failures.Load() > 10 {
					return
				}
			}
		})
	}
	wg.Wait()
	for w := range workers {
		a, err := l.LookupAccount(t.Context(), stubService, storage.AccountToken(fmt.Sprintf("%032x", w)))
		if err != nil {
			t.Fatal(err)
		}
		if a.Captured.String() != strconv.Itoa(rounds/2) || a.Held != 0 || a.Recharged != a.Available+a.Held+a.Captured {
			t.Errorf("account %d: %+v", w, a)
		}
	}
}

func balanceFixture(tb testing.TB) []byte {
	return rpctest.Load(tb, "odoo18", func(r *rpctest.Request) bool { return r.Name == "001_iap_1_balance.json" })[0].Wire(tb)
}

// BenchmarkCodecDecodeBalance: the envelope and params of a real balance
// request (odoo18 001), decoded into the route's args: by decodeRequest
// (the fast decoder) and by encoding/json alone (decodeStd, what it
// replaced and what it falls back to).
func BenchmarkCodecDecodeBalance(b *testing.B) {
	body := balanceFixture(b)
	for _, d := range decoders {
		b.Run(d.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				var args BalanceArgs
				if _, err := d.decode(body, &args); err != nil || args.ServiceName != "sms" {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCodecDecodeAuthorize: a real authorize request (odoo18 028).
func BenchmarkCodecDecodeAuthorize(b *testing.B) {
	body := rpctest.Load(b, "odoo18", func(r *rpctest.Request) bool { return r.Name == "028_iap_1_authorize.json" })[0].Wire(b)
	for _, d := range decoders {
		b.Run(d.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				var args AuthorizeArgs
				if _, err := d.decode(body, &args); err != nil || !args.Credit.Set() {
					b.Fatal(err)
				}
			}
		})
	}
}

var decoders = []struct {
	name   string
	decode func([]byte, any) ([]byte, error)
}{{"fast", decodeRequest}, {"encoding-json", decodeStd}}

// BenchmarkCodecEncodeBalance: the success envelope of a balance answer.
func BenchmarkCodecEncodeBalance(b *testing.B) {
	id := []byte(`"83cb91b54c324907af58d7cbfe686179"`)
	reply := &BalanceReply{Balance: 42_421_234}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		out := append(buf[:0], `{"jsonrpc":"2.0","id":`...)
		out = appendID(out, id)
		out = append(out, `,"result":`...)
		out, _ = appendResult(out, reply)
		out = append(out, '}')
		buf = out
	}
}

// BenchmarkCodecEncodeError: an InsufficientCreditError envelope.
func BenchmarkCodecEncodeError(b *testing.B) {
	s := &Server{creditURL: testPublicURL + "/iap/1/credit", log: testLogger(b)}
	err := &storage.Error{Kind: storage.InsufficientCredit, Service: "sms", Credit: storage.Scale}
	id := []byte(`"83cb91b54c324907af58d7cbfe686179"`)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = s.appendError(buf[:0], id, "Transaction.Authorize", "127.0.0.1", err)
	}
}

var benchAnswer = []byte(`{"jsonrpc":"2.0","id":"83cb91b54c324907af58d7cbfe686179","result":4242.1234}`)

// BenchmarkSeam compares, over an in-memory listener with parallel
// clients, the same trivial JSON answer served by a native fasthttp
// handler, by a net/http handler through the seam, and by the same
// net/http handler through fasthttpadaptor (which this package does not
// use: it starts a goroutine per request). The difference native → seam
// is the seam's cost.
func BenchmarkSeam(b *testing.B) {
	body := balanceFixture(b)
	netHTTP := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = jsonContentType
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(benchAnswer)
	})
	seamed := newSeam(netHTTP)
	rt := &Served{Route: routes[0], maxBody: routes[0].MaxBody, budget: budgetOf(DefaultTimeout)}
	// As in production, every handler is behind Front (which reads the
	// streamed body).
	front := newTestServer(b, newMemLedger()).Front
	handlers := []struct {
		name string
		h    fasthttp.RequestHandler
	}{
		{"native", func(ctx *fasthttp.RequestCtx) {
			_ = ctx.PostBody()
			ctx.SetContentType("application/json")
			ctx.SetBody(benchAnswer)
		}},
		{"seam", func(ctx *fasthttp.RequestCtx) { seamed.serve(ctx, rt) }},
		{"fasthttpadaptor", fasthttpadaptor.NewFastHTTPHandler(netHTTP)},
	}
	for _, h := range handlers {
		b.Run(h.name, func(b *testing.B) {
			benchPost(b, inMemoryServer(b, front(h.h)), "/iap/1/balance", func(int) []byte { return body })
		})
	}
}

// benchPost posts body(i) in parallel through c, reporting requests per
// second.
func benchPost(b *testing.B, c *fasthttp.HostClient, path string, body func(i int) []byte) {
	b.ReportAllocs()
	var n atomic.Int64
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://iapd" + path)
		req.Header.SetMethod("POST")
		req.Header.SetContentType("application/json")
		for pb.Next() {
			req.SetBody(body(int(n.Add(1))))
			if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
				b.Fatalf("%v %d", err, resp.StatusCode())
			}
		}
	})
	b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "req/s")
}

// BenchmarkBalance: a real balance request through the whole stack
// (router, seam, gorilla, codec, handler) on the Badger ledger.
func BenchmarkBalance(b *testing.B) {
	l := testLedger(b)
	setupServices(b, l)
	recharge(b, l, storage.SMS, "e1c341df746e42af93b5587c490dc106", "4242")
	body := balanceFixture(b)
	s := newTestServer(b, l)
	benchPost(b, inMemoryServer(b, s.Front(s.Handler())), "/iap/1/balance", func(int) []byte { return body })
}

// BenchmarkAuthorizeCapture: one authorize and one capture through the
// whole stack (router, seam, gorilla, codec, handler, ledger), per
// operation: on the on-disk Badger ledger (each a durable write; the
// ledger syncs concurrent writes in groups) and on an in-memory one (the
// CPU cost alone), with 1 and 16×GOMAXPROCS parallel clients.
func BenchmarkAuthorizeCapture(b *testing.B) {
	for _, ledger := range []string{"disk", "memory", "stub"} {
		for _, par := range []int{1, 16} {
			b.Run(fmt.Sprintf("ledger=%s/clients=%dxGOMAXPROCS", ledger, par), func(b *testing.B) {
				var l storage.Ledger
				switch ledger {
				case "disk":
					l = testLedger(b)
				case "stub":
					// The test ledger kept in Go maps: the front's own
					// cost, with a ledger that costs next to nothing.
					l = newMemLedger()
				default:
					ml, err := badger.Open(badger.Options{InMemory: true, Logger: testLogger(b)})
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { _ = ml.Close() })
					l = ml
				}
				b.SetParallelism(par)
				benchAuthorizeCapture(b, l)
			})
		}
	}
}

func benchAuthorizeCapture(b *testing.B, l storage.Ledger) {
	setupServices(b, l)
	const accounts = 64
	for i := range accounts {
		recharge(b, l, stubService, storage.AccountToken(fmt.Sprintf("%032x", i)), "1000000000")
	}
	srv := newTestServer(b, l)
	c := inMemoryServer(b, srv.Front(srv.Handler()))
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var ops atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		tok := fmt.Sprintf("%032x", next.Add(1)%accounts)
		authorize := rpcBody("a", map[string]any{"account_token": tok, "key": stubKey, "credit": 1, "ttl": 1})
		for pb.Next() {
			out := postVia(b, c, "/iap/1/authorize", authorize)
			var env struct{ Result string }
			if json.Unmarshal(out, &env) != nil || len(env.Result) != 32 {
				b.Fatalf("authorize: %s", out)
			}
			out = postVia(b, c, "/iap/1/capture", rpcBody("c", map[string]any{"token": env.Result, "key": stubKey, "credit_to_capture": 1}))
			if string(out) != `{"jsonrpc":"2.0","id":"c","result":true}` {
				b.Fatalf("capture: %s", out)
			}
			ops.Add(1)
		}
	})
	b.ReportMetric(float64(ops.Load())/time.Since(start).Seconds(), "authorize+capture/s")
}

// BenchmarkSeamInProcess measures the seam's own cost without a network:
// the same handler pairs as BenchmarkSeam, called directly on one
// RequestCtx.
func BenchmarkSeamInProcess(b *testing.B) {
	body := balanceFixture(b)
	netHTTP := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = jsonContentType
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(benchAnswer)
	})
	seamed := newSeam(netHTTP)
	rt := &Served{Route: routes[0], maxBody: routes[0].MaxBody, budget: budgetOf(DefaultTimeout)}
	for _, h := range []struct {
		name string
		h    fasthttp.RequestHandler
	}{
		{"native", func(ctx *fasthttp.RequestCtx) {
			_ = ctx.PostBody()
			ctx.SetContentType("application/json")
			ctx.SetBody(benchAnswer)
		}},
		{"seam", func(ctx *fasthttp.RequestCtx) { seamed.serve(ctx, rt) }},
	} {
		b.Run(h.name, func(b *testing.B) {
			var req fasthttp.Request
			req.Header.SetMethod("POST")
			req.SetRequestURI("/iap/1/balance")
			req.SetBody(body)
			var ctx fasthttp.RequestCtx
			ctx.Init(&req, nil, nil)
			b.ReportAllocs()
			for b.Loop() {
				ctx.Response.Reset()
				h.h(&ctx)
			}
		})
	}
}
