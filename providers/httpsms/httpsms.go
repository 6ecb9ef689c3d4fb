// Package httpsms is the generic HTTP SMS gateway adapter (type "http"):
// each message is one HTTP request built from templates (method, URL,
// query, headers, form or JSON body, with {{to}}, {{text}}, {{dlr_url}}…
// placeholders), its success told by the status and optionally a body
// regexp, the gateway's message id optionally extracted by a regexp.
// Delivery reports arrive on a callback URL carrying a shared secret
// (compared in constant time). The "kannel" preset fills everything for
// Kannel's sendsms interface and its DLR URL escapes (%d, %A).
//
// It imports providers, providers/vendorhttp and the standard
// library.
package httpsms

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/vendorhttp"
)

// Type is the adapter type in the configuration.
const Type = "http"

func init() { providers.Register(Type, New) }

// Config is the configuration of an http instance.
//
// Kannel:
//
//	providers:
//	  kannel:
//	    type: http
//	    preset: kannel
//	    url: http://kannel.internal:13013/cgi-bin/sendsms
//	    username: iapd
//	    password: ${KANNEL_PASSWORD}
//	    from: iapd
//	    dlr: {secret: ${KANNEL_DLR_SECRET}}
//
// Any JSON gateway:
//
//	providers:
//	  gateway:
//	    type: http
//	    method: POST
//	    url: https://sms.example.net/api/v1/messages
//	    headers: {Authorization: "Bearer {{password}}"}
//	    password: ${GATEWAY_TOKEN}
//	    json: '{"to":"{{to}}","from":"{{from}}","text":"{{text}}","ref":"{{id}}","callback":"{{dlr_url}}"}'
//	    success_status: [201]
//	    id_regexp: '"id":"([^"]+)"'
//	    dlr: {secret: ${GATEWAY_DLR_SECRET}, id_param: ref, status_param: state,
//	          statuses: {DELIVERED: delivered, FAILED: undelivered, EXPIRED: expired}}
type Config struct {
	// Preset fills the fields left empty with a gateway's defaults:
	// "kannel" (sendsms GET, DLR mask 31, Kannel's DLR types).
	Preset string `yaml:"preset"`
	// Method is the HTTP method; default GET without a body, POST with.
	Method string `yaml:"method"`
	// URL is the request URL template; placeholder values are
	// query-escaped in it.
	URL string `yaml:"url"`
	// Query adds fields to the URL query (templates, raw values; a field
	// that renders empty is left out).
	Query map[string]string `yaml:"query"`
	// Headers are request headers (templates).
	Headers map[string]string `yaml:"headers"`
	// Form is a form-encoded body (templates; empty fields left out).
	Form map[string]string `yaml:"form"`
	// JSON is a JSON body template: placeholders go inside string
	// literals and are JSON-escaped.
	JSON string `yaml:"json"`
	// Username and Password are the gateway credentials, used as
	// {{username}} and {{password}}, or as HTTP basic auth with BasicAuth.
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
	BasicAuth bool   `yaml:"basic_auth"`
	// From is the default sender, {{from}}; SMS.Sender overrides it when UseSender is set.
	From string `yaml:"from"`
	// UseSender sends with SMS.Sender (the Odoo account's sender name)
	// when one is given; default false: always the configured sender
	// (alphanumeric sender ids need the vendor's and the country's
	// consent).
	UseSender bool `yaml:"use_sender"`
	// SuccessStatus lists the statuses that mean accepted; default any
	// 2xx. Other 2xx answers are Indeterminate, other statuses are
	// Unavailable (401, 403, 408, 429, 5xx) or Invalid (other 4xx).
	SuccessStatus []int `yaml:"success_status"`
	// SuccessBody, if set, must match the answer for it to be accepted;
	// a success status whose body does not match is Indeterminate.
	SuccessBody string `yaml:"success_body"`
	// IDRegexp extracts the gateway's message id from the answer (first
	// group); the delivery reports must then carry that id. Without it,
	// the id is iapd's own (SMS.ID), which {{dlr_url}} carries.
	IDRegexp string `yaml:"id_regexp"`
	// Timeout bounds each request; default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// Concurrency is how many messages are sent at once; default 4.
	Concurrency int `yaml:"concurrency"`
	// DLR configures delivery reports; without a secret there are none.
	DLR DLRConfig `yaml:"dlr"`
}

// DLRConfig is the delivery-report callback of an http instance.
type DLRConfig struct {
	// Secret authenticates the callbacks: {{dlr_url}} carries it in
	// SecretParam, and a callback without it is refused (403). At least
	// 16 characters.
	Secret      string `yaml:"secret"`
	SecretParam string `yaml:"secret_param"` // default "token"
	// IDParam, StatusParam and CodeParam name the callback's fields
	// (query or form): defaults "id", "status", none.
	IDParam     string `yaml:"id_param"`
	StatusParam string `yaml:"status_param"`
	CodeParam   string `yaml:"code_param"`
	// Extra are fields {{dlr_url}} carries for the gateway to fill (the
	// kannel preset: status=%d, answer=%A), as literal values.
	Extra map[string]string `yaml:"extra"`
	// Statuses maps the gateway's status values to delivered,
	// undelivered, expired, rejected or accepted; others are ignored.
	Statuses map[string]string `yaml:"statuses"`
}

// kannel is the preset for Kannel's sendsms interface: text in UTF-8 with
// coding 0 (GSM 7-bit) or 2 (UCS-2), DLR mask 31 (1 delivered to phone, 2
// non-delivered to phone, 4 queued on SMSC, 8 delivered to SMSC, 16
// non-delivered to SMSC), dlr-url with %d (the DLR type) and %A (the
// SMSC's answer); sendsms answers "0: Accepted for delivery" or "3:
// Queued for later delivery" with HTTP 202.
func (c *Config) kannel() {
	if c.Method == "" {
		c.Method = http.MethodGet
	}
	if c.Query == nil {
		c.Query = map[string]string{
			"username": "{{username}}", "password": "{{password}}",
			"from": "{{from}}", "to": "{{to}}", "text": "{{text}}",
			"charset": "UTF-8", "coding": "{{coding}}",
			"dlr-mask": "31", "dlr-url": "{{dlr_url}}",
		}
	}
	if c.SuccessStatus == nil {
		c.SuccessStatus = []int{200, 202}
	}
	if c.SuccessBody == "" {
		c.SuccessBody = `^[03]: `
	}
	if c.DLR.StatusParam == "" {
		c.DLR.StatusParam = "status"
	}
	if c.DLR.CodeParam == "" {
		c.DLR.CodeParam = "answer"
	}
	if c.DLR.Extra == nil {
		c.DLR.Extra = map[string]string{"status": "%d", "answer": "%A"}
	}
	if c.DLR.Statuses == nil {
		c.DLR.Statuses = map[string]string{"1": "delivered", "2": "undelivered", "4": "accepted", "8": "accepted", "16": "rejected"}
	}
}

// compiled is a Config's templates and regexps, parsed.
type compiled struct {
	url       template
	query     map[string]template
	headers   map[string]template
	form      map[string]template
	json      *template
	success   *regexp.Regexp
	id        *regexp.Regexp
	usesDLR   bool
	host      string // the URL's host, for Hosts
	statusMap map[string]providers.SMSStatus
}

// Validate checks c, applies its preset and fills defaults. Its errors
// never hold secrets.
func (c *Config) Validate() error {
	_, err := c.compile()
	return err
}

func (c *Config) compile() (*compiled, error) {
	switch c.Preset {
	case "":
	case "kannel":
		c.kannel()
	default:
		return nil, fmt.Errorf("preset: %q is not kannel", c.Preset)
	}
	if c.Form != nil && c.JSON != "" {
		return nil, errors.New("form and json: one body only")
	}
	hasBody := c.Form != nil || c.JSON != ""
	if c.Method == "" {
		c.Method = http.MethodGet
		if hasBody {
			c.Method = http.MethodPost
		}
	}
	c.Method = strings.ToUpper(c.Method)
	switch c.Method {
	case http.MethodGet:
		if hasBody {
			return nil, errors.New("method GET with a body")
		}
	case http.MethodPost, http.MethodPut:
	default:
		return nil, fmt.Errorf("method: %q is not GET, POST or PUT", c.Method)
	}
	var cc compiled
	var err error
	if cc.url, err = parseTemplate("url", c.URL); err != nil {
		return nil, err
	}
	sample := cc.url.render(sampleValues, queryEscape)
	if u, err := url.Parse(sample); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("url: want an http(s) URL")
	} else {
		cc.host = u.Host
	}
	parseMap := func(what string, m map[string]string) (map[string]template, error) {
		out := map[string]template{}
		for k, v := range m {
			t, err := parseTemplate(what+"."+k, v)
			if err != nil {
				return nil, err
			}
			out[k] = t
		}
		return out, nil
	}
	if cc.query, err = parseMap("query", c.Query); err != nil {
		return nil, err
	}
	if cc.headers, err = parseMap("headers", c.Headers); err != nil {
		return nil, err
	}
	for k := range c.Headers {
		if http.CanonicalHeaderKey(k) == "" || strings.ContainsAny(k, " :\r\n") {
			return nil, fmt.Errorf("headers: bad name %q", k)
		}
	}
	if cc.form, err = parseMap("form", c.Form); err != nil {
		return nil, err
	}
	if c.JSON != "" {
		t, err := parseTemplate("json", c.JSON)
		if err != nil {
			return nil, err
		}
		if !jsonValid(t.render(sampleValues, jsonString)) {
			return nil, errors.New("json: the template is not valid JSON once filled (placeholders go inside string literals)")
		}
		cc.json = &t
	}
	for _, s := range c.SuccessStatus {
		if s < 100 || s > 599 {
			return nil, fmt.Errorf("success_status: %d is not an HTTP status", s)
		}
	}
	if c.SuccessBody != "" {
		if cc.success, err = regexp.Compile(c.SuccessBody); err != nil {
			return nil, fmt.Errorf("success_body: %v", err)
		}
	}
	if c.IDRegexp != "" {
		if cc.id, err = regexp.Compile(c.IDRegexp); err != nil {
			return nil, fmt.Errorf("id_regexp: %v", err)
		}
		if cc.id.NumSubexp() < 1 {
			return nil, errors.New("id_regexp: needs a group for the id")
		}
	}
	if err := vendorhttp.CheckLimits(&c.Timeout, &c.Concurrency); err != nil {
		return nil, err
	}
	cc.usesDLR = cc.url.uses("dlr_url") || c.JSON != "" && cc.json.uses("dlr_url")
	for _, m := range []map[string]template{cc.query, cc.headers, cc.form} {
		for _, t := range m {
			cc.usesDLR = cc.usesDLR || t.uses("dlr_url")
		}
	}
	d := &c.DLR
	if d.Secret != "" && len(d.Secret) < 16 {
		return nil, errors.New("dlr.secret: at least 16 characters")
	}
	if d.SecretParam == "" {
		d.SecretParam = "token"
	}
	if d.IDParam == "" {
		d.IDParam = "id"
	}
	if d.StatusParam == "" {
		d.StatusParam = "status"
	}
	cc.statusMap = map[string]providers.SMSStatus{}
	for k, v := range d.Statuses {
		switch s := providers.SMSStatus(v); s {
		case providers.SMSDelivered, providers.SMSUndelivered, providers.SMSExpired, providers.SMSRejected, providers.SMSAccepted:
			cc.statusMap[k] = s
		default:
			return nil, fmt.Errorf("dlr.statuses: %q → %q is not delivered, undelivered, expired, rejected or accepted", k, v)
		}
	}
	if d.Secret != "" && len(cc.statusMap) == 0 {
		return nil, errors.New("dlr.statuses: needed with dlr.secret")
	}
	for _, k := range []string{d.SecretParam, d.IDParam} {
		if _, clash := d.Extra[k]; clash {
			return nil, fmt.Errorf("dlr.extra: %q is reserved", k)
		}
	}
	return &cc, nil
}

var sampleValues = map[string]string{
	"to": "+32470123456", "to_digits": "32470123456", "from": "iapd", "text": "a \"quoted\" {text} & more\n",
	"id": "0a1b", "dlr_url": "https://iapd.example.com/x?a=1&b=%d", "username": "u", "password": "p", "coding": "0",
}

// HTTP is an http instance.
type HTTP struct {
	name string
	cfg  Config
	cc   *compiled
	http *http.Client
	log  *slog.Logger
	sink providers.DeliverySink
}

// New is the factory registered for type "http".
func New(cfg providers.Config, deps providers.Deps) (providers.Provider, error) {
	var c Config
	if err := cfg.Decode(&c); err != nil {
		return nil, err
	}
	cc, err := c.compile()
	if err != nil {
		return nil, err
	}
	h := &HTTP{name: cfg.Name, cfg: c, cc: cc, http: deps.HTTP, log: deps.Logger}
	if cc.usesDLR && c.DLR.Secret == "" {
		h.log.Warn("the request templates use {{dlr_url}} but dlr.secret is not set: no delivery reports")
	}
	return h, nil
}

// Name implements providers.Provider.
func (h *HTTP) Name() string { return h.name }

// Type implements providers.Provider.
func (h *HTTP) Type() string { return Type }

// Close implements providers.Provider.
func (h *HTTP) Close() error { return nil }

// SendSMS implements providers.SMSSender: one request per message,
// Concurrency at a time. Failures: a number that is not E.164 or an empty
// body → Invalid without a request; a status not in success_status → per
// vendorhttp.ClassifyStatus (401, 403, 408, 429, 5xx Unavailable, other
// 4xx Invalid); a success status whose body does not match success_body
// or id_regexp, or a timeout after sending → Indeterminate; connection
// failures → Unavailable.
func (h *HTTP) SendSMS(ctx context.Context, msgs []providers.SMS) ([]providers.SMSResult, error) {
	return vendorhttp.SendEach(ctx, h.name, msgs, h.cfg.Concurrency, h.send), nil
}

func (h *HTTP) send(ctx context.Context, m providers.SMS) providers.SMSResult {
	if r, bad := vendorhttp.CheckSMS(h.name, m); bad {
		return r
	}
	fail := func(k providers.Kind, code, msg string) providers.SMSResult {
		return vendorhttp.Fail(h.name, k, code, msg)
	}
	id := m.ID
	if id == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	req, err := h.request(m, id)
	if err != nil {
		return fail(providers.Invalid, "", err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	resp, perr := vendorhttp.Do(ctx, h.http, h.name, req)
	if perr != nil {
		h.log.Warn("gateway send failed", "to", vendorhttp.Phone(m.To), "kind", perr.Kind.String(), "err", perr.Error())
		return providers.SMSResult{Err: perr}
	}
	ok := resp.Status/100 == 2
	if len(h.cfg.SuccessStatus) > 0 {
		ok = slices.Contains(h.cfg.SuccessStatus, resp.Status)
	}
	if !ok {
		if resp.Status/100 == 2 {
			return fail(providers.Indeterminate, fmt.Sprint(resp.Status), fmt.Sprintf("HTTP %d is not a configured success status", resp.Status))
		}
		k := vendorhttp.ClassifyStatus(resp.Status)
		h.log.Warn("gateway refused", "to", vendorhttp.Phone(m.To), "http_status", resp.Status, "kind", k.String())
		return fail(k, fmt.Sprint(resp.Status), fmt.Sprintf("HTTP %d: %s", resp.Status, excerpt(resp.Body, h.secrets())))
	}
	if h.cc.success != nil && !h.cc.success.Match(resp.Body) {
		return fail(providers.Indeterminate, "", "answer does not match success_body: "+excerpt(resp.Body, h.secrets()))
	}
	pid := id
	if h.cc.id != nil {
		sm := h.cc.id.FindSubmatch(resp.Body)
		if sm == nil || len(sm[1]) == 0 {
			return fail(providers.Indeterminate, "", "accepted, but id_regexp found no id")
		}
		pid = string(sm[1])
	}
	h.log.Debug("gateway accepted", "to", vendorhttp.Phone(m.To), "id", pid)
	return providers.SMSResult{ProviderID: pid, Status: providers.SMSAccepted}
}

// request builds the gateway request for m.
func (h *HTTP) request(m providers.SMS, id string) (*http.Request, error) {
	from := h.cfg.From
	if m.Sender != "" && h.cfg.UseSender {
		from = m.Sender
	}
	coding := "0"
	if !vendorhttp.IsGSM7(m.Body) {
		coding = "2"
	}
	vals := map[string]string{
		"to": m.To, "to_digits": strings.TrimPrefix(m.To, "+"), "from": from, "text": m.Body, "id": id,
		"dlr_url": h.dlrURL(m.StatusURL, id), "username": h.cfg.Username, "password": h.cfg.Password, "coding": coding,
	}
	u, err := url.Parse(h.cc.url.render(vals, queryEscape))
	if err != nil {
		return nil, errors.New("the url template gives an invalid URL for this message")
	}
	if len(h.cc.query) > 0 {
		q := u.Query()
		for k, t := range h.cc.query {
			if v := t.render(vals, raw); v != "" {
				q.Set(k, v)
			}
		}
		u.RawQuery = q.Encode()
	}
	var body string
	ctype := ""
	switch {
	case h.cc.json != nil:
		body, ctype = h.cc.json.render(vals, jsonString), "application/json"
	case h.cfg.Form != nil:
		f := url.Values{}
		for k, t := range h.cc.form {
			if v := t.render(vals, raw); v != "" {
				f.Set(k, v)
			}
		}
		body, ctype = f.Encode(), "application/x-www-form-urlencoded"
	}
	var req *http.Request
	if ctype == "" {
		req, err = http.NewRequest(h.cfg.Method, u.String(), nil)
	} else {
		req, err = http.NewRequest(h.cfg.Method, u.String(), strings.NewReader(body))
	}
	if err != nil {
		return nil, errors.New("cannot build the request")
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, t := range h.cc.headers {
		v := t.render(vals, raw)
		if strings.ContainsAny(v, "\r\n") {
			return nil, fmt.Errorf("header %s would hold a line break", k)
		}
		req.Header.Set(k, v)
	}
	if h.cfg.BasicAuth {
		req.SetBasicAuth(h.cfg.Username, h.cfg.Password)
	}
	return req, nil
}

// dlrURL is the delivery-report URL for a message: the status URL with
// the secret, the id (unless the gateway reports its own) and the extra
// fields. Empty without a status URL or a secret.
func (h *HTTP) dlrURL(statusURL, id string) string {
	d := h.cfg.DLR
	if statusURL == "" || d.Secret == "" {
		return ""
	}
	// Query built by hand: url.Values would escape Kannel's "%d" into
	// "%25d", which Kannel then does not recognise. Keys are sorted.
	pairs := []string{url.QueryEscape(d.SecretParam) + "=" + url.QueryEscape(d.Secret)}
	if h.cc.id == nil {
		pairs = append(pairs, url.QueryEscape(d.IDParam)+"="+url.QueryEscape(id))
	}
	keys := make([]string, 0, len(d.Extra))
	for k := range d.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		pairs = append(pairs, url.QueryEscape(k)+"="+d.Extra[k])
	}
	sep := "?"
	if strings.Contains(statusURL, "?") {
		sep = "&"
	}
	return statusURL + sep + strings.Join(pairs, "&")
}

func (h *HTTP) secrets() []string {
	return []string{h.cfg.Password, h.cfg.Username, h.cfg.DLR.Secret}
}

// excerpt is the start of a gateway answer for an error message, with
// any credential the gateway may have echoed masked.
func excerpt(b []byte, secrets []string) string {
	s := strings.ToValidUTF8(string(b), "?")
	if len(s) > 200 {
		s = s[:200]
	}
	for _, x := range secrets {
		if x != "" {
			s = strings.ReplaceAll(s, x, "***")
		}
	}
	return strings.TrimSpace(s)
}

// Hosts implements providers.Endpoints: the API host.
func (h *HTTP) Hosts() []string { return []string{h.cc.host} }

// Interface guards.
var (
	_ providers.SMSSender        = (*HTTP)(nil)
	_ providers.DeliveryReporter = (*HTTP)(nil)
	_ providers.Endpoints        = (*HTTP)(nil)
)
