package company

import (
	"errors"
	"fmt"
	"time"

	"github.com/iapd/iapd/storage"
)

// Price is an amount of credits in the configuration, read exactly from
// the YAML scalar's text (storage.ParseCredits: no float on the way).
type Price struct{ storage.Credits }

// UnmarshalText implements encoding.TextUnmarshaler (YAML decoders use
// it for scalars).
func (p *Price) UnmarshalText(b []byte) error {
	c, err := storage.ParseCredits(string(b))
	if err != nil {
		return fmt.Errorf("%q: %w", b, err)
	}
	p.Credits = c
	return nil
}

// price returns p's value, or def when p is unset.
func price(p *Price, def storage.Credits) storage.Credits {
	if p == nil {
		return def
	}
	return p.Credits
}

// DefaultHoldTTL is how long a hold lives when a provider's answer was
// indeterminate and nobody settles it: it then expires and the credit
// returns to the customer.
const DefaultHoldTTL = 24 * time.Hour

// AutocompleteConfig is the settings of the partner_autocomplete service
// (services.partner_autocomplete.settings): the provider instances to ask,
// in order, and the prices.
type AutocompleteConfig struct {
	// Providers are provider instance names, asked in order: the first
	// that has the capability and finds something answers. Default: the
	// sample "directory", then every configured "vies" instance.
	Providers []string `yaml:"providers"`
	// SearchPrice is charged per search (name or VAT suggestions) that
	// finds something; default 0 (searching is free).
	SearchPrice *Price `yaml:"search_price"`
	// EnrichPrice is charged per company enrichment that finds the
	// company; default 1.
	EnrichPrice *Price `yaml:"enrich_price"`
	// MaxResults bounds the suggestions of a search (default 10, at most 50).
	MaxResults int `yaml:"max_results"`
	// HoldTTL is the life of a hold left for reconciliation (default 24h).
	HoldTTL time.Duration `yaml:"hold_ttl"`
}

// Validate reports the first problem of the settings.
func (c *AutocompleteConfig) Validate() error {
	if err := validProviders(c.Providers); err != nil {
		return err
	}
	if c.MaxResults < 0 || c.MaxResults > 50 {
		return fmt.Errorf("max_results %d: want 1 to 50 (0: the default 10)", c.MaxResults)
	}
	return validTTL(c.HoldTTL)
}

// LeadsConfig is the settings of the reveal service
// (services.reveal.settings), which bills lead enrichment, lead mining and
// website visitor reveal.
type LeadsConfig struct {
	// Providers, as for AutocompleteConfig.
	Providers []string `yaml:"providers"`
	// EnrichPrice is charged per lead enriched with company data (default 1).
	EnrichPrice *Price `yaml:"enrich_price"`
	// CompanyPrice is charged per company found by lead mining or
	// website reveal (default 1), ContactPrice per contact (default 1).
	// Both whole numbers: Odoo stores a revealed lead's credits as an
	// integer.
	CompanyPrice *Price `yaml:"company_price"`
	ContactPrice *Price `yaml:"contact_price"`
	// HoldTTL, as for AutocompleteConfig.
	HoldTTL time.Duration `yaml:"hold_ttl"`
}

// Validate reports the first problem of the settings.
func (c *LeadsConfig) Validate() error {
	if err := validProviders(c.Providers); err != nil {
		return err
	}
	for name, p := range map[string]*Price{"company_price": c.CompanyPrice, "contact_price": c.ContactPrice} {
		if p != nil && p.Credits%storage.Scale != 0 {
			return fmt.Errorf("%s %s: want a whole number of credits (Odoo stores a revealed lead's credits as an integer)", name, p.Credits)
		}
	}
	return validTTL(c.HoldTTL)
}

func validProviders(ps []string) error {
	seen := map[string]bool{}
	for i, p := range ps {
		if p == "" {
			return fmt.Errorf("providers[%d]: empty name", i)
		}
		if seen[p] {
			return fmt.Errorf("providers: %q listed twice", p)
		}
		seen[p] = true
	}
	return nil
}

func validTTL(d time.Duration) error {
	if d < 0 || (d != 0 && d < time.Minute) || d > 180*24*time.Hour {
		return errors.New("hold_ttl: want from 1m to 180 days (0: the default 24h)")
	}
	return nil
}
