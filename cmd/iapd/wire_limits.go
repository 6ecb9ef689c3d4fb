package main

import (
	"fmt"
	"log/slog"
	"regexp"
	"sync/atomic"

	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/rpc/limit"
	"github.com/iapd/iapd/rpc/portal"
)

// abuseLimits are the abuse limits of the public listener (issue 13):
// the limits section, the client address header shared by every limit
// keyed by address (the portal's too), and the reporter every refusal
// goes through (iap_refusals_total{reason} and a rate-limited warning).
type abuseLimits struct {
	cfg    limit.Config
	header string // the trusted client address header; "" the peer
	report *limit.Reporter
	log    *slog.Logger
	hinted atomic.Bool
}

var headerNameRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

// newAbuseLimits reads the limits section and the client address header:
// client_ip_header, or the portal's own client_ip_header (older
// configurations); both set and different is an error.
func newAbuseLimits(cfg Config, m limit.Counter, log *slog.Logger) (*abuseLimits, error) {
	a := &abuseLimits{log: log}
	if err := cfg.Limits.Decode(&a.cfg); err != nil {
		return nil, fmt.Errorf("limits: %w", err)
	}
	if err := a.cfg.Validate(); err != nil {
		return nil, err
	}
	var pc portal.Config
	if err := cfg.Portal.Decode(&pc); err != nil {
		return nil, fmt.Errorf("portal: %w", err)
	}
	a.header = cfg.ClientIPHeader
	switch {
	case a.header == "":
		a.header = pc.ClientIPHeader
	case pc.ClientIPHeader != "" && pc.ClientIPHeader != a.header:
		return nil, fmt.Errorf("client_ip_header %q and portal.client_ip_header %q differ: set client_ip_header only", a.header, pc.ClientIPHeader)
	}
	if a.header != "" && !headerNameRE.MatchString(a.header) {
		return nil, fmt.Errorf("client_ip_header %q is not a header name", a.header)
	}
	a.report = limit.NewReporter(m, log, 0)
	return a, nil
}

// tag wraps the public handler: every request carries its client key
// (limit.Client). Without a client address header, a request that
// carries a proxy's forwarding header gets one warning: every client
// then shares the proxy's address in the limits.
func (a *abuseLimits) tag(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		limit.TagClient(ctx, a.header)
		if a.header == "" && !a.hinted.Load() {
			for _, h := range []string{"X-Forwarded-For", "X-Real-IP", "Forwarded"} {
				if len(ctx.Request.Header.Peek(h)) > 0 && a.hinted.CompareAndSwap(false, true) {
					a.log.Warn("requests carry "+h+" but client_ip_header is not set: behind a proxy, every client shares its address in the abuse limits; set client_ip_header (only behind a proxy that sets it)",
						"peer", ctx.RemoteIP().String())
					break
				}
			}
		}
		next(ctx)
	}
}

// reportLine describes the limits for the start-up report.
func (a *abuseLimits) reportLine() string {
	h := "the peer address"
	if a.header != "" {
		h = "header " + a.header
	}
	c := a.cfg
	return fmt.Sprintf("limits: client address from %s; accounts %s per address, %s per database, %s in total; trials %s per address, %s in total; alert e-mails %d recipients, %s per account, %s per recipient",
		h, c.AccountsPerAddress, c.AccountsPerDatabase, c.AccountsTotal, c.TrialsPerAddress, c.TrialsTotal,
		c.AlertRecipients, c.AlertEmailsPerAccount, c.AlertEmailsPerRecipient)
}
