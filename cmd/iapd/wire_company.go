package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/registers"
	"github.com/iapd/iapd/rpc/company"
	"github.com/iapd/iapd/storage"
)

// wireCompany plugs in the company-data services (package rpc/company):
// partner autocomplete on the partner_autocomplete service, lead
// enrichment, lead mining and website reveal on the reveal service. Each
// service's settings (services.<name>.settings) list its provider
// instances in order; without a list, "registers" answers when the data
// directory holds imported registers (<data>/registers, filled by iapd
// directory import), else the sandbox "directory" (the embedded sample,
// or the configured instance of that name), followed by every configured
// instance of type vies (VIES calls the real EU service, so it is never a
// default of its own).
func wireCompany(w *wiring) error {
	var ac company.AutocompleteConfig
	if err := w.cfg.Services[string(storage.PartnerAutocomplete)].Settings.Decode(&ac); err != nil {
		return fmt.Errorf("services.partner_autocomplete.settings: %w", err)
	}
	var lc company.LeadsConfig
	if err := w.cfg.Services[string(storage.Reveal)].Settings.Decode(&lc); err != nil {
		return fmt.Errorf("services.reveal.settings: %w", err)
	}
	deps := company.Deps{Ledger: w.accounts, Logger: w.log.With("component", "company")}

	aps, err := w.companyProviders(ac.Providers)
	if err != nil {
		return fmt.Errorf("services.partner_autocomplete.settings.providers: %w", err)
	}
	a, err := company.NewAutocomplete(ac, aps, deps)
	if err != nil {
		return fmt.Errorf("services.partner_autocomplete.settings: %w", err)
	}
	lps, err := w.companyProviders(lc.Providers)
	if err != nil {
		return fmt.Errorf("services.reveal.settings.providers: %w", err)
	}
	l, err := company.NewLeads(lc, lps, deps)
	if err != nil {
		return fmt.Errorf("services.reveal.settings: %w", err)
	}
	w.serves(string(storage.PartnerAutocomplete), aps...)
	w.serves(string(storage.Reveal), lps...)
	if err := company.Register(w.rpc, a, l); err != nil {
		return err
	}
	w.report = append(w.report,
		"partner autocomplete: providers "+providerNames(aps),
		"lead enrichment, mining, reveal: providers "+providerNames(lps))
	return nil
}

// companyProviders returns the instances named, or the default list. A
// name that is not configured may be "directory", "registers" or "vies",
// built with their defaults (the sample directory; the imported
// registers; the EU's VIES).
func (w *wiring) companyProviders(names []string) ([]providers.Provider, error) {
	if len(names) == 0 {
		names = []string{"directory"}
		if registers.HasData(registers.DefaultDir(w.cfg.Data)) {
			names = []string{"registers"}
		}
		var vies []string
		for n, p := range w.providers {
			if p.Type() == "vies" && n != names[0] {
				vies = append(vies, n)
			}
		}
		sort.Strings(vies)
		names = append(names, vies...)
	}
	out := make([]providers.Provider, 0, len(names))
	for _, n := range names {
		def := ""
		if n == "directory" || n == "registers" || n == "vies" {
			def = n
		}
		p, err := w.provider(n, def)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func providerNames(ps []providers.Provider) string {
	names := make([]string, 0, len(ps))
	for _, p := range ps {
		names = append(names, p.Name()+" ("+p.Type()+")")
	}
	return strings.Join(names, ", ")
}
