package main

import (
	"bufio"
	"bytes"
	"context"
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
	opSMS         op = "sms"        // one SMS sent (/api/sms/3/send, service sms): 1 request
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
		case opAuthCapture, opAuthCancel, opBalance, opSMS:
		default:
			return m, fmt.Errorf("mix %q: unknown op (authcap, authcancel, balance, sms)", name)
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

// has reports whether o is in the mix.
func (m mix) has(o op) bool {
	for _, x := range m.ops {
		if x == o {
			return true
		}
	}
	return false
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

	// quoted holds key, service and tokens as JSON strings (quote once).
	quoted struct {
		key, service string
		tokens       []string
	}
}

// quote encodes key, service and tokens as JSON strings, once.
func (t *target) quote() {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	t.quoted.key, t.quoted.service = q(t.key), q(t.service)
	t.quoted.tokens = t.quoted.tokens[:0]
	for _, tok := range t.tokens {
		t.quoted.tokens = append(t.quoted.tokens, q(tok))
	}
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

	idBase, seq uint64 // request ids: idBase then a counter, 32 hex digits
	params      []byte // the params of the next call
	uuid        []byte // the SMS uuid of the next send
}

func (c *client) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// call posts one JSON-RPC request and returns the result or the error kind.
// params is the envelope's params object, already encoded. The client is
// kept light: it shares the machine's cores with the server it measures,
// so every microsecond it spends is one the server does not get.
func (c *client) call(path string, params []byte) (json.RawMessage, string) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.t.addr, 5*time.Second)
		if err != nil {
			return nil, "dial"
		}
		c.conn = conn
		c.br = bufio.NewReaderSize(conn, 8192)
		c.bw = bufio.NewWriterSize(conn, 8192)
	}
	// The id: 32 hex digits, as Odoo's uuid4().hex; unique per client.
	c.seq++
	c.body = append(c.body[:0], `{"jsonrpc": "2.0", "method": "call", "params": `...)
	c.body = append(c.body, params...)
	c.body = append(c.body, `, "id": "`...)
	c.body = appendHex64(c.body, c.idBase)
	c.body = appendHex64(c.body, c.seq)
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
	return readEnvelope(c.resp.Body())
}

// readEnvelope returns a JSON-RPC answer's result, or its error kind
// ("rpc_" and the last part of error.data.name). The common answer, a
// result and no error key, is read without encoding/json's reflection;
// anything else goes through encoding/json.
func readEnvelope(body []byte) (json.RawMessage, string) {
	if !bytes.Contains(body, []byte(`"error"`)) {
		if i := bytes.Index(body, []byte(`"result":`)); i >= 0 {
			r := bytes.TrimSpace(body[i+len(`"result":`):])
			if n := len(r); n > 0 && r[n-1] == '}' {
				r = bytes.TrimSpace(r[:n-1])
				// A result that is the envelope's last member, and a
				// complete JSON value (a string without escapes, a
				// number, true/false/null, or an object/array that
				// json.Valid accepts).
				if len(r) >= 2 && r[0] == '"' && r[len(r)-1] == '"' && !bytes.ContainsAny(r[1:len(r)-1], "\\\"") {
					return json.RawMessage(r), ""
				}
				if json.Valid(r) {
					return json.RawMessage(r), ""
				}
			}
		}
	}
	var env struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Data struct {
				Name string `json:"name"`
			} `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
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

// smsState returns the state of the one SMS of a send's result ("" when
// the result is not the array PROTOCOL §6.2 describes).
func smsState(res json.RawMessage) string {
	var out []struct {
		State string `json:"state"`
	}
	if json.Unmarshal(res, &out) != nil || len(out) != 1 {
		return "bad_result"
	}
	return out[0].State
}

// appendHex64 appends v as 16 lowercase hex digits.
func appendHex64(b []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, digits[v>>uint(shift)&0xf])
	}
	return b
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// drive runs conns workers for d and gathers the figures.
func drive(ctx context.Context, name string, t *target, m mix, conns int, d time.Duration) *result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	t.quote()
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
			c := &client{t: t, idBase: r.Uint64()}
			defer c.close()
			lat := make([]time.Duration, 0, 4096)
			errs := map[string]int64{}
			timed := func(path string, params []byte) (json.RawMessage, bool) {
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
			// Params are built by appending JSON pieces (tokens and key
			// were quoted once, at setup): no fmt, no reflection.
			p := func(parts ...string) []byte {
				c.params = c.params[:0]
				for _, s := range parts {
					c.params = append(c.params, s...)
				}
				return c.params
			}
			for ctx.Err() == nil {
				if t.echoOnly {
					if _, ok := timed("/echo", p(`{"n": 1}`)); ok {
						ops.Add(1)
					}
					continue
				}
				tok := t.quoted.tokens[r.IntN(len(t.tokens))]
				switch o := m.pick(r); o {
				case opBalance:
					if _, ok := timed("/iap/1/balance", p(`{"dbuuid": "iapload", "account_token": `, tok, `, "service_name": `, t.quoted.service, `}`)); ok {
						ops.Add(1)
					}
				case opSMS:
					// One SMS to one number, as Odoo 17–19 send them (PROTOCOL
					// §6.2), with a fresh uuid; no delivery reports
					// (webhook_url false). A number iapd refused is an error
					// of its state.
					c.uuid = appendHex64(appendHex64(c.uuid[:0], c.idBase), c.seq+1)
					res, ok := timed("/api/sms/3/send", p(`{"account_token": `, tok, `, "dbuuid": "iapload", "webhook_url": false, "messages": [{"content": "iapload", "numbers": [{"uuid": "`, string(c.uuid), `", "number": "+32470000000"}]}]}`))
					if !ok {
						continue
					}
					if state := smsState(res); state != "success" {
						errs["sms_"+state]++
						continue
					}
					ops.Add(1)
				case opAuthCapture, opAuthCancel:
					res, ok := timed("/iap/1/authorize", p(`{"account_token": `, tok, `, "credit": 1, "key": `, t.quoted.key, `, "description": "iapload", "ttl": 1}`))
					if !ok {
						continue
					}
					// The result is the transaction token, a JSON string:
					// passed back as it came.
					if len(res) < 3 || res[0] != '"' {
						errs["bad_token"]++
						continue
					}
					txn := string(res)
					if o == opAuthCancel {
						_, ok = timed("/iap/1/cancel", p(`{"token": `, txn, `, "key": `, t.quoted.key, `}`))
					} else {
						_, ok = timed("/iap/1/capture", p(`{"token": `, txn, `, "key": `, t.quoted.key, `, "credit_to_capture": 1}`))
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
