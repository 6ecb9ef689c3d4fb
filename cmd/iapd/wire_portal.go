package main

import (
	"fmt"
	"path/filepath"

	"github.com/iapd/iapd/rpc/portal"
	"github.com/iapd/iapd/storage"
)

// wirePortal plugs in the pages Odoo's "Buy credits" links open
// (rpc/portal, PROTOCOL §4.7): the portal section (packs, shop link,
// limits) decoded strictly, the CSRF secret kept in the data directory,
// the pages on the public listener (the SMS account page included: it
// replaces the SMS service's simpler one), the packs in
// get-accounts-information (§4.4). Hashed links are resolved by the
// ledger's index (storage.Ledger.TokenByHash): nothing is built at start.
func wirePortal(w *wiring) error {
	var cfg portal.Config
	if err := w.cfg.Portal.Decode(&cfg); err != nil {
		return fmt.Errorf("portal: %w", err)
	}
	if cfg.ClientIPHeader == "" {
		cfg.ClientIPHeader = w.limits.header // one setting for every limit
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	secret, err := portal.LoadSecret(filepath.Join(w.cfg.Data, "portal"))
	if err != nil {
		return err
	}
	var vouchers storage.Vouchers = w.ledger
	pay, err := w.paymentsProvider()
	if err != nil {
		return err
	}
	deps := portal.Deps{
		Ledger:    w.ledger,
		Vouchers:  vouchers,
		Config:    cfg,
		Secret:    secret,
		PublicURL: w.publicURL,
		Logger:    w.log.With("component", "portal"),

		Refusals:           w.limits.report,
		MaxAlertRecipients: w.limits.cfg.AlertRecipients,
		Payments:           pay,
	}
	if w.reg != nil {
		deps.Registerer = w.reg
	}
	p, err := portal.New(deps)
	if err != nil {
		return err
	}
	p.Register(w.rpc)
	w.report = append(w.report, fmt.Sprintf("portal: %s (packs for %d services, shop link %v)",
		portal.CreditPath, len(cfg.Packs), cfg.ShopURL != ""))
	return nil
}
