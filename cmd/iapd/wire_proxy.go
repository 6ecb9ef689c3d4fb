package main

import (
	"errors"
	"fmt"
	"sort"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/outbound"
	"github.com/iapd/iapd/proxy"
	"github.com/iapd/iapd/storage"
)

// wireProxy puts the proxy in front of the public handler (it runs last,
// so every service's routes are known): per route, by its service's mode
// (services.<name>.mode: local, upstream or refuse), the request is served
// locally, forwarded to Odoo's IAP host of the route's role, or refused.
// It also allows the hosts the built providers declare (air-gapped mode),
// opens the audit log (reopened on SIGHUP) and writes the startup report
// of what goes where.
func wireProxy(w *wiring) error {
	ob, ok := w.outbound.Transport.(*outbound.Outbound)
	if !ok {
		return errors.New("the outbound client was not built by wireOutbound")
	}
	names := make([]string, 0, len(w.providers))
	for n := range w.providers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := w.providers[n]
		ep, ok := p.(providers.Endpoints)
		if !ok {
			if ob.Guard.Enforcing() {
				w.report = append(w.report, fmt.Sprintf("air-gapped: provider %s (%s) does not declare its hosts (providers.Endpoints): only hosts named in its settings or in upstream.outbound_allow are reachable", n, p.Type()))
			}
			continue
		}
		if err := ob.Guard.Allow("provider "+n, ep.Hosts()...); err != nil {
			return fmt.Errorf("provider %s: %w", n, err)
		}
	}

	ucfg, err := upstreamConfig(w.cfg)
	if err != nil {
		return err
	}
	var audit *proxy.Audit
	if ucfg.AuditLog != "" {
		if audit, err = proxy.OpenAudit(ucfg.AuditLog); err != nil {
			return fmt.Errorf("upstream.audit_log: %w", err)
		}
		w.closers = append(w.closers, audit.Close)
		w.reloads.add("upstream audit log", audit.Reopen) // reopened after logrotate
	}
	up := outbound.NewOutbound(ob.Guard, ucfg.MaxIdleConnsPerHost)
	w.closers = append(w.closers, func() error { up.CloseIdleConnections(); return nil })
	px, err := newProxy(w, ucfg, up, audit, w.reg)
	if err != nil {
		return err
	}
	w.wraps = append(w.wraps, px.Wrap)

	if w.cfg.AirGapped {
		w.report = append(w.report, "air-gapped: nothing is forwarded to Odoo; outbound connections only to:")
		for _, h := range ob.Guard.Allowed() {
			w.report = append(w.report, "  "+h)
		}
	}
	for _, l := range px.Plan() {
		w.report = append(w.report, fmt.Sprintf("route %s [%s, %s]: %s → %s", l.Path, l.Service, l.Endpoint, l.Mode, l.Destination))
	}
	if audit != nil {
		w.report = append(w.report, "upstream audit log: "+ucfg.AuditLog)
	}
	return nil
}

// serviceModes reads services.<name>.mode, refusing an unknown mode.
func serviceModes(cfg Config) (map[storage.ServiceName]proxy.Mode, error) {
	modes := map[storage.ServiceName]proxy.Mode{}
	for name, sc := range cfg.Services {
		m, err := proxy.ParseMode(sc.Mode)
		if err != nil {
			return nil, fmt.Errorf("services.%s.%w", name, err)
		}
		modes[storage.ServiceName(name)] = m
	}
	return modes, nil
}

// newProxy builds the proxy over the routes w.rpc serves now.
func newProxy(w *wiring, ucfg proxy.Config, up *outbound.Outbound, audit *proxy.Audit, reg prometheus.Registerer) (*proxy.Proxy, error) {
	modes, err := serviceModes(w.cfg)
	if err != nil {
		return nil, err
	}
	return proxy.New(proxy.Options{
		Config:     ucfg,
		Routes:     w.rpc.Routes(),
		Modes:      modes,
		AirGapped:  w.cfg.AirGapped,
		Lookup:     w.rpc.Lookup,
		Pages:      w.rpc.HasPage,
		Transport:  up,
		Errors:     w.rpc,
		Requests:   w.rpc,
		Registerer: reg,
		Audit:      audit,
		Logger:     w.log.With("component", "proxy"),
	})
}
