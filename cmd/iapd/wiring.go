package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/metrics"
	"github.com/iapd/iapd/providers"
	_ "github.com/iapd/iapd/providers/all" // registers the built-in adapters
	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/rpc/limit"
	"github.com/iapd/iapd/storage"
)

// wiring is what serve hands to the wire* functions, each of which plugs
// one part (a service, the portal, the proxy) into the server. main only
// wires: the parts live in their packages; these functions read the
// configuration, build them and register their routes, pages, background
// loops and closers.
type wiring struct {
	cfg       Config
	log       *slog.Logger
	ledger    ledgerBackend // ledger_pg.go: Badger or PostgreSQL
	rpc       *rpc.Server
	reg       *prometheus.Registry
	publicURL string
	// mtr counts protective refusals (Refused); nil when only listing
	// the routes.
	mtr *metrics.Metrics
	// accounts is the ledger of the public routes: ledger with account
	// creation and trial credit limited (rpc/admit).
	accounts storage.Ledger
	// limits are the abuse limits (wire_limits.go).
	limits *abuseLimits
	// reloads are what SIGHUP reads again (reload.go).
	reloads *hupReloads

	// outbound is the HTTP client providers use for vendor APIs; in
	// air-gapped mode its dialer refuses every address but the
	// configured providers'. Set by wireOutbound.
	outbound *http.Client

	// providers are the built instances by name (wireProviders, and
	// sandbox defaults added by the services).
	registry  *providers.Registry
	providers map[string]providers.Provider

	// wraps are applied, in order, around the public handler (the proxy
	// decides per route before the local handler).
	wraps []func(fasthttp.RequestHandler) fasthttp.RequestHandler
	// loops run in the background from serving until shutdown.
	loops []func(ctx context.Context)
	// closers run at shutdown, after the loops stopped, in reverse order.
	closers []func() error
	// report lines for the startup report (what goes where).
	report []string

	// served are the provider instances of each service (wire*: serves);
	// sandbox the services on a sandbox provider (wireSandbox, sandbox.go).
	served  map[string][]providers.Provider
	sandbox []string
}

// wirers run in this order: the outbound client first (providers use
// it), then the providers, the services, the portal and alerts, and the
// proxy last (it wraps what the others registered).
var wirers = []struct {
	name string
	fn   func(*wiring) error
}{
	{"outbound", wireOutbound},
	{"providers", wireProviders},
	{"sms", wireSMS},
	{"snailmail", wireSnailmail},
	{"company", wireCompany},
	{"portal", wirePortal},
	{"alerts", wireAlerts},
	{"proxy", wireProxy},
	{"sandbox", wireSandbox}, // sandbox.go: after every service
}

func (w *wiring) wireAll() error {
	for _, x := range wirers {
		if err := x.fn(w); err != nil {
			return fmt.Errorf("%s: %w", x.name, err)
		}
	}
	return nil
}

// handler returns the public handler with the wraps applied.
func (w *wiring) handler() fasthttp.RequestHandler {
	h := w.rpc.Handler()
	for _, wrap := range w.wraps {
		h = wrap(h)
	}
	return h
}

// close runs the closers in reverse order and returns the first error.
func (w *wiring) close() error {
	var first error
	for i := len(w.closers) - 1; i >= 0; i-- {
		if err := w.closers[i](); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// providerDeps returns the dependencies of a provider instance named
// name, its data directory created.
func (w *wiring) providerDeps(name string) (providers.Deps, error) {
	dir := filepath.Join(w.cfg.Data, "providers", name)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return providers.Deps{}, err
	}
	return providers.Deps{
		Logger:    w.log.With("component", "provider"),
		HTTP:      w.outbound,
		Now:       time.Now,
		DataDir:   dir,
		PublicURL: w.publicURL,
	}, nil
}

// provider returns the instance named name: a configured one, or else
// one built from the sandbox default (typ with no settings), which the
// embedded default configuration relies on. An unknown name without a
// default is an error.
func (w *wiring) provider(name, defaultType string) (providers.Provider, error) {
	if p := w.providers[name]; p != nil {
		return p, nil
	}
	if defaultType == "" {
		return nil, fmt.Errorf("no provider named %q in providers", name)
	}
	deps, err := w.providerDeps(name)
	if err != nil {
		return nil, err
	}
	p, err := w.registry.New(providers.Config{Name: name, Type: defaultType}, deps)
	if err != nil {
		return nil, err
	}
	w.providers[name] = p
	w.closers = append(w.closers, p.Close)
	return p, nil
}

// wireProviders builds every configured provider instance.
func wireProviders(w *wiring) error {
	if w.registry == nil {
		w.registry = providers.Builtin
	}
	w.providers = map[string]providers.Provider{}
	names := make([]string, 0, len(w.cfg.Providers))
	for n := range w.cfg.Providers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		pc := w.cfg.Providers[n]
		deps, err := w.providerDeps(n)
		if err != nil {
			return err
		}
		p, err := w.registry.New(providers.Config{Name: n, Type: pc.Type, Settings: pc.Settings}, deps)
		if err != nil {
			return fmt.Errorf("line %d: %w", pc.Line, err)
		}
		w.providers[n] = p
		w.closers = append(w.closers, p.Close)
		w.report = append(w.report, fmt.Sprintf("provider %s: type %s", n, pc.Type))
	}
	w.reloads.add("providers", w.reloadProviders)
	return nil
}

// reloader is a provider whose data can be read again without a restart
// (the company directory's files).
type reloader interface{ Reload() error }

// reloadProviders reloads (on SIGHUP) every provider that can be: one
// that fails keeps what it had; the failures are returned joined. The
// providers are all built before serving starts: w.providers no longer
// changes.
func (w *wiring) reloadProviders() error {
	var errs []error
	for name, p := range w.providers {
		r, ok := p.(reloader)
		if !ok {
			continue
		}
		if err := r.Reload(); err != nil {
			errs = append(errs, fmt.Errorf("provider %s: %w", name, err))
		} else {
			w.log.Info("provider reloaded on SIGHUP", "provider", name)
		}
	}
	return errors.Join(errs...)
}

// logReport writes the start-up report as a few structured lines, one per
// area, instead of a line per report entry: "wiring: storage", "wiring:
// services" (one attribute per service, portal and provider), "wiring:
// alerts", "wiring: routes" (routes counted by mode, the paths of those
// not served locally; one "wiring: route" line each at debug, and "iapd
// routes" lists them), "wiring: upstream"
// (air-gapped, allowed hosts, audit log) when there is any, and "wiring:
// limits". A report entry of a form it does not know is kept as an
// attribute of "wiring: services" named after its area.
func (w *wiring) logReport(log *slog.Logger) {
	log.Info("wiring: storage", "data", w.cfg.Data, "disk_reserve", w.cfg.DiskReserve.String(),
		"sweep_interval", w.cfg.SweepInterval, "log_storage", w.cfg.LogStorage)
	var services, alerts, upstream, routes []any
	modes := map[string]int{}
	paths := map[string][]string{} // of the routes not served locally
	var hosts []string
	for _, line := range w.report {
		if m := reportRouteRE.FindStringSubmatch(line); m != nil {
			modes[m[4]]++
			if m[4] != "local" {
				paths[m[4]] = append(paths[m[4]], m[1])
			}
			log.Debug("wiring: route", "path", m[1], "service", m[2], "endpoint", m[3], "mode", m[4], "destination", m[5])
			continue
		}
		if h, ok := strings.CutPrefix(line, "  "); ok { // an allowed host, under "air-gapped:"
			hosts = append(hosts, strings.TrimSpace(h))
			continue
		}
		area, text, ok := strings.Cut(line, ": ")
		if !ok {
			area, text = "note", line
		}
		switch {
		case strings.HasPrefix(area, "provider "):
			services = append(services, slog.String("provider."+strings.TrimPrefix(area, "provider "), strings.TrimPrefix(text, "type ")))
		case area == "alerts":
			alerts = append(alerts, slog.String("notifier", text))
		case area == "air-gapped":
			upstream = append(upstream, slog.String("air_gapped", text))
		case area == "upstream audit log":
			upstream = append(upstream, slog.String("audit_log", text))
		default:
			services = append(services, slog.String(reportKey(area), text))
		}
	}
	log.Info("wiring: services", services...)
	if len(alerts) > 0 {
		log.Info("wiring: alerts", alerts...)
	}
	for _, m := range []string{"local", "upstream", "refuse"} {
		routes = append(routes, slog.Int(m, modes[m]))
	}
	all := make([]string, 0, len(modes))
	for m := range modes { // "by service_name", "refuse (upstream, air-gapped)", …
		all = append(all, m)
	}
	sort.Strings(all)
	for _, m := range all {
		if m != "local" && m != "upstream" && m != "refuse" {
			routes = append(routes, slog.Int(reportKey(m), modes[m]))
		}
	}
	for _, m := range all {
		if len(paths[m]) > 0 {
			routes = append(routes, slog.String(reportKey(m)+"_paths", strings.Join(paths[m], ", ")))
		}
	}
	log.Info("wiring: routes", routes...)
	if len(hosts) > 0 {
		upstream = append(upstream, slog.String("outbound_allowed", strings.Join(hosts, ", ")))
	}
	if len(upstream) > 0 {
		log.Info("wiring: upstream", upstream...)
	}
	if w.limits != nil {
		log.Info("wiring: limits", w.limits.reportAttrs()...)
	}
}

// reportRouteRE reads a route entry of the report (wireProxy):
// path, service, endpoint, mode, destination.
var reportRouteRE = regexp.MustCompile(`^route (.+?) \[([^,\]]*), ([^\]]*)\]: (.+?) → (.*)$`)

// reportKey names a report area as an attribute key: the service name
// where the area is a service's description, else the area in
// snake_case.
func reportKey(area string) string {
	switch area {
	case "partner autocomplete":
		return "partner_autocomplete"
	case "lead enrichment, mining, reveal":
		return "reveal"
	}
	var b strings.Builder
	for _, r := range strings.ToLower(area) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "_"):
			b.WriteByte('_')
		}
	}
	return strings.TrimSuffix(b.String(), "_")
}

// reportAttrs are the limits for the start-up report, rates as
// "N/duration" ("1000/1h").
func (a *abuseLimits) reportAttrs() []any {
	client := "peer"
	if a.header != "" {
		client = "header " + a.header
	}
	rate := func(r limit.Rate) string { return strconv.Itoa(r.Burst) + "/" + shortDuration(r.Per) }
	c := a.cfg
	return []any{"client_address", client,
		"accounts_per_address", rate(c.AccountsPerAddress), "accounts_per_database", rate(c.AccountsPerDatabase),
		"accounts_total", rate(c.AccountsTotal), "trials_per_address", rate(c.TrialsPerAddress),
		"trials_total", rate(c.TrialsTotal), "alert_recipients", c.AlertRecipients,
		"alert_emails_per_account", rate(c.AlertEmailsPerAccount), "alert_emails_per_recipient", rate(c.AlertEmailsPerRecipient)}
}
