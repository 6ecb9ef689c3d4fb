package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
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
// route answers is package rpc's tests' business. A request whose captured
// answer was werkzeug's NotFound (odoo16 004, /iap/message_send: Odoo
// raised it as AccessError, README) must be served now and never answered
// NotFound again.
func TestOdooFixturesThroughRun(t *testing.T) {
	// Every path "iapd routes" lists: the core routes and the services'.
	served := map[string]bool{}
	cfg := filepath.Join(t.TempDir(), "iapd.yaml")
	if err := os.WriteFile(cfg, []byte("log_level: info\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, l := range routesJSON(t, cfg) {
		served[l.Path] = true
	}
	for _, r := range rpc.Routes() {
		if !served[r.Path] {
			t.Fatalf("iapd routes does not list %s", r.Path)
		}
	}
	s := startServer(t, map[string]string{"IAPD_ADMIN_TOKEN": testAdminToken})
	replayed := 0
	for _, version := range rpctest.Versions {
		for _, req := range rpctest.Load(t, version, nil) {
			brokeOdoo := false
			if a, ok := req.Response(t); ok && bytes.Contains(a, []byte(`"werkzeug.exceptions.NotFound"`)) {
				brokeOdoo = true
				if !served[req.Path] {
					t.Errorf("%s/%s: %s is not served; its NotFound answer broke Odoo", version, req.Name, req.Path)
				}
			}
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
				if brokeOdoo && bytes.Contains(errRaw, []byte("NotFound")) {
					t.Fatalf("answered NotFound again, which broke Odoo (fixtures README): %s", body)
				}
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
