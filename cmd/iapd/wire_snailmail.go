package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/rpc/snailmail"
	"github.com/iapd/iapd/storage"
)

// wireSnailmail plugs in the letter service (rpc/snailmail, PROTOCOL §7):
// its settings from services.snailmail.settings (decoded strictly), the
// provider instances they name (by default the sandbox "folder", writing
// letters under <data>/providers/folder/letters), the print route of
// snailmail.endpoint, and each provider's status webhooks on the public
// listener.
func wireSnailmail(w *wiring) error {
	var settings snailmail.Settings
	if err := w.cfg.Services[string(storage.Snailmail)].Settings.Decode(&settings); err != nil {
		return fmt.Errorf("services.snailmail.settings: %w", err)
	}
	if err := settings.Validate(); err != nil {
		return fmt.Errorf("services.snailmail.settings: %w", err)
	}
	senders := map[string]providers.LetterSender{}
	for _, name := range settings.ProviderNames() {
		def := ""
		if name == snailmail.DefaultProvider {
			def = "folder" // the sandbox, unless configured otherwise
		}
		p, err := w.provider(name, def)
		if err != nil {
			return fmt.Errorf("services.snailmail.settings: %w", err)
		}
		s, ok := p.(providers.LetterSender)
		if !ok {
			return fmt.Errorf("services.snailmail.settings: provider %s (type %s) cannot send letters", name, p.Type())
		}
		senders[name] = s
		w.serves(string(storage.Snailmail), p)
	}
	var records storage.Records = w.nodeRecords() // ledger_pg.go
	deps := snailmail.Deps{
		Ledger:     w.accounts,
		Records:    records,
		Senders:    senders,
		Logger:     w.log.With("component", "snailmail"),
		Registerer: w.reg,
	}
	if w.mtr != nil {
		deps.Refusals = w.mtr
	}
	svc, err := snailmail.New(settings, deps)
	if err != nil {
		return err
	}
	// Sends a crash interrupted are settled before the listeners serve
	// (local work: records and ledger, no provider call).
	start := time.Now()
	sctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	rep, err := svc.Settle(sctx, w.nodeRecords())
	cancel()
	if err != nil {
		// What failed keeps its trace and is settled at the next start;
		// iapd serves meanwhile (its uuids are answered duplicate).
		w.log.Error("snailmail: settling sends interrupted by a crash failed", "failed", rep.Failed, "err", err)
	}
	if rep != (snailmail.SettleReport{}) {
		w.log.Warn("snailmail: settled sends interrupted by a crash", "captured", rep.Captured,
			"indeterminate_captured", rep.Indeterminate, "released", rep.Released, "seconds", time.Since(start).Seconds())
	}
	if err := w.rpc.Register(snailmail.ServiceName, svc, svc.Routes()); err != nil {
		return err
	}
	var callbacks []string
	for _, name := range settings.ProviderNames() {
		s := senders[name]
		if rep, ok := s.(providers.LetterReporter); ok {
			rep.SetLetterSink(svc.Sink())
		}
		if cbs, ok := s.(providers.Callbacks); ok {
			for _, cb := range cbs.CallbackRoutes() {
				w.rpc.HandlePage(cb.Path, rpc.CallbackHandler(w.publicURL, cb))
				callbacks = append(callbacks, cb.Path)
			}
		}
	}
	line := "snailmail: providers " + strings.Join(settings.ProviderNames(), ", ")
	if len(callbacks) > 0 {
		line += "; callbacks " + strings.Join(callbacks, ", ")
	}
	w.report = append(w.report, line)
	return nil
}
