package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The embedded default runs every service on a sandbox provider, on
// purpose: serve says so in one WARN line naming each service and
// provider, /readyz stays 200 "ready" and lists them, and
// iap_provider_sandbox is 1 for them; a folder with a dir (a print room)
// is real, 0.
func TestSandboxReported(t *testing.T) {
	s := startServer(t, nil)
	all := []string{"alerts", "partner_autocomplete", "reveal", "sms", "snailmail"}
	checkSandboxReadyz(t, s, all)
	var warns []string
	for _, l := range strings.Split(s.stderr.String(), "\n") {
		if strings.Contains(l, "sandbox") && strings.Contains(l, "level=WARN") {
			warns = append(warns, l)
		}
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "sms: outbox (outbox)") || !strings.Contains(warns[0], "snailmail: folder (folder)") ||
		!strings.Contains(warns[0], "alerts: outbox (outbox)") || !strings.Contains(warns[0], "reveal: directory (directory)") {
		t.Errorf("want one WARN line naming each sandboxed service and its provider, got %q", warns)
	}
	mfs := scrapeMetrics(t, s.ops)
	for _, svc := range all {
		if v := seriesValue(t, mfs, "iap_provider_sandbox", "service", svc); v != 1 {
			t.Errorf("iap_provider_sandbox{service=%q} = %v, want 1", svc, v)
		}
	}
	s.stop(t)

	// Letters to a print room's spool: real. SMS forwarded upstream: its
	// outbox is never called.
	spool := t.TempDir()
	cfg := sandboxConfigFile(t, "room.yaml", "providers:\n  room: {type: folder, dir: "+spool+"}\n"+
		"services:\n  snailmail: {settings: {providers: [room]}}\n  sms: {mode: refuse}\n")
	s = startServer(t, nil, "-config", cfg)
	checkSandboxReadyz(t, s, []string{"alerts", "partner_autocomplete", "reveal"})
	mfs = scrapeMetrics(t, s.ops)
	if v := seriesValue(t, mfs, "iap_provider_sandbox", "service", "snailmail"); v != 0 {
		t.Errorf("iap_provider_sandbox{service=snailmail} = %v with a print room, want 0", v)
	}
	for _, m := range mfs["iap_provider_sandbox"].GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetValue() == "sms" {
				t.Errorf("iap_provider_sandbox has a series for sms, which is refused, not served by its providers")
			}
		}
	}
}

func checkSandboxReadyz(t *testing.T, s *testServer, want []string) {
	t.Helper()
	code, body := get(t, s.ops+"/readyz", "")
	var r struct {
		Status  string
		Sandbox []string
		Detail  string
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || code != 200 || r.Status != "ready" ||
		!slices.Equal(r.Sandbox, want) || r.Detail != "sandbox providers: "+strings.Join(want, ", ") {
		t.Errorf("GET /readyz: %d %s, want 200 ready with sandbox %v", code, body, want)
	}
}

// sandbox: refuse stops the start when a service would run on a sandbox
// provider, naming each; an unknown value is a configuration error.
func TestSandboxRefused(t *testing.T) {
	_, err := tryStartServer(t, nil, "-config", sandboxConfigFile(t, "refuse.yaml", "sandbox: refuse\n"))
	if err == nil {
		t.Fatal("serve started on sandbox providers with sandbox: refuse")
	}
	for _, want := range []string{"sms: outbox (outbox)", "snailmail: folder (folder)", "alerts: outbox (outbox)", "partner_autocomplete: directory (directory)", "sandbox: warn"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	_, err = tryStartServer(t, nil, "-config", sandboxConfigFile(t, "bad.yaml", "sandbox: maybe\n"))
	if err == nil || !strings.Contains(err.Error(), `sandbox "maybe": want warn or refuse`) {
		t.Errorf("sandbox: maybe: %v", err)
	}
}

// The production example parses, validates, builds every provider as
// serve does (offlineWiring), refuses sandboxes, and runs no service on a
// sandbox provider: SMS, letters, company data and alert e-mails all go to
// real vendors. The environment is what the example's comments ask for.
func TestExampleConfigHasNoSandbox(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "admin-token"), []byte(testAdminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "companies.csv"), []byte("id,name,country,vat\n1,Real Company,BE,BE0477472701\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := loadExampleConfig(t, dir)
	if cfg.Sandbox != SandboxRefuse {
		t.Errorf("the example says sandbox: %q, want refuse", cfg.Sandbox)
	}
	cfg.Sandbox = SandboxWarn // so that a sandbox is listed below, not an error
	w, done, err := offlineWiring(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	for _, svc := range []string{"sms", "snailmail", "partner_autocomplete", "reveal", "alerts"} {
		if len(w.served[svc]) == 0 {
			t.Errorf("the example serves %s with no provider", svc)
		}
		for _, p := range w.served[svc] {
			t.Logf("%s: %s (%s)", svc, p.Name(), p.Type())
		}
	}
	if len(w.sandbox) != 0 {
		t.Errorf("the production example runs %v on sandbox providers", w.sandbox)
	}
}

func sandboxConfigFile(t *testing.T, name, src string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// readyzWithSandbox adds its list to a 200 JSON answer only: a 503 (not
// ready) passes unchanged, status, headers and body.
func TestReadyzWithSandbox(t *testing.T) {
	answer := func(code int, body string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(code)
			_, _ = w.Write([]byte(body))
		})
	}
	serve := func(h http.Handler) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec
	}
	rec := serve(readyzWithSandbox(answer(200, `{"status":"degraded","reason":"disk space low"}`+"\n"), []string{"sms", "alerts"}))
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != 200 || got["status"] != "degraded" || got["reason"] != "disk space low" ||
		got["detail"] != "sandbox providers: sms, alerts" || rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("200: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	notReady := `{"error":{"kind":"unavailable","message":"not ready: listeners are not serving"}}` + "\n"
	if rec := serve(readyzWithSandbox(answer(503, notReady), []string{"sms"})); rec.Code != 503 || rec.Body.String() != notReady {
		t.Errorf("503: %d %s", rec.Code, rec.Body)
	}
	if rec := serve(readyzWithSandbox(answer(200, `{"status":"ready"}`), nil)); rec.Body.String() != `{"status":"ready"}` {
		t.Errorf("no sandbox: %s", rec.Body)
	}
}

// exampleEnv is the environment docs/iapd.example.yaml asks for, as the
// unit gives it: $CREDENTIALS_DIRECTORY and $CONFIGURATION_DIRECTORY at
// dir, the provider secrets from /etc/iapd/secrets.env (placeholders).
func exampleEnv(dir string) func(string) string {
	env := map[string]string{
		"CREDENTIALS_DIRECTORY":        dir,
		"CONFIGURATION_DIRECTORY":      dir,
		"TWILIO_ACCOUNT_SID":           "AC" + strings.Repeat("0a", 16),
		"TWILIO_AUTH_TOKEN":            "twilio-auth-token",
		"TWILIO_MESSAGING_SERVICE_SID": "MG" + strings.Repeat("1b", 16),
		"PINGEN_CLIENT_ID":             "pingen-client",
		"PINGEN_CLIENT_SECRET":         "pingen-secret",
		"PINGEN_ORGANISATION_ID":       "6a7c2c1e-0000-0000-0000-000000000000",
		"PINGEN_WEBHOOK_SECRET":        "pingen-webhook-secret",
		"SMTP_PASSWORD":                "smtp-password",
	}
	return func(k string) string { return env[k] }
}

// loadExampleConfig loads docs/iapd.example.yaml as serve does, in the
// environment exampleEnv(dir) gives it.
func loadExampleConfig(t *testing.T, dir string) Config {
	t.Helper()
	getenv := exampleEnv(dir)
	cfg, err := loadConfigFile(filepath.Join("..", "..", "docs", "iapd.example.yaml"), getenv)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.prepare(getenv); err != nil {
		t.Fatal(err)
	}
	return cfg
}
