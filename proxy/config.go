package proxy

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/iapd/iapd/providers/outbound"
	"github.com/iapd/iapd/rpc"
)

// Mode is where a service's routes are served.
type Mode string

// Modes.
const (
	// Local: iapd's handlers, ledger and providers (the default).
	Local Mode = "local"
	// Upstream: forwarded to Odoo's IAP host of the route's role; iapd's
	// ledger is not involved.
	Upstream Mode = "upstream"
	// Refuse: answered here with the refusal the route understands.
	Refuse Mode = "refuse"
)

// ParseMode reads a mode from the configuration; "" is Local.
func ParseMode(s string) (Mode, error) {
	switch Mode(strings.ToLower(strings.TrimSpace(s))) {
	case "", Local:
		return Local, nil
	case Upstream:
		return Upstream, nil
	case Refuse:
		return Refuse, nil
	}
	return "", fmt.Errorf("mode %q: want local, upstream or refuse", s)
}

// Role is one of Odoo's IAP hosts: the routes of a role are called on the
// base URL of one Odoo system parameter (PROTOCOL §2).
type Role string

// Roles, with the system parameter whose default they stand for.
const (
	RoleIAP                 Role = "iap"                  // iap.endpoint: account and transaction routes (§4, §5)
	RoleSMS                 Role = "sms"                  // sms.endpoint, 17.0+ (§6.2, §6.3)
	RoleSMSLegacy           Role = "sms_legacy"           // sms.endpoint of 16.0: /iap/sms/2/send (§6.1)
	RoleSnailmail           Role = "snailmail"            // snailmail.endpoint (§7)
	RolePartnerAutocomplete Role = "partner_autocomplete" // iap.partner_autocomplete.endpoint (§8)
	RoleEnrich              Role = "enrich"               // enrich.endpoint: lead enrichment (§9)
	RoleReveal              Role = "reveal"               // reveal.endpoint: lead mining, website reveal (§10, §11)
	RoleOLG                 Role = "olg"                  // olg_api_endpoint: AI text (§12), unknown routes only
	RoleWebsite             Role = "website"              // website.website_api_endpoint (§12), unknown routes only
	RoleL10nIn              Role = "l10n_in"              // l10n_in_edi.endpoint (§12), unknown routes only
)

// DefaultHosts are Odoo's own hosts per role (PROTOCOL §2, §12).
var DefaultHosts = map[Role]string{
	RoleIAP:                 "https://iap.odoo.com",
	RoleSMS:                 "https://sms.api.odoo.com",
	RoleSMSLegacy:           "https://iap-sms.odoo.com",
	RoleSnailmail:           "https://iap-snailmail.odoo.com",
	RolePartnerAutocomplete: "https://partner-autocomplete.odoo.com",
	RoleEnrich:              "https://iap-services.odoo.com",
	RoleReveal:              "https://iap-services.odoo.com",
	RoleOLG:                 "https://olg.api.odoo.com",
	RoleWebsite:             "https://website.api.odoo.com",
	RoleL10nIn:              "https://l10n-in-edi.api.odoo.com",
}

// endpointRoles maps a route's system parameter (rpc.Route.Endpoint) to
// its role.
var endpointRoles = map[string]Role{
	"":                                  RoleIAP,
	"iap.endpoint":                      RoleIAP,
	"sms.endpoint":                      RoleSMS,
	"snailmail.endpoint":                RoleSnailmail,
	"iap.partner_autocomplete.endpoint": RolePartnerAutocomplete,
	"enrich.endpoint":                   RoleEnrich,
	"reveal.endpoint":                   RoleReveal,
}

// roleParams name the Odoo system parameter of each role (PROTOCOL §2).
var roleParams = map[Role]string{
	RoleIAP:                 "iap.endpoint",
	RoleSMS:                 "sms.endpoint",
	RoleSMSLegacy:           "sms.endpoint (16.0)",
	RoleSnailmail:           "snailmail.endpoint",
	RolePartnerAutocomplete: "iap.partner_autocomplete.endpoint",
	RoleEnrich:              "enrich.endpoint",
	RoleReveal:              "reveal.endpoint",
	RoleOLG:                 "olg_api_endpoint",
	RoleWebsite:             "website.website_api_endpoint",
	RoleL10nIn:              "l10n_in_edi.endpoint",
}

// prefixRoles route paths that no local handler serves (forwarded only
// with Config.ForwardUnknown), longest prefix first, with the client's
// timeout (§13).
var prefixRoles = []struct {
	prefix  string
	role    Role
	timeout time.Duration
}{
	{"/api/dnb/1/search_by_criteria", RoleReveal, 300 * time.Second},
	{"/iap/clearbit/1/lead_enrichment_email", RoleEnrich, 300 * time.Second},
	{"/iap/clearbit/", RoleReveal, 300 * time.Second},
	{"/iap/sms/2/", RoleSMSLegacy, 15 * time.Second},
	{"/iap/message_send", RoleSMSLegacy, 15 * time.Second},
	{"/iap/sms/", RoleSMS, 15 * time.Second},
	{"/api/sms/", RoleSMS, 15 * time.Second},
	{"/iap/snailmail/", RoleSnailmail, 30 * time.Second},
	{"/iap/partner_autocomplete/", RolePartnerAutocomplete, 15 * time.Second},
	{"/api/dnb/", RolePartnerAutocomplete, 15 * time.Second},
	{"/api/olg/1/generate_placeholder", RoleOLG, 45 * time.Second},
	{"/api/olg/", RoleOLG, 30 * time.Second},
	{"/api/website/", RoleWebsite, 15 * time.Second},
	{"/iap/l10n_in_edi/", RoleL10nIn, 25 * time.Second},
	{"/iap/l10n_in_reports/", RoleL10nIn, 25 * time.Second},
	{"/iap/1/", RoleIAP, 15 * time.Second},
	{"/iap/services", RoleIAP, 15 * time.Second},
	{"/iap/update-warning", RoleIAP, 15 * time.Second},
}

// roleOfPath returns the role and client timeout of a path no route
// serves, and false when no role serves such paths.
func roleOfPath(path string) (Role, time.Duration, bool) {
	for _, p := range prefixRoles {
		if strings.HasPrefix(path, p.prefix) {
			return p.role, p.timeout, true
		}
	}
	return "", 0, false
}

// RoleOf returns the role of a route: by its path for the 16.0 SMS host,
// else by its system parameter, else by its path.
func RoleOf(r rpc.Route) Role {
	if role, _, ok := roleOfPath(r.Path); ok && role == RoleSMSLegacy {
		return role
	}
	if role, ok := endpointRoles[r.Endpoint]; ok {
		return role
	}
	if role, _, ok := roleOfPath(r.Path); ok {
		return role
	}
	return RoleIAP
}

// Defaults of Config.
const (
	DefaultMaxBodyBytes        = 16 << 20
	DefaultMaxAnswerBytes      = 4 << 20
	DefaultMaxIdleConnsPerHost = 16
)

// Config is the "upstream" section of iapd's configuration. The zero
// value forwards to Odoo's own hosts with the clients' timeouts.
type Config struct {
	// Hosts overrides the base URL of roles (DefaultHosts), e.g. to go
	// through a site's egress proxy or to Odoo's sandbox:
	// {snailmail: "https://iap-snailmail.odoo.com"}.
	Hosts map[Role]string `yaml:"hosts"`
	// Timeouts overrides the client timeout of routes by path, when the
	// databases were configured to wait longer or shorter (snailmail.timeout,
	// §2): {"/iap/snailmail/1/print": 60s}. The upstream gets the timeout
	// less a margin (a tenth, at most 1 s), so that the database reads
	// iapd's answer before it gives up itself.
	Timeouts map[string]time.Duration `yaml:"timeouts"`
	// MaxBodyBytes bounds a forwarded request and an upstream answer;
	// 0 is DefaultMaxBodyBytes.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxAnswerBytes bounds an upstream answer (read no further; the
	// request fails as too_large), within MaxBodyBytes; 0 is
	// DefaultMaxAnswerBytes. Odoo's IAP answers are small (a lead-mining
	// answer is about 1 KB a lead) while a request may carry a letter's
	// PDF; a lower bound keeps what concurrent answers can cost iapd's
	// memory low.
	MaxAnswerBytes int64 `yaml:"max_answer_bytes"`
	// MaxIdleConnsPerHost bounds the pooled connections kept per upstream
	// host; 0 is DefaultMaxIdleConnsPerHost.
	MaxIdleConnsPerHost int `yaml:"max_idle_conns_per_host"`
	// AuditLog is a file that receives one JSON line per forwarded
	// request (time, route, service, upstream, hashed account, sizes,
	// status, outcome, duration; never a body). Empty: no audit log.
	AuditLog string `yaml:"audit_log"`
	// ForwardUnknown forwards POSTs to paths no local handler serves
	// (post-19.0 account routes, §4.6; the APIs of §12) to the role their
	// path belongs to, when not air-gapped. Otherwise they are answered
	// "not found", as Odoo's own server does.
	ForwardUnknown bool `yaml:"forward_unknown"`
	// OutboundAllow lists extra host or host:port that outbound
	// connections may reach in air-gapped mode, besides the configured
	// providers' (a relay, a provider whose hosts cannot be derived).
	OutboundAllow []string `yaml:"outbound_allow"`
}

// Validate reports the first problem of c.
func (c *Config) Validate() error {
	roles := make([]string, 0, len(c.Hosts))
	for r := range c.Hosts {
		roles = append(roles, string(r))
	}
	sort.Strings(roles)
	for _, r := range roles {
		if _, ok := DefaultHosts[Role(r)]; !ok {
			return fmt.Errorf("upstream.hosts: unknown role %q (known: %s)", r, strings.Join(knownRoles(), ", "))
		}
		if err := validBaseURL(c.Hosts[Role(r)]); err != nil {
			return fmt.Errorf("upstream.hosts.%s: %w", r, err)
		}
	}
	for p, d := range c.Timeouts {
		if !strings.HasPrefix(p, "/") || string(rpc.NormalizePath([]byte(p))) != p {
			return fmt.Errorf("upstream.timeouts: %q is not a route path such as /iap/snailmail/1/print", p)
		}
		if d <= 0 || d > time.Hour {
			return fmt.Errorf("upstream.timeouts.%s: %s is not between 0 and 1h", p, d)
		}
	}
	if c.MaxBodyBytes < 0 {
		return errors.New("upstream.max_body_bytes must not be negative")
	}
	if c.MaxAnswerBytes < 0 {
		return errors.New("upstream.max_answer_bytes must not be negative")
	}
	if c.MaxIdleConnsPerHost < 0 {
		return errors.New("upstream.max_idle_conns_per_host must not be negative")
	}
	for _, h := range c.OutboundAllow {
		if _, err := outbound.NormHost(h); err != nil {
			return fmt.Errorf("upstream.outbound_allow: %w", err)
		}
	}
	return nil
}

// BaseURL returns the base URL of a role: the configured one, else Odoo's.
func (c *Config) BaseURL(r Role) string {
	if u := c.Hosts[r]; u != "" {
		return strings.TrimRight(u, "/")
	}
	return DefaultHosts[r]
}

// maxAnswer is the most bytes of an upstream answer iapd reads.
func (c *Config) maxAnswer() int64 {
	n := c.MaxAnswerBytes
	if n == 0 {
		n = DefaultMaxAnswerBytes
	}
	return min(n, c.maxBody())
}

func (c *Config) maxBody() int64 {
	if c.MaxBodyBytes == 0 {
		return DefaultMaxBodyBytes
	}
	return c.MaxBodyBytes
}

func knownRoles() []string {
	out := make([]string, 0, len(DefaultHosts))
	for r := range DefaultHosts {
		out = append(out, string(r))
	}
	sort.Strings(out)
	return out
}

// validBaseURL accepts an absolute http(s) URL without query, fragment
// or credentials (a path prefix is kept: Odoo concatenates).
func validBaseURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return err
	case u.Scheme != "https" && u.Scheme != "http", u.Host == "":
		return fmt.Errorf("%q: want an absolute http(s) URL such as https://iap.odoo.com", s)
	case u.RawQuery != "", u.Fragment != "", u.User != nil:
		return fmt.Errorf("%q: no query, fragment or credentials", s)
	}
	return nil
}
