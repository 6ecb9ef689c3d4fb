package main

import (
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/iapd/iapd/providers/outbound"
	"github.com/iapd/iapd/proxy"
)

// outboundTimeout bounds one provider API call over w.outbound (adapters
// bound theirs more tightly with contexts).
const outboundTimeout = 30 * time.Second

// wireOutbound builds w.outbound, the HTTP client providers use for
// vendor APIs: pooled connections through a dial guard. In air-gapped mode
// the guard refuses every address but those allowed:
//
//   - upstream.outbound_allow (the operator's explicit list);
//   - the hosts named in each configured provider's settings (every value
//     that is an http(s)/smtp(s) URL, and a "host"/"smtp_host"/"server"
//     key with its sibling "port"), allowed now because a provider may
//     call out while it is built;
//   - the hosts each built provider declares through providers.Endpoints,
//     allowed by wireProxy once the providers exist.
//
// Nothing else leaves: not Odoo's IAP hosts (every upstream route is
// refused in air-gapped mode), not an HTTP(S)_PROXY from the environment.
func wireOutbound(w *wiring) error {
	ucfg, err := upstreamConfig(w.cfg)
	if err != nil {
		return err
	}
	g := outbound.NewGuard(w.cfg.AirGapped, w.log.With("component", "outbound"))
	if err := g.Allow("upstream.outbound_allow", ucfg.OutboundAllow...); err != nil {
		return fmt.Errorf("upstream.outbound_allow: %w", err)
	}
	names := make([]string, 0, len(w.cfg.Providers))
	for n := range w.cfg.Providers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		settings := w.cfg.Providers[n].Settings
		if err := g.Allow("provider "+n+" settings", settingsHosts(&settings)...); err != nil {
			return fmt.Errorf("providers.%s: %w", n, err)
		}
	}
	ob := outbound.NewOutbound(g, 0)
	w.outbound = ob.Client(outboundTimeout)
	w.closers = append(w.closers, func() error { ob.CloseIdleConnections(); return nil })
	return nil
}

// upstreamConfig decodes the upstream section strictly and validates it.
func upstreamConfig(cfg Config) (proxy.Config, error) {
	var u proxy.Config
	if err := cfg.Upstream.Decode(&u); err != nil {
		return u, fmt.Errorf("upstream: %w", err)
	}
	return u, u.Validate()
}

// hostKeys are the settings keys taken as a host name, with the sibling
// "port" if there is one.
var hostKeys = map[string]bool{"host": true, "hostname": true, "smtp_host": true, "server": true}

// settingsHosts returns the hosts a provider's settings name: the host of
// every URL value (http, https, smtp, smtps, ws, wss) and of host keys
// (see hostKeys) with their sibling port.
func settingsHosts(n *yaml.Node) []string {
	var urls, hosts []string
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		switch n.Kind {
		case yaml.ScalarNode:
			urls = append(urls, n.Value)
		case yaml.MappingNode:
			var host, port string
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i].Value, n.Content[i+1]
				switch {
				case hostKeys[strings.ToLower(k)] && v.Kind == yaml.ScalarNode && v.Value != "" && !strings.Contains(v.Value, "://"):
					host = v.Value
				case strings.EqualFold(k, "port") && v.Kind == yaml.ScalarNode:
					port = v.Value
				}
				walk(v)
			}
			if host != "" {
				if port != "" {
					host = net.JoinHostPort(host, port)
				}
				hosts = append(hosts, host)
			}
		default:
			for _, c := range n.Content {
				walk(c)
			}
		}
	}
	walk(n)
	return append(hosts, outbound.HostsOfURLs(urls)...)
}
