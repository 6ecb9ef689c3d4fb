// Package company serves the company-data routes of Odoo's IAP: partner
// autocomplete (PROTOCOL §8, old API and D&B API), lead enrichment (§9),
// lead mining (§10: v1, v2 and D&B search_by_criteria) and website
// visitor reveal (§11). Answers come from the provider instances the
// operator lists for each service (package providers: CompanyByName,
// CompanyByVAT, CompanyByDomain, CompanyByID, CompanyByIP, CompanySearch),
// asked in order; every answer is billed on iapd's ledger: credit held
// before a provider is asked, what was found captured, the rest released,
// a hold kept when a provider's answer is indeterminate.
//
// Package company may import the standard library, storage (the ledger
// contract), providers (the SPI, never an adapter), rpc (registration
// and param helpers) and rpc/fallback (its routes' refusal answers).
// cmd/iapd wires it: Register adds its routes to an
// rpc.Server.
package company

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/rpc/fallback"
	"github.com/iapd/iapd/storage"
)

// Default prices (credits).
var (
	defaultEnrichPrice  = storage.Credits(storage.Scale)
	defaultCompanyPrice = storage.Credits(storage.Scale)
	defaultContactPrice = storage.Credits(storage.Scale)
)

// Deps are what the services are built with.
type Deps struct {
	Ledger storage.Ledger
	Logger *slog.Logger
}

// NewAutocomplete builds the partner_autocomplete service from its
// settings and its provider instances (in the order of the settings).
// At least one instance must answer searches by name.
func NewAutocomplete(cfg AutocompleteConfig, ps []providers.Provider, deps Deps) (*Autocomplete, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := logger(deps, storage.PartnerAutocomplete)
	f, err := newFinder(ps, log, "CompanyByName")
	if err != nil {
		return nil, err
	}
	a := &Autocomplete{
		bill:       &biller{ledger: deps.Ledger, svc: storage.PartnerAutocomplete, ttl: ttl(cfg.HoldTTL), log: log},
		find:       f,
		searchCost: price(cfg.SearchPrice, 0),
		enrichCost: price(cfg.EnrichPrice, defaultEnrichPrice),
		maxResults: cfg.MaxResults,
	}
	if a.maxResults == 0 {
		a.maxResults = 10
	}
	return a, nil
}

// NewLeads builds the reveal service (enrichment, mining, reveal). Its
// instances must together answer by domain, by IP and by criteria.
func NewLeads(cfg LeadsConfig, ps []providers.Provider, deps Deps) (*Leads, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := logger(deps, storage.Reveal)
	f, err := newFinder(ps, log, "CompanyByDomain", "CompanyByIP", "CompanySearch")
	if err != nil {
		return nil, err
	}
	return &Leads{
		bill:        &biller{ledger: deps.Ledger, svc: storage.Reveal, ttl: ttl(cfg.HoldTTL), log: log},
		find:        f,
		enrichCost:  price(cfg.EnrichPrice, defaultEnrichPrice),
		companyCost: price(cfg.CompanyPrice, defaultCompanyPrice),
		contactCost: price(cfg.ContactPrice, defaultContactPrice),
	}, nil
}

func logger(deps Deps, svc storage.ServiceName) *slog.Logger {
	l := deps.Logger
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return l.With("service", string(svc))
}

func ttl(d time.Duration) time.Duration {
	if d == 0 {
		return DefaultHoldTTL
	}
	return d
}

// Gorilla service names.
const (
	autocompleteService = "PartnerAutocomplete"
	leadsService        = "Leads"
)

// AutocompleteRoutes are the routes of partner autocomplete (PROTOCOL
// §8), on iap.partner_autocomplete.endpoint, billing partner_autocomplete.
func AutocompleteRoutes() []rpc.Route {
	const ep, svc = "iap.partner_autocomplete.endpoint", storage.PartnerAutocomplete
	r := func(path, method string, timeout time.Duration, credit bool, a fallback.Answer, doc string) rpc.Route {
		return rpc.Route{Path: path, Method: autocompleteService + "." + method, MaxBody: 64 << 10, Doc: doc,
			Endpoint: ep, Service: svc, Timeout: timeout, CreditErrors: credit, Answer: a}
	}
	return []rpc.Route{
		r("/iap/partner_autocomplete/search", "Search", autocompleteTimeout, true, fallback.PASearch, "company suggestions by name, old API (§8.1)"),
		r("/iap/partner_autocomplete/enrich", "Enrich", autocompleteTimeout, true, fallback.PAEnrich, "company data by partner_gid, domain or VAT, old API (§8.1)"),
		r("/iap/partner_autocomplete/search_vat", "SearchVAT", autocompleteTimeout, true, fallback.PASearchVAT, "company of a VAT number, old API (§8.1)"),
		r("/iap/partner_autocomplete/update", "Update", autocompleteTimeout, false, fallback.PAUpdate, "VAT numbers sync, acknowledged (§8.1)"),
		r("/api/dnb/1/search_by_name", "SearchByName", autocompleteTimeout, true, fallback.DnBSearch, "company suggestions by name, D&B API (§8.2)"),
		r("/api/dnb/1/search_by_vat", "SearchByVAT", autocompleteTimeout, true, fallback.DnBSearch, "company suggestions by VAT, D&B API (§8.2)"),
		r("/api/dnb/1/enrich_by_duns", "EnrichByDUNS", autocompleteTimeout, true, fallback.DnBEnrich, "company data by DUNS, D&B API (§8.2)"),
		r("/api/dnb/1/enrich_by_gst", "EnrichByGST", autocompleteTimeout, true, fallback.DnBEnrich, "company data by GSTIN, D&B API (§8.2)"),
		r("/api/dnb/1/enrich_by_domain", "EnrichByDomain", autoEnrichTimeout, true, fallback.DnBEnrich, "automatic enrichment of a new company, D&B API (§8.2)"),
	}
}

// LeadsRoutes are the routes of lead enrichment (enrich.endpoint), lead
// mining and website reveal (reveal.endpoint), all billing reveal.
func LeadsRoutes() []rpc.Route {
	r := func(path, method, ep string, maxBody int, credit bool, doc string) rpc.Route {
		return rpc.Route{Path: path, Method: leadsService + "." + method, MaxBody: maxBody, Doc: doc,
			Endpoint: ep, Service: storage.Reveal, Timeout: leadsTimeout, CreditErrors: credit}
	}
	enrich := r("/iap/clearbit/1/lead_enrichment_email", "LeadEnrichment", "enrich.endpoint", 256<<10, true, "company data of leads by e-mail domain (§9)")
	enrich.Answer = fallback.Enrich
	reveal := r("/iap/clearbit/1/reveal", "Reveal", "reveal.endpoint", 256<<10, false, "website visitor reveal, in-band credit_error (§11)")
	reveal.Answer = fallback.Reveal
	return []rpc.Route{
		enrich,
		r("/iap/clearbit/1/lead_mining_request", "MiningV1", "reveal.endpoint", 64<<10, true, "lead mining, 16.0 (§10)"),
		r("/iap/clearbit/2/lead_mining_request", "MiningV2", "reveal.endpoint", 64<<10, true, "lead mining, 17.0–18.0 (§10)"),
		r("/api/dnb/1/search_by_criteria", "MiningDnB", "reveal.endpoint", 1<<20, true, "lead mining, D&B, late 18.0 and 19.0 (§10)"),
		reveal,
	}
}

// Register adds the services' routes to s; either may be nil (not served).
func Register(s *rpc.Server, a *Autocomplete, l *Leads) error {
	if a != nil {
		if err := s.Register(autocompleteService, a, AutocompleteRoutes()); err != nil {
			return fmt.Errorf("partner autocomplete: %w", err)
		}
	}
	if l != nil {
		if err := s.Register(leadsService, l, LeadsRoutes()); err != nil {
			return fmt.Errorf("leads: %w", err)
		}
	}
	return nil
}
