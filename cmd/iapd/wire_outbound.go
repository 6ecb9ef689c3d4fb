package main

import (
	"net/http"
	"time"
)

// wireOutbound — issue 6 (proxy helper): the outbound HTTP client, air-gapped dialer guard. In progress: replaced by the real wiring before this
// branch is committed.
func wireOutbound(w *wiring) error {
	w.outbound = &http.Client{Timeout: 30 * time.Second}
	return nil
}
