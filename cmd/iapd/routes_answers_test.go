package main

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/iapd/iapd/storage"
)

// TestRoutesRefusedAnswers: with every service refused, iapd routes says
// for each route what its refused client sees, read from the route's own
// declaration in its service package (rpc.Route.Answer): the in-band
// answers of PROTOCOL §4.1, §6–§9 and §11, the error envelope elsewhere.
func TestRoutesRefusedAnswers(t *testing.T) {
	cfg := DefaultConfig()
	if cfg.Services == nil {
		cfg.Services = map[string]ServiceConfig{}
	}
	for _, s := range []storage.ServiceName{storage.SMS, storage.Snailmail, storage.PartnerAutocomplete, storage.Reveal} {
		sc := cfg.Services[string(s)]
		sc.Mode = "refuse"
		cfg.Services[string(s)] = sc
	}
	cfg.normalise()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	plan, _, err := routePlan(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	const sms, env = "refused: each SMS in error: unregistered (“no eligible IAP account”)", "refused: JSON-RPC AccessError with the refusal text"
	want := map[string]string{
		"/iap/sms/2/send":                       sms,
		"/iap/sms/3/send":                       sms,
		"/api/sms/3/send":                       sms,
		"/iap/message_send":                     env,
		"/api/sms/1/account/create":             "refused: wizard state closed_feature",
		"/api/sms/2/account/verify":             "refused: wizard state closed_feature",
		"/api/sms/1/account/update_sender":      "refused: wizard state closed_feature",
		"/iap/snailmail/1/print":                "refused: each letter in error UNKNOWN_ERROR",
		"/iap/partner_autocomplete/search":      "refused: no suggestions",
		"/iap/partner_autocomplete/enrich":      "refused: no company data",
		"/iap/partner_autocomplete/search_vat":  "refused: no company data",
		"/iap/partner_autocomplete/update":      "refused: accepted, ignored",
		"/api/dnb/1/search_by_name":             "refused: no suggestions",
		"/api/dnb/1/search_by_vat":              "refused: no suggestions",
		"/api/dnb/1/enrich_by_duns":             "refused: no company data",
		"/api/dnb/1/enrich_by_gst":              "refused: no company data",
		"/api/dnb/1/enrich_by_domain":           "refused: no company data",
		"/iap/clearbit/1/lead_enrichment_email": "refused: no data found for each lead",
		"/iap/clearbit/1/lead_mining_request":   env,
		"/iap/clearbit/2/lead_mining_request":   env,
		"/api/dnb/1/search_by_criteria":         env,
		"/iap/clearbit/1/reveal":                "refused: nothing revealed",
	}
	seen := map[string]bool{}
	for _, l := range plan {
		w, ok := want[l.Path]
		if !ok {
			continue
		}
		seen[l.Path] = true
		if l.Mode != "refuse" || l.Destination != w {
			t.Errorf("%s: mode %q, destination %q; want refuse, %q", l.Path, l.Mode, l.Destination, w)
		}
	}
	for p := range want {
		if !seen[p] {
			t.Errorf("%s: not in iapd routes", p)
		}
	}
}
