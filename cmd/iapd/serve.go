package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/iapd/iapd/metrics"
	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/rpc/admin"
	"github.com/iapd/iapd/rpc/admit"
	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

// sweepBatch is how many expired holds one ExpireDue call releases.
const sweepBatch = 1000

// loadServeConfig builds the configuration of "iapd serve": defaults, then
// the -config file, then the flags that were given; secrets resolved and
// the result validated.
func loadServeConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	fs := newFlagSet("serve", stderr, "iapd [serve] [flags]")
	var (
		configPath = fs.String("config", "", "YAML configuration `file` (${ENV} expanded)")
		listen     = fs.String("listen", DefaultListen, "public JSON-RPC `address` (what Odoo calls)")
		opsListen  = fs.String("ops-listen", DefaultOpsListen, "ops `address`: /healthz, /readyz, /metrics and the admin API")
		data       = fs.String("data", DefaultData, "Badger `directory` of the ledger")
		ledgerURL  = fs.String("ledger", "", "postgres://… `URL` of a shared PostgreSQL ledger, instead of Badger in -data (env IAPD_LEDGER)")
		publicURL  = fs.String("public-url", "", "`URL` browsers use to reach iapd (default http://<listen>)")
		logLevel   = fs.String("log-level", DefaultLogLevel, "debug, info, warn or error")
		jcorrupt   = fs.String("journal-corrupt", "refuse", "what start-up does with a corrupt journal: refuse (exit, change nothing) or move-aside (start from the records before the damage, the journal files moved into a journal-corrupt-<time> folder of the data directory)")
	)
	if _, err := parseArgs(fs, args, 0); err != nil {
		return Config{}, err
	}
	cfg := DefaultConfig()
	if *configPath != "" {
		var err error
		if cfg, err = loadConfigFile(*configPath, getenv); err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "listen":
			cfg.Listen = *listen
		case "ops-listen":
			cfg.OpsListen = *opsListen
		case "data":
			cfg.Data = *data
		case "ledger":
			cfg.Ledger = *ledgerURL
		case "public-url":
			cfg.PublicURL = *publicURL
		case "log-level":
			cfg.LogLevel = *logLevel
		}
	})
	if _, err := journalCorruptAction(*jcorrupt); err != nil {
		return cfg, err
	}
	cfg.JournalCorrupt = *jcorrupt
	if err := cfg.prepare(getenv); err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// journalCorruptAction reads serve's -journal-corrupt value ("" is refuse).
func journalCorruptAction(v string) (badger.JournalCorruptAction, error) {
	switch v {
	case "", "refuse":
		return badger.JournalRefuse, nil
	case "move-aside":
		return badger.JournalMoveAside, nil
	}
	return 0, fmt.Errorf("-journal-corrupt: %q is neither refuse nor move-aside", v)
}

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := loadServeConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, newLogger(cfg, stderr), stdout, getenv)
}

// serve runs iapd until ctx is done, then shuts down cleanly: listeners
// closed, in-flight requests finished (within ShutdownTimeout: after two
// thirds of it, at most 5 s before its end, the requests still running
// are cancelled and answer), sweeper stopped, ledger closed. Under
// systemd (getenv: $NOTIFY_SOCKET, $LISTEN_FDS; systemd.go) it takes the
// listeners passed by socket activation and reports readiness.
func serve(ctx context.Context, cfg Config, log *slog.Logger, stdout io.Writer, getenv func(string) string) (err error) {
	// The metrics of this run, on a registry of its own: served at
	// /metrics on the ops listener only.
	reg := prometheus.NewRegistry()
	version, revision, _ := badger.Build()
	mtr, err := metrics.New(reg, metrics.Config{Version: version, Revision: revision})
	if err != nil {
		return err
	}

	jcorrupt, err := journalCorruptAction(cfg.JournalCorrupt)
	if err != nil {
		return err
	}

	// The listeners first, then the data directory: an address in use
	// (or a bad certificate) stops the start before a data directory is
	// created or opened. Under socket activation (systemd.go) the
	// listeners passed by systemd are taken instead of bound; they keep
	// Go's default keep-alive probes on the connections they accept
	// (ListenConfig applies only to what iapd binds). No TCP keep-alive
	// probes on the public listener iapd binds: Odoo opens a connection
	// per call (PROTOCOL §1) and the server's idle timeout closes what
	// lingers; net.Listen would set four socket options on every accepted
	// connection for nothing.
	sdLns, err := listenersFromSystemd(getenv, os.Getpid())
	if err != nil {
		return err
	}
	defer sdLns.close()
	pubLn, fromSystemd := sdLns.take("public")
	if fromSystemd {
		log.Info("public listener from systemd (socket activation); listen is not bound", "addr", pubLn.Addr().String(), "listen", cfg.Listen)
	} else if pubLn, err = (&net.ListenConfig{KeepAlive: -1}).Listen(ctx, "tcp", cfg.Listen); err != nil {
		return listenError("public listener (-listen, listen:)", cfg.Listen, err) // datadir.go
	}
	defer pubLn.Close()
	reloads, hup := &hupReloads{}, listenHUP() // reload.go: what SIGHUP reads again
	defer signal.Stop(hup)
	pubLn, scheme, err := wrapPublicTLS(cfg, pubLn, reloads, log) // tls.go: HTTPS when tls_cert_file is set
	if err != nil {
		return err
	}
	opsLn, fromSystemd := sdLns.take("ops")
	if fromSystemd {
		log.Info("ops listener from systemd (socket activation); ops_listen is not bound", "addr", opsLn.Addr().String(), "ops_listen", cfg.OpsListen)
	} else if opsLn, err = net.Listen("tcp", cfg.OpsListen); err != nil {
		return listenError("ops listener (-ops-listen, ops_listen:)", cfg.OpsListen, err)
	}
	defer opsLn.Close()

	// The ledger: PostgreSQL when ledger is set (ledger_pg.go), else
	// Badger in the data directory.
	var (
		ledger ledgerBackend
		space  = func() badger.SpaceStatus { return badger.SpaceStatus{Level: badger.SpaceOK} }
		stats  metrics.StatsReader
		oper   admin.Operator
	)
	if cfg.Ledger != "" {
		pl, err := openPostgresLedger(ctx, cfg, log, reg)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := pl.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("closing the ledger: %w", cerr)
			}
		}()
		ledger, stats, oper = pl, pl, pgOperator{pl}
	} else {
		bl, err := openBadgerLedger(cfg, log, mtr, reg, jcorrupt)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := bl.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("closing the ledger: %w", cerr)
			}
		}()
		ledger, space, stats, oper = bl, bl.Space, badger.NewStatsReader(bl), ledgerOperator{bl}
	}
	if err := reg.Register(metrics.NewLedgerCollector(stats, metrics.LedgerOptions{})); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	mw, err := newMemWatch(reg, log) // memwatch.go: the heap near the memory limit
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}

	for _, s := range cfg.ServicePolicies() {
		if _, err := ledger.EnsureService(ctx, s); err != nil {
			return fmt.Errorf("service %s: %w", s.Name, err)
		}
	}

	publicURL := cfg.PublicURL
	if publicURL == "" {
		publicURL = scheme + "://" + pubLn.Addr().String()
		if !isLoopback(cfg.Listen) {
			log.Warn("public_url is not set; browsers will be sent to " + publicURL)
		}
	}

	// The abuse limits (wire_limits.go); accounts is the ledger the
	// public routes use: account creation and trial credit limited.
	limits, err := newAbuseLimits(cfg, mtr, log.With("component", "limits"))
	if err != nil {
		return err
	}
	accounts := admit.New(limits.cfg, admit.Deps{Ledger: ledger, Records: ledger, Report: limits.report})
	rpcSrv, err := rpc.New(rpc.Config{
		Ledger:             accounts,
		PublicURL:          publicURL,
		Logger:             log.With("component", "rpc"),
		MaxBodyBytes:       cfg.MaxBodyBytes,
		Observer:           mtr,
		MaxAlertRecipients: limits.cfg.AlertRecipients,
		Refusals:           limits.report,
		AccessLog:          accessLogger(cfg, log), // logs.go: log_access
		ClientIPHeader:     limits.header,
	})
	if err != nil {
		return fmt.Errorf("rpc: %w", err)
	}
	// The services, portal, alerts and proxy plug in here (wiring.go).
	w := &wiring{cfg: cfg, log: log, ledger: ledger, rpc: rpcSrv, reg: reg, publicURL: publicURL, mtr: mtr, accounts: accounts, limits: limits, reloads: reloads}
	defer func() {
		if cerr := w.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := w.wireAll(); err != nil {
		return err
	}
	w.logReport(log) // wiring.go: a few structured lines
	// Front reads request bodies within their path's limit before any
	// handler (the proxy included) sees them; tag gives each request its
	// client key for the abuse limits first.
	public := rpc.NewHTTPServer(limits.tag(rpcSrv.Front(w.handler())), log.With("component", "rpc"))
	if cfg.MaxBodyBytes > public.MaxRequestBodySize {
		public.MaxRequestBodySize = cfg.MaxBodyBytes
	}

	var serving atomic.Bool
	if cfg.AdminToken == "" {
		log.Warn("admin_token is not set: the admin API is disabled (every admin call answers 401)")
	}
	ready := func() error {
		if !serving.Load() {
			return errors.New("listeners are not serving")
		}
		return ledger.Check()
	}
	// Online imports of company registers run with the server's context
	// and end (aborted) before the providers close (wire_registers.go).
	regImports, stopImports := w.registerImports(ctx, log.With("component", "registers"))
	defer stopImports()
	adminHandler := admin.New(admin.Config{
		Ledger:    ledger,
		Token:     cfg.AdminToken,
		Logger:    log.With("component", "admin"),
		Ready:     ready,
		Operator:  oper,       // backup, verify, export (operator.go, ledger_pg.go)
		Registers: regImports, // POST/GET /v1/registers/import
	})
	// The ops listener's own mux: the admin handler serves the probes and
	// the admin API; /metrics beside it (no token: it shows no account).
	opsMux := http.NewServeMux()
	opsMux.Handle("/", adminHandler)
	opsMux.Handle("GET /readyz", readyzWithSandbox(readyzWithSpace(adminHandler, space, ready), w.sandbox)) // disk.go, sandbox.go
	opsMux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		// A failing collector (the ledger closed) costs its own series,
		// not the scrape: the rest is served and the error logged.
		ErrorHandling:       promhttp.ContinueOnError,
		ErrorLog:            promLogger{log.With("component", "metrics")},
		MaxRequestsInFlight: 4,
	}))
	ops := newOpsServer(opsMux, log.With("component", "ops"))

	sweepCtx, stopSweep := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		storage.Sweep(sweepCtx, ledger, cfg.SweepInterval, sweepBatch, time.Now, log.With("component", "sweep"))
	}()
	w.loops = append(w.loops, mw.run)
	for _, loop := range w.loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop(sweepCtx)
		}()
	}

	errc := make(chan error, 2)
	go func() { errc <- serveOn("public", public, pubLn) }()
	go func() { errc <- serveOn("ops", ops, opsLn) }()
	serving.Store(true)

	fmt.Fprintf(stdout, "iapd: public %s://%s\n", scheme, pubLn.Addr())
	fmt.Fprintf(stdout, "iapd: ops http://%s\n", opsLn.Addr())
	log.Info("iapd serving", "public", pubLn.Addr().String(), "ops", opsLn.Addr().String(),
		"public_url", publicURL, "ledger", ledgerWhere(cfg), "admin_api", cfg.AdminToken != "")
	// Type=notify: ready once /readyz would say so (systemd.go).
	sd := newSDNotifier(getenv)
	if err := ready(); err != nil {
		log.Error("not ready after start-up; systemd is not told READY=1", "err", err)
	} else if err := sd.notify("READY=1\nSTATUS=serving"); err != nil {
		log.Warn("telling systemd iapd is ready", "err", err)
	}
	// systemctl reload iapd (SIGHUP) and WatchdogSec= (reload.go).
	wg.Add(2)
	go func() {
		defer wg.Done()
		reloadOnHUP(sweepCtx, hup, reloads, sd, monotonicNow, log.With("component", "reload"))
	}()
	go func() {
		defer wg.Done()
		sdWatchdog(sweepCtx, sd, watchdogInterval(getenv, os.Getpid()), opsProbe(opsLn.Addr()), log.With("component", "watchdog"))
	}()

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	case serveErr = <-errc:
		log.Error("listener failed; shutting down", "err", serveErr)
	}
	serving.Store(false)
	if err := sd.notify("STOPPING=1\nSTATUS=shutting down"); err != nil {
		log.Warn("telling systemd iapd is stopping", "err", err)
	}

	// Stop accepting and finish in-flight requests, both listeners at once.
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	// In-flight JSON-RPC requests have a grace period to finish; then
	// their contexts are cancelled, so that they stop waiting (ledger,
	// providers) and answer before shutdown_timeout.
	grace := cfg.ShutdownTimeout - min(cfg.ShutdownTimeout/3, 5*time.Second)
	abort := time.AfterFunc(grace, func() {
		log.Warn("shutdown: cancelling the requests still in flight", "after", grace)
		rpcSrv.CancelRequests()
	})
	defer abort.Stop()
	var swg sync.WaitGroup
	for _, s := range []struct {
		name string
		srv  *fasthttp.Server
	}{{"public", public}, {"ops", ops}} {
		swg.Add(1)
		go func() {
			defer swg.Done()
			if err := s.srv.ShutdownWithContext(sctx); err != nil {
				log.Warn("shutdown: requests still in flight were abandoned", "listener", s.name, "err", err)
			}
		}()
	}
	swg.Wait()
	stopSweep()
	wg.Wait()
	log.Info("stopped")
	return serveErr
}

// serveOn serves srv on ln; a nil return means Shutdown was called.
func serveOn(name string, srv *fasthttp.Server, ln net.Listener) error {
	if err := srv.Serve(ln); err != nil {
		return fmt.Errorf("%s listener: %w", name, err)
	}
	return nil
}

// newOpsServer serves the admin handler (probes and admin API) through
// fasthttpadaptor; this listener is not on the hot path.
func newOpsServer(h http.Handler, log *slog.Logger) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:               fasthttpadaptor.NewFastHTTPHandler(detached(h)),
		Name:                  "iapd",
		NoDefaultServerHeader: true,
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          30 * time.Second,
		IdleTimeout:           60 * time.Second,
		MaxRequestBodySize:    1 << 20,
		Logger:                fasthttpLogger{log},
	}
}

// detached gives h a request whose strings are its own. fasthttpadaptor
// builds the *http.Request with zero-copy conversions: URL, method, host
// and headers alias fasthttp's buffers, which are reused by the next
// request on the connection, so a string kept past the request (a
// ServiceName from r.PathValue stored by a ledger, say) would change under
// its holder. The body is read by encoding/json, which copies.
func detached(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r2 := new(http.Request)
		*r2 = *r
		r2.Method = strings.Clone(r.Method)
		r2.Host = strings.Clone(r.Host)
		r2.RequestURI = strings.Clone(r.RequestURI)
		r2.RemoteAddr = strings.Clone(r.RemoteAddr)
		r2.Proto = strings.Clone(r.Proto)
		if r.URL != nil {
			u := *r.URL
			u.Scheme = strings.Clone(u.Scheme)
			u.Opaque = strings.Clone(u.Opaque)
			u.Host = strings.Clone(u.Host)
			u.Path = strings.Clone(u.Path)
			u.RawPath = strings.Clone(u.RawPath)
			u.RawQuery = strings.Clone(u.RawQuery)
			u.Fragment = strings.Clone(u.Fragment)
			u.RawFragment = strings.Clone(u.RawFragment)
			u.User = nil // never set on a server request
			r2.URL = &u
		}
		hdr := make(http.Header, len(r.Header))
		for k, vs := range r.Header {
			cp := make([]string, len(vs))
			for i, v := range vs {
				cp[i] = strings.Clone(v)
			}
			hdr[strings.Clone(k)] = cp
		}
		r2.Header = hdr
		h.ServeHTTP(w, r2)
	})
}

// promLogger sends promhttp's errors (a collector that failed during a
// scrape) to slog.
type promLogger struct{ log *slog.Logger }

func (l promLogger) Println(v ...any) {
	l.log.Warn("serving /metrics: " + strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}

// fasthttpLogger sends fasthttp's own messages to slog at debug level,
// cut before any dump of request bytes (which could hold a token).
type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	for _, cut := range []string{"contents:", "Buffer size"} {
		if i := strings.Index(msg, cut); i >= 0 {
			msg = msg[:i] + "[request bytes not logged]"
		}
	}
	l.log.Debug(msg)
}

// openBadgerLedger opens the Badger ledger in cfg.Data (refusing a data
// directory another iapd has open) and registers its disk metrics.
func openBadgerLedger(cfg Config, log *slog.Logger, mtr *metrics.Metrics, reg prometheus.Registerer, jcorrupt badger.JournalCorruptAction) (*badger.Ledger, error) {
	// A data directory another iapd has open is refused before anything
	// in it is touched (datadir.go).
	if err := dataDirInUse(cfg.Data); err != nil {
		return nil, err
	}
	ledger, err := badger.Open(badger.Options{
		Dir:            cfg.Data,
		Logger:         log.With("component", "badger"),
		EngineLogger:   storageLogger(cfg, log), // logs.go: log_storage
		Now:            time.Now,
		OnSync:         mtr.ObserveSync,
		OnCheckpoint:   mtr.ObserveCheckpoint,
		DiskReserve:    ledgerDiskReserve(cfg.DiskReserve), // disk.go
		Refusals:       mtr,
		JournalCorrupt: jcorrupt,
	})
	if err != nil {
		var ce *badger.JournalCorruptError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("opening the ledger in %s: %w\nNothing was changed. Keep a copy of the data directory; then either restore a backup, "+
				"or start once with -journal-corrupt=move-aside to start from the records before the damage (the journal files are moved aside, "+
				"and iapd verify reports them until the folder is removed)", cfg.Data, err)
		}
		if inUse := explainOpenError(cfg.Data, err); inUse != err {
			return nil, inUse
		}
		return nil, fmt.Errorf("opening the ledger in %s: %w", cfg.Data, err)
	}
	if err := reg.Register(metrics.NewDiskCollector(diskGauges(ledger.Space))); err != nil {
		ledger.Close()
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if err := reg.Register(metrics.NewLedgerSizeCollector(ledgerFiles(ledger.DiskUse))); err != nil { // ledgersize.go
		ledger.Close()
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return ledger, nil
}
