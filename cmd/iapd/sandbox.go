package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/iapd/iapd/metrics"
	"github.com/iapd/iapd/providers"
)

// The values of the sandbox key (Config.Sandbox).
const (
	SandboxWarn   = "warn"   // the default: say so (log, /readyz, metric)
	SandboxRefuse = "refuse" // exit at start-up
)

// serves records that the provider instances ps serve service (a ledger
// service, or "alerts" for the low-credit e-mails), for wireSandbox.
func (w *wiring) serves(service string, ps ...providers.Provider) {
	if w.served == nil {
		w.served = map[string][]providers.Provider{}
	}
	w.served[service] = append(w.served[service], ps...)
}

// wireSandbox runs after every service is wired. A service served
// locally by a provider that sends nothing for real (providers.Sandboxed)
// tells Odoo "sent", is charged, and nothing leaves the machine: the
// embedded default does it on purpose, a production configuration must
// not do it silently. Such services are logged in one WARN line, listed
// in /readyz (readyzWithSandbox) and exported as iap_provider_sandbox;
// with "sandbox: refuse" the start fails instead, naming them.
func wireSandbox(w *wiring) error {
	names := make([]string, 0, len(w.served))
	for n := range w.served {
		names = append(names, n)
	}
	sort.Strings(names)
	on := map[string]bool{}
	var which []string // "sms: outbox (outbox)"
	w.sandbox = nil
	for _, svc := range names {
		if m := w.cfg.Services[svc].Mode; m != "" && m != "local" {
			continue // forwarded or refused: its providers are not called
		}
		var sb []string
		for _, p := range w.served[svc] {
			if s, ok := p.(providers.Sandboxed); ok && s.Sandbox() {
				sb = append(sb, p.Name()+" ("+p.Type()+")")
			}
		}
		on[svc] = len(sb) > 0
		if len(sb) > 0 {
			w.sandbox = append(w.sandbox, svc)
			which = append(which, svc+": "+strings.Join(sb, ", "))
		}
	}
	if w.reg != nil {
		if err := metrics.RegisterSandbox(w.reg, on); err != nil {
			return err
		}
	}
	if len(w.sandbox) == 0 {
		return nil
	}
	if w.cfg.Sandbox == SandboxRefuse {
		return fmt.Errorf("refusing to start (sandbox: refuse): these services would send nothing for real: %s; "+
			"configure real providers (README \"Configure providers\"), set their mode to upstream or refuse, "+
			"or set sandbox: warn for a deliberate sandbox", strings.Join(which, "; "))
	}
	w.log.Warn("sandbox providers: these services send or answer nothing real, yet Odoo is told it was done and credit is captured",
		"services", w.sandbox, "providers", strings.Join(which, "; "))
	return nil
}

// readyzWithSandbox adds to a 200 JSON answer of next (GET /readyz) the
// services on sandbox providers: "sandbox": [...] and "detail":
// "sandbox providers: sms, snailmail, alerts". The status stays 200 and
// "ready": a sandbox is a legitimate mode (the embedded default), not a
// reason to take iapd out of rotation; the iap_provider_sandbox alert is
// what tells a production server from a deliberate sandbox.
func readyzWithSandbox(next http.Handler, services []string) http.Handler {
	if len(services) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &bufferedResponse{header: http.Header{}, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		body := rec.body.Bytes()
		var m map[string]any
		if rec.status == http.StatusOK && json.Unmarshal(body, &m) == nil && m != nil {
			m["sandbox"] = services
			m["detail"] = "sandbox providers: " + strings.Join(services, ", ")
			if b, err := json.Marshal(m); err == nil {
				body = append(b, '\n')
			}
		}
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.status)
		_, _ = w.Write(body)
	})
}

// bufferedResponse is an http.ResponseWriter that keeps the answer.
type bufferedResponse struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(code int) {
	if !b.wrote {
		b.status, b.wrote = code, true
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	b.wrote = true
	return b.body.Write(p)
}
