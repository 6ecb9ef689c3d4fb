package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
)

func envMap(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestParseConfigDefaults(t *testing.T) {
	for _, src := range []string{"", "# only a comment\n", "---\n"} {
		c, err := ParseConfig([]byte(src), envMap())
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if c.Listen != DefaultListen || c.OpsListen != DefaultOpsListen || c.Data != DefaultData ||
			c.LogLevel != "info" || c.ShutdownTimeout != DefaultShutdownTimeout || c.SweepInterval != time.Minute {
			t.Fatalf("%q: defaults not kept: %+v", src, c)
		}
	}
}

func TestParseConfigFull(t *testing.T) {
	src := `
# iapd configuration
public_url: https://iap.example.com/
listen: 0.0.0.0:8070
ops_listen: 127.0.0.1:9071
data: /var/lib/iapd
admin_token: ${IAPD_TEST_TOKEN}
log_level: DEBUG
log_format: json
max_body_bytes: 8388608
shutdown_timeout: 5s
sweep_interval: 30s
services:
  sms:
    trial_credits: 0.1
    description: "Texts"
  snailmail:
    auto_register: ${AUTO}
  geo:
    trial_credits: ${TRIAL}
    unit_name: Lookups
    description: Geocoding # comment with ${NOT_EXPANDED}
  big:
    trial_credits: 12345678.1234
  exp:
    trial_credits: 1e3
`
	c, err := ParseConfig([]byte(src), envMap("IAPD_TEST_TOKEN", "secret-token-0123456789", "AUTO", "false", "TRIAL", "2.5"))
	if err != nil {
		t.Fatal(err)
	}
	c.normalise()
	if err := c.ResolveSecrets(envMap(), os.ReadFile); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.PublicURL != "https://iap.example.com" || c.Listen != "0.0.0.0:8070" || c.OpsListen != "127.0.0.1:9071" ||
		c.Data != "/var/lib/iapd" || c.AdminToken != "secret-token-0123456789" || c.LogLevel != "debug" ||
		c.LogFormat != "json" || c.MaxBodyBytes != 8<<20 || c.ShutdownTimeout != 5*time.Second || c.SweepInterval != 30*time.Second {
		t.Fatalf("decoded: %+v", c)
	}
	pol := map[storage.ServiceName]storage.Service{}
	for _, s := range c.ServicePolicies() {
		pol[s.Name] = s
	}
	want := map[storage.ServiceName]storage.Service{
		"sms":                  {Name: "sms", AutoRegister: true, TrialCredits: 1000, Description: "Texts", UnitName: "Credits"},
		"snailmail":            {Name: "snailmail", AutoRegister: false, Description: "Send letters by post", UnitName: "Stamps"},
		"partner_autocomplete": {Name: "partner_autocomplete", AutoRegister: true, Description: "Company data for partners", UnitName: "Enrichments"},
		"reveal":               {Name: "reveal", AutoRegister: true, Description: "Lead generation and enrichment", UnitName: "Credits"},
		"geo":                  {Name: "geo", AutoRegister: true, TrialCredits: 25000, Description: "Geocoding", UnitName: "Lookups"},
		"big":                  {Name: "big", AutoRegister: true, TrialCredits: 123456781234, UnitName: "Credits"},
		"exp":                  {Name: "exp", AutoRegister: true, TrialCredits: 1000 * storage.Scale, UnitName: "Credits"},
	}
	if len(pol) != len(want) {
		t.Fatalf("policies: %+v", pol)
	}
	for n, w := range want {
		if pol[n] != w {
			t.Errorf("policy %s: got %+v, want %+v", n, pol[n], w)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"unknown top-level key", "listen: 127.0.0.1:1\nlisten_addr: x\n", `line 2: unknown key "listen_addr"`},
		{"unknown service key", "services:\n  sms:\n    trial_credit: 5\n", `line 3: unknown key "services.sms.trial_credit"`},
		{"unset variable", "admin_token: ${NOPE}\n", "NOPE is not set"},
		{"bad variable", "admin_token: ${1X}\n", "bad variable name"},
		{"unterminated", "admin_token: ${X\n", "unterminated"},
		{"dust", "services:\n  sms:\n    trial_credits: 0.00001\n", "more than 4 decimals"},
		{"negative", "services:\n  sms:\n    trial_credits: -1\n", "negative"},
		{"not a number", "services:\n  sms:\n    trial_credits: lots\n", "not a number"},
		{"trial as a list", "services:\n  sms:\n    trial_credits: [1]\n", "number of credits"},
		{"bad bool", "services:\n  sms:\n    auto_register: maybe\n", "line 3: cannot unmarshal !!str `maybe` into bool"},
		{"bad duration", "shutdown_timeout: soon\n", "soon"},
		{"bad yaml", "listen: [\n", "yaml"},
		{"duplicate key", "listen: a:1\nlisten: b:2\n", "already defined"},
		{"services not a map", "services: 3\n", "line 1: cannot unmarshal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.src), envMap("X", "1"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestExpandEnv(t *testing.T) {
	get := envMap("A", "alpha", "B", "")
	for in, want := range map[string]string{
		"${A}":          "alpha",
		"x${A}y${A}":    "xalphayalpha",
		"${B:-def}":     "def",
		"${C:-}":        "",
		"${A:-def}":     "alpha",
		"$$":            "$",
		"pa$$word":      "pa$word",
		"$A stays":      "$A stays",
		"trailing $":    "trailing $",
		"no variables":  "no variables",
		"${A}${C:-z}$$": "alphaz$",
	} {
		got, err := expandEnv(in, get)
		if err != nil || got != want {
			t.Errorf("expandEnv(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := expandEnv("${B}", get); err == nil {
		t.Error("an empty variable without a default must be an error")
	}
}

func TestValidate(t *testing.T) {
	ok := func() Config {
		c := DefaultConfig()
		c.AdminToken = "0123456789abcdef0123"
		return c
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"bad listen", func(c *Config) { c.Listen = "nope" }, "listen"},
		{"bad port", func(c *Config) { c.Listen = "127.0.0.1:99999" }, "bad port"},
		{"empty ops", func(c *Config) { c.OpsListen = "" }, "ops_listen"},
		{"same listeners", func(c *Config) { c.OpsListen = c.Listen }, "must not share"},
		{"no data", func(c *Config) { c.Data = "" }, "data"},
		{"public url path", func(c *Config) { c.PublicURL = "https://example.com/iap" }, "root of a host"},
		{"public url scheme", func(c *Config) { c.PublicURL = "ftp://example.com" }, "want http"},
		{"public url no host", func(c *Config) { c.PublicURL = "https://" }, "want http"},
		{"log level", func(c *Config) { c.LogLevel = "chatty" }, "log_level"},
		{"log format", func(c *Config) { c.LogFormat = "xml" }, "log_format"},
		{"negative body", func(c *Config) { c.MaxBodyBytes = -1 }, "max_body_bytes"},
		{"zero shutdown", func(c *Config) { c.ShutdownTimeout = 0 }, "shutdown_timeout"},
		{"zero sweep", func(c *Config) { c.SweepInterval = 0 }, "sweep_interval"},
		{"service name", func(c *Config) { c.Services = map[string]ServiceConfig{"Bad Name": {}} }, "not a valid service name"},
		{"short token", func(c *Config) { c.AdminToken = "short" }, "at least 16"},
		{"open ops without token", func(c *Config) { c.AdminToken = ""; c.OpsListen = "0.0.0.0:9070" }, "not a loopback address"},
		{"open ops, empty host", func(c *Config) { c.AdminToken = ""; c.OpsListen = ":9070" }, "not a loopback address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok()
			tc.edit(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	c := ok()
	c.AdminToken = ""
	c.OpsListen = "localhost:9070"
	if err := c.Validate(); err != nil {
		t.Fatalf("loopback ops without a token must be allowed: %v", err)
	}
	c.OpsListen = "[::1]:9070"
	if err := c.Validate(); err != nil {
		t.Fatalf("[::1] is loopback: %v", err)
	}
}

func TestResolveSecrets(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("from-file-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Config{AdminTokenFile: file}
	if err := c.ResolveSecrets(envMap("IAPD_ADMIN_TOKEN", "from-env-0123456789"), os.ReadFile); err != nil || c.AdminToken != "from-file-0123456789" {
		t.Fatalf("file: %q %v", c.AdminToken, err)
	}
	c = Config{}
	if err := c.ResolveSecrets(envMap("IAPD_ADMIN_TOKEN", "from-env-0123456789"), os.ReadFile); err != nil || c.AdminToken != "from-env-0123456789" {
		t.Fatalf("env fallback: %q %v", c.AdminToken, err)
	}
	c = Config{AdminToken: "from-config-0123456789"}
	if err := c.ResolveSecrets(envMap("IAPD_ADMIN_TOKEN", "from-env-0123456789"), os.ReadFile); err != nil || c.AdminToken != "from-config-0123456789" {
		t.Fatalf("config wins: %q %v", c.AdminToken, err)
	}
	c = Config{AdminToken: "a", AdminTokenFile: file}
	if err := c.ResolveSecrets(envMap(), os.ReadFile); err == nil || !strings.Contains(err.Error(), "both") {
		t.Fatalf("both set: %v", err)
	}
	c = Config{AdminTokenFile: filepath.Join(dir, "missing")}
	if err := c.ResolveSecrets(envMap(), os.ReadFile); err == nil {
		t.Fatal("missing file accepted")
	}
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, []byte("\n"), 0o600)
	c = Config{AdminTokenFile: empty}
	if err := c.ResolveSecrets(envMap(), os.ReadFile); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty file: %v", err)
	}
	c = Config{AdminTokenFile: file}
	failing := func(string) ([]byte, error) { return nil, errors.New("boom") }
	if err := c.ResolveSecrets(envMap(), failing); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("read error: %v", err)
	}
}

func TestLoadServeConfigFlagsOverride(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "iapd.yaml")
	src := "listen: 127.0.0.1:1111\nops_listen: 127.0.0.1:2222\ndata: ${DIR}/ledger\nlog_level: warn\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadServeConfig([]string{"-config", path, "-listen", "127.0.0.1:3333", "-log-level=error"}, envMap("DIR", dir), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:3333" || c.OpsListen != "127.0.0.1:2222" || c.Data != dir+"/ledger" || c.LogLevel != "error" {
		t.Fatalf("override: %+v", c)
	}
	// Flags left at their default do not override the file.
	c, err = loadServeConfig([]string{"-config", path}, envMap("DIR", dir), io.Discard)
	if err != nil || c.Listen != "127.0.0.1:1111" {
		t.Fatalf("file kept: %+v %v", c, err)
	}
	if _, err := loadServeConfig([]string{"-config", filepath.Join(dir, "missing.yaml")}, envMap(), io.Discard); err == nil {
		t.Fatal("missing config file accepted")
	}
	if _, err := loadServeConfig([]string{"-listen"}, envMap(), io.Discard); err == nil {
		t.Fatal("flag without value accepted")
	}
	if _, err := loadServeConfig([]string{"extra"}, envMap(), io.Discard); err == nil {
		t.Fatal("positional argument accepted")
	}
}

func TestParseArgs(t *testing.T) {
	fs := newFlagSet("t", io.Discard, "t")
	ref := fs.String("ref", "", "")
	js := fs.Bool("json", false, "")
	pos, err := parseArgs(fs, []string{"sms", "-ref", "r1", "tok", "-2.5", "-json"}, 3)
	if err != nil || strings.Join(pos, " ") != "sms tok -2.5" || *ref != "r1" || !*js {
		t.Fatalf("got %v %q %v %v", pos, *ref, *js, err)
	}
	fs = newFlagSet("t", io.Discard, "t")
	fs.String("ref", "", "")
	if pos, err = parseArgs(fs, []string{"--ref=x", "a", "--", "-b"}, 2); err != nil || strings.Join(pos, " ") != "a -b" {
		t.Fatalf("got %v %v", pos, err)
	}
	if _, err := parseArgs(fs, []string{"a"}, 2); err == nil {
		t.Fatal("missing argument accepted")
	}
	if _, err := parseArgs(fs, []string{"a", "b", "c"}, 2); err == nil {
		t.Fatal("extra argument accepted")
	}
	if _, err := parseArgs(fs, []string{"-unknown"}, 0); err == nil {
		t.Fatal("unknown flag accepted")
	}
}

// The top-level trial_credits is the trial of every service, built-in or
// named, that does not set its own; a service's own value, 0 included,
// wins (issue 14: trial credit for every service took four blocks).
func TestParseConfigTrialCreditsDefault(t *testing.T) {
	src := `
trial_credits: 1000
services:
  snailmail:
    trial_credits: 0
  reveal:
    trial_credits: 2.5
  geo:
    unit_name: Lookups
`
	c, err := ParseConfig([]byte(src), envMap())
	if err != nil {
		t.Fatal(err)
	}
	got := map[storage.ServiceName]string{}
	for _, s := range c.ServicePolicies() {
		got[s.Name] = s.TrialCredits.String()
	}
	want := map[storage.ServiceName]string{"sms": "1000", "partner_autocomplete": "1000", "geo": "1000", "snailmail": "0", "reveal": "2.5"}
	if len(got) != len(want) {
		t.Fatalf("policies %v, want %v", got, want)
	}
	for n, w := range want {
		if got[n] != w {
			t.Errorf("%s: trial %s, want %s", n, got[n], w)
		}
	}
	// Absent: 0 everywhere, as before.
	c, err = ParseConfig([]byte("services:\n  sms:\n    unit_name: SMS\n"), envMap())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range c.ServicePolicies() {
		if s.TrialCredits != 0 {
			t.Errorf("%s: trial %s without any trial_credits", s.Name, s.TrialCredits)
		}
	}
	// Checked like a service's: exact, not negative, a number.
	for src, msg := range map[string]string{"trial_credits: -1\n": "negative", "trial_credits: 0.00001\n": "more than 4 decimals", "trial_credits: lots\n": "not a number"} {
		if _, err := ParseConfig([]byte(src), envMap()); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want %q", src, err, msg)
		}
	}
}
