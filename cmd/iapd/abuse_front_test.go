package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The abuse suite's front findings (issue 13, findings 2, 8 and 9)
// against the real binary: bounded work per request.

// frontHalfSent opens n connections to path, each sending headers that
// declare cl bytes, and one byte of body.
func frontHalfSent(t *testing.T, p *abuseProc, path string, n, cl int) []net.Conn {
	t.Helper()
	addr := strings.TrimPrefix(p.Public, "http://")
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", len(conns), err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: iapd\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", path, cl)
	}
	return conns
}

// frontBalanceLatency returns the median time of a few balance calls.
func frontBalanceLatency(t *testing.T, p *abuseProc) time.Duration {
	t.Helper()
	var ds []time.Duration
	for range 5 {
		start := time.Now()
		res, rerr, err := p.Call("/iap/1/balance", map[string]any{"account_token": randHex(16), "service_name": "sms"}, 30*time.Second)
		if err != nil || rerr != nil || res == nil {
			t.Fatalf("balance call meanwhile: %v %v", err, rerr)
		}
		ds = append(ds, time.Since(start))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

// settle waits for the server's RSS to stop growing (the connections
// accepted and served).
func settle(p *abuseProc) Memory {
	last := p.Memory()
	for range 20 {
		time.Sleep(250 * time.Millisecond)
		m := p.Memory()
		if m.RSS <= last.RSS+1<<20 {
			return m
		}
		last = m
	}
	return last
}

// Finding 2: 300 connections each declaring 4 MiB and sending one byte.
// On /iap/1/balance (64 KiB limit) each is answered at once from its
// Content-Length; on the letter route (32 MiB limit) each waits for the
// rest of its body with a buffer sized by what arrived. Either way the
// server's memory barely moves, a balance call meanwhile is answered,
// and memory does not grow once they close.
func TestAbuseFrontHalfSentBodies(t *testing.T) {
	p := startAbuse(t, abuseOpts{})
	const n, cl = 300, 4 << 20
	for _, path := range []string{"/iap/1/balance", "/iap/snailmail/1/print"} {
		base := settle(p)
		conns := frontHalfSent(t, p, path, n, cl)
		during := settle(p)
		lat := frontBalanceLatency(t, p)
		growth := during.RSS - base.RSS
		abuseFigure(t, "%d connections declaring 4 MiB, 1 byte sent, on %s: RSS %.1f → %.1f MB (+%.1f MB; target < 50), balance call meanwhile %v (target < 100 ms)",
			n, path, mb(base.RSS), mb(during.RSS), mb(growth), lat.Round(time.Millisecond))
		if growth > 150<<20 {
			t.Errorf("%s: RSS grew by %.1f MB with %d half-sent bodies", path, mb(growth), n)
		}
		if path == "/iap/1/balance" {
			// Answered already: a readable JSON-RPC error.
			_ = conns[0].SetReadDeadline(time.Now().Add(20 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conns[0]), nil)
			if err != nil {
				t.Fatalf("no answer to a declared 4 MiB on balance: %v", err)
			}
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || !bytes.Contains(raw, []byte("larger than the 65536 bytes")) {
				t.Errorf("answer to a declared 4 MiB on balance: %d %s", resp.StatusCode, raw)
			}
		}
		for _, c := range conns {
			c.Close()
		}
		settle(p)
		time.Sleep(2 * time.Second)
		after := p.Memory()
		abuseFigure(t, "after the %d connections on %s closed: RSS %.1f MB (%+.1f MB from before them)", n, path, mb(after.RSS), mb(after.RSS-base.RSS))
		if after.RSS-base.RSS > 150<<20 {
			t.Errorf("%s: RSS still %.1f MB above the start after the connections closed", path, mb(after.RSS-base.RSS))
		}
	}
	if code, body := p.Readyz(); code != 200 {
		t.Errorf("readyz after: %d %s", code, body)
	}
}

// frontPDF returns a well-formed PDF of about size bytes: one page whose
// content stream carries the bulk, with a correct xref table.
func frontPDF(size int) []byte {
	filler := make([]byte, size)
	_, _ = rand.Read(filler)
	stream := append([]byte("BT /F1 12 Tf 72 720 Td (Hello) Tj ET\n% "), base64.StdEncoding.EncodeToString(filler)[:size]...)
	stream = append(stream, '\n')
	var b bytes.Buffer
	var offs []int
	b.WriteString("%PDF-1.4\n")
	obj := func(s string) {
		offs = append(offs, b.Len())
		b.WriteString(s)
	}
	obj("1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n")
	obj("2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n")
	obj("3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>\nendobj\n")
	offs = append(offs, b.Len())
	fmt.Fprintf(&b, "4 0 obj\n<< /Length %d >>\nstream\n", len(stream))
	b.Write(stream)
	b.WriteString("endstream\nendobj\n")
	obj("5 0 obj\n<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>\nendobj\n")
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(offs)+1)
	for _, o := range offs {
		fmt.Fprintf(&b, "%010d 00000 n \n", o)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(offs)+1, xref)
	return b.Bytes()
}

// frontLetter is a print request (PROTOCOL §7) for one letter.
func frontLetter(tok string, pdf []byte) []byte {
	addr := map[string]any{"name": "Jane Doe", "street": "Rue de la Loi 16", "street2": "", "zip": "1000", "city": "Brussels", "state": false, "country_code": "BE"}
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": randHex(16), "params": map[string]any{
		"account_token": tok, "dbuuid": "7ee805fc-eac7-11f1-8369-02fc00000001", "batch": true,
		"options": map[string]any{"color": false, "cover": false, "duplex": false, "currency_name": "EUR"},
		"documents": []any{map[string]any{"letter_id": 17, "res_model": "account.move", "res_id": 3,
			"contact_address": "Jane Doe\nRue de la Loi 16\n1000 Brussels\nBelgium", "address": addr, "return_address": addr,
			"company_logo": false, "pdf_bin": base64.StdEncoding.EncodeToString(pdf), "pages": false, "rightaddress": 0}},
	}})
	return body
}

// Finding 8: a 5 MB PDF letter (a ~7 MB body, within the letter route's
// 32 MiB) gets a readable answer, not a connection reset; a letter over
// the limit is told so; a 4 MB documents:[0,0,…] is refused at the 101st
// element.
func TestAbuseFrontLetters(t *testing.T) {
	p := startAbuse(t, abuseOpts{})
	tok := randHex(16)
	var raw json.RawMessage
	if err := p.Admin.call(context.Background(), "POST", "/v1/account/credit", nil,
		map[string]any{"service": "snailmail", "token": tok, "amount": json.Number("100")}, &raw); err != nil {
		t.Fatal(err)
	}
	body := frontLetter(tok, frontPDF(5<<20))
	start := time.Now()
	res, rerr, err := p.Post("/iap/snailmail/1/print", body, 60*time.Second)
	d := time.Since(start)
	if err != nil {
		t.Fatalf("a 5 MB letter (%.1f MB body): %v (want a readable answer)", mb(int64(len(body))), err)
	}
	outcome := "error " + fmt.Sprint(rerr)
	if rerr == nil {
		var r struct {
			Request struct {
				Documents []struct {
					Sent  bool   `json:"sent"`
					Error string `json:"error"`
				} `json:"documents"`
			} `json:"request"`
		}
		if json.Unmarshal(res, &r) != nil || len(r.Request.Documents) != 1 {
			t.Fatalf("a 5 MB letter: result %.300s", res)
		}
		outcome = fmt.Sprintf("sent %v %s", r.Request.Documents[0].Sent, r.Request.Documents[0].Error)
	}
	abuseFigure(t, "a 5 MB PDF letter (%.1f MB body): answered in %.2f s: %s", mb(int64(len(body))), d.Seconds(), outcome)

	// Over the route's 32 MiB: the route's message, readable.
	big := frontLetter(tok, make([]byte, 25<<20))
	start = time.Now()
	_, rerr, err = p.Post("/iap/snailmail/1/print", big, 120*time.Second)
	if err != nil || rerr == nil || !strings.Contains(rerr.Message, "too large") {
		t.Fatalf("a %.1f MB letter body: %v %+v, want the readable 'too large' error", mb(int64(len(big))), err, rerr)
	}
	abuseFigure(t, "a %.1f MB letter body (over 32 MiB): %q in %.2f s", mb(int64(len(big))), rerr.Message, time.Since(start).Seconds())

	// 4 MB of documents:[0,0,…].
	var docs bytes.Buffer
	docs.WriteString(`{"jsonrpc":"2.0","method":"call","id":1,"params":{"account_token":"` + tok + `","batch":true,"documents":[0`)
	for docs.Len() < 4<<20 {
		docs.WriteString(",0")
	}
	docs.WriteString("]}}")
	start = time.Now()
	_, rerr, err = p.Post("/iap/snailmail/1/print", docs.Bytes(), 60*time.Second)
	d = time.Since(start)
	if err != nil || rerr == nil || !strings.Contains(rerr.Message, "Too many documents") {
		t.Fatalf("4 MB documents:[0,…]: %v %+v", err, rerr)
	}
	abuseFigure(t, "4 MB documents:[0,0,…]: %q in %.3f s (was 2.9 s)", rerr.Message, d.Seconds())
	if code, _ := p.Readyz(); code != 200 {
		t.Errorf("readyz: %d", code)
	}
}

// Finding 9: a request whose client goes away stops its work. An SMS
// batch of 10 numbers, sent one per provider call, to a provider that
// never answers (each call ends at the adapter's 2 s timeout): with the
// client staying, iapd keeps starting calls until its send deadline;
// with the client gone after the first call started, it starts no other.
func TestAbuseFrontClientGone(t *testing.T) {
	var calls atomic.Int64
	var mu sync.Mutex
	var cancelled int
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = io.Copy(io.Discard, r.Body) // so that the server notices the client closing
		select {
		case <-r.Context().Done(): // the adapter gave up (its timeout)
		case <-time.After(30 * time.Second):
		}
		mu.Lock()
		cancelled++
		mu.Unlock()
	}))
	t.Cleanup(hang.Close) // after iapd is killed (cleanups run last first)
	yaml := fmt.Sprintf(`services:
  sms:
    settings:
      providers: [hang]
      chunk_size: 1
      concurrency: 1
providers:
  hang: {type: twilio, account_sid: %s, auth_token: %s, from: "+15005550006", base_url: %q, timeout: 2s}
`, smsTwilioSID, smsTwilioToken, hang.URL)
	p := startAbuse(t, abuseOpts{Config: yaml})
	tok := randHex(16)
	var raw json.RawMessage
	if err := p.Admin.call(context.Background(), "POST", "/v1/account/credit", nil,
		map[string]any{"service": "sms", "token": tok, "amount": json.Number("100")}, &raw); err != nil {
		t.Fatal(err)
	}
	batch := func() []byte {
		var nums []any
		for i := range 10 {
			nums = append(nums, map[string]string{"uuid": randHex(16), "number": fmt.Sprintf("+3247012345%d", i)})
		}
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": 1, "params": map[string]any{
			"account_token": tok, "dbuuid": "7ee805fc-eac7-11f1-8369-02fc00000002",
			"messages": []any{map[string]any{"content": "hello", "numbers": nums}}}})
		return b
	}

	// The client stays: calls go on until the send deadline.
	start := time.Now()
	if _, _, err := p.Post("/api/sms/3/send", batch(), 30*time.Second); err != nil {
		t.Fatalf("staying client: %v", err)
	}
	stayed := calls.Swap(0)
	abuseFigure(t, "SMS to a provider that hangs, client staying: %d provider calls in %.1f s", stayed, time.Since(start).Seconds())

	// The client goes once the first call has started.
	addr := strings.TrimPrefix(p.Public, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b := batch()
	fmt.Fprintf(c, "POST /api/sms/3/send HTTP/1.1\r\nHost: iapd\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
	deadline := time.Now().Add(20 * time.Second)
	for calls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	c.Close()
	time.Sleep(8 * time.Second) // the first call ends at 2 s; a staying client would see 3 more by now
	gone := calls.Load()
	abuseFigure(t, "SMS to a provider that hangs, client gone after the first call started: %d provider call(s) (staying: %d)", gone, stayed)
	if gone != 1 || stayed < 2 {
		t.Errorf("provider calls: %d with the client gone, %d with it staying; want 1 and more", gone, stayed)
	}
	if _, _, err := p.Call("/iap/1/balance", map[string]any{"account_token": tok, "service_name": "sms"}, 30*time.Second); err != nil {
		t.Errorf("serving after: %v", err)
	}
}
