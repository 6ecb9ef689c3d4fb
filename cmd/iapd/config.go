package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

// Defaults of the configuration (README "Configuration reference").
const (
	DefaultListen          = "127.0.0.1:8070"
	DefaultOpsListen       = "127.0.0.1:9070"
	DefaultData            = "./iapd-data"
	DefaultLogLevel        = "info"
	DefaultLogFormat       = "text"
	DefaultLogStorage      = "warn"
	DefaultShutdownTimeout = 15 * time.Second
	DefaultSweepInterval   = time.Minute
	DefaultMemoryLimit     = 48 << 20
	DefaultDiskReserve     = badger.DefaultDiskReserve // 256 MiB
)

// Config is iapd serve's configuration: the YAML file, then the flags.
type Config struct {
	// PublicURL is how browsers (and Odoo) reach the public listener, e.g.
	// https://iap.example.com; default http://<listen>. No path: Odoo 18.0
	// drops path prefixes when it joins URLs.
	PublicURL string `yaml:"public_url"`
	// Listen is the public JSON-RPC listener (what Odoo calls).
	Listen string `yaml:"listen"`
	// OpsListen serves /healthz, /readyz and the admin API.
	OpsListen string `yaml:"ops_listen"`
	// Data is the Badger directory of the ledger.
	Data string `yaml:"data"`
	// Ledger, set, is the postgres:// URL of a shared PostgreSQL ledger
	// (storage/postgres) used instead of Badger in Data; several nodes may
	// name the same one. Empty: IAPD_LEDGER, else Badger. Never logged
	// with its password (postgres.Redact).
	Ledger string `yaml:"ledger"`
	// JournalCorrupt is what start-up does with a corrupt journal:
	// "refuse" (the default: exit, change nothing) or "move-aside".
	// Set by serve's -journal-corrupt flag only, never by the file: it is
	// one start's decision, not a standing policy.
	JournalCorrupt string `yaml:"-"`
	// AdminToken is the admin API bearer token; empty disables the admin
	// API. AdminTokenFile names a file holding it instead.
	AdminToken     string `yaml:"admin_token"`
	AdminTokenFile string `yaml:"admin_token_file"`
	// LogLevel is debug, info, warn or error; LogFormat text or json.
	LogLevel  string `yaml:"log_level"`
	LogFormat string `yaml:"log_format"`
	// LogAccess writes one line per public request (the access log), at
	// info whatever LogLevel; off by default.
	LogAccess bool `yaml:"log_access"`
	// LogStorage is the level of the storage engine's (Badger's) own
	// lines: debug, info, warn (the default) or error.
	LogStorage string `yaml:"log_storage"`
	// MaxBodyBytes bounds a JSON-RPC request body; 0 leaves the rpc
	// package's default.
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// ShutdownTimeout bounds the wait for in-flight requests on SIGTERM.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// SweepInterval is how often expired holds are released.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// MemoryLimit is the Go runtime's soft memory limit
	// (runtime/debug.SetMemoryLimit) in bytes, written as a number or with
	// a unit as GOMEMLIMIT takes it ("64MiB"); 0 sets no limit. The
	// GOMEMLIMIT environment variable, when set, wins.
	MemoryLimit ByteSize `yaml:"memory_limit"`
	// DiskReserve is the free space kept on the data volume: below it the
	// writes that grow the ledger (new accounts, holds, recharges,
	// settings) are refused as a temporary server problem, while reads,
	// captures and cancels go on. iapd raises it when Badger's tree needs
	// more (storage/badger/space.go); 0 keeps only that need.
	DiskReserve ByteSize `yaml:"disk_reserve"`
	// Services sets the policy of built-in and custom services.
	Services map[string]ServiceConfig `yaml:"services"`
	// TrialCredits is the trial credit of every service (built-in or
	// named under services) that does not set its own
	// services.<name>.trial_credits; default 0.
	TrialCredits CreditsValue `yaml:"trial_credits"`

	// Providers are the named provider instances ("twilio-eu": {type:
	// twilio, …}); services name them in their settings. Unset, every
	// service uses its sandbox provider (outbox, folder, the sample
	// directory).
	Providers map[string]ProviderConfig `yaml:"providers"`
	// Sandbox is what serve does when a service runs on a sandbox
	// provider, which sends nothing for real (sandbox.go): "warn" (the
	// default, also ""): a WARN line, /readyz detail and the
	// iap_provider_sandbox gauge; "refuse": exit at start-up.
	Sandbox string `yaml:"sandbox"`

	// Upstream configures the forwarding of routes to Odoo's IAP hosts
	// (proxy package, issue 6): hosts per role, timeouts, audit log.
	Upstream RawSection `yaml:"upstream"`
	// AirGapped refuses every route that is not served locally and lets
	// no connection out but to the configured providers.
	AirGapped bool `yaml:"air_gapped"`
	// TLSCertFile and TLSKeyFile, both set, make the public listener
	// serve HTTPS (reloaded on SIGHUP).
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`

	// Portal configures the pages Odoo's "Buy credits" links open
	// (packs, shop link, rate limits) — rpc/portal decodes it.
	Portal RawSection `yaml:"portal"`
	// Payments configures online payment of the portal's packs
	// (wire_payments.go).
	Payments PaymentsConfig `yaml:"payments"`
	// Alerts configures low-credit e-mails (notifier provider, sender,
	// webhook) — decoded by the alert dispatcher.
	Alerts RawSection `yaml:"alerts"`
	// ClientIPHeader names the header a reverse proxy in front of iapd
	// sets to the client's address (X-Real-IP; for X-Forwarded-For the
	// last address). Every limit keyed by address uses it (the portal's
	// too). Empty: the peer address. Set it only behind such a proxy.
	ClientIPHeader string `yaml:"client_ip_header"`
	// Limits are the abuse limits (account creation, trial credit, alert
	// e-mails) — rpc/limit.Config decodes it.
	Limits RawSection `yaml:"limits"`
}

// RawSection is a configuration section decoded by the package it
// configures (strictly: unknown keys are an error there), after ${ENV}
// expansion. Zero when absent.
type RawSection struct{ Node yaml.Node }

// UnmarshalYAML keeps the node.
func (r *RawSection) UnmarshalYAML(n *yaml.Node) error { r.Node = *n; return nil }

// Set reports whether the section was given.
func (r RawSection) Set() bool { return r.Node.Kind != 0 }

// Decode decodes the section into v, refusing unknown keys; an absent
// section leaves v as it is.
func (r RawSection) Decode(v any) error {
	if !r.Set() {
		return nil
	}
	b, err := yaml.Marshal(&r.Node)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("line %d: %w", r.Node.Line, err)
	}
	return nil
}

// ProviderConfig is one provider instance: its type and the adapter's
// own settings.
type ProviderConfig struct {
	Type     string
	Settings yaml.Node // the mapping without "type"
	Line     int
}

// UnmarshalYAML splits "type" from the adapter's settings.
func (p *ProviderConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: a provider is a mapping with a type", n.Line)
	}
	p.Line = n.Line
	rest := *n
	rest.Content = nil
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "type" {
			p.Type = n.Content[i+1].Value
			continue
		}
		rest.Content = append(rest.Content, n.Content[i], n.Content[i+1])
	}
	if p.Type == "" {
		return fmt.Errorf("line %d: provider without a type", n.Line)
	}
	p.Settings = rest
	return nil
}

// ServiceConfig is the policy of one service for accounts it has not seen
// before. Unset fields take the defaults of ServiceDefaults.
type ServiceConfig struct {
	AutoRegister *bool        `yaml:"auto_register"`
	TrialCredits CreditsValue `yaml:"trial_credits"`
	Description  *string      `yaml:"description"`
	UnitName     string       `yaml:"unit_name"`

	// Mode is where the service's routes are served: "local" (default:
	// iapd's ledger and providers), "upstream" (forwarded to Odoo's IAP)
	// or "refuse" (answered with the refusal the route understands).
	Mode string `yaml:"mode"`
	// Settings are the service package's own: prices, providers and
	// routing rules (rpc/sms, rpc/snailmail, rpc/company decode them).
	Settings RawSection `yaml:"settings"`
}

// CreditsValue is an amount of credits in the configuration, decoded from
// the YAML scalar's text with storage.ParseCredits so that no float ever
// rounds it.
type CreditsValue struct {
	Credits storage.Credits
	Set     bool // given in the file (0 included)
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (c *CreditsValue) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a number of credits is expected", n.Line)
	}
	v, err := storage.ParseCredits(strings.TrimSpace(n.Value))
	if err != nil {
		return fmt.Errorf("line %d: %q: %w", n.Line, n.Value, err)
	}
	c.Credits, c.Set = v, true
	return nil
}

// ByteSize is a size in bytes in the configuration: a whole number, or one
// with a unit as GOMEMLIMIT takes it: B, KiB, MiB, GiB or TiB.
type ByteSize int64

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a size is expected, e.g. 64MiB", n.Line)
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

// byteUnits are a ByteSize's units, largest first ("B" last: the other
// suffixes end with it).
var byteUnits = []struct {
	suffix string
	mult   int64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}

// String writes b as the configuration would: with the largest unit that
// divides it exactly ("256MiB"), else in bytes; ParseByteSize reads it back.
func (b ByteSize) String() string {
	for _, u := range byteUnits {
		if b != 0 && u.mult > 1 && int64(b)%u.mult == 0 {
			return strconv.FormatInt(int64(b)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// ParseByteSize parses a size: a whole number of bytes with an optional
// unit B, KiB, MiB, GiB or TiB ("64MiB", "67108864").
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range byteUnits {
		if v, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(v), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q: want a size in bytes, e.g. 67108864 or 64MiB (units B, KiB, MiB, GiB, TiB)", s)
	}
	return ByteSize(n * mult), nil
}

// builtinDefaults are the unit names Odoo ships for the built-in services
// (PROTOCOL §3) and a description for Odoo 17's account list.
var builtinDefaults = map[storage.ServiceName]struct{ unit, description string }{
	storage.SMS:                 {"Credits", "Send SMS"},
	storage.Snailmail:           {"Stamps", "Send letters by post"},
	storage.PartnerAutocomplete: {"Enrichments", "Company data for partners"},
	storage.Reveal:              {"Credits", "Lead generation and enrichment"},
}

// DefaultConfig returns the configuration used when nothing is given.
func DefaultConfig() Config {
	return Config{
		Listen:          DefaultListen,
		OpsListen:       DefaultOpsListen,
		Data:            DefaultData,
		LogLevel:        DefaultLogLevel,
		LogFormat:       DefaultLogFormat,
		LogStorage:      DefaultLogStorage,
		ShutdownTimeout: DefaultShutdownTimeout,
		SweepInterval:   DefaultSweepInterval,
		MemoryLimit:     DefaultMemoryLimit,
		DiskReserve:     DefaultDiskReserve,
	}
}

// ParseConfig decodes a YAML configuration over the defaults. ${NAME} in
// scalar values is replaced by getenv(NAME) (an unset or empty variable is
// an error; ${NAME:-default} gives a default); unknown keys are an error.
func ParseConfig(data []byte, getenv func(string) string) (Config, error) {
	c := DefaultConfig()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return c, err
	}
	if doc.Kind == 0 { // empty file
		return c, nil
	}
	if err := expandNode(&doc, getenv); err != nil {
		return c, err
	}
	if err := checkKnownKeys(&doc, reflect.TypeOf(c), ""); err != nil {
		return c, err
	}
	if err := doc.Decode(&c); err != nil {
		return c, err
	}
	return c, nil
}

// checkKnownKeys refuses mapping keys that no field of t is tagged with, as
// yaml's Decoder.KnownFields does, but on the parsed tree so that the line
// reported is the file's (Node.Decode has no KnownFields option).
func checkKnownKeys(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if err := checkKnownKeys(c, t, path); err != nil {
				return err
			}
		}
		return nil
	case yaml.AliasNode:
		return checkKnownKeys(n.Alias, t, path)
	case yaml.MappingNode:
	default:
		return nil // scalars and sequences: Decode checks their types
	}
	switch t.Kind() {
	case reflect.Map:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := checkKnownKeys(n.Content[i+1], t.Elem(), path+n.Content[i].Value+"."); err != nil {
				return err
			}
		}
	case reflect.Struct:
		if reflect.PointerTo(t).Implements(reflect.TypeFor[yaml.Unmarshaler]()) {
			return nil
		}
		fields := map[string]reflect.Type{}
		var names []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			fields[name] = f.Type
			names = append(names, name)
		}
		where := "the top level"
		if path != "" {
			where = strings.TrimSuffix(path, ".")
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			ft, ok := fields[k.Value]
			if !ok {
				return fmt.Errorf("line %d: unknown key %q (known keys in %s: %s)",
					k.Line, path+k.Value, where, strings.Join(names, ", "))
			}
			if err := checkKnownKeys(n.Content[i+1], ft, path+k.Value+"."); err != nil {
				return err
			}
		}
	}
	return nil
}

// expandNode replaces ${NAME} in every scalar value (not in keys, nor in
// comments). A plain scalar that was expanded is re-resolved, so that
// "auto_register: ${AUTO}" with AUTO=false is a boolean.
func expandNode(n *yaml.Node, getenv func(string) string) error {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			if err := expandNode(n.Content[i], getenv); err != nil {
				return err
			}
		}
		return nil
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "${") {
			return nil
		}
		v, err := expandEnv(n.Value, getenv)
		if err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		n.Value = v
		if n.Style == 0 {
			n.Tag = ""
		}
		return nil
	default:
		for _, c := range n.Content {
			if err := expandNode(c, getenv); err != nil {
				return err
			}
		}
		return nil
	}
}

// expandEnv replaces ${NAME} and ${NAME:-default}; "$$" is a literal "$".
// A bare "$NAME" is left alone (tokens may contain '$').
func expandEnv(s string, getenv func(string) string) (string, error) {
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '$')
		if i < 0 || i+1 >= len(s) {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			s = s[i+2:]
			continue
		case '{':
		default:
			b.WriteByte('$')
			s = s[i+1:]
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("unterminated ${ in %q", s[i:])
		}
		expr := s[i+2 : i+end]
		name, def, hasDef := strings.Cut(expr, ":-")
		if !validEnvName(name) {
			return "", fmt.Errorf("bad variable name ${%s}", expr)
		}
		v := getenv(name)
		if v == "" {
			if !hasDef {
				return "", fmt.Errorf("environment variable %s is not set (use ${%s:-} to allow it empty)", name, name)
			}
			v = def
		}
		b.WriteString(v)
		s = s[i+end+1:]
	}
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// prepare is what every command does with a loaded configuration:
// normalise it, resolve its secrets (the environment through getenv, the
// files from disk) and validate it.
func (c *Config) prepare(getenv func(string) string) error {
	c.normalise()
	if err := c.ResolveSecrets(getenv, os.ReadFile); err != nil {
		return err
	}
	if c.Ledger == "" {
		c.Ledger = getenv("IAPD_LEDGER") // ledger_pg.go
	}
	return c.Validate()
}

// ResolveSecrets reads *_file secrets and, when no admin token is
// configured at all, takes IAPD_ADMIN_TOKEN from the environment (the
// variable the CLI reads). Secrets never reach a log.
func (c *Config) ResolveSecrets(getenv func(string) string, readFile func(string) ([]byte, error)) error {
	if err := c.Payments.resolve(readFile); err != nil {
		return err
	}
	if c.AdminToken != "" && c.AdminTokenFile != "" {
		return errors.New("admin_token and admin_token_file are both set; keep one")
	}
	if c.AdminTokenFile != "" {
		b, err := readFile(c.AdminTokenFile)
		if err != nil {
			return fmt.Errorf("admin_token_file: %w", err)
		}
		c.AdminToken = strings.TrimRight(string(b), "\r\n")
		if c.AdminToken == "" {
			return fmt.Errorf("admin_token_file %s is empty", c.AdminTokenFile)
		}
		return nil
	}
	if c.AdminToken == "" {
		c.AdminToken = getenv("IAPD_ADMIN_TOKEN")
	}
	return nil
}

// Validate reports the first problem of the configuration, after
// ResolveSecrets.
func (c *Config) Validate() error {
	if err := validAddr(c.Listen); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if err := validAddr(c.OpsListen); err != nil {
		return fmt.Errorf("ops_listen: %w", err)
	}
	if c.Listen == c.OpsListen && !strings.HasSuffix(c.Listen, ":0") {
		return fmt.Errorf("listen and ops_listen are both %s; the admin API must not share the public listener", c.Listen)
	}
	if c.Data == "" {
		return errors.New("data: a directory is required")
	}
	if err := validLedgerURL(c.Ledger); err != nil { // ledger_pg.go
		return err
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		switch {
		case err != nil:
			return fmt.Errorf("public_url: %w", err)
		case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
			return fmt.Errorf("public_url %q: want http(s)://host[:port]", c.PublicURL)
		case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "", u.User != nil:
			return fmt.Errorf("public_url %q: serve iapd at the root of a host (no path, query or credentials): Odoo 18.0 drops path prefixes", c.PublicURL)
		}
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	if _, err := parseLevel(c.LogStorage); err != nil {
		return fmt.Errorf("log_storage: %w", err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("log_format %q: want text or json", c.LogFormat)
	}
	if c.Sandbox != "" && c.Sandbox != SandboxWarn && c.Sandbox != SandboxRefuse {
		return fmt.Errorf("sandbox %q: want warn or refuse", c.Sandbox)
	}
	if c.MaxBodyBytes < 0 {
		return errors.New("max_body_bytes must not be negative")
	}
	if c.ShutdownTimeout <= 0 {
		return errors.New("shutdown_timeout must be positive")
	}
	if c.SweepInterval <= 0 {
		return errors.New("sweep_interval must be positive")
	}
	if c.MemoryLimit < 0 {
		return errors.New("memory_limit must not be negative (0 sets no limit)")
	}
	if c.DiskReserve < 0 {
		return errors.New("disk_reserve must not be negative (0 keeps only what Badger needs)")
	}
	for name, s := range c.Services {
		if !storage.ValidServiceName(name) {
			return fmt.Errorf("services: %q is not a valid service name (1 to 64 of a-z, 0-9, _ and -, starting with a letter)", name)
		}
		if len(s.UnitName) > 64 {
			return fmt.Errorf("services.%s.unit_name: at most 64 bytes", name)
		}
		if s.Description != nil && len(*s.Description) > 512 {
			return fmt.Errorf("services.%s.description: at most 512 bytes", name)
		}
	}
	if c.AdminToken == "" && !isLoopback(c.OpsListen) {
		return fmt.Errorf("ops_listen %s is not a loopback address: set admin_token (or admin_token_file) first", c.OpsListen)
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		return errors.New("admin_token must be at least 16 characters")
	}
	return nil
}

// ServicePolicies returns the policy of every built-in and configured
// service, by name.
func (c *Config) ServicePolicies() []storage.Service {
	names := map[storage.ServiceName]bool{}
	for _, n := range storage.BuiltinServices {
		names[n] = true
	}
	for n := range c.Services {
		names[storage.ServiceName(n)] = true
	}
	out := make([]storage.Service, 0, len(names))
	for n := range names {
		sc := c.Services[string(n)]
		trial := c.TrialCredits.Credits
		if sc.TrialCredits.Set {
			trial = sc.TrialCredits.Credits
		}
		s := storage.Service{Name: n, AutoRegister: true, UnitName: "Credits", TrialCredits: trial}
		if d, ok := builtinDefaults[n]; ok {
			s.UnitName, s.Description = d.unit, d.description
		}
		if sc.AutoRegister != nil {
			s.AutoRegister = *sc.AutoRegister
		}
		if sc.Description != nil {
			s.Description = *sc.Description
		}
		if sc.UnitName != "" {
			s.UnitName = sc.UnitName
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// normalise trims what is harmless to trim.
func (c *Config) normalise() {
	c.PublicURL = strings.TrimRight(strings.TrimSpace(c.PublicURL), "/")
	c.LogLevel = strings.ToLower(c.LogLevel)
	c.LogStorage = strings.ToLower(c.LogStorage)
}

func validAddr(a string) error {
	if a == "" {
		return errors.New("an address host:port is required")
	}
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: bad port", a)
	}
	return nil
}

// isLoopback reports whether a listen address binds to loopback only.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log_level %q: want debug, info, warn or error", s)
}

// loadConfigFile reads and parses a configuration file.
func loadConfigFile(path string, getenv func(string) string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	c, err := ParseConfig(data, getenv)
	if err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
