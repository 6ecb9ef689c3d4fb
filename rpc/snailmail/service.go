package snailmail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/rpc/fallback"
	"github.com/iapd/iapd/rpc/sendflow"
	"github.com/iapd/iapd/storage"
)

// Namespaces of the service's records (storage.Records).
const (
	nsLetter = "snailmail-letter" // document key → what became of it
	nsStatus = "snailmail-status" // provider/provider id → last reported status
)

// ServiceName is the name the service's methods are registered under
// with rpc.Server.Register.
const ServiceName = "Snailmail"

// Deps are what New needs.
type Deps struct {
	Ledger  storage.Ledger
	Records storage.Records
	// Senders are the provider instances the settings name
	// (Settings.ProviderNames), by name; each may also be a
	// providers.LetterReporter.
	Senders map[string]providers.LetterSender
	Logger  *slog.Logger
	// Registerer receives the service's metrics; nil: none.
	Registerer prometheus.Registerer
	// Refusals counts the protective refusals (reason "pdf_budget": a
	// PDF needing more work than its budget); nil: not counted.
	Refusals interface{ Refused(reason string) }
	Now      func() time.Time
}

// Service is the snailmail service: a gorilla/rpc receiver (Print) and
// the sink of letter status reports (Sink).
type Service struct {
	cfg     Settings
	ledger  storage.Ledger
	rec     storage.Records
	senders map[string]providers.LetterSender
	log     *slog.Logger
	now     func() time.Time
	m       *metrics
	flow    *sendflow.Flow // claim, hold, dispatch, settle, record
	// refusals counts protective refusals (Deps.Refusals).
	refusals interface{ Refused(reason string) }
}

// New builds the service. Every provider the settings name must be in
// deps.Senders.
func New(cfg Settings, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if deps.Ledger == nil || deps.Records == nil {
		return nil, errors.New("snailmail: a ledger and records are required")
	}
	for _, n := range cfg.Providers {
		if deps.Senders[n] == nil {
			return nil, fmt.Errorf("snailmail: provider %q is not a letter provider instance", n)
		}
	}
	s := &Service{cfg: cfg, ledger: deps.Ledger, rec: deps.Records, senders: deps.Senders, log: deps.Logger, now: deps.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.refusals = deps.Refusals
	if s.refusals == nil {
		s.refusals = noRefusals{}
	}
	var err error
	if s.m, err = newMetrics(deps.Registerer); err != nil {
		return nil, fmt.Errorf("snailmail: metrics: %w", err)
	}
	s.flow = &sendflow.Flow{Ledger: s.ledger, Records: s.rec, Claims: sendflow.ClaimsOf(deps.Ledger, deps.Records, nsLetter),
		Service: storage.Snailmail, NS: nsLetter, ClaimTTL: cfg.DedupeTTL, HoldTTL: cfg.HoldTTL, Step: "letter", Log: s.log, Now: s.now}
	return s, nil
}

type noRefusals struct{}

func (noRefusals) Refused(string) {}

// Routes returns the service's JSON-RPC route for rpc.Server.Register
// (PROTOCOL §7; Odoo waits snailmail.timeout, 30 s by default, §13). It
// may answer InsufficientCreditError (only to a call with batch false).
func (s *Service) Routes() []rpc.Route {
	return []rpc.Route{{
		Path: "/iap/snailmail/1/print", Method: ServiceName + ".Print",
		// Base64 PDFs: Odoo's letters are a few pages, a scanned one
		// may be several MB.
		MaxBody:      32 << 20,
		Doc:          "print and post letters, per-document in-band errors (PROTOCOL §7; 16.0–19.0)",
		Endpoint:     "snailmail.endpoint",
		Service:      storage.Snailmail,
		Timeout:      30 * time.Second,
		CreditErrors: true,
		Answer:       fallback.Snailmail,
		// The decoder stops at the first document over the limit.
		MaxItems: s.cfg.MaxDocuments,
		TooMany:  fmt.Sprintf("Too many documents in one call (at most %d).", s.cfg.MaxDocuments),
		TooLarge: "The letter is too large to be sent: at most 32 MB per call (about 24 MB of PDF). Please send a smaller document.",
	}}
}

// Sink returns the function letter reporters send their reports to: each
// report is stored under its provider id, for operators and support.
func (s *Service) Sink() providers.LetterSink {
	return func(ctx context.Context, provider string, reports []providers.LetterReport) {
		for _, r := range reports {
			s.m.reports.WithLabelValues(provider, string(r.Status)).Inc()
			if r.ProviderID == "" || len(r.ProviderID) > 256 {
				continue
			}
			v, _ := json.Marshal(statusRecord{Status: string(r.Status), Code: r.Code, At: s.now().Unix()})
			if err := s.rec.PutRecord(ctx, nsStatus, provider+"/"+r.ProviderID, v, s.now().Add(s.cfg.DedupeTTL)); err != nil {
				s.log.Error("snailmail: storing a letter status failed", "provider", provider, "err", err)
			}
			lvl := slog.LevelInfo
			if r.Status == providers.LetterFailed || r.Status == providers.LetterUndeliverable {
				lvl = slog.LevelWarn
			}
			s.log.Log(ctx, lvl, "snailmail: letter status", "provider", provider, "provider_id", r.ProviderID, "status", string(r.Status), "code", r.Code)
		}
	}
}

// statusRecord is the value of a nsStatus record.
type statusRecord struct {
	Status string `json:"s"`
	Code   string `json:"c,omitempty"`
	At     int64  `json:"a"`
}

// LetterStatus returns the last status a provider reported for one of its
// letters (NotFound if none).
func (s *Service) LetterStatus(ctx context.Context, provider, providerID string) (providers.LetterStatus, string, error) {
	b, err := s.rec.GetRecord(ctx, nsStatus, provider+"/"+providerID)
	if err != nil {
		return "", "", err
	}
	var r statusRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return "", "", storage.Wrap("snailmail.status", storage.Internal, err)
	}
	return providers.LetterStatus(r.Status), r.Code, nil
}

// metrics are the service's Prometheus metrics.
type metrics struct {
	letters *prometheus.CounterVec // outcome: sent, or the error code
	calls   *prometheus.CounterVec // provider, outcome: accepted, invalid, unavailable, indeterminate
	reports *prometheus.CounterVec // provider, status
	settled *prometheus.CounterVec // outcome (settle.go)
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		letters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iap_snailmail_letters_total",
			Help: "Documents answered by /iap/snailmail/1/print, by outcome (sent, or the error code answered).",
		}, []string{"outcome"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iap_snailmail_provider_calls_total",
			Help: "Letters handed to a provider instance, by provider and outcome.",
		}, []string{"provider", "outcome"}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iap_snailmail_status_reports_total",
			Help: "Letter status reports received from providers, by provider and status.",
		}, []string{"provider", "status"}),
		settled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iap_snailmail_settled_letters_total",
			Help: "Letters interrupted by a crash, settled at start-up, by outcome (captured: a provider accepted them; indeterminate_captured: handed over without an answer recorded, charged as sent; released: never handed over).",
		}, []string{"outcome"}),
	}
	for _, o := range []string{"captured", "indeterminate_captured", "released"} {
		m.settled.WithLabelValues(o) // from 0, for increase() alerts
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.letters, m.calls, m.reports, m.settled} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
