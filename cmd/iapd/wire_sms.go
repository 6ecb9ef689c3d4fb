package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/rpc/sms"
	"github.com/iapd/iapd/storage"
)

// wireSMS plugs in the SMS service (rpc/sms, PROTOCOL §6): its settings
// from services.sms.settings (decoded strictly), the provider instances
// they name (by default the sandbox "outbox"), the JSON-RPC routes of
// sms.endpoint, the "Register now" page, each provider's status
// callbacks on the public listener, and the delivery-report relay loop.
func wireSMS(w *wiring) error {
	var settings sms.Settings
	if err := w.cfg.Services[string(storage.SMS)].Settings.Decode(&settings); err != nil {
		return fmt.Errorf("services.sms.settings: %w", err)
	}
	if err := settings.Validate(); err != nil {
		return fmt.Errorf("services.sms.settings: %w", err)
	}
	senders := map[string]providers.SMSSender{}
	for _, name := range settings.ProviderNames() {
		def := ""
		if name == sms.DefaultProvider {
			def = "outbox" // the sandbox, unless configured otherwise
		}
		p, err := w.provider(name, def)
		if err != nil {
			return fmt.Errorf("services.sms.settings: %w", err)
		}
		s, ok := p.(providers.SMSSender)
		if !ok {
			return fmt.Errorf("services.sms.settings: provider %s (type %s) cannot send SMS", name, p.Type())
		}
		senders[name] = s
		w.serves(string(storage.SMS), p)
	}
	var records storage.Records = w.nodeRecords() // ledger_pg.go
	svc, err := sms.New(settings, sms.Deps{
		Ledger:     w.accounts,
		Records:    records,
		Senders:    senders,
		PublicURL:  w.publicURL,
		Logger:     w.log.With("component", "sms"),
		Registerer: w.reg,
	})
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
		w.log.Error("sms: settling sends interrupted by a crash failed", "failed", rep.Failed, "err", err)
	}
	if rep != (sms.SettleReport{}) {
		w.log.Warn("sms: settled sends interrupted by a crash", "captured", rep.Captured,
			"indeterminate_captured", rep.Indeterminate, "released", rep.Released, "seconds", time.Since(start).Seconds())
	}
	if err := w.rpc.Register(sms.ServiceName, svc, svc.Routes()); err != nil {
		return err
	}
	var callbacks []string
	for _, name := range settings.ProviderNames() {
		s := senders[name]
		if rep, ok := s.(providers.DeliveryReporter); ok {
			rep.SetSink(svc.Sink())
		}
		if cbs, ok := s.(providers.Callbacks); ok {
			for _, cb := range cbs.CallbackRoutes() {
				w.rpc.HandlePage(cb.Path, rpc.CallbackHandler(w.publicURL, cb))
				callbacks = append(callbacks, cb.Path)
			}
		}
	}
	w.loops = append(w.loops, svc.Run)
	line := "sms: providers " + strings.Join(settings.ProviderNames(), ", ")
	if len(callbacks) > 0 {
		line += "; callbacks " + strings.Join(callbacks, ", ")
	}
	w.report = append(w.report, line)
	return nil
}

// settleTimeout bounds the start-up settlement of one service's sends
// interrupted by a crash (a few records and ledger calls per send in
// flight at the crash). What was not settled by then is logged and
// settled at the next start.
const settleTimeout = 2 * time.Minute
