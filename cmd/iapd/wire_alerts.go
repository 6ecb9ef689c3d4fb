package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/rpc/limit"
	"github.com/iapd/iapd/rpc/notify"
	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

// The Badger ledger is the alert queue, the store of the delivery marks
// and the directory the e-mails read (service description, dbuuid).
var (
	_ storage.AlertOutbox = (*badger.Ledger)(nil)
	_ storage.Records     = (*badger.Ledger)(nil)
	_ notify.Directory    = (*badger.Ledger)(nil)
)

// wireAlerts starts the low-credit alert dispatcher (issue 5): the ledger
// queues one alert per crossing, atomically with the change; the
// dispatcher e-mails each recipient through the notifier provider
// (alerts.notifier, default the "outbox" sandbox) and posts the optional
// signed webhook, in the background until shutdown.
func wireAlerts(w *wiring) error {
	var cfg notify.Config
	if err := w.cfg.Alerts.Decode(&cfg); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.Disabled {
		w.report = append(w.report, "alerts: disabled (low-credit alerts stay queued in the ledger)")
		return nil
	}
	defType := ""
	if cfg.Notifier == notify.DefaultNotifier {
		defType = "outbox"
	}
	p, err := w.provider(cfg.Notifier, defType)
	if err != nil {
		return fmt.Errorf("notifier: %w", err)
	}
	sender, ok := p.(providers.EmailSender)
	if !ok {
		return fmt.Errorf("notifier: provider %s (type %s) cannot send e-mail", p.Name(), p.Type())
	}
	w.serves("alerts", p)
	d, err := notify.New(cfg, notify.Deps{
		Outbox:    w.ledger,
		Sender:    sender,
		Marks:     w.ledger,
		Dir:       w.ledger,
		Reg:       w.reg,
		Logger:    w.log.With("component", "alerts"),
		Now:       time.Now,
		PublicURL: w.publicURL,
		Gate:      limit.NewAlertGate(w.limits.cfg, w.limits.report),
	})
	if err != nil {
		return err
	}
	w.loops = append(w.loops, d.Run)
	line := fmt.Sprintf("alerts: e-mail through %s (%s) in %s, queue read every %s",
		p.Name(), p.Type(), strings.Join(d.Languages(), ", "), cfg.PollInterval)
	if cfg.Webhook != nil {
		line += ", signed webhook on"
	}
	w.report = append(w.report, line)
	return nil
}
