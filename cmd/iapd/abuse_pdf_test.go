package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/iapd/iapd/rpc/admin"
	"github.com/iapd/iapd/rpc/rpctest"
	"github.com/iapd/iapd/rpc/snailmail/pdf/pdftest"
	"github.com/iapd/iapd/storage"
)

// pdfLetter is Odoo's snailmail print request (PROTOCOL §7) as a real
// Odoo 17 sent it (fixture odoo17/013), with the account token, the
// letter and its PDF replaced.
type pdfLetter struct{ params map[string]any }

func loadPDFLetter(t *testing.T) pdfLetter {
	t.Helper()
	reqs := rpctest.Load(t, "odoo17", func(r *rpctest.Request) bool { return r.Name == "013_iap_snailmail_1_print.json" })
	if len(reqs) != 1 {
		t.Fatalf("fixture odoo17/013_iap_snailmail_1_print.json: %d found", len(reqs))
	}
	return pdfLetter{params: reqs[0].Params(t)}
}

// body returns the request's JSON body for token and one letter (its
// res_id makes it a letter of its own) with pdf as its PDF (nil: the
// fixture's own).
func (l pdfLetter) body(t *testing.T, token string, resID int, pdf []byte) []byte {
	t.Helper()
	raw, _ := json.Marshal(l.params)
	var p map[string]any
	_ = json.Unmarshal(raw, &p) // a deep copy
	p["account_token"] = token
	d := p["documents"].([]any)[0].(map[string]any)
	d["res_id"], d["letter_id"] = resID, resID
	if pdf != nil {
		d["pdf_bin"] = base64.StdEncoding.EncodeToString(pdf)
	}
	b, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": randHex(16), "params": p})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// printResult is the part of the print answer Odoo reads (§7).
type printResult struct {
	RequestCode int `json:"request_code"`
	Request     struct {
		Documents []struct {
			Sent   bool   `json:"sent"`
			SendID string `json:"send_id"`
			Error  string `json:"error"`
		} `json:"documents"`
	} `json:"request"`
}

func (p *abuseProc) snailAccount(t *testing.T, token string) admin.Account {
	t.Helper()
	var a admin.Account
	if err := p.Admin.call(context.Background(), "GET", "/v1/account", url.Values{"service": {string(storage.Snailmail)}, "token": {token}}, nil, &a); err != nil {
		t.Fatalf("admin: account: %v", err)
	}
	return a
}

// TestAbusePDF (issue 13, finding 1): hostile PDFs — each shape the
// first reader was quadratic on, at sizes up to a ~3 MB request (the
// listener's global limit is 4 MiB today; the snailmail route's own is
// 32 MiB) — are sent to the real binary as Odoo sends a letter. Each is
// answered FORMAT_ERROR in-band (Odoo: the attachment was rejected; its
// cron does not retry it), the account's credit untouched, and the server
// keeps serving (a good letter is then sent and charged). Printed: the
// seconds and server CPU per hostile PDF. Target (printed, not
// asserted): any PDF up to the body limit read or refused within 1 s.
func TestAbusePDF(t *testing.T) {
	letter := loadPDFLetter(t)
	p := startAbuse(t, abuseOpts{})
	token := randHex(16)
	if err := p.Admin.call(context.Background(), "POST", "/v1/account/credit", nil,
		map[string]any{"service": "snailmail", "token": token, "amount": json.Number("10")}, nil); err != nil {
		t.Fatalf("admin: credit: %v", err)
	}
	send := func(resID int, pdf []byte) (printResult, time.Duration, time.Duration, int, error) {
		b := letter.body(t, token, resID, pdf)
		cpu0, t0 := p.CPUTime(), time.Now()
		res, rerr, err := p.Post("/iap/snailmail/1/print", b, 120*time.Second)
		el, cpu := time.Since(t0), p.CPUTime()-cpu0
		var pr printResult
		switch {
		case err != nil:
			return pr, el, cpu, len(b), err
		case rerr != nil:
			return pr, el, cpu, len(b), rerr
		}
		if err := json.Unmarshal(res, &pr); err != nil || len(pr.Request.Documents) != 1 {
			return pr, el, cpu, len(b), fmt.Errorf("answer %.300s: %v", res, err)
		}
		return pr, el, cpu, len(b), nil
	}
	// The fixture's own letter is sent and charged: the route works.
	pr, _, _, _, err := send(1, nil)
	if err != nil || !pr.Request.Documents[0].Sent {
		t.Fatalf("the fixture's letter: %+v %v", pr, err)
	}
	before := p.snailAccount(t, token)
	if before.Captured <= 0 || before.Held != 0 {
		t.Fatalf("after the fixture's letter: %+v", before)
	}

	worst := time.Duration(0)
	resID := 100
	for _, size := range []int{64 << 10, 256 << 10, 1 << 20, 2250 << 10} {
		for _, shape := range pdftest.Shapes {
			resID++
			pdf := pdftest.Hostile(shape, size)
			pr, el, cpu, n, err := send(resID, pdf)
			if err != nil {
				t.Fatalf("%s, %d-byte PDF (%d-byte body): %v", shape, len(pdf), n, err)
			}
			d := pr.Request.Documents[0]
			if pr.RequestCode != 200 || d.Sent || d.Error != "FORMAT_ERROR" {
				t.Fatalf("%s, %d-byte PDF: %+v; want FORMAT_ERROR", shape, len(pdf), pr)
			}
			if a := p.snailAccount(t, token); a.Available != before.Available || a.Held != 0 || a.Captured != before.Captured {
				t.Fatalf("%s, %d-byte PDF: credit taken: %+v, before %+v", shape, len(pdf), a, before)
			}
			worst = max(worst, el)
			abuseFigure(t, "%-16s PDF %8d B (body %8d B): refused FORMAT_ERROR in %.3f s (server CPU %.2f s)",
				shape, len(pdf), n, el.Seconds(), cpu.Seconds())
		}
	}
	abuseFigure(t, "slowest hostile PDF answered in %.3f s (target: under 1 s); server after them: %s", worst.Seconds(), p.Memory())

	// Above the listener's limit: printed, not asserted (another change
	// raises the listener's limit to the route's).
	big := pdftest.Hostile("nested_strings", 3500<<10)
	resID++
	pr, el, _, n, err := send(resID, big)
	outcome := fmt.Sprintf("%+v", pr.Request.Documents)
	if err != nil {
		outcome = "transport: " + strings.ReplaceAll(err.Error(), "\n", " ")
	}
	abuseFigure(t, "nested_strings   PDF %8d B (body %8d B), above the listener's 4 MiB today: %.3f s, %.200s", len(big), n, el.Seconds(), outcome)

	// Still serving: a balance call, and a good letter sent and charged.
	if _, rerr, err := p.Call("/iap/1/balance", map[string]any{"account_token": randHex(16), "service_name": "sms"}, 30*time.Second); err != nil || rerr != nil {
		t.Fatalf("balance after the hostile PDFs: %v %v", rerr, err)
	}
	pr, _, _, _, err = send(2, nil)
	if err != nil || !pr.Request.Documents[0].Sent {
		t.Fatalf("a good letter after the hostile PDFs: %+v %v", pr, err)
	}
	if a := p.snailAccount(t, token); a.Captured != 2*before.Captured || a.Held != 0 {
		t.Fatalf("after the good letter: %+v (one letter: %s)", a, before.Captured)
	}
	if exited, err := p.Exited(); exited {
		t.Fatalf("iapd exited: %v\n%s", err, p.Stderr.String())
	}
}

// TestAbusePDFBudget: with a small budget of steps (settings
// pdf_max_steps), a hostile PDF is refused for its budget — FORMAT_ERROR,
// no credit taken — and the refusal is counted in
// iap_refusals_total{reason="pdf_budget"}.
func TestAbusePDFBudget(t *testing.T) {
	letter := loadPDFLetter(t)
	p := startAbuse(t, abuseOpts{Config: "services:\n  snailmail:\n    settings:\n      pdf_max_steps: 100000\n"})
	token := randHex(16)
	if err := p.Admin.call(context.Background(), "POST", "/v1/account/credit", nil,
		map[string]any{"service": "snailmail", "token": token, "amount": json.Number("5")}, nil); err != nil {
		t.Fatalf("admin: credit: %v", err)
	}
	pdf := pdftest.Hostile("no_endstream", 1<<20)
	t0 := time.Now()
	res, rerr, err := p.Post("/iap/snailmail/1/print", letter.body(t, token, 7, pdf), 120*time.Second)
	if err != nil || rerr != nil {
		t.Fatalf("print: %v %v", rerr, err)
	}
	var pr printResult
	if err := json.Unmarshal(res, &pr); err != nil || len(pr.Request.Documents) != 1 || pr.Request.Documents[0].Error != "FORMAT_ERROR" {
		t.Fatalf("answer %s", res)
	}
	if a := p.snailAccount(t, token); a.Available.String() != "5" || a.Held != 0 || a.Captured != 0 {
		t.Fatalf("credit taken: %+v", a)
	}
	code, metrics := get(t, p.Ops+"/metrics", "")
	if code != 200 || !strings.Contains(metrics, `iap_refusals_total{reason="pdf_budget"} 1`) {
		t.Fatalf("/metrics (HTTP %d) has no pdf_budget refusal:\n%s", code, grepLines(metrics, "iap_refusals"))
	}
	abuseFigure(t, "no_endstream PDF %d B over a budget of 100000 steps: refused in %.3f s, counted", len(pdf), time.Since(t0).Seconds())
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
