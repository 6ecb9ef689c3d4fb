package portal

import (
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/storage"
)

// Config is the portal section of iapd's configuration. Its zero value is
// usable: no packs, no shop link, the default limits.
type Config struct {
	// ShopURL is the operator's shop or payment page, a URL template
	// with the placeholders {service}, {pack} (the pack's id: its
	// position in the service's list, from 1; empty for the general
	// link), {pack_name}, {account_hash} (SHA-1 hex of the token, as
	// Odoo 19 sends it) and {dbuuid}, each query-escaped. Never the raw
	// token. Empty: no shop link.
	ShopURL string `yaml:"shop_url"`
	// Packs are the packs offered per service ("sms": [...]).
	Packs map[string][]PackConfig `yaml:"packs"`
	// PriceDescription is a line per service shown above the packs and
	// sent to post-19.0 clients (get-accounts-information).
	PriceDescription map[string]string `yaml:"price_description"`
	// FailedLookupsPerMinute and FailedLookupsBurst limit the failed
	// lookups (unknown or wrong token, wrong voucher code) per client
	// address: a bucket of Burst refilled at PerMinute. Defaults 10, 20.
	FailedLookupsPerMinute int `yaml:"failed_lookups_per_minute"`
	FailedLookupsBurst     int `yaml:"failed_lookups_burst"`
	// FailedLookupsTotalPerMinute bounds the failed lookups of all
	// clients together (twice as many at once): the backstop against
	// many addresses. Default 300. While a client's or everyone's
	// failures are spent, a client still opens the pages it opened
	// successfully in the last 24 hours: only new lookups (and voucher
	// forms) wait.
	FailedLookupsTotalPerMinute int `yaml:"failed_lookups_total_per_minute"`
	// ClientIPHeader names the header a reverse proxy in front of iapd
	// sets to the client's address (e.g. X-Real-IP; for
	// X-Forwarded-For the last address is taken). Empty: the peer
	// address. Set it only behind such a proxy: clients could forge it
	// otherwise.
	ClientIPHeader string `yaml:"client_ip_header"`
	// HistoryPageSize is the number of entries per history page
	// (default 50, at most 500).
	HistoryPageSize int `yaml:"history_page_size"`
	// IndexRefresh is no longer used: the ledger keeps the index of
	// hashed links with each account (storage.Ledger.TokenByHash). The
	// key is still accepted (and validated) so that configurations stay
	// valid.
	IndexRefresh time.Duration `yaml:"index_refresh"`
	// BrandName is the operator's name at the top of every page and in
	// its title. Empty: "In-App Purchases", translated.
	BrandName string `yaml:"brand_name"`
	// LogoFile is a PNG, JPEG, GIF, WebP or SVG file (at most 256 KiB)
	// read at start-up and served by iapd at /iap/1/logo beside the
	// name. Empty: no logo.
	LogoFile string `yaml:"logo_file"`
	// SupportEmail and SupportURL are the operator's support contact,
	// shown at the foot of every page. Empty: not shown.
	SupportEmail string `yaml:"support_email"`
	SupportURL   string `yaml:"support_url"`

	packs map[storage.ServiceName][]Pack // by Validate
}

// PackConfig is one pack as configured; credits and price are decimals
// read exactly.
type PackConfig struct {
	Name     string `yaml:"name"`
	Credits  string `yaml:"credits"`
	Price    string `yaml:"price"`
	Currency string `yaml:"currency"`
}

// Pack is a validated pack.
type Pack struct {
	ID       int // position in the service's list, from 1
	Name     string
	Credits  storage.Credits
	Price    storage.Credits // fixed-point, 4 decimals: exact for money
	Currency string
}

// Defaults of Config.
const (
	DefaultFailedLookupsPerMinute = 10
	DefaultFailedLookupsBurst     = 20
	DefaultFailedLookupsTotal     = 300
	DefaultHistoryPageSize        = 50
	DefaultIndexRefresh           = time.Minute
	maxHistoryPageSize            = 500
)

var (
	currencyRE    = regexp.MustCompile(`^[A-Z]{3}$`)
	placeholderRE = regexp.MustCompile(`\{[^{}]*\}`)
	headerNameRE  = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)
)

var shopPlaceholders = map[string]bool{"{service}": true, "{pack}": true, "{pack_name}": true, "{account_hash}": true, "{dbuuid}": true}

// Validate checks the configuration and fills the defaults.
func (c *Config) Validate() error {
	if c.ShopURL != "" {
		for _, ph := range placeholderRE.FindAllString(c.ShopURL, -1) {
			if !shopPlaceholders[ph] {
				return fmt.Errorf("portal: shop_url: unknown placeholder %s (use {service}, {pack}, {pack_name}, {account_hash}, {dbuuid})", ph)
			}
		}
		u, err := url.Parse(placeholderRE.ReplaceAllString(c.ShopURL, "x"))
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return errors.New("portal: shop_url must be an absolute http(s) URL")
		}
	}
	c.packs = map[storage.ServiceName][]Pack{}
	for svc, list := range c.Packs {
		if !storage.ValidServiceName(svc) {
			return fmt.Errorf("portal: packs: %q is not a service name", svc)
		}
		for i, pc := range list {
			where := fmt.Sprintf("portal: packs: %s[%d]", svc, i)
			if strings.TrimSpace(pc.Name) == "" || len(pc.Name) > 128 {
				return fmt.Errorf("%s: a name of 1 to 128 bytes is required", where)
			}
			cr, err := storage.ParseCredits(strings.TrimSpace(pc.Credits))
			if err != nil || cr <= 0 {
				return fmt.Errorf("%s: credits %q: a positive number is required", where, pc.Credits)
			}
			pr, err := storage.ParseCredits(strings.TrimSpace(pc.Price))
			if err != nil {
				return fmt.Errorf("%s: price %q: a number of at most 4 decimals is required", where, pc.Price)
			}
			if !currencyRE.MatchString(pc.Currency) {
				return fmt.Errorf("%s: currency %q: an ISO 4217 code such as EUR is required", where, pc.Currency)
			}
			c.packs[storage.ServiceName(svc)] = append(c.packs[storage.ServiceName(svc)],
				Pack{ID: i + 1, Name: strings.TrimSpace(pc.Name), Credits: cr, Price: pr, Currency: pc.Currency})
		}
	}
	for svc, d := range c.PriceDescription {
		if !storage.ValidServiceName(svc) {
			return fmt.Errorf("portal: price_description: %q is not a service name", svc)
		}
		if len(d) > 1024 {
			return fmt.Errorf("portal: price_description: %s: at most 1024 bytes", svc)
		}
	}
	switch {
	case c.FailedLookupsPerMinute < 0 || c.FailedLookupsBurst < 0 || c.FailedLookupsTotalPerMinute < 0:
		return errors.New("portal: failed_lookups_per_minute, failed_lookups_burst and failed_lookups_total_per_minute must not be negative")
	case c.HistoryPageSize < 0 || c.HistoryPageSize > maxHistoryPageSize:
		return fmt.Errorf("portal: history_page_size must be from 1 to %d", maxHistoryPageSize)
	case c.IndexRefresh < 0:
		return errors.New("portal: index_refresh must not be negative")
	case c.ClientIPHeader != "" && !headerNameRE.MatchString(c.ClientIPHeader):
		return fmt.Errorf("portal: client_ip_header %q is not a header name", c.ClientIPHeader)
	case len(c.BrandName) > 100 || strings.ContainsAny(c.BrandName, "\r\n"):
		return errors.New("portal: brand_name: one line of at most 100 bytes")
	}
	if c.SupportEmail != "" {
		if a, err := mail.ParseAddress(c.SupportEmail); err != nil || a.Address != c.SupportEmail {
			return fmt.Errorf("portal: support_email %q is not an e-mail address", c.SupportEmail)
		}
	}
	if c.SupportURL != "" {
		if u, err := url.Parse(c.SupportURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return errors.New("portal: support_url must be an absolute http(s) URL")
		}
	}
	if c.FailedLookupsPerMinute == 0 {
		c.FailedLookupsPerMinute = DefaultFailedLookupsPerMinute
	}
	if c.FailedLookupsBurst == 0 {
		c.FailedLookupsBurst = DefaultFailedLookupsBurst
	}
	if c.FailedLookupsTotalPerMinute == 0 {
		c.FailedLookupsTotalPerMinute = DefaultFailedLookupsTotal
	}
	if c.HistoryPageSize == 0 {
		c.HistoryPageSize = DefaultHistoryPageSize
	}
	if c.IndexRefresh == 0 {
		c.IndexRefresh = DefaultIndexRefresh
	}
	return nil
}

// PacksOf returns the packs of a service (Validate must have run).
func (c *Config) PacksOf(svc storage.ServiceName) []Pack { return c.packs[svc] }

// ServiceInfo is the rpc.ServiceInfoFunc of get-accounts-information
// (PROTOCOL §4.4, post-19.0 clients): the packs and price description of
// a service, with description as given; false for a service with
// neither.
func (c *Config) ServiceInfo(svc storage.ServiceName, description string) (rpc.ServiceInfo, bool) {
	packs := c.packs[svc]
	pd := c.PriceDescription[string(svc)]
	if len(packs) == 0 && pd == "" {
		return rpc.ServiceInfo{}, false
	}
	info := rpc.ServiceInfo{Description: description, PriceDescription: pd, Packs: make([]rpc.ServicePack, 0, len(packs))}
	for _, p := range packs {
		info.Packs = append(info.Packs, rpc.ServicePack{ID: p.ID, Name: p.Name, Credit: p.Credits, Price: p.Price})
	}
	return info, true
}

// shopLink expands ShopURL for a pack (nil: the general link). Empty
// when no shop is configured.
func (c *Config) shopLink(svc storage.ServiceName, p *Pack, accountHash, dbuuid string) string {
	if c.ShopURL == "" {
		return ""
	}
	id, name := "", ""
	if p != nil {
		id, name = fmt.Sprint(p.ID), p.Name
	}
	return placeholderRE.ReplaceAllStringFunc(c.ShopURL, func(ph string) string {
		switch ph {
		case "{service}":
			return url.QueryEscape(string(svc))
		case "{pack}":
			return url.QueryEscape(id)
		case "{pack_name}":
			return url.QueryEscape(name)
		case "{account_hash}":
			return url.QueryEscape(accountHash)
		case "{dbuuid}":
			return url.QueryEscape(dbuuid)
		}
		return ph
	})
}
