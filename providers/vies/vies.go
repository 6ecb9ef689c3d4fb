// Package vies is the "vies" company-data provider: the European
// Commission's VIES VAT-number check, through its REST API
// (POST <base_url>/check-vat-number with {"countryCode", "vatNumber"}),
// for VAT lookups and validity. A registered number answers the name and
// address the member state publishes; an unregistered one is a miss.
//
// Failures are classified as the provider SPI asks: VIES's own error codes
// INVALID_INPUT (and a malformed number, refused before any call) are
// Invalid; SERVICE_UNAVAILABLE, MS_UNAVAILABLE, TIMEOUT, the
// *_MAX_CONCURRENT_REQ family and any code not known are Unavailable, as
// are a refused connection and a 5xx; a request sent whose answer never
// came (timeout after sending) or cannot be read is Indeterminate.
//
// It imports the standard library, providers and providers/vendorhttp.
package vies

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/vendorhttp"
)

// Type is the adapter type name in the configuration.
const Type = "vies"

// DefaultBaseURL is the VIES REST API of the European Commission.
const DefaultBaseURL = "https://ec.europa.eu/taxation_customs/vies/rest-api"

// DefaultTimeout bounds one VIES call.
const DefaultTimeout = 10 * time.Second

// Config is the instance's settings; it is the factory.
type Config struct {
	// BaseURL is the REST API root (default DefaultBaseURL); tests and
	// mirrors point it elsewhere.
	BaseURL string `yaml:"base_url"`
	// Timeout bounds one call (default 10s, at most 60s).
	Timeout time.Duration `yaml:"timeout"`
}

// Validate reports the first problem of the settings.
func (c *Config) Validate() error {
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			return fmt.Errorf("base_url %q: want an http(s) URL without credentials", c.BaseURL)
		}
	}
	if c.Timeout < 0 || c.Timeout > time.Minute {
		return fmt.Errorf("timeout %s: want up to 1m (0: the default %s)", c.Timeout, DefaultTimeout)
	}
	return nil
}

// New builds the instance named name.
func (c *Config) New(name string, client *http.Client, log *slog.Logger) (*VIES, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	v := &VIES{name: name, base: strings.TrimRight(c.BaseURL, "/"), timeout: c.Timeout, client: client, log: log}
	if v.base == "" {
		v.base = DefaultBaseURL
	}
	if v.timeout == 0 {
		v.timeout = DefaultTimeout
	}
	if v.client == nil {
		v.client = &http.Client{Timeout: time.Minute}
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	return v, nil
}

func init() {
	providers.Register(Type, func(cfg providers.Config, deps providers.Deps) (providers.Provider, error) {
		var c Config
		if err := cfg.Decode(&c); err != nil {
			return nil, err
		}
		return c.New(cfg.Name, deps.HTTP, deps.Logger)
	})
}

// VIES is an instance; safe for concurrent use.
type VIES struct {
	name    string
	base    string
	timeout time.Duration
	client  *http.Client
	log     *slog.Logger
}

// Name implements providers.Provider.
func (v *VIES) Name() string { return v.name }

// Type implements providers.Provider.
func (v *VIES) Type() string { return Type }

// Close implements providers.Provider.
func (v *VIES) Close() error { return nil }

// memberStates are the country codes VIES answers for (EL is Greece, XI
// Northern Ireland).
var memberStates = map[string]bool{
	"AT": true, "BE": true, "BG": true, "CY": true, "CZ": true, "DE": true, "DK": true, "EE": true,
	"EL": true, "ES": true, "FI": true, "FR": true, "HR": true, "HU": true, "IE": true, "IT": true,
	"LT": true, "LU": true, "LV": true, "MT": true, "NL": true, "PL": true, "PT": true, "RO": true,
	"SE": true, "SI": true, "SK": true, "XI": true,
}

var vatNumber = regexp.MustCompile(`^[A-Z0-9+*]{2,14}$`)

// request is the body of check-vat-number.
type request struct {
	CountryCode string `json:"countryCode"`
	VATNumber   string `json:"vatNumber"`
}

// answer is what check-vat-number answers: the verdict, or the error
// envelope {"actionSucceed": false, "errorWrappers": [{"error": …}]}.
type answer struct {
	CountryCode   string  `json:"countryCode"`
	VATNumber     string  `json:"vatNumber"`
	Valid         *bool   `json:"valid"`
	Name          string  `json:"name"`
	Address       string  `json:"address"`
	UserError     string  `json:"userError"`
	ActionSucceed *bool   `json:"actionSucceed"`
	ErrorWrappers []wrapd `json:"errorWrappers"`
}

type wrapd struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// errorCode returns the error VIES named, if any.
func (a *answer) errorCode() string {
	if a.UserError != "" && a.UserError != "VALID" && a.UserError != "INVALID" {
		return a.UserError
	}
	for _, w := range a.ErrorWrappers {
		if w.Error != "" {
			return w.Error
		}
	}
	return ""
}

// CompanyByVAT checks vat ("BE0123456749", spaces and dots allowed) with
// VIES. A registered number answers a company with Name, address, Country
// (GR for EL), VAT and Valid set; an unregistered one, or one of a
// country VIES does not cover, answers nil. Errors: Invalid for a
// malformed number or INVALID_INPUT; Unavailable when VIES or the member
// state cannot answer; Indeterminate when the answer was lost.
func (v *VIES) CompanyByVAT(ctx context.Context, vat string) (*providers.Company, error) {
	norm := normalize(vat)
	if len(norm) < 4 {
		return nil, &providers.Error{Provider: v.name, Kind: providers.Invalid, Code: "INVALID_INPUT", Msg: "not a VAT number"}
	}
	cc, num := norm[:2], norm[2:]
	if cc == "GR" {
		cc = "EL"
	}
	if !memberStates[cc] {
		return nil, nil // VIES does not know this country: not a VIES number, let another provider answer
	}
	if !vatNumber.MatchString(num) {
		return nil, &providers.Error{Provider: v.name, Kind: providers.Invalid, Code: "INVALID_INPUT", Msg: "not a VAT number"}
	}
	body, err := json.Marshal(request{CountryCode: cc, VATNumber: num})
	if err != nil {
		return nil, &providers.Error{Provider: v.name, Kind: providers.Invalid, Msg: "encoding the request", Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.base+"/check-vat-number", bytes.NewReader(body))
	if err != nil {
		return nil, &providers.Error{Provider: v.name, Kind: providers.Unavailable, Msg: "building the request", Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, perr := vendorhttp.Do(ctx, v.client, v.name, req)
	if perr != nil {
		v.log.Warn("VIES call failed", "kind", perr.Kind.String(), "err", perr.Err)
		return nil, perr
	}
	var a answer
	jerr := json.Unmarshal(resp.Body, &a)
	if code := a.errorCode(); jerr == nil && code != "" {
		return nil, v.classify(code)
	}
	if resp.Status != http.StatusOK {
		return nil, &providers.Error{Provider: v.name, Kind: vendorhttp.ClassifyStatus(resp.Status), Code: fmt.Sprint(resp.Status), Msg: "VIES answered HTTP " + http.StatusText(resp.Status)}
	}
	if jerr != nil || a.Valid == nil {
		// A 200 we cannot read: VIES did answer, nothing was bought; ask again later.
		return nil, &providers.Error{Provider: v.name, Kind: providers.Unavailable, Msg: "unreadable answer", Err: jerr}
	}
	if !*a.Valid {
		return nil, nil
	}
	return company(cc, num, &a), nil
}

// classify maps a VIES error code to a failure kind.
func (v *VIES) classify(code string) *providers.Error {
	switch code {
	case "INVALID_INPUT":
		return &providers.Error{Provider: v.name, Kind: providers.Invalid, Code: code, Msg: "VIES refused the number"}
	}
	// SERVICE_UNAVAILABLE, MS_UNAVAILABLE, TIMEOUT, GLOBAL_/MS_MAX_CONCURRENT_REQ(_TIME),
	// IP_BLOCKED, INVALID_REQUESTER_INFO and anything new: VIES could not check; another may.
	return &providers.Error{Provider: v.name, Kind: providers.Unavailable, Code: code, Msg: "VIES could not check the number"}
}

// company maps a valid answer.
func company(cc, num string, a *answer) *providers.Company {
	valid := true
	country := cc
	if country == "EL" {
		country = "GR"
	}
	c := &providers.Company{VAT: cc + num, Country: country, Valid: &valid}
	if n := clean(a.Name); n != "" {
		c.Name, c.LegalName = n, n
	}
	c.Street, c.Street2, c.Zip, c.City = splitAddress(clean(a.Address))
	return c
}

// clean turns VIES's "---" (nothing published) into "".
func clean(s string) string {
	s = strings.TrimSpace(s)
	if s == "---" {
		return ""
	}
	return s
}

// splitAddress splits a VIES address ("Street 1\n1000 City", lines as
// the member state publishes them): the first line is the street, the
// first later line starting with a digit is "zip city", another line is
// street2.
func splitAddress(addr string) (street, street2, zip, city string) {
	var lines []string
	for _, l := range strings.Split(addr, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return
	}
	street = lines[0]
	for _, l := range lines[1:] {
		if zip == "" && l[0] >= '0' && l[0] <= '9' {
			zip, city, _ = strings.Cut(l, " ")
			city = strings.TrimSpace(city)
			continue
		}
		if street2 == "" {
			street2 = l
		}
	}
	return
}

// normalize upper-cases vat and drops spaces, dots, dashes and slashes.
func normalize(vat string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(strings.TrimSpace(vat)) {
		switch r {
		case ' ', '.', '-', '/', '\t':
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Compile-time interface guard.
var _ providers.CompanyByVAT = (*VIES)(nil)
