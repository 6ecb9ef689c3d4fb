package sms

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/rpc/fallback"
	"github.com/iapd/iapd/rpc/sendflow"
	"github.com/iapd/iapd/storage"
)

// Namespaces of the service's records (storage.Records).
// QueueNamespace is the records namespace of the delivery-report relay
// queue, whose bounds a process keeps in memory: the one a process owns
// alone (several processes sharing a ledger each keep theirs, cmd/iapd
// ledger_pg.go).
const QueueNamespace = nsQueue

const (
	nsDedupe = "sms-uuid"   // dbuuid/uuid → what became of the message
	nsDLR    = "sms-dlr"    // provider/provider id → uuid, webhook, dbuuid
	nsQueue  = "sms-dlrq"   // the relay queue: sequence → report, "meta" → bounds
	nsVerify = "sms-verify" // account → pending verification code
)

// Deps are what New needs.
type Deps struct {
	Ledger  storage.Ledger
	Records storage.Records
	// Senders are the provider instances the settings name, by name
	// (Settings.ProviderNames); each may also be a
	// providers.DeliveryReporter.
	Senders map[string]providers.SMSSender
	// PublicURL is iapd's public base URL (status callback URLs).
	PublicURL string
	Logger    *slog.Logger
	// Registerer receives the service's metrics; nil: none.
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Service is the SMS service: a gorilla/rpc receiver (Send2, MessageSend, Send3,
// AccountCreate, AccountVerify, AccountUpdateSender) plus the relay of
// delivery reports (Run) and the sink providers report to (Sink).
type Service struct {
	cfg     Settings
	ledger  storage.Ledger
	rec     storage.Records
	senders map[string]providers.SMSSender
	pub     string
	log     *slog.Logger
	now     func() time.Time
	m       *metrics
	flow    *sendflow.Flow // claim, hold, dispatch, settle, record

	prices      *prefixTable[storage.Credits]
	unsupported *prefixTable[bool]

	relay       *relay
	verifyLimit *windowLimit
}

// ServiceName is the name the service's methods are registered under
// with rpc.Server.Register.
const ServiceName = "SMS"

// New builds the service. Every provider the settings name must be in
// deps.Senders.
func New(cfg Settings, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if deps.Ledger == nil || deps.Records == nil {
		return nil, errors.New("sms: a ledger and records are required")
	}
	for _, n := range cfg.ProviderNames() {
		if deps.Senders[n] == nil {
			return nil, fmt.Errorf("sms: provider %q is not an SMS provider instance", n)
		}
	}
	s := &Service{
		cfg:         cfg,
		ledger:      deps.Ledger,
		rec:         deps.Records,
		senders:     deps.Senders,
		pub:         strings.TrimRight(deps.PublicURL, "/"),
		log:         deps.Logger,
		now:         deps.Now,
		prices:      newPrefixTable[storage.Credits](),
		unsupported: newPrefixTable[bool](),
		verifyLimit: &windowLimit{max: cfg.VerificationsPerHour},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	var err error
	if s.m, err = newMetrics(deps.Registerer); err != nil {
		return nil, fmt.Errorf("sms: metrics: %w", err)
	}
	for p, v := range cfg.Prices {
		s.prices.add(p, v.Credits)
	}
	for _, p := range cfg.UnsupportedPrefixes {
		s.unsupported.add(p, true)
	}
	s.flow = &sendflow.Flow{Ledger: s.ledger, Records: s.rec, Service: storage.SMS, NS: nsDedupe,
		ClaimTTL: cfg.DedupeTTL, HoldTTL: cfg.HoldTTL, Step: "sms", Log: s.log, Now: s.now}
	s.flow.Claims = sendflow.ClaimsOf(deps.Ledger, deps.Records, nsDedupe)
	client, err := newWebhookClient(cfg.Webhooks)
	if err != nil {
		return nil, err
	}
	s.relay = newRelay(s, client)
	return s, nil
}

// Routes returns the service's JSON-RPC routes for rpc.Server.Register
// (PROTOCOL §6; Odoo waits 15 s for each, §13). Only /iap/message_send
// answers InsufficientCreditError (16.0's _send_sms has no per-number
// credit state to read); the others report credit problems per number.
func (s *Service) Routes() []rpc.Route {
	const ep = "sms.endpoint"
	r := func(path, method string, maxBody int, doc string) rpc.Route {
		return rpc.Route{Path: path, Method: ServiceName + "." + method, MaxBody: maxBody, Doc: doc,
			Endpoint: ep, Service: storage.SMS, Timeout: 15 * time.Second,
			// The decoder stops at the first message or number over
			// the batch limit (Send2 and Send3 then check the total).
			MaxItems: s.cfg.MaxBatch,
			TooMany:  fmt.Sprintf("Too many messages or numbers in one call (at most %d).", s.cfg.MaxBatch),
			TooLarge: "Too many messages in one call: the request is too large.",
		}
	}
	const sendBody = 4 << 20
	msgSend := r("/iap/message_send", "MessageSend", sendBody, "send one text to several numbers: 16.0's sms.api._send_sms (§6.1)")
	msgSend.CreditErrors = true
	send2 := r("/iap/sms/2/send", "Send2", sendBody, "send SMS, flat messages, results by res_id (PROTOCOL §6.1; 16.0)")
	send2.Answer = fallback.SMSByResID
	send3 := func(path, doc string) rpc.Route {
		rt := r(path, "Send3", sendBody, doc)
		rt.Answer = fallback.SMSByUUID
		return rt
	}
	wizard := func(path, method, doc string) rpc.Route {
		rt := r(path, method, 64<<10, doc)
		rt.Answer = fallback.SMSAccount
		return rt
	}
	return []rpc.Route{
		send2,
		msgSend,
		send3("/iap/sms/3/send", "send SMS grouped by body, results by uuid (§6.2; early 17.0)"),
		send3("/api/sms/3/send", "send SMS grouped by body, results by uuid (§6.2; 17.0–19.0)"),
		wizard("/api/sms/1/account/create", "AccountCreate", "SMS account registration: send a verification code (§6.3; 18.0+)"),
		wizard("/api/sms/2/account/verify", "AccountVerify", "SMS account registration: check the code (§6.3; 18.0+)"),
		wizard("/api/sms/1/account/update_sender", "AccountUpdateSender", "SMS sender name (§6.3; 18.0+)"),
	}
}

// price returns the price of one segment to number (E.164).
func (s *Service) price(number string) storage.Credits {
	if p, ok := s.prices.lookup(number); ok {
		return p
	}
	return s.cfg.Price.Credits
}

// chain returns the provider instances to try for number: the first
// route rule with a matching prefix, else the default chain.
func (s *Service) chain(number string) []string {
	for _, r := range s.cfg.Routes {
		for _, p := range r.Prefixes {
			if strings.HasPrefix(number, p) {
				return r.Providers
			}
		}
	}
	return s.cfg.Providers
}

// redactNumber keeps the country part of a number for logs.
func redactNumber(n string) string {
	if len(n) <= 5 {
		return "…"
	}
	return n[:4] + "…"
}
