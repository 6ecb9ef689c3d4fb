package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/rpc/rpctest"
)

// TestOdooFixturesThroughRun replays every request a real Odoo sent (the
// captures in ../shared/fixtures) whose route the public listener serves,
// byte for byte, to an iapd started by run(), and checks the envelope the
// Odoo client needs (PROTOCOL §1.2–1.3): HTTP 200, JSON, the id echoed, a
// result or an error with a string data.name, never "error": null. It
// checks the wiring (listener, body limits, ledger) end to end; what each
// route answers is package rpc's tests' business.
func TestOdooFixturesThroughRun(t *testing.T) {
	served := map[string]bool{}
	for _, r := range rpc.Routes() {
		served[r.Path] = true
	}
	s := startServer(t, map[string]string{"IAPD_ADMIN_TOKEN": testAdminToken})
	replayed := 0
	for _, version := range rpctest.Versions {
		for _, req := range rpctest.Load(t, version, nil) {
			if !served[req.Path] || req.Method != "POST" {
				continue
			}
			t.Run(version+"/"+req.Name, func(t *testing.T) {
				hreq, err := http.NewRequest("POST", s.public+req.Path, bytes.NewReader(req.Wire(t)))
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range req.Headers {
					if !strings.EqualFold(k, "Content-Length") && !strings.EqualFold(k, "Accept-Encoding") {
						hreq.Header.Set(k, v)
					}
				}
				resp, err := http.DefaultClient.Do(hreq)
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != 200 {
					t.Fatalf("HTTP %d: %s", resp.StatusCode, body)
				}
				var env map[string]json.RawMessage
				if err := json.Unmarshal(body, &env); err != nil {
					t.Fatalf("not JSON: %s", body)
				}
				if string(env["id"]) != string(req.ID(t)) {
					t.Errorf("id %s, want %s", env["id"], req.ID(t))
				}
				errRaw, hasErr := env["error"]
				_, hasResult := env["result"]
				switch {
				case hasErr && hasResult, !hasErr && !hasResult:
					t.Fatalf("want exactly one of result and error: %s", body)
				case hasErr:
					var e struct {
						Data *struct {
							Name    *string `json:"name"`
							Message *string `json:"message"`
						} `json:"data"`
					}
					if json.Unmarshal(errRaw, &e) != nil || e.Data == nil || e.Data.Name == nil || e.Data.Message == nil {
						t.Fatalf("error without data.name and data.message (or null): %s", body)
					}
					if req.Path == "/iap/1/balance" {
						t.Fatalf("balance must never be an error (PROTOCOL §4.1): %s", body)
					}
				}
			})
			replayed++
		}
	}
	if replayed == 0 {
		t.Fatal("no fixture replayed")
	}
	t.Logf("%d captured Odoo requests replayed through run()", replayed)
}
