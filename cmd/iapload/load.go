package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// op is one kind of client action in the mix.
type op string

const (
	opAuthCapture op = "authcap"    // authorize then capture: 2 requests
	opAuthCancel  op = "authcancel" // authorize then cancel: 2 requests
	opBalance     op = "balance"    // one balance read
	opEcho        op = "echo"       // baseline only
)

// mix is a weighted choice of ops.
type mix struct {
	ops     []op
	weights []int
	total   int
}

func parseMix(s string) (mix, error) {
	var m mix
	for _, part := range strings.Split(s, ",") {
		name, w, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			w = "1"
		}
		var n int
		if _, err := fmt.Sscanf(w, "%d", &n); err != nil || n < 0 {
			return m, fmt.Errorf("mix %q: weight must be a whole number", part)
		}
		switch op(name) {
		case opAuthCapture, opAuthCancel, opBalance:
		default:
			return m, fmt.Errorf("mix %q: unknown op (authcap, authcancel, balance)", name)
		}
		if n > 0 {
			m.ops = append(m.ops, op(name))
			m.weights = append(m.weights, n)
			m.total += n
		}
	}
	if m.total == 0 {
		return m, errors.New("mix: nothing to do")
	}
	return m, nil
}

func (m mix) pick(r *mrand.Rand) op {
	n := r.IntN(m.total)
	for i, w := range m.weights {
		if n < w {
			return m.ops[i]
		}
		n -= w
	}
	return m.ops[len(m.ops)-1]
}

// target is what the workers call.
type target struct {
	addr     string // host:port
	key      string // service key for authorize/capture/cancel
	tokens   []string
	service  string
	newConn  bool // one TCP connection per request, as Odoo's iap_jsonrpc does
	echoOnly bool // the baseline: every op is one echo request
}

// result of one run.
type result struct {
	name      string
	requests  int64
	ops       int64
	elapsed   time.Duration
	latencies []time.Duration // per HTTP request
	errors    map[string]int64
}

func (r *result) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func (r *result) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(r.latencies)))) - 1
	if i < 0 {
		i = 0
	}
	return r.latencies[i]
}

// client is one connection's worth of HTTP/1.1.
type client struct {
	t    *target
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	req  fasthttp.Request
	resp fasthttp.Response
	body []byte
}

func (c *client) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// call posts one JSON-RPC request and returns the result or the error kind.
func (c *client) call(path string, params string) (json.RawMessage, string) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.t.addr, 5*time.Second)
		if err != nil {
			return nil, "dial"
		}
		c.conn = conn
		c.br = bufio.NewReaderSize(conn, 8192)
		c.bw = bufio.NewWriterSize(conn, 8192)
	}
	var id [16]byte
	rand.Read(id[:])
	c.body = c.body[:0]
	c.body = append(c.body, `{"jsonrpc": "2.0", "method": "call", "params": `...)
	c.body = append(c.body, params...)
	c.body = append(c.body, `, "id": "`...)
	c.body = hex.AppendEncode(c.body, id[:])
	c.body = append(c.body, `"}`...)

	c.req.Reset()
	c.req.Header.SetMethod("POST")
	c.req.SetRequestURI(path)
	c.req.Header.SetHost(c.t.addr)
	c.req.Header.SetContentType("application/json")
	c.req.Header.Set("User-Agent", "python-requests/2.28.1")
	if c.t.newConn {
		c.req.Header.SetConnectionClose()
	}
	c.req.SetBodyRaw(c.body)
	c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if err := c.req.Write(c.bw); err != nil {
		c.close()
		return nil, "write"
	}
	if err := c.bw.Flush(); err != nil {
		c.close()
		return nil, "write"
	}
	c.resp.Reset()
	if err := c.resp.Read(c.br); err != nil {
		c.close()
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			return nil, "timeout"
		}
		return nil, "read"
	}
	if c.t.newConn || c.resp.ConnectionClose() {
		c.close()
	}
	if sc := c.resp.StatusCode(); sc != 200 {
		return nil, fmt.Sprintf("http_%d", sc)
	}
	var env struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Data struct {
				Name string `json:"name"`
			} `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(c.resp.Body(), &env); err != nil {
		return nil, "bad_json"
	}
	if env.Error != nil {
		name := env.Error.Data.Name
		if i := strings.LastIndexByte(name, '.'); i >= 0 {
			name = name[i+1:]
		}
		return nil, "rpc_" + name
	}
	return env.Result, ""
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// drive runs conns workers for d and gathers the figures.
func drive(ctx context.Context, name string, t *target, m mix, conns int, d time.Duration) *result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		requests atomic.Int64
		ops      atomic.Int64
		res      = &result{name: name, errors: map[string]int64{}}
	)
	start := time.Now()
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := mrand.New(mrand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			c := &client{t: t}
			defer c.close()
			lat := make([]time.Duration, 0, 4096)
			errs := map[string]int64{}
			timed := func(path, params string) (json.RawMessage, bool) {
				t0 := time.Now()
				res, kind := c.call(path, params)
				lat = append(lat, time.Since(t0))
				requests.Add(1)
				if kind != "" {
					errs[kind]++
					return nil, false
				}
				return res, true
			}
			for ctx.Err() == nil {
				if t.echoOnly {
					if _, ok := timed("/echo", `{"n": 1}`); ok {
						ops.Add(1)
					}
					continue
				}
				tok := t.tokens[r.IntN(len(t.tokens))]
				switch m.pick(r) {
				case opBalance:
					if _, ok := timed("/iap/1/balance", fmt.Sprintf(`{"dbuuid": "iapload", "account_token": %q, "service_name": %q}`, tok, t.service)); ok {
						ops.Add(1)
					}
				case opAuthCapture, opAuthCancel:
					o := m.pick(r)
					res, ok := timed("/iap/1/authorize", fmt.Sprintf(`{"account_token": %q, "credit": 1, "key": %q, "description": "iapload", "ttl": 1}`, tok, t.key))
					if !ok {
						continue
					}
					var txn string
					if json.Unmarshal(res, &txn) != nil || txn == "" {
						errs["bad_token"]++
						continue
					}
					if o == opAuthCancel {
						_, ok = timed("/iap/1/cancel", fmt.Sprintf(`{"token": %q, "key": %q}`, txn, t.key))
					} else {
						_, ok = timed("/iap/1/capture", fmt.Sprintf(`{"token": %q, "key": %q, "credit_to_capture": 1}`, txn, t.key))
					}
					if ok {
						ops.Add(1)
					}
				}
			}
			mu.Lock()
			res.latencies = append(res.latencies, lat...)
			for k, v := range errs {
				res.errors[k] += v
			}
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.requests = requests.Load()
	res.ops = ops.Load()
	sort.Slice(res.latencies, func(i, j int) bool { return res.latencies[i] < res.latencies[j] })
	return res
}

func (r *result) report(w *bytes.Buffer) {
	fmt.Fprintf(w, "%-9s %10.0f req/s %9.0f ops/s  p50 %-9s p99 %-9s p999 %-9s requests %d",
		r.name, r.rps(), float64(r.ops)/r.elapsed.Seconds(),
		r.percentile(0.50).Round(time.Microsecond), r.percentile(0.99).Round(time.Microsecond),
		r.percentile(0.999).Round(time.Microsecond), r.requests)
	if len(r.errors) > 0 {
		keys := make([]string, 0, len(r.errors))
		for k := range r.errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprint(w, "  errors")
		for _, k := range keys {
			fmt.Fprintf(w, " %s=%d", k, r.errors[k])
		}
	}
	fmt.Fprintln(w)
}
