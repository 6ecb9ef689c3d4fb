package company

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/storage"
)

func priced(n int64) *Price { return &Price{credits(n)} }

func params(tok string, kv ...any) map[string]any {
	p := map[string]any{"account_token": tok, "db_uuid": "u", "dbuuid": "u", "country_code": "BE", "zip": "1000"}
	for i := 0; i+1 < len(kv); i += 2 {
		p[kv[i].(string)] = kv[i+1]
	}
	return p
}

// FORBIDDEN (fixtures odoo18/odoo19 nc 018): a D&B search answered with a
// bare {"credit_error": true} crashes 18.0 and 19.0, which iterate data
// unless error is set. Whatever happens — no credit, provider down,
// indeterminate — a search answer carries data, or error, or is the
// error envelope.
func TestDnBSearchNeverBareCreditError(t *testing.T) {
	check := func(t *testing.T, a answer) {
		t.Helper()
		if a.ErrName != "" {
			return
		}
		var res map[string]json.RawMessage
		if err := json.Unmarshal(a.Result, &res); err != nil {
			t.Fatalf("result not an object: %s", a.Raw)
		}
		data, hasData := res["data"]
		_, hasErr := res["error"]
		if !hasData && !hasErr {
			t.Fatalf("FORBIDDEN answer (no data, no error): %s", a.Raw)
		}
		if hasData {
			var items []json.RawMessage
			if err := json.Unmarshal(data, &items); err != nil || items == nil {
				t.Fatalf("data is not a list: %s", a.Raw)
			}
		}
	}
	for _, path := range []string{"/api/dnb/1/search_by_name", "/api/dnb/1/search_by_vat"} {
		q := "fake"
		if strings.HasSuffix(path, "vat") {
			q = "BE0000000001"
		}
		t.Run(path+"/priced-no-credit", func(t *testing.T) {
			h := newHarness(t, AutocompleteConfig{SearchPrice: priced(1)}, LeadsConfig{}, &fake{name: "f", companies: testCompanies()})
			a := h.call(path, params(tokA, "query", q, "query_country_code", "BE"))
			check(t, a)
			if a.ErrName != "InsufficientCreditError" {
				t.Fatalf("want InsufficientCreditError, got %s", a.Raw)
			}
		})
		t.Run(path+"/priced-with-credit", func(t *testing.T) {
			h := newHarness(t, AutocompleteConfig{SearchPrice: priced(1)}, LeadsConfig{}, &fake{name: "f", companies: testCompanies()})
			h.credit(storage.PartnerAutocomplete, tokA, 5)
			a := h.call(path, params(tokA, "query", q, "query_country_code", false))
			check(t, a)
			if !strings.Contains(string(a.Result), `"Fake Co 1"`) {
				t.Fatalf("want a suggestion: %s", a.Raw)
			}
			if acct := h.account(storage.PartnerAutocomplete, tokA); acct.Captured != credits(1) || acct.Held != 0 {
				t.Fatalf("search not charged once: %+v", acct)
			}
		})
		for _, kind := range []providers.Kind{providers.Unavailable, providers.Indeterminate} {
			t.Run(path+"/provider-"+kind.String(), func(t *testing.T) {
				h := newHarness(t, AutocompleteConfig{SearchPrice: priced(1)}, LeadsConfig{}, &fake{name: "f", fail: kind})
				h.credit(storage.PartnerAutocomplete, tokA, 5)
				a := h.call(path, params(tokA, "query", q))
				check(t, a)
				if !strings.Contains(string(a.Result), `"error":`) || !strings.Contains(string(a.Result), `"data":[]`) {
					t.Fatalf("want in-band error and data []: %s", a.Raw)
				}
				acct := h.account(storage.PartnerAutocomplete, tokA)
				wantHeld := storage.Credits(0)
				if kind == providers.Indeterminate {
					wantHeld = credits(1) // kept for reconciliation
				}
				if acct.Held != wantHeld || acct.Captured != 0 {
					t.Fatalf("%s: held %s captured %s, want held %s, nothing captured", kind, acct.Held, acct.Captured, wantHeld)
				}
			})
		}
	}
}

// FORBIDDEN (fixtures odoo18 024–027 README): a people_data item without
// a "phone" key rolls the whole request back on 18.0. Every item of lead
// mining (v1, v2, D&B) and reveal carries it, null when unknown.
func TestPeopleDataAlwaysHasPhone(t *testing.T) {
	h := newHarness(t, AutocompleteConfig{}, LeadsConfig{}, &fake{name: "f", companies: testCompanies()})
	h.credit(storage.Reveal, tokA, 100)
	people := map[string]any{"lead_number": 2, "search_type": "people", "countries": []any{map[string]any{"code": "BE", "states": []any{}}},
		"contact_number": 2, "contact_filter_type": "role", "preferred_role": "CEO", "other_roles": []any{"information_technology"}}
	v1 := map[string]any{"lead_number": 2, "search_type": "people", "countries": []any{"BE"}, "contact_number": 2,
		"contact_filter_type": "seniority", "seniority": "executive"}
	rules := map[string]any{"7": map[string]any{"rule_id": 7, "lead_for": "people", "countries": []any{"BE"}, "filter_on_size": false,
		"company_size_min": 0, "company_size_max": 0, "industry_tags": []any{}, "user_country": "BE", "contact_filter_type": "role",
		"preferred_role": "CEO", "other_roles": []any{}, "seniority": "", "extra_contacts": 1}}
	cases := []struct {
		path   string
		params map[string]any
	}{
		{"/iap/clearbit/1/lead_mining_request", params(tokA, "data", v1)},
		{"/iap/clearbit/2/lead_mining_request", params(tokA, "data", people)},
		{"/api/dnb/1/search_by_criteria", params(tokA, "query", people, "db_version", "19.0", "reveal_ids", []any{})},
		{"/iap/clearbit/1/reveal", map[string]any{"account_token": tokA, "data": map[string]any{"ips": map[string]any{"198.51.100.1": []any{7}}, "rules": rules}}},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			a := h.call(c.path, c.params)
			if a.ErrName != "" {
				t.Fatalf("error: %s", a.Raw)
			}
			var res map[string]any
			if err := json.Unmarshal(a.Result, &res); err != nil {
				t.Fatal(err)
			}
			key := "data"
			if strings.HasSuffix(c.path, "reveal") {
				key = "reveal_data"
			}
			items, _ := res[key].([]any)
			if len(items) == 0 {
				t.Fatalf("no items: %s", a.Raw)
			}
			sawNull := false
			for _, it := range items {
				pd, ok := it.(map[string]any)["people_data"].([]any)
				if !ok || len(pd) == 0 {
					t.Fatalf("no people_data: %s", a.Raw)
				}
				for _, p := range pd {
					pm := p.(map[string]any)
					for _, k := range []string{"full_name", "email", "title", "phone"} {
						if _, ok := pm[k]; !ok {
							t.Fatalf("FORBIDDEN: people_data item without %q: %s", k, a.Raw)
						}
					}
					if pm["phone"] == nil {
						sawNull = true
					}
				}
			}
			if !sawNull {
				t.Fatalf("the contact without a phone should be there with phone null: %s", a.Raw)
			}
			h.account(storage.Reveal, tokA)
		})
	}
}

// Enrichment holds the most it may cost, captures what was found, and is
// all or nothing when the account cannot pay for what was found.
func TestLeadEnrichmentBilling(t *testing.T) {
	h := newHarness(t, AutocompleteConfig{}, LeadsConfig{EnrichPrice: priced(2)}, &fake{name: "f", companies: testCompanies()})
	h.credit(storage.Reveal, tokA, 10)
	a := h.call("/iap/clearbit/1/lead_enrichment_email", params(tokA, "domains", map[string]any{"1": "fake1.example", "2": "nope.example", "3": "fake2.example"}))
	var res map[string]json.RawMessage
	if err := json.Unmarshal(a.Result, &res); err != nil || len(res) != 3 {
		t.Fatalf("want the 3 keys: %s", a.Raw)
	}
	if string(res["2"]) != "false" {
		t.Errorf("unknown domain: %s, want false", res["2"])
	}
	var co map[string]json.RawMessage
	if err := json.Unmarshal(res["1"], &co); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"country_code", "domain", "clearbit_id", "name", "legal_name", "phone", "phone_numbers", "location", "city", "postal_code", "state_code", "email"} {
		if _, ok := co[k]; !ok {
			t.Errorf("company without %q (16–18 index it): %s", k, res["1"])
		}
	}
	if acct := h.account(storage.Reveal, tokA); acct.Captured != credits(4) || acct.Held != 0 || acct.Available != credits(6) {
		t.Fatalf("want 2 leads × 2 captured: %+v", acct)
	}
	// 3 credits left after another charge: two found would cost 4 → nothing charged, InsufficientCreditError asking 4.
	h.credit(storage.Reveal, tokB, 3)
	a = h.call("/iap/clearbit/1/lead_enrichment_email", params(tokB, "domains", map[string]any{"1": "fake1.example", "3": "fake2.example"}))
	if a.ErrName != "InsufficientCreditError" || !strings.Contains(a.ErrMsg, `"credit": 4`) || !strings.Contains(a.ErrMsg, `"service_name": "reveal"`) {
		t.Fatalf("want InsufficientCreditError for 4 reveal credits: %s", a.Raw)
	}
	if acct := h.account(storage.Reveal, tokB); acct.Captured != 0 || acct.Held != 0 || acct.Available != credits(3) {
		t.Fatalf("nothing must be charged: %+v", acct)
	}
}

// What becomes of the hold for each provider outcome.
func TestHoldFate(t *testing.T) {
	cases := []struct {
		kind              providers.Kind
		wantHeld, wantCap storage.Credits
		wantInBand        string
	}{
		{0, 0, credits(1), `"data":{`},
		{providers.Invalid, 0, 0, `"error":"No company data found."`},
		{providers.Unavailable, 0, 0, `"error":"The company data provider`},
		{providers.Indeterminate, credits(1), 0, `"error":"The company data provider`},
	}
	for _, c := range cases {
		t.Run(c.kind.String(), func(t *testing.T) {
			h := newHarness(t, AutocompleteConfig{}, LeadsConfig{}, &fake{name: "f", companies: testCompanies(), fail: c.kind})
			h.credit(storage.PartnerAutocomplete, tokA, 3)
			a := h.call("/api/dnb/1/enrich_by_duns", params(tokA, "duns", "900000001"))
			if !strings.Contains(string(a.Result), c.wantInBand) {
				t.Fatalf("answer %s, want %s", a.Raw, c.wantInBand)
			}
			acct := h.account(storage.PartnerAutocomplete, tokA)
			if acct.Held != c.wantHeld || acct.Captured != c.wantCap {
				t.Fatalf("held %s captured %s, want %s and %s", acct.Held, acct.Captured, c.wantHeld, c.wantCap)
			}
		})
	}
}

// The first provider that has the capability and finds something
// answers; an unavailable one is skipped.
func TestProviderOrder(t *testing.T) {
	down := &fake{name: "down", fail: providers.Unavailable}
	empty := &fake{name: "empty"}
	full := &fake{name: "full", companies: testCompanies()}
	h := newHarness(t, AutocompleteConfig{}, LeadsConfig{}, down, empty, full)
	h.credit(storage.PartnerAutocomplete, tokA, 3)
	a := h.call("/api/dnb/1/enrich_by_domain", params(tokA, "domain", "fake3.example"))
	if !strings.Contains(string(a.Result), `"Fake Co 3"`) {
		t.Fatalf("want Fake Co 3: %s", a.Raw)
	}
	if down.calls != 1 || empty.calls != 1 || full.calls != 1 {
		t.Fatalf("calls down %d empty %d full %d, want 1 each", down.calls, empty.calls, full.calls)
	}
}

// Reveal pays, in order, for the companies the credit covers and reports
// credit_error for the rest; not-found IPs are free.
func TestRevealPartialCredit(t *testing.T) {
	h := newHarness(t, AutocompleteConfig{}, LeadsConfig{}, &fake{name: "f", companies: testCompanies()})
	h.credit(storage.Reveal, tokA, 3) // one company + one contact = 2; the second would need 2 more
	rules := map[string]any{"1": map[string]any{"rule_id": 1, "lead_for": "people", "countries": []any{"BE"}, "filter_on_size": true,
		"company_size_min": 0, "company_size_max": 1000, "industry_tags": []any{"86"}, "user_country": "BE",
		"contact_filter_type": "role", "preferred_role": "CEO", "other_roles": []any{}, "seniority": "", "extra_contacts": 0}}
	ips := map[string]any{"198.51.100.1": []any{1}, "198.51.100.2": []any{1}, "203.0.113.9": []any{1}}
	a := h.call("/iap/clearbit/1/reveal", map[string]any{"account_token": tokA, "data": map[string]any{"ips": ips, "rules": rules}})
	var res struct {
		RevealData []map[string]any `json:"reveal_data"`
		CreditErr  bool             `json:"credit_error"`
	}
	if err := json.Unmarshal(a.Result, &res); err != nil {
		t.Fatalf("%v: %s", err, a.Raw)
	}
	if !res.CreditErr || len(res.RevealData) != 1 || res.RevealData[0]["ip"] != "198.51.100.1" || res.RevealData[0]["credit"] != 2.0 {
		t.Fatalf("want 198.51.100.1 revealed for 2 credits, then credit_error: %s", a.Raw)
	}
	if acct := h.account(storage.Reveal, tokA); acct.Captured != credits(2) || acct.Held != 0 || acct.Available != credits(1) {
		t.Fatalf("want 2 captured, 1 left: %+v", acct)
	}
	// With 1 credit left nothing can be paid: credit_error, reveal_data [].
	a = h.call("/iap/clearbit/1/reveal", map[string]any{"account_token": tokA, "data": map[string]any{"ips": ips, "rules": rules}})
	if string(a.Result) != `{"reveal_data":[],"credit_error":true}` {
		t.Fatalf("out of credit: %s", a.Raw)
	}
}

// A neutralised database, a banned and an unregistered account are
// refused on every route, and nothing is held or charged.
func TestRefusals(t *testing.T) {
	h := newHarness(t, AutocompleteConfig{SearchPrice: priced(1)}, LeadsConfig{}, &fake{name: "f", companies: testCompanies()})
	h.credit(storage.PartnerAutocomplete, tokA, 5)
	h.credit(storage.Reveal, tokA, 5)
	banned := storage.Banned
	unreg := storage.Unregistered
	for _, svc := range []storage.ServiceName{storage.PartnerAutocomplete, storage.Reveal} {
		h.credit(svc, tokB, 5)
		if _, err := h.ledger.UpdateAccount(t.Context(), svc, tokB, storage.AccountUpdate{State: &banned}); err != nil {
			t.Fatal(err)
		}
	}
	const tokC = "cccccccccccccccccccccccccccccccc"
	for _, svc := range []storage.ServiceName{storage.PartnerAutocomplete, storage.Reveal} {
		h.credit(svc, tokC, 5)
		if _, err := h.ledger.UpdateAccount(t.Context(), svc, tokC, storage.AccountUpdate{State: &unreg}); err != nil {
			t.Fatal(err)
		}
	}
	routes := map[string]map[string]any{
		"/iap/partner_autocomplete/search":      {"query": "fake"},
		"/iap/partner_autocomplete/enrich":      {"domain": "fake1.example"},
		"/iap/partner_autocomplete/search_vat":  {"vat": "BE0000000001"},
		"/api/dnb/1/search_by_name":             {"query": "fake"},
		"/api/dnb/1/enrich_by_duns":             {"duns": "900000001"},
		"/iap/clearbit/1/lead_enrichment_email": {"domains": map[string]any{"1": "fake1.example"}},
		"/iap/clearbit/2/lead_mining_request":   {"data": map[string]any{"lead_number": 1, "search_type": "companies", "countries": []any{map[string]any{"code": "BE"}}}},
		"/iap/clearbit/1/reveal":                {"data": map[string]any{"ips": map[string]any{"198.51.100.1": []any{}}, "rules": map[string]any{}}},
	}
	for _, tok := range []string{tokA + "+disabled", tokB, tokC} {
		for path, extra := range routes {
			p := params(tok)
			for k, v := range extra {
				p[k] = v
			}
			a := h.call(path, p)
			if a.ErrName != "AccessError" {
				t.Errorf("%s with %s: want AccessError, got %s", path, tok[28:], a.Raw)
			}
		}
	}
	for _, tok := range []string{tokA, tokB, tokC} {
		for _, svc := range []storage.ServiceName{storage.PartnerAutocomplete, storage.Reveal} {
			if acct := h.account(svc, tok); acct.Captured != 0 || acct.Held != 0 {
				t.Errorf("%s/%s charged: %+v", svc, tok, acct)
			}
		}
	}
}

// Lead mining: v1's flat country list, D&B's reveal_ids left out, the
// cost of what was found captured, and all or nothing without enough
// credit.
func TestMining(t *testing.T) {
	h := newHarness(t, AutocompleteConfig{}, LeadsConfig{CompanyPrice: priced(2), ContactPrice: priced(1)}, &fake{name: "f", companies: testCompanies()})
	h.credit(storage.Reveal, tokA, 20)
	a := h.call("/iap/clearbit/1/lead_mining_request", params(tokA, "data", map[string]any{"lead_number": 2, "search_type": "companies", "countries": []any{"BE", "US"}}))
	if n := strings.Count(string(a.Result), `"company_data"`); n != 2 || !strings.Contains(string(a.Result), `"people_data":[]`) {
		t.Fatalf("v1: %s", a.Raw)
	}
	if acct := h.account(storage.Reveal, tokA); acct.Captured != credits(4) {
		t.Fatalf("v1: 2 companies × 2, got %s", acct.Captured)
	}
	a = h.call("/api/dnb/1/search_by_criteria", params(tokA, "db_version", "19.0", "reveal_ids", []any{"900000001", "900000002"},
		"query", map[string]any{"lead_number": 2, "search_type": "people", "countries": []any{map[string]any{"code": "BE", "states": []any{}}},
			"contact_number": 1, "contact_filter_type": "seniority", "seniority": "executive"}))
	if strings.Contains(string(a.Result), `"duns":"900000001"`) || !strings.Contains(string(a.Result), `"duns":"900000003"`) ||
		!strings.Contains(string(a.Result), `"duns":"900000004"`) || !strings.Contains(string(a.Result), `"people_data":[{"full_name":"No Phone","email":"ceo@fake3.example","title":"CEO","phone":null}]`) {
		t.Fatalf("D&B: known ids must be left out: %s", a.Raw)
	}
	if acct := h.account(storage.Reveal, tokA); acct.Captured != credits(4+6) || acct.Held != 0 {
		t.Fatalf("D&B: 2 × (2 + 1) more, got %+v", acct)
	}
	// 10 left; 4 companies with 2 contacts would cost 16: nothing charged.
	a = h.call("/iap/clearbit/2/lead_mining_request", params(tokA, "data", map[string]any{"lead_number": 4, "search_type": "people",
		"countries": []any{map[string]any{"code": "BE"}}, "contact_number": 2, "contact_filter_type": "role", "preferred_role": "CEO",
		"other_roles": []any{"information_technology"}}))
	if a.ErrName != "InsufficientCreditError" || !strings.Contains(a.ErrMsg, `"credit": 16`) {
		t.Fatalf("want InsufficientCreditError for 16: %s", a.Raw)
	}
	if acct := h.account(storage.Reveal, tokA); acct.Captured != credits(10) || acct.Held != 0 || acct.Available != credits(10) {
		t.Fatalf("nothing more charged: %+v", acct)
	}
	for _, bad := range []map[string]any{
		{"lead_number": 0, "search_type": "companies"},
		{"lead_number": 201, "search_type": "companies"},
		{"lead_number": 1, "search_type": "everyone"},
		{"lead_number": 1, "search_type": "people", "contact_number": 9},
	} {
		if a := h.call("/iap/clearbit/2/lead_mining_request", params(tokA, "data", bad)); a.ErrName != "UserError" {
			t.Errorf("%v: want a UserError, got %s", bad, a.Raw)
		}
	}
}

// The same company behind two visitor IPs of one batch is charged once.
func TestRevealSameCompanyOnce(t *testing.T) {
	cs := testCompanies()
	cs[1].ID, cs[1].Domain = cs[0].ID, cs[0].Domain // 198.51.100.2 is the same company as .1
	h := newHarness(t, AutocompleteConfig{}, LeadsConfig{}, &fake{name: "f", companies: cs})
	h.credit(storage.Reveal, tokA, 10)
	rules := map[string]any{"1": map[string]any{"rule_id": 1, "lead_for": "companies", "countries": []any{}, "filter_on_size": false, "industry_tags": []any{}}}
	a := h.call("/iap/clearbit/1/reveal", map[string]any{"account_token": tokA, "data": map[string]any{
		"ips": map[string]any{"198.51.100.1": []any{1}, "198.51.100.2": []any{1}}, "rules": rules}})
	if strings.Count(string(a.Result), `"clearbit_id":"900000001"`) != 4 || !strings.Contains(string(a.Result), `"credit":0`) {
		t.Fatalf("%s", a.Raw)
	}
	if acct := h.account(storage.Reveal, tokA); acct.Captured != credits(1) {
		t.Fatalf("charged %s, want 1", acct.Captured)
	}
}
