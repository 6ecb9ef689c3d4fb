package main

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
)

// TestOpsServerDetachesRequests checks that strings a handler keeps from a
// request served through fasthttpadaptor stay intact after later requests
// on the same connection reuse fasthttp's buffers.
func TestOpsServerDetachesRequests(t *testing.T) {
	var mu sync.Mutex
	var kept [][3]string // kept as given: no concatenation, which would copy
	mux := http.NewServeMux()
	mux.HandleFunc("GET /svc/{name}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		kept = append(kept, [3]string{r.PathValue("name"), r.URL.Query().Get("token"), r.Header.Get("X-Test")})
		mu.Unlock()
		io.WriteString(w, "ok")
	})
	srv := newOpsServer(mux, slog.New(slog.DiscardHandler))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown()

	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}} // one keep-alive connection
	var want [][3]string
	for i := 0; i < 50; i++ {
		n := strconv.Itoa(i)
		req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/svc/name"+n+"?token=tok"+n, nil)
		req.Header.Set("X-Test", "hdr"+n)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		want = append(want, [3]string{"name" + n, "tok" + n, "hdr" + n})
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range want {
		if kept[i] != want[i] {
			t.Fatalf("request %d: kept %q, want %q (a string aliases a reused buffer)", i, kept[i], want[i])
		}
	}
}
