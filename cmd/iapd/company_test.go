package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/rpc/admin"
	"github.com/iapd/iapd/rpc/company"
	"github.com/iapd/iapd/rpc/rpctest"
	"github.com/iapd/iapd/storage"
)

// companyRoutes are the routes of package rpc/company, by path.
func companyRoutes() map[string]rpc.Route {
	out := map[string]rpc.Route{}
	for _, r := range append(company.AutocompleteRoutes(), company.LeadsRoutes()...) {
		out[r.Path] = r
	}
	return out
}

// companyFixturePath is the route a captured request was for: the capture
// server told some requests apart with a path prefix (/inband,
// /envelope) put in front of the endpoint; a real Odoo sends the route.
func companyFixturePath(p string) string {
	for _, prefix := range []string{"/inband", "/envelope"} {
		if rest, ok := strings.CutPrefix(p, prefix); ok && strings.HasPrefix(rest, "/") {
			return rest
		}
	}
	return p
}

// companyAnswer is one answer read off the wire.
type companyAnswer struct {
	raw     []byte
	result  json.RawMessage
	errName string // last dotted segment of error.data.name
	errMsg  string
}

// companyPost sends body to url and checks the envelope Odoo needs (PROTOCOL
// §1.2–1.3): HTTP 200, JSON, id echoed, exactly one of result and error,
// error.data.name and .message strings.
func companyPost(t *testing.T, u string, body []byte, wantID json.RawMessage) companyAnswer {
	t.Helper()
	resp, err := http.Post(u, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTP %d (%v): %s", resp.StatusCode, err, raw)
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("not JSON: %s", raw)
	}
	if wantID != nil && string(env["id"]) != string(wantID) {
		t.Errorf("id %s, want %s", env["id"], wantID)
	}
	a := companyAnswer{raw: raw, result: env["result"]}
	errRaw, hasErr := env["error"]
	if hasErr == (a.result != nil) {
		t.Fatalf("want exactly one of result and error: %s", raw)
	}
	if hasErr {
		var e struct {
			Data *struct {
				Name    *string `json:"name"`
				Message *string `json:"message"`
			} `json:"data"`
		}
		if json.Unmarshal(errRaw, &e) != nil || e.Data == nil || e.Data.Name == nil || e.Data.Message == nil {
			t.Fatalf("error without data.name and data.message: %s", raw)
		}
		n := *e.Data.Name
		a.errName, a.errMsg = n[strings.LastIndexByte(n, '.')+1:], *e.Data.Message
	}
	return a
}

// companyLedger fails unless every account keeps recharged = available +
// held + captured, and (the sandbox providers are never indeterminate)
// nothing is left held.
func companyLedger(t *testing.T, s *testServer) []admin.Account {
	t.Helper()
	c := &adminClient{base: s.ops, token: testAdminToken, hc: &http.Client{Timeout: 30 * time.Second}}
	var list admin.AccountList
	if err := c.call(context.Background(), "GET", "/v1/accounts", url.Values{"limit": {"1000"}}, nil, &list); err != nil {
		t.Fatal(err)
	}
	for _, a := range list.Accounts {
		if a.Recharged != a.Available+a.Held+a.Captured {
			t.Fatalf("account %s/%s breaks recharged = available + held + captured: %+v", a.Service, a.Token, a)
		}
		if a.Held != 0 {
			t.Fatalf("account %s/%s has credit left held: %+v", a.Service, a.Token, a)
		}
	}
	return list.Accounts
}

func companyCredit(t *testing.T, s *testServer, svc storage.ServiceName, tok string, amount string) {
	t.Helper()
	c := &adminClient{base: s.ops, token: testAdminToken, hc: &http.Client{Timeout: 30 * time.Second}}
	if err := c.call(context.Background(), "POST", "/v1/account/credit", nil, map[string]any{
		"service": svc, "token": tok, "amount": json.Number(amount), "ref": "fixture-" + string(svc) + "-" + tok,
	}, nil); err != nil {
		t.Fatal(err)
	}
}

// covers reports where ours lacks the shape of theirs (the answer a real
// Odoo accepted): every key of theirs is in ours, recursively (arrays by
// their first item). A miss (false or null) in ours where theirs has a
// company, or a level of ours answering "error", is not a shape
// difference: the explicit expectations check what must be found.
func companyCovers(ours, theirs any, path string) []string {
	switch tv := theirs.(type) {
	case map[string]any:
		if ours == nil || ours == false {
			return nil
		}
		om, ok := ours.(map[string]any)
		if !ok {
			return []string{path + ": not an object"}
		}
		if e, ok := om["error"]; ok && e != nil && e != false && e != "" {
			return nil
		}
		var out []string
		for k, v := range tv {
			ov, ok := om[k]
			if !ok {
				out = append(out, path+"."+k+": missing")
				continue
			}
			out = append(out, companyCovers(ov, v, path+"."+k)...)
		}
		return out
	case []any:
		if ours == nil || ours == false {
			return nil
		}
		oa, ok := ours.([]any)
		if !ok {
			return []string{path + ": not a list"}
		}
		if len(oa) > 0 && len(tv) > 0 {
			return companyCovers(oa[0], tv[0], path+"[0]")
		}
	}
	return nil
}

// companyMustFind are substrings the answers to these captured requests must
// hold: the embedded sample directory knows their companies.
var companyMustFind = map[string]string{
	"odoo16/006_iap_partner_autocomplete_search.json":            `"name":"Stub Company SA"`,
	"odoo16/007_iap_partner_autocomplete_enrich.json":            `"company_data":{"name":"Stub Company SA"`,
	"odoo16/008_iap_partner_autocomplete_search_vat.json":        `"vat":"BE0000000097"`,
	"odoo16/013_iap_clearbit_1_lead_enrichment_email.json":       `"1":{"name":"Stub Company SA"`,
	"odoo16/014_iap_clearbit_1_lead_enrichment_email.json":       `"clearbit_id":"371230010"`,
	"odoo16/015_iap_clearbit_1_lead_mining_request.json":         `"clearbit_id":"371234567"`,
	"odoo16/025_iap_clearbit_1_reveal.json":                      `"ip":"198.51.100.9","rule_id":2,"clearbit_id":"371230011"`,
	"odoo16/027_iap_partner_autocomplete_search.json":            `"name":"Example Widgets SA"`,
	"odoo16/nocredit_005_iap_partner_autocomplete_enrich.json":   `{"credit_error":true}`,
	"odoo16/nocredit_009_iap_clearbit_1_reveal.json":             `{"reveal_data":[],"credit_error":true}`,
	"odoo17/006_iap_partner_autocomplete_search.json":            `"name":"Stub Company SA"`,
	"odoo17/007_iap_partner_autocomplete_enrich.json":            `"company_data":{"name":"Stub Company SA"`,
	"odoo17/010_iap_clearbit_1_lead_enrichment_email.json":       `"1":{"name":"Stub Company SA"`,
	"odoo18/014_api_dnb_1_search_by_name.json":                   `"duns":"371234567"`,
	"odoo18/018_api_dnb_1_enrich_by_duns.json":                   `"data":{"name":"Stub Company SA","duns":"371234567"`,
	"odoo18/019_api_dnb_1_enrich_by_domain.json":                 `"data":{"name":"Stub Company SA"`,
	"odoo18/022_iap_clearbit_1_lead_enrichment_email.json":       `"clearbit_id":"371234567"`,
	"odoo18/024_iap_clearbit_2_lead_mining_request.json":         `"name":"Example Widgets SA"`,
	"odoo18/027_iap_clearbit_1_reveal.json":                      `"ip":"198.51.100.9","rule_id":1,"clearbit_id":"371230011"`,
	"odoo19/018_api_dnb_1_enrich_by_duns.json":                   `"industry_code":"J"`,
	"odoo19/dnb_001_api_dnb_1_search_by_criteria.json":           `"duns":"371234568"`,
	"odoo19/024_iap_clearbit_2_lead_mining_request.json":         `"people_data":[{"full_name":"Marie Exemple"`,
	"odoo19/027_iap_clearbit_1_reveal.json":                      `{"ip":"203.0.113.7","not_found":true}`,
	"odoo19/nocredit_022_iap_clearbit_1_reveal.json":             `{"reveal_data":[],"credit_error":true}`,
	"odoo18/nocredit_016_inband_api_dnb_1_enrich_by_duns.json":   `{"credit_error":true}`,
	"odoo18/nocredit_017_inband_api_dnb_1_enrich_by_domain.json": `{"credit_error":true}`,
}

// companyBrokeOdoo are captured answers the fixtures READMEs show breaking
// a real Odoo (a D&B search answered with a bare credit_error): never a
// shape to copy.
var companyBrokeOdoo = map[string]bool{"nocredit_018_inband_api_dnb_1_search_by_name.json": true}

// TestCompanyFixturesThroughRun replays every captured partner
// autocomplete, enrichment, mining and reveal request (odoo16, odoo17, odoo18,
// odoo19), byte for byte, to iapd started by run() with its embedded
// default (the sample directory): the normal captures against accounts
// holding credit, the nocredit_* captures against accounts without any.
// Each answer must have the shape the real Odoo accepted (the captured
// response's keys, recursively), the credit problem the way the fixtures
// README shows Odoo handling it for that route, never one of the two
// answers that broke a real 18.0, and the ledger invariant must hold
// after each.
func TestCompanyFixturesThroughRun(t *testing.T) {
	env := map[string]string{"IAPD_ADMIN_TOKEN": testAdminToken}
	replayCompanyFixtures(t, startServer(t, env), startServer(t, env), func(s string) string { return s }, func(d []string) []string { return d })
}

// replayCompanyFixtures replays every captured company request to paid
// (credited first) or, for the captures Odoo made without credit, to
// broke, checking each answer (companyCheckAnswer), the fixture's
// companyMustFind text (through mustFind: the ids an index gives), the
// keys of the answer Odoo accepted (through keep: differences allowed) and
// the ledger invariant; then that both services were charged on paid and
// nothing on broke.
func replayCompanyFixtures(t *testing.T, paid, broke *testServer, mustFind func(string) string, keep func([]string) []string) {
	t.Helper()
	routes := companyRoutes()
	replayed := map[bool]int{}
	for _, version := range rpctest.Versions {
		for _, req := range rpctest.Load(t, version, nil) {
			path := companyFixturePath(req.Path)
			rt, ok := routes[path]
			if !ok {
				continue
			}
			key := version + "/" + req.Name
			t.Run(key, func(t *testing.T) {
				params := req.Params(t)
				token, _ := params["account_token"].(string)
				disabled := strings.HasSuffix(token, "+disabled")
				s := paid
				if req.NoCredit() {
					s = broke
				} else if token != "" {
					companyCredit(t, s, rt.Service, strings.SplitN(token, "+", 2)[0], "1000")
				}
				a := companyPost(t, s.public+path, req.Wire(t), req.ID(t))
				companyCheckAnswer(t, path, params, a, req.NoCredit(), disabled)
				if want := mustFind(companyMustFind[key]); want != "" && !strings.Contains(string(a.result), want) {
					t.Errorf("answer lacks %s:\n%s", want, a.raw)
				}
				if theirs, ok := req.Response(t); ok && a.result != nil && !disabled && !companyBrokeOdoo[req.Name] {
					var tenv struct{ Result any }
					var ours any
					if json.Unmarshal(theirs, &tenv) == nil && json.Unmarshal(a.result, &ours) == nil && tenv.Result != nil {
						if diffs := keep(companyCovers(ours, tenv.Result, "result")); len(diffs) > 0 {
							sort.Strings(diffs)
							t.Errorf("answer lacks keys of the one Odoo accepted: %v\n%s", diffs, a.raw)
						}
					}
				}
				companyLedger(t, s)
			})
			replayed[req.NoCredit()]++
		}
	}
	if replayed[false] < 40 || replayed[true] < 20 {
		t.Fatalf("replayed %d normal and %d nocredit captures; the fixtures hold more", replayed[false], replayed[true])
	}
	// Something was charged, on both services, and nothing on the broke server.
	charged := map[storage.ServiceName]bool{}
	for _, a := range companyLedger(t, paid) {
		if a.Captured > 0 {
			charged[a.Service] = true
		}
	}
	if !charged[storage.PartnerAutocomplete] || !charged[storage.Reveal] {
		t.Errorf("charged services %v: want partner_autocomplete and reveal", charged)
	}
	for _, a := range companyLedger(t, broke) {
		if a.Captured != 0 {
			t.Errorf("an account without credit was charged: %+v", a)
		}
	}
	t.Logf("replayed %d captures with credit, %d without", replayed[false], replayed[true])
}

// companyCheckAnswer checks one answer by route (PROTOCOL §8–§11 and the
// fixtures READMEs).
func companyCheckAnswer(t *testing.T, path string, params map[string]any, a companyAnswer, noCredit, disabled bool) {
	t.Helper()
	if disabled {
		if a.errName != "AccessError" {
			t.Fatalf("a +disabled token must be refused: %s", a.raw)
		}
		return
	}
	var res any
	if a.result != nil {
		if err := json.Unmarshal(a.result, &res); err != nil {
			t.Fatal(err)
		}
	}
	obj, _ := res.(map[string]any)
	wantErr := func(name string) {
		t.Helper()
		if a.errName != name {
			t.Fatalf("want %s, got %s", name, a.raw)
		}
		if name == "InsufficientCreditError" {
			var payload map[string]any
			if err := json.Unmarshal([]byte(a.errMsg), &payload); err != nil || payload["service_name"] == nil || payload["credit"] == nil {
				t.Fatalf("InsufficientCreditError message must be the JSON object of §1.5: %q", a.errMsg)
			}
		}
	}
	switch path {
	case "/iap/partner_autocomplete/search":
		if _, ok := res.([]any); !ok {
			t.Fatalf("want a list: %s", a.raw)
		}
	case "/iap/partner_autocomplete/search_vat":
		if res != false && obj == nil {
			t.Fatalf("want false or a company: %s", a.raw)
		}
	case "/iap/partner_autocomplete/enrich":
		if _, ok := obj["credit_error"].(bool); !ok {
			t.Fatalf("want credit_error: %s", a.raw)
		}
	case "/iap/partner_autocomplete/update":
		if res != true {
			t.Fatalf("want true: %s", a.raw)
		}
	case "/api/dnb/1/search_by_name", "/api/dnb/1/search_by_vat":
		if a.errName != "" {
			wantErr("InsufficientCreditError")
			return
		}
		// FORBIDDEN: a bare {"credit_error": true} (18.0/19.0 iterate data).
		if _, ok := obj["data"].([]any); !ok && obj["error"] == nil {
			t.Fatalf("FORBIDDEN D&B search answer without data or error: %s", a.raw)
		}
	case "/api/dnb/1/enrich_by_duns", "/api/dnb/1/enrich_by_gst", "/api/dnb/1/enrich_by_domain":
		if noCredit {
			if string(a.result) != `{"credit_error":true}` {
				t.Fatalf(`want {"credit_error":true}: %s`, a.raw)
			}
			return
		}
		if _, ok := obj["data"].(map[string]any); !ok && obj["error"] == nil {
			t.Fatalf("want data or error: %s", a.raw)
		}
	case "/iap/clearbit/1/lead_enrichment_email":
		if noCredit {
			wantErr("InsufficientCreditError")
			return
		}
		domains, _ := params["domains"].(map[string]any)
		if len(obj) != len(domains) {
			t.Fatalf("want one answer per lead: %s", a.raw)
		}
	case "/iap/clearbit/1/lead_mining_request", "/iap/clearbit/2/lead_mining_request", "/api/dnb/1/search_by_criteria":
		if noCredit {
			wantErr("InsufficientCreditError")
			return
		}
		items, ok := obj["data"].([]any)
		if !ok || len(items) == 0 {
			t.Fatalf("want data: %s", a.raw)
		}
		for _, it := range items {
			companyPeople(t, it.(map[string]any), a.raw)
		}
	case "/iap/clearbit/1/reveal":
		if _, ok := obj["credit_error"].(bool); !ok {
			t.Fatalf("want credit_error: %s", a.raw)
		}
		items, ok := obj["reveal_data"].([]any)
		if !ok {
			t.Fatalf("want reveal_data: %s", a.raw)
		}
		if noCredit && (obj["credit_error"] != true || len(items) != 0) {
			t.Fatalf("without credit want reveal_data [] and credit_error: %s", a.raw)
		}
		for _, it := range items {
			m := it.(map[string]any)
			if m["not_found"] == true {
				continue
			}
			for _, k := range []string{"ip", "rule_id", "clearbit_id", "credit", "reveal_data"} {
				if _, ok := m[k]; !ok {
					t.Fatalf("reveal item without %s: %s", k, a.raw)
				}
			}
			companyPeople(t, m, a.raw)
		}
	default:
		t.Fatalf("no check for %s", path)
	}
}

// companyPeople enforces the second forbidden answer: every people_data item
// has a phone key (and the others the template indexes).
func companyPeople(t *testing.T, item map[string]any, raw []byte) {
	t.Helper()
	pd, ok := item["people_data"].([]any)
	if !ok {
		t.Fatalf("item without a people_data list: %s", raw)
	}
	for _, p := range pd {
		pm := p.(map[string]any)
		for _, k := range []string{"full_name", "email", "title", "phone"} {
			if _, ok := pm[k]; !ok {
				t.Fatalf("FORBIDDEN people_data item without %q: %s", k, raw)
			}
		}
	}
}

// TestCompanyConfigured runs iapd with a configuration naming its own
// providers: a directory loaded from a CSV file (and the sample), and a
// vies instance pointed at a local server speaking VIES's REST API; a
// priced search; and checks the priced search without credit answers
// InsufficientCreditError (the answer the 17.0 and 18.0 captures show Odoo
// handling) and never a bare credit_error, that the configured directory
// and VIES answer, and what is charged.
func TestCompanyConfigured(t *testing.T) {
	vies := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ CountryCode, VATNumber string }
		_ = json.NewDecoder(r.Body).Decode(&req)
		if r.URL.Path != "/check-vat-number" || req.CountryCode != "FR" {
			w.WriteHeader(400)
			_, _ = io.WriteString(w, `{"actionSucceed":false,"errorWrappers":[{"error":"INVALID_INPUT"}]}`)
			return
		}
		valid := req.VATNumber == "99000000001"
		fmt.Fprintf(w, `{"countryCode":"FR","vatNumber":%q,"requestDate":"2026-11-28T10:00:00.000Z","valid":%t,"name":"SARL EXEMPLE VIES","address":"1 RUE DE L'EXEMPLE\n75001 PARIS"}`, req.VATNumber, valid)
	}))
	defer vies.Close()
	dir := t.TempDir()
	csvFile := filepath.Join(dir, "companies.csv")
	if err := os.WriteFile(csvFile, []byte("id,name,domain,vat,country,city,industry_id,employees,ip_ranges,contacts\n"+
		`555000001,Operator Own SA,own.example,BE0400000086,BE,Wavre,165,20,192.0.2.64/26,"[{""name"":""Olga Own"",""role"":""CEO""}]"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "iapd.yaml")
	if err := os.WriteFile(cfg, []byte(`providers:
  companies:
    type: directory
    files: [`+csvFile+`]
    sample: true
  eu-vies:
    type: vies
    base_url: `+vies.URL+`
    timeout: 5s
services:
  partner_autocomplete:
    settings:
      providers: [companies, eu-vies]
      search_price: 1
      enrich_price: 2
  reveal:
    settings:
      providers: [companies]
      enrich_price: 1
      company_price: 3
      contact_price: 1
`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, map[string]string{"IAPD_ADMIN_TOKEN": testAdminToken}, "-config", cfg)
	const tok = "0123456789abcdef0123456789abcdef"
	body := func(p map[string]any) []byte {
		p["account_token"] = tok
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": 1, "params": p})
		return b
	}
	// Priced search without credit: the error envelope (old API and D&B).
	for _, path := range []string{"/iap/partner_autocomplete/search", "/api/dnb/1/search_by_name"} {
		a := companyPost(t, s.public+path, body(map[string]any{"query": "own"}), nil)
		if a.errName != "InsufficientCreditError" {
			t.Fatalf("%s: want InsufficientCreditError, got %s", path, a.raw)
		}
	}
	companyCredit(t, s, storage.PartnerAutocomplete, tok, "10")
	a := companyPost(t, s.public+"/api/dnb/1/search_by_name", body(map[string]any{"query": "own", "query_country_code": false}), nil)
	if !strings.Contains(string(a.result), `"name":"Operator Own SA"`) {
		t.Fatalf("the CSV directory should answer: %s", a.raw)
	}
	a = companyPost(t, s.public+"/api/dnb/1/search_by_vat", body(map[string]any{"query": "99000000001", "query_country_code": "FR"}), nil)
	if !strings.Contains(string(a.result), `"name":"SARL EXEMPLE VIES"`) || !strings.Contains(string(a.result), `"city":"PARIS"`) {
		t.Fatalf("VIES should answer the VAT the directory does not know: %s", a.raw)
	}
	a = companyPost(t, s.public+"/api/dnb/1/enrich_by_domain", body(map[string]any{"domain": "own.example"}), nil)
	if !strings.Contains(string(a.result), `"duns":"555000001"`) {
		t.Fatalf("enrich_by_domain: %s", a.raw)
	}
	for _, acct := range companyLedger(t, s) {
		if acct.Service == storage.PartnerAutocomplete && acct.Token == tok {
			// two priced searches that found (1 + 1) and one enrichment (2)
			if acct.Captured != 4*storage.Scale || acct.Available != 6*storage.Scale {
				t.Fatalf("charged %s, left %s; want 4 and 6", acct.Captured, acct.Available)
			}
		}
	}
	// Reveal: company 3 + 1 contact = 4 credits; with 3, credit_error.
	companyCredit(t, s, storage.Reveal, tok, "3")
	reveal := map[string]any{"data": map[string]any{"ips": map[string]any{"192.0.2.70": []any{1}}, "rules": map[string]any{"1": map[string]any{
		"rule_id": 1, "lead_for": "people", "countries": []any{"BE"}, "filter_on_size": false, "company_size_min": 0,
		"company_size_max": 0, "industry_tags": []any{}, "user_country": "BE", "contact_filter_type": "role",
		"preferred_role": "CEO", "other_roles": []any{}, "seniority": "", "extra_contacts": 0}}}}
	a = companyPost(t, s.public+"/iap/clearbit/1/reveal", body(reveal), nil)
	if string(a.result) != `{"reveal_data":[],"credit_error":true}` {
		t.Fatalf("reveal with too little credit: %s", a.raw)
	}
	c := &adminClient{base: s.ops, token: testAdminToken, hc: &http.Client{Timeout: 30 * time.Second}}
	if err := c.call(context.Background(), "POST", "/v1/account/credit", nil, map[string]any{
		"service": storage.Reveal, "token": tok, "amount": json.Number("1"), "ref": "more",
	}, nil); err != nil {
		t.Fatal(err)
	}
	a = companyPost(t, s.public+"/iap/clearbit/1/reveal", body(reveal), nil)
	if !strings.Contains(string(a.result), `"clearbit_id":"555000001","credit":4`) || !strings.Contains(string(a.result), `"full_name":"Olga Own","email":null,"title":null,"phone":null`) {
		t.Fatalf("reveal: %s", a.raw)
	}
	companyLedger(t, s)

	// The operator updates the CSV and sends SIGHUP: the directory is
	// read again without a restart (README "Configure providers").
	if err := os.WriteFile(csvFile, []byte("id,name,domain,vat,country,city,industry_id,employees,ip_ranges,contacts\n"+
		"555000002,Renamed Own SA,renamed.example,BE0400000086,BE,Wavre,165,20,192.0.2.64/26,\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	companyCredit(t, s, storage.PartnerAutocomplete, tok, "10")
	deadline := time.Now().Add(time.Minute)
	for {
		a = companyPost(t, s.public+"/api/dnb/1/enrich_by_domain", body(map[string]any{"domain": "renamed.example"}), nil)
		if strings.Contains(string(a.result), `"duns":"555000002"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the directory was not reloaded on SIGHUP: %s", a.raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
