package sms

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/iapd/iapd/storage"
)

// Settings is services.sms.settings of iapd's configuration: prices,
// provider routing, delivery-report relay and limits. The zero value is
// the default: 1 credit per segment everywhere, every message through the
// provider instance named "outbox".
//
//	services:
//	  sms:
//	    settings:
//	      price: 1                  # credits per segment, default
//	      prices: {"+32": 1.5, "+1": 0.5}   # longest E.164 prefix wins
//	      unsupported_prefixes: ["+882"]    # country_not_supported
//	      providers: [twilio-eu, vonage]    # default chain, failover on unavailable
//	      routes:
//	        - prefixes: ["+1"]
//	          providers: [twilio-us]
//	      webhooks: {allow_private: false, allow_cidrs: ["10.8.0.0/16"]}
type Settings struct {
	// Price is the price of one segment where no prefix matches (default
	// 1 credit).
	Price *Price `yaml:"price"`
	// Prices are per-segment prices by E.164 prefix ("+32", "+3247"); the
	// longest matching prefix wins.
	Prices map[string]Price `yaml:"prices"`
	// UnsupportedPrefixes are destinations refused with
	// country_not_supported (wrong_number_format for 16.0).
	UnsupportedPrefixes []string `yaml:"unsupported_prefixes"`

	// Providers is the default chain of provider instances (names under
	// providers:), tried in order, the next one only when the previous
	// is unavailable. Default: ["outbox"].
	Providers []string `yaml:"providers"`
	// Routes choose another chain by destination prefix: the first rule
	// with a matching prefix wins; no match takes Providers.
	Routes []RouteRule `yaml:"routes"`

	// Webhooks configures the relay of delivery reports to Odoo.
	Webhooks WebhookSettings `yaml:"webhooks"`

	// Registration is how the 18.0+ registration wizard works: "verify"
	// (default: a code is sent by SMS to the phone number, and entering
	// it registers the account) or "off" (answered closed_feature; the
	// operator registers accounts).
	Registration string `yaml:"registration"`
	// VerificationsPerHour bounds the verification SMS sent for all
	// accounts together (default 60): they are free, so the bound keeps
	// the route from being a way to send SMS at the operator's expense.
	VerificationsPerHour int `yaml:"verifications_per_hour"`

	// DedupeTTL is how long a handled uuid is remembered (default 720h).
	DedupeTTL time.Duration `yaml:"dedupe_ttl"`
	// HoldTTL is the lifetime of the hold kept for messages whose fate is
	// indeterminate, before it is returned to the customer (default
	// 168h): the operator's reconciliation window.
	HoldTTL time.Duration `yaml:"hold_ttl"`
	// SendTimeout bounds the provider calls of one request; Odoo waits
	// 15 s (PROTOCOL §13). Default 12s. Messages not attempted in time
	// are left out of the answer, so Odoo keeps them queued.
	SendTimeout time.Duration `yaml:"send_timeout"`
	// Concurrency is how many provider calls one request makes at once
	// (default 4); ChunkSize how many messages one call carries (default
	// 50).
	Concurrency int `yaml:"concurrency"`
	ChunkSize   int `yaml:"chunk_size"`
	// MaxBatch bounds the numbers of one request (default 1000; Odoo
	// sends 500).
	MaxBatch int `yaml:"max_batch"`
}

// RouteRule sends the destinations with one of Prefixes to Providers.
type RouteRule struct {
	Prefixes  []string `yaml:"prefixes"`
	Providers []string `yaml:"providers"`
}

// WebhookSettings configures the delivery-report relay.
type WebhookSettings struct {
	// AllowPrivate lets reports go to loopback, private, link-local and
	// unspecified addresses (an Odoo on the same host or LAN). Default
	// false: such addresses are refused when dialling.
	AllowPrivate bool `yaml:"allow_private"`
	// AllowCIDRs are networks allowed despite the guard ("10.8.0.0/16").
	AllowCIDRs []string `yaml:"allow_cidrs"`
	// BatchSize bounds the uuids of one call (default 500).
	BatchSize int `yaml:"batch_size"`
	// Timeout bounds one call (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// RetryMin and RetryMax bound the backoff between failed calls to a
	// webhook (default 5s and 15m); MaxAge is when a report is given up
	// (default 48h).
	RetryMin time.Duration `yaml:"retry_min"`
	RetryMax time.Duration `yaml:"retry_max"`
	MaxAge   time.Duration `yaml:"max_age"`
}

// Price is an amount of credits in the settings, parsed exactly.
type Price struct{ Credits storage.Credits }

// UnmarshalYAML implements yaml.Unmarshaler.
func (p *Price) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a price in credits is expected", n.Line)
	}
	c, err := storage.ParseCredits(strings.TrimSpace(n.Value))
	if err != nil {
		return fmt.Errorf("line %d: price %q: %w", n.Line, n.Value, err)
	}
	p.Credits = c
	return nil
}

// maxPrice bounds a segment's price, which keeps every batch total far
// from overflowing (255 segments × max_batch numbers).
const maxPrice storage.Credits = 1_000_000 * storage.Scale

// Defaults.
const (
	DefaultProvider      = "outbox"
	defaultDedupeTTL     = 720 * time.Hour
	defaultHoldTTL       = 168 * time.Hour
	defaultSendTimeout   = 12 * time.Second
	defaultConcurrency   = 4
	defaultChunkSize     = 50
	defaultMaxBatch      = 1000
	defaultVerifications = 60
	defaultHookBatch     = 500
	defaultHookTimeout   = 10 * time.Second
	defaultRetryMin      = 5 * time.Second
	defaultRetryMax      = 15 * time.Minute
	defaultMaxAge        = 48 * time.Hour
)

// withDefaults returns s with the zero fields set to their defaults.
func (s Settings) withDefaults() Settings {
	if s.Price == nil {
		s.Price = &Price{Credits: storage.Scale}
	}
	if len(s.Providers) == 0 {
		s.Providers = []string{DefaultProvider}
	}
	if s.Registration == "" {
		s.Registration = "verify"
	}
	setDur := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	setInt := func(i *int, v int) {
		if *i == 0 {
			*i = v
		}
	}
	setDur(&s.DedupeTTL, defaultDedupeTTL)
	setDur(&s.HoldTTL, defaultHoldTTL)
	setDur(&s.SendTimeout, defaultSendTimeout)
	setInt(&s.Concurrency, defaultConcurrency)
	setInt(&s.ChunkSize, defaultChunkSize)
	setInt(&s.MaxBatch, defaultMaxBatch)
	setInt(&s.VerificationsPerHour, defaultVerifications)
	w := &s.Webhooks
	setInt(&w.BatchSize, defaultHookBatch)
	setDur(&w.Timeout, defaultHookTimeout)
	setDur(&w.RetryMin, defaultRetryMin)
	setDur(&w.RetryMax, defaultRetryMax)
	setDur(&w.MaxAge, defaultMaxAge)
	return s
}

// Validate reports the first problem of the settings.
func (s Settings) Validate() error {
	for p, v := range s.Prices {
		if !validPrefix(p) {
			return fmt.Errorf("prices: %q is not an E.164 prefix (+ and 1 to 15 digits)", p)
		}
		if v.Credits > maxPrice {
			return fmt.Errorf("prices: %s: at most %s credits per segment", p, maxPrice)
		}
	}
	if s.Price != nil && s.Price.Credits > maxPrice {
		return fmt.Errorf("price: at most %s credits per segment", maxPrice)
	}
	for _, p := range s.UnsupportedPrefixes {
		if !validPrefix(p) {
			return fmt.Errorf("unsupported_prefixes: %q is not an E.164 prefix (+ and 1 to 15 digits)", p)
		}
	}
	for i, r := range s.Routes {
		if len(r.Prefixes) == 0 || len(r.Providers) == 0 {
			return fmt.Errorf("routes[%d]: prefixes and providers are both required", i)
		}
		for _, p := range r.Prefixes {
			if !validPrefix(p) {
				return fmt.Errorf("routes[%d]: %q is not an E.164 prefix (+ and 1 to 15 digits)", i, p)
			}
		}
		if err := validChain(r.Providers); err != nil {
			return fmt.Errorf("routes[%d].providers: %w", i, err)
		}
	}
	if err := validChain(s.Providers); err != nil && len(s.Providers) > 0 {
		return fmt.Errorf("providers: %w", err)
	}
	switch s.Registration {
	case "", "verify", "off":
	default:
		return fmt.Errorf("registration %q: want verify or off", s.Registration)
	}
	for _, c := range s.Webhooks.AllowCIDRs {
		if _, err := netip.ParsePrefix(c); err != nil {
			return fmt.Errorf("webhooks.allow_cidrs: %w", err)
		}
	}
	for name, v := range map[string]int{"concurrency": s.Concurrency, "chunk_size": s.ChunkSize, "max_batch": s.MaxBatch, "verifications_per_hour": s.VerificationsPerHour, "webhooks.batch_size": s.Webhooks.BatchSize} {
		if v < 0 || v > 100000 {
			return fmt.Errorf("%s: %d is out of range", name, v)
		}
	}
	for name, d := range map[string]time.Duration{"dedupe_ttl": s.DedupeTTL, "hold_ttl": s.HoldTTL, "send_timeout": s.SendTimeout,
		"webhooks.timeout": s.Webhooks.Timeout, "webhooks.retry_min": s.Webhooks.RetryMin, "webhooks.retry_max": s.Webhooks.RetryMax, "webhooks.max_age": s.Webhooks.MaxAge} {
		if d < 0 {
			return fmt.Errorf("%s must not be negative", name)
		}
	}
	if s.SendTimeout > 14*time.Second {
		return errors.New("send_timeout must stay below the 15 s Odoo waits (PROTOCOL §13)")
	}
	return nil
}

func validChain(names []string) error {
	if len(names) == 0 {
		return errors.New("at least one provider instance is required")
	}
	seen := map[string]bool{}
	for _, n := range names {
		if n == "" || seen[n] {
			return fmt.Errorf("empty or repeated provider name %q", n)
		}
		seen[n] = true
	}
	return nil
}

// ProviderNames lists every provider instance the settings name, sorted,
// the default chain included.
func (s Settings) ProviderNames() []string {
	s = s.withDefaults()
	seen := map[string]bool{}
	for _, n := range s.Providers {
		seen[n] = true
	}
	for _, r := range s.Routes {
		for _, n := range r.Providers {
			seen[n] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// validPrefix: "+" and 1 to 15 digits, not starting with 0.
func validPrefix(p string) bool {
	if len(p) < 2 || len(p) > 16 || p[0] != '+' || p[1] == '0' {
		return false
	}
	for i := 1; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

// normalizeNumber returns number in E.164 ("+32470123456") and whether it
// is one: the visual separators Odoo may leave (spaces, dots, dashes,
// parentheses) are dropped and a leading "00" is read as "+"; what
// remains must be "+" and 8 to 15 digits, the first not 0.
func normalizeNumber(number string) (string, bool) {
	b := make([]byte, 0, len(number))
	for i := 0; i < len(number); i++ {
		c := number[i]
		switch {
		case c == ' ' || c == '.' || c == '-' || c == '(' || c == ')' || c == '\t':
		case c == '+' && len(b) == 0:
			b = append(b, c)
		case c >= '0' && c <= '9':
			b = append(b, c)
		default:
			return "", false
		}
	}
	if len(b) > 2 && b[0] == '0' && b[1] == '0' {
		b = append([]byte{'+'}, b[2:]...)
	}
	if len(b) < 9 || len(b) > 16 || b[0] != '+' || b[1] == '0' {
		return "", false
	}
	return string(b), true
}

// prefixTable finds the value of the longest matching prefix.
type prefixTable[V any] struct {
	m      map[string]V
	maxLen int
}

func newPrefixTable[V any]() *prefixTable[V] { return &prefixTable[V]{m: map[string]V{}} }

func (t *prefixTable[V]) add(prefix string, v V) {
	if _, dup := t.m[prefix]; dup {
		return // the first wins (routes: first matching rule)
	}
	t.m[prefix] = v
	t.maxLen = max(t.maxLen, len(prefix))
}

func (t *prefixTable[V]) lookup(number string) (V, bool) {
	for l := min(t.maxLen, len(number)); l >= 2; l-- {
		if v, ok := t.m[number[:l]]; ok {
			return v, true
		}
	}
	var zero V
	return zero, false
}
