package snailmail

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/iapd/iapd/rpc/snailmail/pdf"
	"github.com/iapd/iapd/storage"
)

// Settings is services.snailmail.settings of iapd's configuration:
// prices, the provider chain, limits. The zero value is the default: 1
// stamp per letter to every country, no surcharge, every letter through
// the provider instance named "folder".
//
//	services:
//	  snailmail:
//	    settings:
//	      providers: [pingen]      # tried in order; the next only when one is unavailable
//	      prices:
//	        default: 1             # stamps per letter; omit it to serve only the listed countries
//	        countries: {BE: 1, FR: 1.2, CH: 1.5, US: 2.5}
//	        color: 0.5             # per letter printed in colour
//	        duplex: 0              # per letter printed on both sides
//	        simplex: 0             # per letter printed on one side
//	        included_pages: 2      # pages the base price covers (a cover page counts)
//	        extra_page: 0.1        # per page beyond them
//	      max_pages: 50            # longer documents are refused (FORMAT_ERROR)
//	      pdf_steps_per_byte: 32   # reading a PDF: steps allowed per byte (+1 Mi) ...
//	      pdf_max_steps: 67108864  # ... and at most this many; beyond: FORMAT_ERROR
type Settings struct {
	// Providers is the chain of provider instances (names under
	// providers:) tried in order; the next one only when the previous
	// is unavailable. Default: ["folder"].
	Providers []string `yaml:"providers"`
	// Prices are in the service's unit (Stamps).
	Prices Prices `yaml:"prices"`
	// MaxPages refuses longer documents with FORMAT_ERROR (default 100).
	MaxPages int `yaml:"max_pages"`
	// MaxDocuments bounds the documents of one call (default 100; Odoo
	// sends one).
	MaxDocuments int `yaml:"max_documents"`
	// HoldTTL is how long the price of a letter whose fate is
	// indeterminate stays held before it returns to the customer: the
	// operator's reconciliation window (default 168h).
	HoldTTL time.Duration `yaml:"hold_ttl"`
	// DedupeTTL is how long a printed document is remembered, so that a
	// retry is neither posted nor charged again (default 2160h, 90 days).
	DedupeTTL time.Duration `yaml:"dedupe_ttl"`
	// SendTimeout bounds the provider calls of one document; Odoo waits
	// snailmail.timeout, 30 s by default (PROTOCOL §13). Default 25s.
	SendTimeout time.Duration `yaml:"send_timeout"`
	// PDFStepsPerByte and PDFMaxSteps are the budget of reading one
	// letter's PDF (pdf.Budget): that many steps per byte of the PDF
	// plus pdf.DefaultBase, at most PDFMaxSteps. A PDF that needs more
	// is refused with FORMAT_ERROR before any credit is held. Defaults
	// pdf.DefaultPerByte (32, above what any PDF needs per byte) and
	// pdf.DefaultMax (64 Mi steps: well under a second).
	PDFStepsPerByte int64 `yaml:"pdf_steps_per_byte"`
	PDFMaxSteps     int64 `yaml:"pdf_max_steps"`
}

// pdfBudget is the budget of reading one PDF.
func (s Settings) pdfBudget() pdf.Budget {
	return pdf.Budget{PerByte: s.PDFStepsPerByte, Max: s.PDFMaxSteps}
}

// Prices is the price list of a letter: a base price by destination
// country plus surcharges.
type Prices struct {
	// Default is the base price where Countries has no entry; nil (with
	// Countries set) answers NO_PRICE_AVAILABLE for other countries.
	Default *Price `yaml:"default"`
	// Countries are base prices by ISO 3166-1 alpha-2 code ("BE").
	Countries map[string]Price `yaml:"countries"`
	// Color, Duplex and Simplex are surcharges per letter.
	Color   Price `yaml:"color"`
	Duplex  Price `yaml:"duplex"`
	Simplex Price `yaml:"simplex"`
	// IncludedPages is how many printed pages the base price covers
	// (default 1); ExtraPage is the price of each page beyond them. A
	// cover page (Odoo's "cover" option) is a printed page.
	IncludedPages *int  `yaml:"included_pages"`
	ExtraPage     Price `yaml:"extra_page"`
}

// Price is an amount of credits in the settings, parsed exactly.
type Price struct{ Credits storage.Credits }

// UnmarshalYAML implements yaml.Unmarshaler.
func (p *Price) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a price in stamps is expected", n.Line)
	}
	c, err := storage.ParseCredits(strings.TrimSpace(n.Value))
	if err != nil {
		return fmt.Errorf("line %d: price %q: %w", n.Line, n.Value, err)
	}
	p.Credits = c
	return nil
}

// Defaults.
const (
	DefaultProvider     = "folder"
	defaultMaxPages     = 100
	defaultMaxDocuments = 100
	defaultHoldTTL      = 168 * time.Hour
	defaultDedupeTTL    = 2160 * time.Hour
	defaultSendTimeout  = 25 * time.Second

	// maxPrice bounds every price, so that a letter's price cannot
	// overflow (pdf.MaxPages extra pages at most).
	maxPrice storage.Credits = 1_000_000 * storage.Scale
)

// withDefaults returns s with its zero fields set to the defaults.
func (s Settings) withDefaults() Settings {
	if len(s.Providers) == 0 {
		s.Providers = []string{DefaultProvider}
	}
	if s.Prices.Default == nil && len(s.Prices.Countries) == 0 {
		s.Prices.Default = &Price{Credits: storage.Scale}
	}
	if s.Prices.IncludedPages == nil {
		one := 1
		s.Prices.IncludedPages = &one
	}
	countries := make(map[string]Price, len(s.Prices.Countries))
	for c, p := range s.Prices.Countries {
		countries[strings.ToUpper(c)] = p
	}
	s.Prices.Countries = countries
	if s.MaxPages == 0 {
		s.MaxPages = defaultMaxPages
	}
	if s.MaxDocuments == 0 {
		s.MaxDocuments = defaultMaxDocuments
	}
	if s.HoldTTL == 0 {
		s.HoldTTL = defaultHoldTTL
	}
	if s.DedupeTTL == 0 {
		s.DedupeTTL = defaultDedupeTTL
	}
	if s.SendTimeout == 0 {
		s.SendTimeout = defaultSendTimeout
	}
	return s
}

// Validate reports the first problem of the settings.
func (s Settings) Validate() error {
	seen := map[string]bool{}
	for _, p := range s.Providers {
		if p == "" {
			return errors.New("providers: an empty name")
		}
		if seen[p] {
			return fmt.Errorf("providers: %q twice", p)
		}
		seen[p] = true
	}
	neg := func(what string, p Price) error {
		if p.Credits < 0 || p.Credits > maxPrice {
			return fmt.Errorf("prices.%s: from 0 to %s stamps", what, maxPrice)
		}
		return nil
	}
	if s.Prices.Default != nil {
		if err := neg("default", *s.Prices.Default); err != nil {
			return err
		}
	}
	codes := make([]string, 0, len(s.Prices.Countries))
	for c := range s.Prices.Countries {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	upper := map[string]bool{}
	for _, c := range codes {
		if !validCountry(c) {
			return fmt.Errorf("prices.countries: %q is not an ISO 3166-1 alpha-2 code", c)
		}
		if upper[strings.ToUpper(c)] {
			return fmt.Errorf("prices.countries: %q twice", strings.ToUpper(c))
		}
		upper[strings.ToUpper(c)] = true
		if err := neg("countries."+c, s.Prices.Countries[c]); err != nil {
			return err
		}
	}
	for what, p := range map[string]Price{"color": s.Prices.Color, "duplex": s.Prices.Duplex, "simplex": s.Prices.Simplex, "extra_page": s.Prices.ExtraPage} {
		if err := neg(what, p); err != nil {
			return err
		}
	}
	if ip := s.Prices.IncludedPages; ip != nil && *ip < 0 {
		return errors.New("prices.included_pages: negative")
	}
	switch {
	case s.MaxPages < 0 || s.MaxPages > pdf.MaxPages:
		return fmt.Errorf("max_pages: from 0 (the default, %d) to %d", defaultMaxPages, pdf.MaxPages)
	case s.MaxDocuments < 0:
		return errors.New("max_documents: negative")
	case s.HoldTTL < 0, s.DedupeTTL < 0, s.SendTimeout < 0:
		return errors.New("hold_ttl, dedupe_ttl and send_timeout must not be negative")
	case s.PDFStepsPerByte < 0 || s.PDFMaxSteps < 0:
		return errors.New("pdf_steps_per_byte and pdf_max_steps must not be negative (0: the default)")
	case s.SendTimeout > 29*time.Second:
		return errors.New("send_timeout: at most 29s (Odoo gives up after snailmail.timeout, 30 s by default)")
	}
	return nil
}

// ProviderNames lists the provider instances the settings use (defaults
// applied).
func (s Settings) ProviderNames() []string { return s.withDefaults().Providers }

func validCountry(c string) bool {
	if len(c) != 2 {
		return false
	}
	for i := 0; i < 2; i++ {
		ch := c[i] | 0x20
		if ch < 'a' || ch > 'z' {
			return false
		}
	}
	return true
}

// price is the price of a letter to country with the options, of pages
// printed pages; ok is false when the country has no price.
func (p Prices) price(country string, color, duplex bool, pages int) (storage.Credits, bool) {
	base, ok := p.Countries[strings.ToUpper(country)]
	if !ok {
		if p.Default == nil {
			return 0, false
		}
		base = *p.Default
	}
	total := base.Credits
	if color {
		total += p.Color.Credits
	}
	if duplex {
		total += p.Duplex.Credits
	} else {
		total += p.Simplex.Credits
	}
	if extra := pages - *p.IncludedPages; extra > 0 {
		total += storage.Credits(extra) * p.ExtraPage.Credits
	}
	return total, true
}
