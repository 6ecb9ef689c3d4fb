package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iapd/iapd/providers/folder"
	"github.com/iapd/iapd/providers/pingen"
	"github.com/iapd/iapd/providers/pingen/pingentest"
	"github.com/iapd/iapd/rpc/rpctest"
)

// postPrint sends a captured snailmail request to the public listener as
// Odoo did and returns its result's documents and the raw answer.
func postPrint(t *testing.T, s *testServer, req *rpctest.Request) (docs []map[string]any, raw []byte) {
	t.Helper()
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
	raw, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("HTTP %d: %s", resp.StatusCode, raw)
	}
	var env struct {
		ID     json.RawMessage `json:"id"`
		Error  json.RawMessage `json:"error"`
		Result struct {
			RequestCode int `json:"request_code"`
			Request     struct {
				Documents []map[string]any `json:"documents"`
			} `json:"request"`
		} `json:"result"`
	}
	if err := json.Unmarshal(raw, &env); err != nil || env.Error != nil || env.Result.RequestCode != 200 {
		t.Fatalf("answer %s", raw)
	}
	if string(env.ID) != string(req.ID(t)) {
		t.Errorf("id %s, want %s", env.ID, req.ID(t))
	}
	return env.Result.Request.Documents, raw
}

// snailAccount reads an account through the admin CLI and checks the
// ledger invariant.
func snailAccount(t *testing.T, s *testServer, tok string) (available, held, captured string) {
	t.Helper()
	out := s.mustCLI(t, "", "accounts", "show", "snailmail", tok, "-json")
	var a struct {
		Recharged, Available, Held, Captured json.Number
	}
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("accounts show: %v\n%s", err, out)
	}
	r, _ := a.Recharged.Float64()
	av, _ := a.Available.Float64()
	h, _ := a.Held.Float64()
	c, _ := a.Captured.Float64()
	if r != av+h+c { // small integers: exact in float64
		t.Fatalf("invariant broken: %s", out)
	}
	return a.Available.String(), a.Held.String(), a.Captured.String()
}

// TestSnailmailFixturesThroughRun replays every snailmail request real
// Odoo 16, 17, 18 and 19 databases sent to an iapd started by run() with the
// embedded defaults (provider "folder"): out of credit first (in-band
// CREDIT_ERROR, nothing written or charged, PROTOCOL §7), then with one
// stamp (sent: the PDF and its address sheet in the letters directory,
// one stamp captured), then again (the same send_id, nothing charged or
// written twice). The ledger invariant holds after each step.
func TestSnailmailFixturesThroughRun(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	s := startServer(t, map[string]string{"IAPD_ADMIN_TOKEN": testAdminToken}, "-data", data)
	letters := filepath.Join(data, "providers", "folder", "letters")
	replayed := 0
	for _, v := range rpctest.Versions {
		for _, req := range rpctest.Load(t, v, func(r *rpctest.Request) bool { return r.Path == "/iap/snailmail/1/print" }) {
			t.Run(v+"/"+req.Name, func(t *testing.T) {
				p := req.Params(t)
				tok := p["account_token"].(string)
				doc := p["documents"].([]any)[0].(map[string]any)
				pdf, err := base64.StdEncoding.DecodeString(doc["pdf_bin"].(string))
				if err != nil {
					t.Fatal(err)
				}
				before, _ := os.ReadDir(letters)

				docs, raw := postPrint(t, s, req)
				if len(docs) != 1 || docs[0]["sent"] != false || docs[0]["error"] != "CREDIT_ERROR" || fmt.Sprint(docs[0]["letter_id"]) != fmt.Sprint(doc["letter_id"]) {
					t.Fatalf("out of credit: %s", raw)
				}
				av, held, _ := snailAccount(t, s, tok)
				if av != "0" || held != "0" {
					t.Fatalf("out of credit: available %s held %s", av, held)
				}
				if after, _ := os.ReadDir(letters); len(after) != len(before) {
					t.Fatal("a letter was written without credit")
				}

				s.mustCLI(t, "", "credit", "snailmail", tok, "1")
				_, _, capturedBefore := snailAccount(t, s, tok)
				docs, raw = postPrint(t, s, req)
				sendID, _ := docs[0]["send_id"].(string)
				if docs[0]["sent"] != true || !strings.HasPrefix(sendID, "FOLDER-") {
					t.Fatalf("with credit: %s", raw)
				}
				got, err := os.ReadFile(filepath.Join(letters, sendID+".pdf"))
				if err != nil || !bytes.Equal(got, pdf) {
					t.Fatalf("letter PDF: %v", err)
				}
				var sheet folder.Sheet
				b, _ := os.ReadFile(filepath.Join(letters, sendID+".json"))
				if err := json.Unmarshal(b, &sheet); err != nil || sheet.To.City != "Brussels" || sheet.To.Country != "BE" || sheet.Pages != 1 || !sheet.Color {
					t.Fatalf("address sheet %s: %v", b, err)
				}
				av, held, captured := snailAccount(t, s, tok)
				if av != "0" || held != "0" || captured == capturedBefore {
					t.Fatalf("after sending: available %s held %s captured %s (before %s)", av, held, captured, capturedBefore)
				}

				docs, raw = postPrint(t, s, req)
				if docs[0]["sent"] != true || docs[0]["send_id"] != sendID {
					t.Fatalf("retry: %s", raw)
				}
				if av2, held2, captured2 := snailAccount(t, s, tok); av2 != av || held2 != held || captured2 != captured {
					t.Fatal("a retried letter was charged again")
				}
				if after, _ := os.ReadDir(letters); len(after) != len(before)+2 {
					t.Fatalf("%d files in the letters directory, want %d", len(after), len(before)+2)
				}
			})
			replayed++
		}
	}
	if replayed < 7 {
		t.Fatalf("only %d snailmail fixtures replayed", replayed)
	}
}

// TestSnailmailPingenThroughRun: a configured pingen instance posts the
// letter to (a local server speaking) Pingen's API, and Pingen's signed
// webhooks are accepted on the public listener, forged ones refused.
func TestSnailmailPingenThroughRun(t *testing.T) {
	pg := pingentest.New(t)
	const secret = "pingen-webhook-secret-0123"
	cfg := filepath.Join(t.TempDir(), "iapd.yaml")
	y := fmt.Sprintf(`
providers:
  pingen-ch:
    type: pingen
    client_id: %s
    client_secret: ${PINGEN_SECRET}
    organisation_id: %s
    webhook_secret: %s
    api_url: %s
    identity_url: %s
    delivery_product: fast
services:
  snailmail:
    settings:
      providers: [pingen-ch]
      prices:
        default: 2
        color: 0.5
`, pingentest.ClientID, pingentest.Organisation, secret, pg.URL, pg.URL)
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, map[string]string{"IAPD_ADMIN_TOKEN": testAdminToken, "PINGEN_SECRET": pingentest.ClientSecret}, "-config", cfg)
	req := rpctest.Load(t, "odoo19", func(r *rpctest.Request) bool { return r.Name == "013_iap_snailmail_1_print.json" })[0]
	tok := req.Params(t)["account_token"].(string)
	s.mustCLI(t, "", "credit", "snailmail", tok, "10")
	docs, raw := postPrint(t, s, req)
	letters := pg.Letters()
	if len(letters) != 1 || docs[0]["send_id"] != letters[0].ID || letters[0].Attributes["delivery_product"] != "fast" || letters[0].Attributes["print_spectrum"] != "color" {
		t.Fatalf("answer %s; Pingen letters %+v", raw, letters)
	}
	if av, held, captured := snailAccount(t, s, tok); av != "7.5" || held != "0" || captured != "2.5" {
		t.Fatalf("account: available %s held %s captured %s", av, held, captured)
	}
	if bad := pg.BadRequests(); len(bad) > 0 {
		t.Fatalf("protocol violations: %v", bad)
	}

	hook := pingentest.Webhook("webhook_sent", letters[0].ID, "")
	post := func(sig string) int {
		r, _ := http.NewRequest("POST", s.public+"/providers/pingen-ch/webhook", bytes.NewReader(hook))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Signature", sig)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := post(pingen.Sign("forged", hook)); st != 403 {
		t.Errorf("forged webhook: HTTP %d, want 403", st)
	}
	if st := post(pingen.Sign(secret, hook)); st != 200 {
		t.Errorf("signed webhook: HTTP %d, want 200", st)
	}
	s.stop(t)
	if strings.Contains(s.stderr.String(), pingentest.ClientSecret) || strings.Contains(s.stderr.String(), secret) {
		t.Error("a Pingen secret was logged")
	}
	if !strings.Contains(s.stderr.String(), "letter status") {
		t.Error("the webhook's report did not reach the service")
	}
}
