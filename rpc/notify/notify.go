// Package notify is the low-credit alert dispatcher. The ledger queues an
// alert (storage.AlertNotice) in the same atomic step as the capture,
// expiry or adjustment that takes an account's available credit below its
// threshold; the dispatcher takes the due alerts from that durable queue
// (storage.AlertOutbox), renders one e-mail per recipient in their
// language from embedded templates (English, French, German, Dutch and
// Spanish; Odoo's lang codes such as fr_FR or nl_BE pick the language,
// anything without a translation English), sends them through a notifier provider (providers.EmailSender:
// smtp, outbox), posts the optional signed webhook, and then removes the
// alert — or, when a delivery failed Unavailable or Indeterminate, records
// the failure with the next try after an exponential backoff. An alert
// whose recipient is refused (Invalid) is not retried for that recipient.
// Since the queue is durable, an alert survives a restart between the
// crossing and the send and is sent once.
//
// With a storage.Records store, each delivery is marked done as it
// succeeds, so a retry after a partial failure sends only what is
// missing. A crash between a send and its mark may still send one
// duplicate: every e-mail carries a Message-ID made from the alert id and
// every webhook call the alert id, so that receivers can drop it. A
// duplicate alert is better than none.
//
// E-mails and webhooks carry the hashed account token (Odoo 19's links,
// PROTOCOL §4.7), never the token.
//
// It lives in rpc, the layer that may combine the ledger and providers (no
// provider imports storage). It imports storage, providers (the
// EmailSender SPI), providers/outbound (the webhook's CallerURL),
// providers/vendorhttp and prometheus; cmd/iapd wires it.
package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/storage"
)

// Config is the alerts section of iapd's configuration.
//
//	alerts:
//	  notifier: mail          # provider instance (an EmailSender); default "outbox"
//	  poll_interval: 15s
//	  retry_min: 30s
//	  retry_max: 1h
//	  give_up_after: 168h
//	  webhook: {url: https://hooks.example.com/iap, secret: ${HOOK_SECRET}}
type Config struct {
	// Disabled turns the dispatcher off (alerts stay queued).
	Disabled bool `yaml:"disabled"`
	// Notifier names the provider instance that sends the e-mails; the
	// default "outbox" is the sandbox writing .eml files.
	Notifier string `yaml:"notifier"`
	// PollInterval is how often the queue is read; default 15s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// Batch bounds the alerts taken per pass; default 50.
	Batch int `yaml:"batch"`
	// RetryMin is the wait after a first failure, doubled after each
	// following one up to RetryMax; defaults 30s and 1h.
	RetryMin time.Duration `yaml:"retry_min"`
	RetryMax time.Duration `yaml:"retry_max"`
	// GiveUpAfter: an alert still failing this long after its crossing is
	// dropped (logged as an error); default 168h (a week).
	GiveUpAfter time.Duration `yaml:"give_up_after"`
	// SendTimeout bounds one delivery (the adapter has its own timeouts
	// within); default 2m.
	SendTimeout time.Duration `yaml:"send_timeout"`
	// Webhook, set, also posts each alert as signed JSON.
	Webhook *WebhookConfig `yaml:"webhook"`
}

// DefaultNotifier is the notifier instance used when none is configured.
const DefaultNotifier = "outbox"

// Validate checks c and fills defaults.
func (c *Config) Validate() error {
	if c.Notifier == "" {
		c.Notifier = DefaultNotifier
	}
	def := func(d *time.Duration, v time.Duration, name string) error {
		if *d == 0 {
			*d = v
		}
		if *d < 0 {
			return fmt.Errorf("%s: negative", name)
		}
		return nil
	}
	for _, x := range []struct {
		d    *time.Duration
		v    time.Duration
		name string
	}{
		{&c.PollInterval, 15 * time.Second, "poll_interval"},
		{&c.RetryMin, 30 * time.Second, "retry_min"},
		{&c.RetryMax, time.Hour, "retry_max"},
		{&c.GiveUpAfter, 7 * 24 * time.Hour, "give_up_after"},
		{&c.SendTimeout, 2 * time.Minute, "send_timeout"},
	} {
		if err := def(x.d, x.v, x.name); err != nil {
			return err
		}
	}
	if c.RetryMax < c.RetryMin {
		return errors.New("retry_max is below retry_min")
	}
	if c.Batch == 0 {
		c.Batch = 50
	}
	if c.Batch < 0 || c.Batch > 10000 {
		return fmt.Errorf("batch: %d out of 1..10000", c.Batch)
	}
	if c.Webhook != nil {
		if err := c.Webhook.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Directory is what the dispatcher reads from the ledger to write a
// useful e-mail: the service's description and unit, the account's
// database uuid for the recharge link. storage.Ledger implements it.
// A failed lookup only makes the e-mail plainer.
type Directory interface {
	Service(ctx context.Context, name storage.ServiceName) (storage.Service, error)
	LookupAccount(ctx context.Context, svc storage.ServiceName, tok storage.AccountToken) (storage.Account, error)
}

// Deps are the dispatcher's collaborators.
type Deps struct {
	Outbox storage.AlertOutbox                  // required: the durable queue
	Sender providers.EmailSender                // required: the notifier
	Marks  storage.Records                      // optional: per-delivery done marks
	Dir    Directory                            // optional
	Reg    prometheus.Registerer                // optional: iap_alerts_sent_total
	Logger *slog.Logger                         // optional
	Now    func() time.Time                     // optional: the clock of due times and backoff
	After  func(time.Duration) <-chan time.Time // optional: the poll timer (time.After)
	// PublicURL is <public_url> of the recharge links, no trailing slash.
	PublicURL string
	// HTTP, set, replaces the SSRF-guarded webhook client (tests).
	HTTP *http.Client
	// Gate, set, decides whether each alert e-mail may go out (the abuse
	// limits); an e-mail it refuses is dropped, not retried.
	Gate Gate
}

// Gate bounds the alert e-mails (rpc/limit.AlertGate). AllowEmail
// reports whether the e-mail of one account's alert to addr may be sent
// at now, counting it if so; it reports its refusals itself.
type Gate interface {
	AllowEmail(svc, tok, addr string, now time.Time) bool
}

// Metric outcomes of iap_alerts_sent_total.
const (
	OutcomeSent    = "sent"    // delivered
	OutcomeRetry   = "retry"   // failed Unavailable/Indeterminate: tried again later
	OutcomeInvalid = "invalid" // refused: not retried
	OutcomeExpired = "expired" // still failing after give_up_after: dropped
)

// Channels of iap_alerts_sent_total.
const (
	ChannelEmail   = "email"
	ChannelWebhook = "webhook"
)

// MarksNamespace is the storage.Records namespace of the delivery marks.
const MarksNamespace = "alerts.delivered"

// Dispatcher sends the queued alerts. Run it in one goroutine; Pass is
// not meant to run concurrently with itself.
type Dispatcher struct {
	cfg       Config
	outbox    storage.AlertOutbox
	sender    providers.EmailSender
	marks     storage.Records
	dir       Directory
	log       *slog.Logger
	now       func() time.Time
	after     func(time.Duration) <-chan time.Time
	publicURL string
	tmpl      *templates
	hook      *webhook
	gate      Gate
	sent      *prometheus.CounterVec
}

// New builds a dispatcher; cfg must have been validated.
func New(cfg Config, d Deps) (*Dispatcher, error) {
	if d.Outbox == nil || d.Sender == nil {
		return nil, errors.New("notify: an alert outbox and a notifier are required")
	}
	tm, err := loadTemplates(templateFS)
	if err != nil {
		return nil, fmt.Errorf("notify: templates: %w", err)
	}
	x := &Dispatcher{cfg: cfg, outbox: d.Outbox, sender: d.Sender, marks: d.Marks, dir: d.Dir,
		log: d.Logger, now: d.Now, after: d.After, publicURL: strings.TrimRight(d.PublicURL, "/"), tmpl: tm, gate: d.Gate}
	if x.log == nil {
		x.log = slog.New(slog.DiscardHandler)
	}
	if x.now == nil {
		x.now = time.Now
	}
	if x.after == nil {
		x.after = time.After
	}
	if cfg.Webhook != nil {
		hc := d.HTTP
		if hc == nil {
			hc = webhookClient(cfg.Webhook.AllowPrivateNetworks, cfg.Webhook.Timeout)
		}
		x.hook = &webhook{cfg: cfg.Webhook, client: hc, now: x.now}
	}
	x.sent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "iap_alerts_sent_total",
		Help: "Low-credit alert deliveries by channel (email, webhook) and outcome (sent, retry, invalid, expired).",
	}, []string{"channel", "outcome"})
	for _, ch := range []string{ChannelEmail, ChannelWebhook} {
		for _, o := range []string{OutcomeSent, OutcomeRetry, OutcomeInvalid, OutcomeExpired} {
			x.sent.WithLabelValues(ch, o)
		}
	}
	if d.Reg != nil {
		if err := d.Reg.Register(x.sent); err != nil {
			return nil, fmt.Errorf("notify: metrics: %w", err)
		}
	}
	return x, nil
}

// Languages lists the languages the alerts are written in.
func (x *Dispatcher) Languages() []string { return x.tmpl.languages() }

// Run sends due alerts every PollInterval until ctx is done, starting at
// once (alerts queued before a restart go out first).
func (x *Dispatcher) Run(ctx context.Context) {
	for {
		if _, err := x.Pass(ctx); err != nil && ctx.Err() == nil {
			x.log.Warn("alert dispatch", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-x.after(x.cfg.PollInterval):
		}
	}
}

// Pass sends the alerts due now (at most Batch) and returns how many it
// handled (sent, dropped or rescheduled). An error is the queue's (the
// first one; one alert's error does not hold up the others); a delivery
// failure is recorded on the alert, not returned.
func (x *Dispatcher) Pass(ctx context.Context) (int, error) {
	due, err := x.outbox.DueAlerts(ctx, x.now(), x.cfg.Batch)
	if err != nil {
		return 0, err
	}
	var first error
	done := 0
	for _, n := range due {
		if ctx.Err() != nil {
			return done, ctx.Err()
		}
		if err := x.deliver(ctx, n); err != nil {
			if first == nil {
				first = fmt.Errorf("alert %d: %w", n.ID, err)
			}
			continue
		}
		done++
	}
	return done, first
}

// delivery is one e-mail or webhook call of an alert.
type delivery struct {
	key     string // mark key, unique within the alert
	channel string
	send    func(ctx context.Context) error
	what    string // for logs: a redacted recipient
	// allow, set, asks the gate before the send (e-mails).
	allow func() bool
}

// deliver sends what of n is not yet done and updates the queue.
func (x *Dispatcher) deliver(ctx context.Context, n storage.AlertNotice) error {
	log := x.log.With("alert", n.ID, "service", n.Service, "account", HashedToken(n.Account)[:12])
	ds, err := x.deliveries(ctx, n)
	if err != nil {
		return err
	}
	if len(ds) == 0 {
		log.Warn("low-credit alert without recipient nor webhook: dropped")
	}
	var pending []delivery
	var lastErr error
	for _, d := range ds {
		if ctx.Err() != nil {
			// Shutting down: what was sent is marked; the alert stays
			// queued for the rest, its attempts unchanged.
			return ctx.Err()
		}
		if x.marked(ctx, n.ID, d.key) {
			continue
		}
		if d.allow != nil && !d.allow() {
			// Over a limit (the gate reported it): dropped for good.
			bctx, bcancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
			x.mark(bctx, n.ID, d.key)
			bcancel()
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, x.cfg.SendTimeout)
		err := d.send(sctx)
		cancel()
		// The bookkeeping of a delivery that happened must not be lost to
		// a shutdown: it runs on (the ledger closes after the loops end).
		bctx, bcancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
		switch {
		case err == nil:
			x.sent.WithLabelValues(d.channel, OutcomeSent).Inc()
			log.Info("low-credit alert sent", "channel", d.channel, "to", d.what)
			x.mark(bctx, n.ID, d.key)
		case providers.KindOf(err) == providers.Invalid:
			x.sent.WithLabelValues(d.channel, OutcomeInvalid).Inc()
			log.Error("low-credit alert refused: not retried", "channel", d.channel, "to", d.what, "err", err)
			x.mark(bctx, n.ID, d.key)
		case ctx.Err() != nil:
			// Cut short by the shutdown: neither a failure of the
			// notifier nor counted as an attempt.
			bcancel()
			return ctx.Err()
		default:
			pending = append(pending, d)
			lastErr = err
		}
		bcancel()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
	defer cancel()
	now := x.now()
	if len(pending) == 0 {
		if err := x.outbox.AlertSent(ctx, n.ID); err != nil {
			return err
		}
		x.unmark(ctx, n.ID, ds)
		return nil
	}
	if now.Sub(n.At) >= x.cfg.GiveUpAfter {
		for _, d := range pending {
			x.sent.WithLabelValues(d.channel, OutcomeExpired).Inc()
			log.Error("low-credit alert given up", "channel", d.channel, "to", d.what, "attempts", n.Attempts+1, "err", lastErr)
		}
		if err := x.outbox.AlertSent(ctx, n.ID); err != nil {
			return err
		}
		x.unmark(ctx, n.ID, ds)
		return nil
	}
	next := now.Add(x.backoff(n.Attempts))
	for _, d := range pending {
		x.sent.WithLabelValues(d.channel, OutcomeRetry).Inc()
		log.Warn("low-credit alert not delivered: will retry", "channel", d.channel, "to", d.what,
			"attempts", n.Attempts+1, "next", next, "err", lastErr)
	}
	err = x.outbox.AlertFailed(ctx, n.ID, next, reason(lastErr))
	if storage.Is(err, storage.NotFound) {
		return nil // removed meanwhile (an operator): nothing to retry
	}
	return err
}

// bookkeepingTimeout bounds the queue and mark writes after a delivery.
const bookkeepingTimeout = 10 * time.Second

// backoff is RetryMin doubled per earlier failure, at most RetryMax.
func (x *Dispatcher) backoff(attempts int) time.Duration {
	d := x.cfg.RetryMin
	for i := 0; i < attempts && d < x.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, x.cfg.RetryMax)
}

// reason is an error's text for the queue (operators read it), bounded.
func reason(err error) string {
	s := err.Error()
	if len(s) > 500 {
		s = s[:500]
	}
	return s
}

// deliveries lists the e-mails (one per distinct recipient) and the
// webhook call of n.
func (x *Dispatcher) deliveries(ctx context.Context, n storage.AlertNotice) ([]delivery, error) {
	f := facts{Service: n.Service, Available: n.Available, Threshold: n.Threshold, At: n.At}
	var dbuuid string
	if x.dir != nil {
		if s, err := x.dir.Service(ctx, n.Service); err == nil {
			f.Label, f.Unit = s.Description, s.UnitName
		}
		if a, err := x.dir.LookupAccount(ctx, n.Service, n.Account); err == nil {
			dbuuid = a.DBUUID
		}
	}
	f.Link = CreditURL(x.publicURL, n.Service, n.Account, dbuuid)
	var out []delivery
	seen := map[string]bool{}
	for _, r := range n.Recipients {
		addr := strings.TrimSpace(r.Email)
		norm := strings.ToLower(addr)
		if addr == "" || seen[norm] {
			continue
		}
		seen[norm] = true
		msg, err := x.tmpl.render(r.Lang, f)
		if err != nil {
			return nil, fmt.Errorf("notify: rendering alert %d: %w", n.ID, err)
		}
		sum := sha256.Sum256([]byte(norm))
		key := "email." + hex.EncodeToString(sum[:8])
		m := providers.Email{
			ID:       fmt.Sprintf("iapd-alert-%d-%s", n.ID, hex.EncodeToString(sum[:6])),
			To:       []string{addr},
			Subject:  msg.Subject,
			Text:     msg.Text,
			HTML:     msg.HTML,
			Language: languageOf(r.Lang, msg.Lang),
		}
		dl := delivery{key: key, channel: ChannelEmail, what: redact(addr),
			send: func(ctx context.Context) error { return x.sender.SendEmail(ctx, m) }}
		if x.gate != nil {
			dl.allow = func() bool { return x.gate.AllowEmail(string(n.Service), string(n.Account), norm, x.now()) }
		}
		out = append(out, dl)
	}
	if t, ok := x.hook.target(n.Service); ok {
		p := WebhookPayload{ID: n.ID, Service: n.Service, AccountHash: HashedToken(n.Account),
			Available: n.Available, Threshold: n.Threshold, At: n.At.UTC()}
		out = append(out, delivery{key: "webhook", channel: ChannelWebhook, what: "webhook",
			send: func(ctx context.Context) error { return x.hook.post(ctx, t, p) }})
	}
	return out, nil
}

// target is nil-safe on a dispatcher without webhook.
func (w *webhook) target(svc storage.ServiceName) (WebhookTarget, bool) {
	if w == nil {
		return WebhookTarget{}, false
	}
	return w.cfg.target(svc)
}

// languageOf is the Content-Language of an e-mail: the recipient's code
// when the e-mail is in its language ("fr_BE"), else the template's.
func languageOf(code, rendered string) string {
	base, _, _ := strings.Cut(strings.ToLower(code), "_")
	if base == rendered {
		return code
	}
	return rendered
}

// redact keeps the domain and the first letter of an address for logs.
func redact(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 {
		return "***"
	}
	return addr[:1] + "***" + addr[at:]
}

func markKey(id uint64, key string) string { return fmt.Sprintf("%020d/%s", id, key) }

// markTTL bounds how long a stray mark (a crash between the alert's
// removal and the marks') is kept.
const markTTL = 60 * 24 * time.Hour

func (x *Dispatcher) marked(ctx context.Context, id uint64, key string) bool {
	if x.marks == nil {
		return false
	}
	_, err := x.marks.GetRecord(ctx, MarksNamespace, markKey(id, key))
	return err == nil
}

func (x *Dispatcher) mark(ctx context.Context, id uint64, key string) {
	if x.marks == nil {
		return
	}
	// The store judges expiry on its own (wall) clock.
	if err := x.marks.PutRecord(ctx, MarksNamespace, markKey(id, key), []byte{1}, time.Now().Add(markTTL)); err != nil {
		x.log.Warn("alert delivery mark not stored: a retry may send it again", "alert", id, "err", err)
	}
}

func (x *Dispatcher) unmark(ctx context.Context, id uint64, ds []delivery) {
	if x.marks == nil {
		return
	}
	for _, d := range ds {
		if err := x.marks.DeleteRecord(ctx, MarksNamespace, markKey(id, d.key)); err != nil {
			x.log.Debug("alert delivery mark not deleted (it expires)", "alert", id, "err", err)
		}
	}
}
