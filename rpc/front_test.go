package rpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/iapd/iapd/rpc/limit"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
)

// Tests of the front's bounds (issue 13): body limits from the headers,
// body memory following what arrived, decoders stopping at a list's
// limit, and request contexts that end (deadline, client gone, shutdown).

// countRefusals is Config.Refusals for tests.
type countRefusals struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countRefusals) Refused(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[reason]++
}

func (c *countRefusals) get(reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[reason]
}

// dribble is a reader that gives n bytes, then fails as a connection
// whose client stopped sending does at its read deadline.
type dribble struct{ n int }

func (d *dribble) Read(p []byte) (int, error) {
	if d.n == 0 {
		return 0, errors.New("i/o timeout")
	}
	k := min(d.n, len(p))
	for i := range k {
		p[i] = '{'
	}
	d.n -= k
	return k, nil
}

// A body's buffer follows what arrived, not what was declared: 10 bytes
// of a declared 4 MiB take a few KiB; a whole body takes at most twice
// its size.
func TestReadBodyGrowsWithArrival(t *testing.T) {
	b, err := readBody(&dribble{n: 10}, nil, 4<<20, 4<<20)
	if err == nil || len(b) != 10 || cap(b) > 8<<10 {
		t.Fatalf("10 bytes of a declared 4 MiB: len %d cap %d err %v", len(b), cap(b), err)
	}
	for _, n := range []int{0, 1, 4095, 4096, 4097, 100 << 10, 3 << 20} {
		body := bytes.Repeat([]byte("x"), n)
		b, err := readBody(bytes.NewReader(body), nil, n, 4<<20)
		if err != nil || !bytes.Equal(b, body) || cap(b) > 2*n+16<<10 {
			t.Errorf("%d bytes: len %d cap %d err %v", n, len(b), cap(b), err)
		}
		// Unknown length (chunked): the same bound.
		b, err = readBody(bytes.NewReader(body), nil, -1, 4<<20)
		if err != nil || !bytes.Equal(b, body) || cap(b) > 2*n+16<<10 {
			t.Errorf("%d bytes, no length: len %d cap %d err %v", n, len(b), cap(b), err)
		}
	}
	// Over the limit without a length: stopped just past it.
	b, err = readBody(bytes.NewReader(make([]byte, 1<<20)), nil, -1, 64<<10)
	if !errors.Is(err, errOverLimit) || len(b) != 64<<10+1 {
		t.Errorf("chunked over the limit: len %d err %v", len(b), err)
	}
}

// A Content-Length over the route's limit is answered as soon as the
// body starts — with the JSON-RPC error Odoo reads (PROTOCOL §1.3) —
// whatever the declared size; the client then sends its whole body and
// reads the answer (it is not reset); the refusal is counted.
func TestFrontRefusesFromHeaders(t *testing.T) {
	l := newMemLedger()
	setupServices(t, l)
	refusals := &countRefusals{}
	s, err := New(Config{Ledger: l, PublicURL: testPublicURL, Refusals: limit.NewReporter(refusals, nil, 0)})
	if err != nil {
		t.Fatal(err)
	}
	addr := startServer(t, s)

	// Only the first bytes: the answer comes without the rest.
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "POST /iap/1/balance HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", 4<<20)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer before the body: %v", err)
	}
	raw, _ := io.ReadAll(resp.Body)
	env := mustEnvelope(t, reply{Status: resp.StatusCode, Header: resp.Header, Body: raw})
	expectError(t, env, nameUserError, "larger than the 65536 bytes")
	// The connection is closed once the declared body has been drained
	// (here: at the drain's timeout, the rest never comes), and the answer
	// says so: the client does not send another request on it.
	if !resp.Close {
		t.Error("the answer does not say Connection: close")
	}

	// A whole oversized letter through Go's client, which (as Python's
	// requests) sends the body before reading: a readable answer, the
	// route's own message (24 MB: more than the sockets' buffers hold, so
	// the server must read it for the client to finish sending).
	s2, err := New(Config{Ledger: l, PublicURL: testPublicURL, Refusals: limit.NewReporter(refusals, nil, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Register("Big", &blocking{}, []Route{{Path: "/big", Method: "Big.Wait", MaxBody: 1 << 20,
		TooLarge: "The letter is too large to be sent."}}); err != nil {
		t.Fatal(err)
	}
	addr2 := startServer(t, s2)
	body := append([]byte(`{"jsonrpc":"2.0","method":"call","params":{"pdf":"`), bytes.Repeat([]byte("A"), 24<<20)...)
	body = append(body, `"}}`...)
	hr, err := http.Post("http://"+addr2+"/big", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("a 24 MB body over a 1 MiB route: %v (want a readable answer)", err)
	}
	raw, _ = io.ReadAll(hr.Body)
	hr.Body.Close()
	env = mustEnvelope(t, reply{Status: hr.StatusCode, Header: hr.Header, Body: raw})
	expectError(t, env, nameUserError, "The letter is too large")
	// The same client's next request (a new connection) is served.
	hr, err = http.Post("http://"+addr2+"/iap/1/balance", "application/json", strings.NewReader(`{"params":{}}`))
	if err != nil {
		t.Fatalf("the next request: %v", err)
	}
	hr.Body.Close()
	if n := refusals.get("body_too_large"); n != 2 {
		t.Errorf("body_too_large counted %d times, want 2", n)
	}
	stillServing(t, addr)
}

// A chunked body (no Content-Length) is refused when it passes the limit.
func TestFrontRefusesChunkedOverLimit(t *testing.T) {
	l := newMemLedger()
	setupServices(t, l)
	s := newTestServer(t, l)
	addr := startServer(t, s)
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write([]byte(`{"jsonrpc":"2.0","params":{"pad":"`))
		_, _ = pw.Write(bytes.Repeat([]byte("x"), 200<<10))
		_, _ = pw.Write([]byte(`"}}`))
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", "http://"+addr+"/iap/1/balance", pr)
	req.ContentLength = -1 // chunked
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	expectError(t, mustEnvelope(t, reply{Status: resp.StatusCode, Header: resp.Header, Body: raw}), nameUserError, "larger than")
}

// PrintArgs-like params: a list of raw documents (encoding/json decodes
// it; the fast decoder has no plan for json.RawMessage).
type docsArgs struct {
	Documents []json.RawMessage `json:"documents"`
}

// The decoders stop at the first element over the limit: a list of 101
// elements followed by bytes that are not JSON is refused as too long,
// not as malformed — the decoder never read that far. Both decoders:
// the fast one (a []string, a []struct) and encoding/json's
// ([]json.RawMessage).
func TestDecoderStopsAtMaxItems(t *testing.T) {
	type numbersArgs struct {
		Numbers []struct {
			UUID string `json:"uuid"`
		} `json:"numbers"`
		Tokens []string `json:"tokens"`
	}
	list := func(key, elem string, n int) []byte {
		return []byte(`{"id":1,"params":{"` + key + `":[` + strings.TrimSuffix(strings.Repeat(elem+",", n), ",") + `, THIS IS NOT JSON`)
	}
	for _, tc := range []struct {
		name string
		body []byte
		args any
	}{
		{"raw documents", list("documents", "0", 101), &docsArgs{}},
		{"structs", list("numbers", `{"uuid":"u"}`, 101), &numbersArgs{}},
		{"strings", list("tokens", `"t"`, 101), &numbersArgs{}},
		{"nested in an unknown param", list("other", "[]", 101), &numbersArgs{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeRequestLimited(tc.body, tc.args, 100); err != errTooManyItems {
				t.Fatalf("got %v, want errTooManyItems", err)
			}
			// Without a limit, the same body is malformed.
			if _, err := decodeRequest(tc.body, tc.args); err == nil || err == errTooManyItems {
				t.Fatalf("without a limit: %v", err)
			}
		})
	}
	// At the limit: decoded.
	ok := []byte(`{"id":1,"params":{"documents":[` + strings.TrimSuffix(strings.Repeat(`{"a":[1,2]},`, 100), ",") + `]}}`)
	var a docsArgs
	if _, err := decodeRequestLimited(ok, &a, 100); err != nil || len(a.Documents) != 100 {
		t.Fatalf("100 documents: %d, %v", len(a.Documents), err)
	}
}

// Through the server: a list over the route's MaxItems is answered with
// the route's TooMany message and counted.
func TestTooManyItemsAnswered(t *testing.T) {
	l := newMemLedger()
	setupServices(t, l)
	refusals := &countRefusals{}
	s, err := New(Config{Ledger: l, PublicURL: testPublicURL, Refusals: limit.NewReporter(refusals, nil, 0)})
	if err != nil {
		t.Fatal(err)
	}
	addr := startServer(t, s)
	body := []byte(`{"jsonrpc":"2.0","method":"call","id":1,"params":{"iap_accounts":[` + strings.TrimSuffix(strings.Repeat(`"x",`, 600), ",") + `]}}`)
	env := post(t, addr, "/iap/services-token", "application/json", body)
	expectError(t, env, nameUserError, "at most 500 accounts")
	if refusals.get("too_many_items") != 1 {
		t.Errorf("too_many_items counted %d times", refusals.get("too_many_items"))
	}
}

// blocking is a service whose method waits for its request's context to
// end and reports how it ended.
type blocking struct {
	started chan struct{}
	ended   chan error
	dl      chan time.Time
}

type BlockArgs struct{}

func (b *blocking) Wait(r *http.Request, _ *BlockArgs, reply *bool) error {
	ctx := r.Context()
	if d, ok := ctx.Deadline(); ok && b.dl != nil {
		select {
		case b.dl <- d:
		default:
		}
	}
	if b.started != nil {
		select {
		case b.started <- struct{}{}:
		default:
		}
	}
	select {
	case <-ctx.Done():
	case <-time.After(time.Minute):
	}
	if b.ended != nil {
		b.ended <- ctx.Err()
	}
	return storage.Wrap("wait", storage.Unavailable, ctx.Err())
}

func newBlocking(t *testing.T, timeout time.Duration) (*Server, *blocking, string) {
	t.Helper()
	l := newMemLedger()
	s, err := New(Config{Ledger: l, PublicURL: testPublicURL})
	if err != nil {
		t.Fatal(err)
	}
	b := &blocking{started: make(chan struct{}, 1), ended: make(chan error, 1), dl: make(chan time.Time, 1)}
	if err := s.Register("Block", b, []Route{{Path: "/block", Method: "Block.Wait", MaxBody: 1 << 10, Timeout: timeout}}); err != nil {
		t.Fatal(err)
	}
	return s, b, startServer(t, s)
}

func waitEnded(t *testing.T, b *blocking, within time.Duration) error {
	t.Helper()
	select {
	case err := <-b.ended:
		return err
	case <-time.After(within):
		t.Fatalf("the request's context did not end within %v", within)
		return nil
	}
}

// A request's context carries its route's deadline, less the margin, and
// ends there; the client gets the answer before its own timeout.
func TestRequestDeadline(t *testing.T) {
	_, b, addr := newBlocking(t, 2*time.Second)
	start := time.Now()
	done := make(chan map[string]any, 1)
	go func() { done <- call(t, addr, "/block", map[string]any{}) }()
	d := <-b.dl
	if got := d.Sub(start); got > 1500*time.Millisecond+time.Second || got < time.Second {
		t.Errorf("deadline %v after the start, want about 1.5 s (2 s less 0.5 s)", got)
	}
	if err := waitEnded(t, b, 30*time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ended with %v, want DeadlineExceeded", err)
	}
	expectError(t, <-done, nameUserError, "temporarily unavailable")
}

// A client that closes its connection while its request runs cancels the
// request's context (Linux: the socket is watched).
func TestClientGoneCancels(t *testing.T) {
	if !watchSupported {
		t.Skip("the client is not watched on this platform")
	}
	_, b, addr := newBlocking(t, time.Minute)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"jsonrpc":"2.0","method":"call","params":{}}`
	fmt.Fprintf(conn, "POST /block HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	<-b.started
	conn.Close()
	if err := waitEnded(t, b, 30*time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("ended with %v, want Canceled", err)
	}
	// A client that stays is not mistaken for gone, and pipelined bytes do
	// not end the watch: the request runs to its deadline.
	_, b2, addr2 := newBlocking(t, 2*time.Second)
	conn2, err := net.Dial("tcp", addr2)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	fmt.Fprintf(conn2, "POST /block HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	<-b2.started
	time.Sleep(100 * time.Millisecond)
	fmt.Fprint(conn2, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	if err := waitEnded(t, b2, 30*time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a staying client's request ended with %v, want DeadlineExceeded", err)
	}
	_ = conn2.SetReadDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(conn2)
	for _, want := range []int{200, 404} { // the answer, then the pipelined request's
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != want {
			t.Fatalf("answer: %v %v, want %d", resp, err, want)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
	}
}

// CancelRequests (shutdown) ends the requests in flight, and those that
// come after.
func TestCancelRequests(t *testing.T) {
	s, b, addr := newBlocking(t, time.Minute)
	done := make(chan map[string]any, 1)
	go func() { done <- call(t, addr, "/block", map[string]any{}) }()
	<-b.started
	time.Sleep(2 * watchDelay) // the request is listed once watched
	s.CancelRequests()
	if err := waitEnded(t, b, 30*time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("ended with %v, want Canceled", err)
	}
	expectError(t, <-done, nameUserError, "temporarily unavailable")
	go func() { done <- call(t, addr, "/block", map[string]any{}) }()
	if err := waitEnded(t, b, 30*time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("a request after CancelRequests ended with %v, want Canceled", err)
	}
	<-done
}
