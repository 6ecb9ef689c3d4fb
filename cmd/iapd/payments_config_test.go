package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// payments.stripe's secrets are resolved like admin_token's: ${ENV} in the
// file, or *_file; never both; an empty file is an error; no error message
// holds a secret.
func TestPaymentsSecrets(t *testing.T) {
	const key, whsec = "sk_test_cfg_0123456789", "whsec_cfg_0123456789"
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(keyFile, []byte("  "+key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	parse := func(src string) (Config, error) {
		c, err := ParseConfig([]byte(src), envMap("WHSEC", whsec))
		if err != nil {
			return c, err
		}
		return c, c.ResolveSecrets(envMap(), os.ReadFile)
	}
	c, err := parse("payments:\n  stripe:\n    secret_key_file: " + keyFile + "\n    webhook_secret: ${WHSEC}\n")
	if err != nil || c.Payments.Stripe.SecretKey != key || c.Payments.Stripe.WebhookSecret != whsec {
		t.Fatalf("resolved %+v, %v", c.Payments.Stripe, err)
	}
	for name, src := range map[string]string{
		"both":       "payments:\n  stripe:\n    secret_key: " + key + "\n    secret_key_file: " + keyFile + "\n    webhook_secret: x\n",
		"empty file": "payments:\n  stripe:\n    secret_key: " + key + "\n    webhook_secret_file: " + empty + "\n",
		"no file":    "payments:\n  stripe:\n    secret_key: " + key + "\n    webhook_secret_file: " + filepath.Join(dir, "none") + "\n",
		"typo":       "payments:\n  stripe:\n    secret_kye: " + key + "\n",
	} {
		_, err := parse(src)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if strings.Contains(err.Error(), key) || strings.Contains(err.Error(), whsec) {
			t.Errorf("%s: the error holds a secret: %v", name, err)
		}
	}
	// Start-up refuses a Stripe section without its webhook secret.
	cfg := filepath.Join(dir, "iapd.yaml")
	if err := os.WriteFile(cfg, []byte("payments:\n  stripe:\n    secret_key_file: "+keyFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = tryStartServer(t, nil, "-config", cfg)
	if err == nil || !strings.Contains(err.Error(), "webhook_secret") || strings.Contains(err.Error(), key) {
		t.Fatalf("start without webhook_secret: %v", err)
	}
}
