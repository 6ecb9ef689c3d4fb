package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iapd/iapd/providers/outbound"
	"github.com/iapd/iapd/proxy"
	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/storage/badger"
)

// runRoutes is "iapd routes": every JSON-RPC route the configuration
// serves, with the Odoo system parameter in front of it, its service, its
// mode and where it goes. It builds the whole wiring as serve does, without
// listening and with an in-memory ledger (so it runs beside a serving
// iapd), and also checks the configuration.
func runRoutes(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("routes", stderr, "iapd routes [-config FILE] [-json]")
	configPath := fs.String("config", "", "YAML configuration `file` (${ENV} expanded)")
	asJSON := fs.Bool("json", false, "machine-readable output")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	cfg := DefaultConfig()
	if *configPath != "" {
		var err error
		if cfg, err = loadConfigFile(*configPath, getenv); err != nil {
			return fmt.Errorf("config: %w", err)
		}
	}
	if err := cfg.prepare(getenv); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if lvl, _ := parseLevel(cfg.LogLevel); lvl == slog.LevelInfo {
		cfg.LogLevel = "warn" // the wiring's info lines would drown the table
	}
	plan, notes, err := routePlan(ctx, cfg, newLogger(cfg, stderr))
	if err != nil {
		return err
	}
	if *asJSON {
		b, err := json.MarshalIndent(struct {
			Routes []proxy.PlanLine `json:"routes"`
			Notes  []string         `json:"notes"`
		}{plan, notes}, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tENDPOINT\tSERVICE\tMODE\tDESTINATION")
	for _, l := range plan {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.Path, l.Endpoint, l.Service, l.Mode, l.Destination)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintln(stdout, "# "+n)
	}
	return nil
}

// routePlan wires cfg without listening (offlineWiring) and returns the
// proxy's plan and the startup report lines that are not about a route.
func routePlan(ctx context.Context, cfg Config, log *slog.Logger) ([]proxy.PlanLine, []string, error) {
	w, done, err := offlineWiring(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	defer done()
	ucfg, err := upstreamConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	ob, _ := w.outbound.Transport.(*outbound.Outbound) // wireAll checked it
	px, err := newProxy(w, ucfg, ob, nil, nil)
	if err != nil {
		return nil, nil, err
	}
	var notes []string
	for _, r := range w.report {
		if !strings.HasPrefix(r, "route ") {
			notes = append(notes, r)
		}
	}
	return px.Plan(), notes, nil
}

// offlineWiring builds the whole wiring of cfg as serve does, without
// listening: an in-memory ledger, the providers' data under a temporary
// directory. done closes everything and removes the directory.
func offlineWiring(ctx context.Context, cfg Config, log *slog.Logger) (w *wiring, done func(), err error) {
	ledger, err := badger.Open(badger.Options{InMemory: true, Logger: log.With("component", "badger")})
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "iapd-routes-")
	if err != nil {
		ledger.Close()
		return nil, nil, err
	}
	var wired *wiring
	cleanup := func() {
		if wired != nil {
			wired.close()
		}
		ledger.Close()
		os.RemoveAll(dir)
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	for _, s := range cfg.ServicePolicies() {
		if _, err := ledger.EnsureService(ctx, s); err != nil {
			return nil, nil, fmt.Errorf("service %s: %w", s.Name, err)
		}
	}
	cfg.Data = dir
	publicURL := cfg.PublicURL
	if publicURL == "" {
		publicURL = "http://" + cfg.Listen
		if cfg.TLSCertFile != "" {
			publicURL = "https://" + cfg.Listen
		}
	}
	rpcSrv, err := rpc.New(rpc.Config{Ledger: ledger, PublicURL: publicURL, Logger: log.With("component", "rpc"), MaxBodyBytes: cfg.MaxBodyBytes})
	if err != nil {
		return nil, nil, fmt.Errorf("rpc: %w", err)
	}
	limits, err := newAbuseLimits(cfg, nil, log)
	if err != nil {
		return nil, nil, err
	}
	wired = &wiring{cfg: cfg, reloads: &hupReloads{}, log: log, ledger: ledger, rpc: rpcSrv, reg: prometheus.NewRegistry(), publicURL: publicURL,
		accounts: ledger, limits: limits}
	if err := wired.wireAll(); err != nil {
		return nil, nil, err
	}
	return wired, cleanup, nil
}
