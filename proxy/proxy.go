package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/rpc/fallback"
	"github.com/iapd/iapd/storage"
)

// Outcomes of a forwarded request: the outcome label of
// iap_upstream_requests_total and AuditRecord.Outcome.
const (
	OutcomeOK          = "ok"             // a result passed through
	OutcomeRPCError    = "rpc_error"      // an error envelope passed through unchanged
	OutcomeTimeout     = "timeout"        // no full answer within the route's timeout
	OutcomeUnavailable = "unavailable"    // no connection, or lost before the answer
	OutcomeHTTPError   = "http_error"     // the upstream answered a status other than 2xx
	OutcomeInvalid     = "invalid_answer" // an answer Odoo could not read (§1.2, §1.3)
	OutcomeTooLarge    = "too_large"      // the request or the answer is over MaxBodyBytes
	OutcomeLoop        = "loop"           // the request came from an iapd already (upstream.hosts point back at iapd)
	OutcomeCanceled    = "canceled"       // the client went away, or iapd stopped, before the answer
)

// viaToken marks the requests iapd forwards (header Via), so that one
// that comes back (Odoo's names redirected to iapd in iapd's own DNS) is
// not forwarded again.
const viaToken = "iapd"

// Outcomes lists every outcome of a forwarded request.
func Outcomes() []string {
	return []string{OutcomeOK, OutcomeRPCError, OutcomeTimeout, OutcomeUnavailable, OutcomeHTTPError, OutcomeInvalid, OutcomeTooLarge, OutcomeLoop, OutcomeCanceled}
}

// RouteUnknown is the route label of a forwarded path no route serves.
const RouteUnknown = "unknown"

// ErrorWriter writes Odoo's error envelope through the one error table
// (*rpc.Server implements it).
type ErrorWriter interface {
	// AppendErrorEnvelope appends the envelope for err, a *storage.Error
	// whose kind picks error.data.name; id is the raw JSON id to echo.
	AppendErrorEnvelope(b, id []byte, route string, err error) []byte
}

// RequestRunner gives an upstream call the request's context
// (*rpc.Server implements it).
type RequestRunner interface {
	// RunRequest calls fn with a context whose deadline is budget after
	// the request's start, cancelled at that deadline, when the client is
	// gone, or at shutdown.
	RunRequest(ctx *fasthttp.RequestCtx, budget time.Duration, fn func(context.Context))
}

// Options configure a Proxy.
type Options struct {
	Config Config
	// Routes are the routes served locally (rpc.Server.Routes), with
	// their Service, Endpoint and Timeout.
	Routes []rpc.Route
	// Modes are the configured modes by service; a service not listed is
	// Local.
	Modes map[storage.ServiceName]Mode
	// AirGapped turns every Upstream mode into Refuse and forwards
	// nothing.
	AirGapped bool
	// Lookup finds a request's route in the routes table of the server
	// Routes come from (rpc.Server.Lookup), which notes it on the request
	// for Front and the router: the path is looked up once. Nil: the
	// proxy looks the path up in its own copy.
	Lookup func(*fasthttp.RequestCtx) *rpc.Served
	// Pages reports whether a local page or callback answers a path
	// (rpc.Server.HasPage): such a path is never forwarded as unknown.
	// Nil: none.
	Pages func(path []byte) bool
	// Transport carries the requests to Odoo's hosts (outbound.NewOutbound);
	// required unless nothing is forwarded.
	Transport http.RoundTripper
	// Errors writes the error envelopes. Required.
	Errors ErrorWriter
	// Requests gives each upstream call its request's context (deadline,
	// client gone, shutdown); nil: a timeout alone bounds it.
	Requests RequestRunner
	// Registerer receives the proxy's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Audit receives one record per forwarded request; nil: none.
	Audit  *Audit
	Logger *slog.Logger
	Now    func() time.Time
}

// Proxy is the per-route decision in front of the local handler. Safe
// for concurrent use.
type Proxy struct {
	cfg       Config
	airGapped bool
	routes    map[string]*entry
	byIndex   []*entry // by position in Options.Routes (rpc.Served.Index)
	lookup    func(*fasthttp.RequestCtx) *rpc.Served
	order     []string
	anyUp     bool // some service is forwarded
	anyOff    bool // some service is forwarded or refused (the account routes then read their params)
	modes     map[storage.ServiceName]Mode
	rt        http.RoundTripper
	pages     func([]byte) bool
	errs      ErrorWriter
	runner    RequestRunner
	audit     *Audit
	log       *slog.Logger
	now       func() time.Time

	requests  *prometheus.CounterVec
	durations *prometheus.HistogramVec
	refusals  *prometheus.CounterVec
}

// entry is the decision for one route.
type entry struct {
	route      rpc.Route
	label      string // route label
	service    string // service label
	configured Mode
	mode       Mode // effective: air-gapped turns Upstream into Refuse
	byService  bool // /iap/1/balance: the mode of params.service_name
	split      bool // /iap/1/get-accounts-information: each account by its service
	combine    combineKind
	role       Role
	base       string
	timeout    time.Duration
	answer     fallback.Answer // the route's own (Route.Answer); zero for unknown paths
}

// balancePath is the account route whose mode follows the service it
// names (§4.1).
const balancePath = "/iap/1/balance"

// New builds a Proxy.
func New(o Options) (*Proxy, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	if o.Errors == nil {
		return nil, errors.New("proxy: Options.Errors is required")
	}
	p := &Proxy{
		cfg:       o.Config,
		airGapped: o.AirGapped,
		routes:    map[string]*entry{},
		modes:     map[storage.ServiceName]Mode{},
		rt:        o.Transport,
		lookup:    o.Lookup,
		pages:     o.Pages,
		errs:      o.Errors,
		runner:    o.Requests,
		audit:     o.Audit,
		log:       o.Logger,
		now:       o.Now,
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	for s, m := range o.Modes {
		if _, err := ParseMode(string(m)); err != nil {
			return nil, fmt.Errorf("services.%s: %w", s, err)
		}
		p.modes[s] = m
		if m == Upstream && !o.AirGapped {
			p.anyUp = true
		}
		if m != Local {
			p.anyOff = true
		}
	}
	for _, r := range o.Routes {
		path := string(rpc.NormalizePath([]byte(r.Path)))
		e := &entry{route: r, label: path, service: string(r.Service), role: RoleOf(r), configured: Local, answer: r.Answer}
		p.byIndex = append(p.byIndex, e)
		e.base = p.cfg.BaseURL(e.role)
		e.timeout = r.Timeout
		if e.timeout == 0 {
			e.timeout = rpc.DefaultTimeout
		}
		if t, ok := p.cfg.Timeouts[path]; ok {
			e.timeout = t
		}
		if r.Service != "" {
			e.configured = p.modeOf(r.Service)
		}
		e.mode = p.effective(e.configured)
		switch {
		case path == balancePath && p.anyOff:
			e.byService = true
		case path == accountsInfoPath && p.anyOff:
			e.split = true
		case combines[path] == combineList && p.anyOff, combines[path] == combineWrite && p.anyUp:
			e.combine = combines[path]
		}
		if e.service == "" {
			e.service = "-"
		}
		if p.routes[path] == nil {
			p.order = append(p.order, path)
		}
		p.routes[path] = e
	}
	if (p.anyUp || p.forwardUnknown()) && p.rt == nil {
		return nil, errors.New("proxy: a Transport is required to forward")
	}
	if err := p.register(o.Registerer); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Proxy) forwardUnknown() bool { return p.cfg.ForwardUnknown && !p.airGapped }

func (p *Proxy) modeOf(s storage.ServiceName) Mode {
	if m, ok := p.modes[s]; ok {
		return m
	}
	return Local
}

func (p *Proxy) effective(m Mode) Mode {
	if m == Upstream && p.airGapped {
		return Refuse
	}
	return m
}

func (p *Proxy) register(reg prometheus.Registerer) error {
	p.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "iap_upstream_requests_total",
		Help: "Requests forwarded to Odoo's IAP hosts, by service, route and outcome (ok, rpc_error, timeout, unavailable, http_error, invalid_answer, too_large, loop, canceled).",
	}, []string{"service", "route", "outcome"})
	p.durations = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "iap_upstream_request_duration_seconds",
		Help:    "Time from forwarding a request to Odoo's IAP host to having its answer (or giving up), by service and route.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300},
	}, []string{"service", "route"})
	p.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "iap_refused_requests_total",
		Help: "Requests answered with a refusal because their service is in mode refuse (or upstream while air-gapped), by service and route.",
	}, []string{"service", "route"})
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{p.requests, p.durations, p.refusals} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("proxy metrics: %w", err)
		}
	}
	return nil
}

// Wrap returns next with the proxy in front: a POST to a route whose
// service is forwarded or refused is answered here; everything else (local
// routes, pages, unknown paths not forwarded) goes to next. A local route
// costs a path normalisation and a map lookup, which the router then
// reuses (Options.Lookup).
func (p *Proxy) Wrap(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if !ctx.IsPost() {
			next(ctx)
			return
		}
		e, path := p.find(ctx)
		if e == nil {
			next(ctx)
			return
		}
		switch {
		case (e.split || e.combine != combineNone) && e.route.MaxBody > 0 && len(ctx.PostBody()) > e.route.MaxBody:
			next(ctx) // the router refuses it before decoding anything
			return
		case e.split:
			defer p.recoverPanic(ctx)
			p.accountsInformation(ctx, e, path, next)
			return
		case e.combine == combineList:
			defer p.recoverPanic(ctx)
			p.servicesToken(ctx, e, path, next)
			return
		case e.combine == combineWrite:
			defer p.recoverPanic(ctx)
			p.alertSettings(ctx, e, path, next)
			return
		}
		mode := e.mode
		if e.byService {
			var svc storage.ServiceName
			if mode, svc = p.balanceMode(ctx.PostBody()); mode != Local {
				be := *e // the audit record and metrics name the service
				be.service = string(svc)
				e = &be
			}
		}
		if mode == Local {
			next(ctx)
			return
		}
		defer p.recoverPanic(ctx)
		env := decodeEnvelope(ctx.PostBody())
		if mode == Refuse {
			p.refuse(ctx, e, env)
			return
		}
		p.forward(ctx, e, path, env)
	}
}

// find returns the entry of ctx's route and its normalised path; nil
// when the request is to be answered locally as an unknown path (not
// forwarded or refused, or a local page).
func (p *Proxy) find(ctx *fasthttp.RequestCtx) (*entry, string) {
	if p.lookup != nil {
		if sv := p.lookup(ctx); sv != nil {
			if i := sv.Index(); i < len(p.byIndex) && p.byIndex[i].label == sv.Path {
				return p.byIndex[i], sv.Path
			}
		}
	}
	path := rpc.NormalizePath(ctx.Path())
	if e := p.routes[string(path)]; e != nil {
		return e, e.label
	}
	return p.unknown(path), string(path)
}

// roleServices are the services whose unknown paths a role serves.
var roleServices = map[Role]storage.ServiceName{
	RoleSMS:                 storage.SMS,
	RoleSMSLegacy:           storage.SMS,
	RoleSnailmail:           storage.Snailmail,
	RolePartnerAutocomplete: storage.PartnerAutocomplete,
	RoleEnrich:              storage.Reveal,
	RoleReveal:              storage.Reveal,
}

// unknownMode is the mode of the paths of role that no route serves: its
// service's mode when that is upstream or refuse (the operator sent the
// service elsewhere, so its other paths too, e.g. a newer API version);
// else upstream with Config.ForwardUnknown, else local (answered "not
// found" by the router).
func (p *Proxy) unknownMode(role Role) (configured, effective Mode) {
	if svc, ok := roleServices[role]; ok {
		if m := p.modeOf(svc); m != Local {
			return m, p.effective(m)
		}
	}
	if p.forwardUnknown() {
		return Upstream, Upstream
	}
	return Local, Local
}

// unknown returns the entry of a path no route serves, nil when it is to
// be answered locally (not forwarded or refused, or a local page).
func (p *Proxy) unknown(path []byte) *entry {
	role, timeout, ok := roleOfPath(string(path))
	if !ok {
		return nil
	}
	configured, mode := p.unknownMode(role)
	if mode == Local || (p.pages != nil && p.pages(path)) {
		return nil
	}
	svc := string(role)
	if s, ok := roleServices[role]; ok {
		svc = string(s)
	}
	e := &entry{label: RouteUnknown, service: svc, configured: configured, mode: mode, role: role,
		base: p.cfg.BaseURL(role), timeout: timeout}
	if t, ok := p.cfg.Timeouts[string(path)]; ok {
		e.timeout = t
	}
	return e
}

// balanceMode is the mode of the service a balance request names, and
// that service; Local when it names none or one served locally. A refused
// service's balance is 0, answered here (never an error on this route,
// §4.1).
func (p *Proxy) balanceMode(body []byte) (Mode, storage.ServiceName) {
	var env struct {
		Params struct {
			ServiceName string `json:"service_name"`
		} `json:"params"`
	}
	if json.Unmarshal(body, &env) != nil {
		return Local, ""
	}
	svc := storage.ServiceName(env.Params.ServiceName)
	return p.effective(p.modeOf(svc)), svc
}

// envelope is what the proxy reads of a request.
type envelope struct {
	id      []byte // raw JSON id; nil: null
	params  json.RawMessage
	account string // hashed account token, "" if none
}

func decodeEnvelope(body []byte) envelope {
	var env struct {
		ID     json.RawMessage `json:"id"`
		Params json.RawMessage `json:"params"`
	}
	if json.Unmarshal(body, &env) != nil {
		return envelope{}
	}
	out := envelope{params: env.Params}
	if string(env.ID) != "null" {
		out.id = env.ID
	}
	var tok struct {
		AccountToken string `json:"account_token"`
	}
	if json.Unmarshal(env.Params, &tok) == nil && tok.AccountToken != "" {
		if t, _, err := rpc.ParseAccountToken("proxy", "account_token", tok.AccountToken); err == nil {
			out.account = rpc.HashedToken(t)
		}
	}
	return out
}

// refusalText is what the Odoo user reads (where the client shows text).
func (p *Proxy) refusalText(e *entry) string {
	svc := e.service
	if svc == "-" {
		svc = string(e.role)
	}
	if p.airGapped && e.configured == Upstream {
		return fmt.Sprintf("This IAP server runs air-gapped: the %s service is not served here and nothing is forwarded to Odoo. Ask your administrator to serve it locally.", svc)
	}
	return fmt.Sprintf("The %s service is turned off on this IAP server. Ask your administrator to enable it (or to point the database back to Odoo's IAP).", svc)
}

func (p *Proxy) refuse(ctx *fasthttp.RequestCtx, e *entry, env envelope) {
	p.refusals.WithLabelValues(e.service, e.label).Inc()
	msg := p.refusalText(e)
	if res, ok := e.answer.InBand(env.params, true, msg); ok {
		writeJSON(ctx, rpc.AppendResultEnvelope(nil, env.id, res))
		return
	}
	writeJSON(ctx, p.errs.AppendErrorEnvelope(nil, env.id, e.label, storage.E("proxy", storage.Forbidden, msg)))
}

// fail answers a request that could not be forwarded or whose answer
// cannot be passed on: the outage answer of the route's class — in-band
// per item where the client expects states (the route's Answer), else the error
// envelope of kind Unavailable, which rpc's table names AccessError on
// the account routes (an unreachable IAP, §4) and UserError elsewhere.
func (p *Proxy) fail(ctx *fasthttp.RequestCtx, e *entry, env envelope, outcome string, cause error) {
	if res, ok := e.answer.InBand(env.params, false, "The IAP service could not be reached. Please try again later."); ok {
		writeJSON(ctx, rpc.AppendResultEnvelope(nil, env.id, res))
		return
	}
	if errors.Is(cause, errRequestTooLarge) {
		writeJSON(ctx, p.errs.AppendErrorEnvelope(nil, env.id, e.label, storage.E("proxy", storage.Invalid,
			fmt.Sprintf("The request is larger than this IAP server forwards (%d bytes).", p.cfg.maxBody()))))
		return
	}
	writeJSON(ctx, p.errs.AppendErrorEnvelope(nil, env.id, e.label,
		storage.Wrap("proxy "+string(e.role), storage.Unavailable, fmt.Errorf("%s: %w", outcome, cause))))
}

var errRequestTooLarge = errors.New("request over upstream.max_body_bytes")

func (p *Proxy) forward(ctx *fasthttp.RequestCtx, e *entry, path string, env envelope) {
	status, ctype, body, outcome, err := p.exchange(ctx, e, path, env, ctx.PostBody())
	switch outcome {
	case OutcomeOK:
		ctx.SetStatusCode(status)
		ctx.SetContentType(ctype)
		ctx.SetBody(body) // byte for byte
	case OutcomeRPCError:
		p.passError(ctx, e, env, status, ctype, body)
	default:
		p.fail(ctx, e, env, outcome, err)
	}
}

// passError answers an upstream error envelope: byte for byte on a
// service route (what Odoo's own server answered); on an account route
// only if it is an AccessError, any other name being answered as that
// route's outage (AccessError): 17.0–19.0 catch only AccessError there,
// an InsufficientCreditError or a UserError would break Settings, the
// account form or the alert write (§4.1, fixtures odoo18 nocredit 001–004).
func (p *Proxy) passError(ctx *fasthttp.RequestCtx, e *entry, env envelope, status int, ctype string, body []byte) {
	name := errorName(body)
	if !e.route.Account || name == "AccessError" {
		ctx.SetStatusCode(status)
		ctx.SetContentType(ctype)
		ctx.SetBody(body)
		return
	}
	writeJSON(ctx, p.errs.AppendErrorEnvelope(nil, env.id, e.label,
		storage.Wrap("proxy "+string(e.role), storage.Unavailable, fmt.Errorf("the upstream answered %q on an account route", truncate(name, 100)))))
}

// errorName is the last dotted segment of an error envelope's
// error.data.name (all Odoo reads, §1.3).
func errorName(body []byte) string {
	var env struct {
		Error struct {
			Data struct {
				Name string `json:"name"`
			} `json:"data"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &env)
	n := env.Error.Data.Name
	return n[strings.LastIndexByte(n, '.')+1:]
}

// exchange forwards reqBody, counts it and writes its audit record.
func (p *Proxy) exchange(ctx *fasthttp.RequestCtx, e *entry, path string, env envelope, reqBody []byte) (status int, ctype string, body []byte, outcome string, err error) {
	start := p.now()
	rec := AuditRecord{Time: start.UTC(), Route: truncate(path, 200), Service: e.service, Upstream: e.base,
		Account: env.account, RequestBytes: len(reqBody)}
	if e.label != RouteUnknown {
		rec.Route = e.label
	}

	// The client waits e.timeout; the upstream gets a little less, so
	// that our answer reaches the client before it gives up (§13).
	wait := e.timeout - min(time.Second, e.timeout/10)
	call := func(reqCtx context.Context) {
		rctx, cancel := upstreamContext(reqCtx, wait)
		defer cancel()
		status, ctype, body, outcome, err = p.roundTrip(rctx, ctx, e, path, reqBody)
	}
	if p.runner != nil {
		p.runner.RunRequest(ctx, wait, call)
	} else {
		call(context.Background())
	}
	d := p.now().Sub(start)
	rec.Status, rec.Outcome, rec.DurationMS, rec.ResponseBytes = status, outcome, float64(d.Microseconds())/1000, len(body)
	p.requests.WithLabelValues(e.service, e.label, outcome).Inc()
	p.durations.WithLabelValues(e.service, e.label).Observe(d.Seconds())
	if outcome != OutcomeOK && outcome != OutcomeRPCError {
		p.log.Warn("upstream failed", "route", rec.Route, "service", e.service, "upstream", e.base, "outcome", outcome, "status", status, "err", err)
	}
	if p.audit != nil {
		if err := p.audit.Write(rec); err != nil {
			p.log.Error("writing the audit log", "err", err)
		}
	}
	return status, ctype, body, outcome, err
}

// upstreamContext returns the context of one upstream call: its own (the
// HTTP transport may keep it in a background dial after the call, while
// the request's context is valid only until the call returns), ending at
// reqCtx's deadline or after wait if sooner, and cancelled when reqCtx is
// cancelled otherwise (client gone, shutdown). cancel must be called when
// the call is over.
func upstreamContext(reqCtx context.Context, wait time.Duration) (context.Context, context.CancelFunc) {
	dl := time.Now().Add(wait)
	if d, ok := reqCtx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	rctx, cancelDeadline := context.WithDeadline(context.Background(), dl)
	reqDone, over := reqCtx.Done(), make(chan struct{})
	go func() {
		select {
		case <-reqDone:
			if !errors.Is(reqCtx.Err(), context.DeadlineExceeded) {
				cancelDeadline() // the client went away or iapd is stopping
			}
		case <-over:
		}
	}()
	return rctx, func() { close(over); cancelDeadline() }
}

// roundTrip forwards the request within rctx (the route's deadline,
// cancelled when the client goes) and classifies the answer.
func (p *Proxy) roundTrip(rctx context.Context, ctx *fasthttp.RequestCtx, e *entry, path string, reqBody []byte) (status int, ctype string, body []byte, outcome string, err error) {
	if int64(len(reqBody)) > p.cfg.maxBody() {
		return 0, "", nil, OutcomeTooLarge, errRequestTooLarge
	}
	if bytes.Contains(ctx.Request.Header.Peek("Via"), []byte(viaToken)) {
		return 0, "", nil, OutcomeLoop, errors.New("the request was forwarded by an iapd: upstream.hosts (or iapd's DNS) lead back to iapd")
	}
	u := e.base + path
	if q := ctx.URI().QueryString(); len(q) > 0 {
		u += "?" + string(q)
	}
	// A copy: the transport may still be writing the body when the
	// answer came, and fasthttp reuses its buffer after the handler.
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, u, bytes.NewReader(bytes.Clone(reqBody)))
	if err != nil {
		return 0, "", nil, OutcomeUnavailable, err
	}
	ct := string(ctx.Request.Header.ContentType())
	if ct == "" {
		ct = "application/json"
	}
	req.Header.Set("Content-Type", ct)
	if ua := ctx.Request.Header.UserAgent(); len(ua) > 0 {
		req.Header.Set("User-Agent", string(ua))
	}
	req.Header.Set("Accept", "application/json, */*")
	req.Header.Set("Via", "1.1 "+viaToken)
	resp, err := p.rt.RoundTrip(req)
	if err != nil {
		return 0, "", nil, classify(rctx, err), err
	}
	defer resp.Body.Close()
	status = resp.StatusCode
	limit := p.cfg.maxAnswer()
	if resp.ContentLength > limit {
		return status, "", nil, OutcomeTooLarge, fmt.Errorf("answer of %d bytes, over %d", resp.ContentLength, limit)
	}
	body, err = io.ReadAll(io.LimitReader(resp.Body, limit+1))
	switch {
	case err != nil:
		return status, "", nil, classify(rctx, err), err
	case int64(len(body)) > limit:
		return status, "", nil, OutcomeTooLarge, fmt.Errorf("answer over %d bytes", limit)
	case status < 200 || status > 299:
		return status, "", nil, OutcomeHTTPError, fmt.Errorf("HTTP %d", status)
	}
	isErr, ok := readable(body)
	if !ok {
		return status, "", nil, OutcomeInvalid, errors.New("not a JSON-RPC answer Odoo can read")
	}
	ctype = resp.Header.Get("Content-Type")
	if ctype == "" {
		ctype = "application/json"
	}
	if isErr {
		return status, ctype, body, OutcomeRPCError, nil
	}
	return status, ctype, body, OutcomeOK, nil
}

func classify(ctx context.Context, err error) string {
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return OutcomeCanceled
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil:
		return OutcomeTimeout
	}
	return OutcomeUnavailable
}

// readable reports whether b is an answer Odoo's iap_jsonrpc can read
// (PROTOCOL §1.2–§1.3): a JSON object with a "result", or with an "error"
// object whose data.name is a string (an "error" key, even null, takes
// the error path, where a missing data or name crashes the client).
func readable(b []byte) (isError, ok bool) {
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return false, false
	}
	var env struct {
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	if json.Unmarshal(b, &env) != nil {
		return false, false
	}
	if env.Error != nil {
		var e struct {
			Data *struct {
				Name *string `json:"name"`
			} `json:"data"`
		}
		if json.Unmarshal(env.Error, &e) != nil || e.Data == nil || e.Data.Name == nil {
			return true, false
		}
		return true, true
	}
	return false, env.Result != nil
}

func writeJSON(ctx *fasthttp.RequestCtx, b []byte) {
	ctx.Response.Reset()
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

func (p *Proxy) recoverPanic(ctx *fasthttp.RequestCtx) {
	v := recover()
	if v == nil {
		return
	}
	p.log.Error("panic in the proxy", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	writeJSON(ctx, p.errs.AppendErrorEnvelope(nil, nil, "proxy", storage.E("proxy", storage.Internal, "panic")))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// PlanLine says where one route goes.
type PlanLine struct {
	Path     string `json:"path"`
	Endpoint string `json:"endpoint"` // the Odoo system parameter in front of Path
	Service  string `json:"service"`  // "-" for the account routes of iap.endpoint
	Mode     string `json:"mode"`     // local, upstream, refuse, by service_name, or the configured mode overridden
	// Destination: "iapd" (local handlers and ledger), the upstream URL,
	// or what the refused client sees.
	Destination string `json:"destination"`
}

// Plan lists every route (in the order of the routes table) with its
// mode and destination, then, when unknown paths are forwarded, one line
// per path prefix.
func (p *Proxy) Plan() []PlanLine {
	var out []PlanLine
	for _, path := range p.order {
		e := p.routes[path]
		l := PlanLine{Path: path, Endpoint: e.route.Endpoint, Service: e.service, Mode: string(e.mode)}
		if l.Endpoint == "" {
			l.Endpoint = "iap.endpoint"
		}
		switch {
		case e.byService || e.split:
			l.Mode = "by service_name"
			if e.split {
				l.Mode = "by each account's service"
			}
			ups, refs := p.servicesNotLocal()
			var parts []string
			if len(ups) > 0 {
				parts = append(parts, fmt.Sprintf("%s%s for %s", e.base, path, strings.Join(ups, ", ")))
			}
			if len(refs) > 0 {
				what := "balance 0"
				if e.split {
					what = "unregistered, balance 0"
				}
				parts = append(parts, fmt.Sprintf("%s for %s", what, strings.Join(refs, ", ")))
			}
			l.Destination = strings.Join(append(parts, "iapd otherwise"), "; ")
		case e.combine != combineNone:
			l.Mode = "combined"
			l.Destination = p.combinedDestination(e, path)
		case e.mode == Local:
			l.Destination = "iapd"
		case e.mode == Upstream:
			l.Destination = fmt.Sprintf("%s%s (timeout %s)", e.base, path, e.timeout)
		default:
			l.Destination = "refused: " + e.answer.Describe()
			if p.airGapped && e.configured == Upstream {
				l.Mode = "refuse (upstream, air-gapped)"
			}
		}
		out = append(out, l)
	}
	for _, pr := range prefixRoles {
		configured, mode := p.unknownMode(pr.role)
		if _, served := p.routes[pr.prefix]; served || mode == Local {
			continue // a served path has its own line above
		}
		svc := string(pr.role)
		if s, ok := roleServices[pr.role]; ok {
			svc = string(s)
		}
		l := PlanLine{Path: pr.prefix + "… (other paths)", Endpoint: roleParams[pr.role], Service: svc, Mode: string(mode),
			Destination: fmt.Sprintf("%s (timeout %s)", p.cfg.BaseURL(pr.role), pr.timeout)}
		if mode == Refuse {
			l.Destination = "refused: " + fallback.ErrorDoc
			if configured == Upstream {
				l.Mode = "refuse (upstream, air-gapped)"
			}
		}
		out = append(out, l)
	}
	return out
}

// servicesNotLocal returns the services forwarded upstream and those
// refused, in the mode in force (air-gapped included), each sorted.
func (p *Proxy) servicesNotLocal() (ups, refs []string) {
	for s, m := range p.modes {
		switch p.effective(m) {
		case Upstream:
			ups = append(ups, string(s))
		case Refuse:
			refs = append(refs, string(s))
		}
	}
	sort.Strings(ups)
	sort.Strings(refs)
	return ups, refs
}

// combinedDestination says where a combined route's answer comes from.
func (p *Proxy) combinedDestination(e *entry, path string) string {
	ups, refs := p.servicesNotLocal()
	if e.combine == combineWrite {
		return fmt.Sprintf("iapd and %s%s (accounts of %s); true only if both took it", e.base, path, strings.Join(ups, ", "))
	}
	d := "iapd's accounts of the local services"
	if len(ups) > 0 {
		d += fmt.Sprintf(" + %s%s's accounts of %s", e.base, path, strings.Join(ups, ", "))
	}
	if len(refs) > 0 {
		d += "; " + strings.Join(refs, ", ") + " left out"
	}
	return d
}
