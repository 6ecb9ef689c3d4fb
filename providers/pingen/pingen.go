// Package pingen is the letter provider for Pingen (pingen.com), through
// its v2 API:
//
//  1. an OAuth 2.0 client-credentials token from the identity host
//     (POST <identity_url>/auth/access-tokens), cached until shortly
//     before it expires;
//  2. a file upload: GET <api_url>/file-upload returns a pre-signed URL
//     and its signature, the PDF is PUT there (no Authorization header);
//  3. the letter: POST <api_url>/organisations/<organisation_id>/letters
//     (JSON:API, type "letters") with file_url, file_url_signature,
//     address_position, auto_send, delivery_product, print_mode
//     (simplex/duplex) and print_spectrum (color/grayscale);
//  4. webhooks (letter issues, sent, undeliverable, delivered) arrive on
//     /providers/<name>/webhook, each verified with the webhook signing
//     secret (Signature header: hex HMAC-SHA256 of the body) before it is
//     read, and are passed to the service's letter sink.
//
// Pingen has no cover-page option: it reads the recipient from the
// document's address window, so a letter asking for a cover (Odoo's
// "cover" option) is printed as the document is; if its address is not
// in the window Pingen refuses it (422, Invalid).
//
// Failure classes (providers.Kind): everything before the letter is
// created (token, upload URL, PUT of the file, a cancelled context) is
// Unavailable, whatever the answer, since no letter exists yet. The
// creation call: 400/422 → Invalid (Pingen refused the letter: a PDF not
// A4, content in the address window, an undeliverable country); 401, 403,
// 429 and 503 → Unavailable; other 5xx, a timeout or a connection lost
// after the request was written, or a 201 that cannot be read →
// Indeterminate (the letter may exist: the hold is kept).
//
// Configuration (providers.<name>):
//
//	type: pingen
//	client_id: …
//	client_secret: ${PINGEN_CLIENT_SECRET}
//	organisation_id: 9a7c…               # the organisation's UUID
//	webhook_secret: ${PINGEN_WEBHOOK_SECRET}   # the webhooks' signing secret
//	api_url: https://api.v2.pingen.com   # staging: https://api-staging.v2.pingen.com
//	identity_url: https://identity.pingen.com  # staging: https://identity-staging.pingen.com
//	delivery_product: cheap              # fast, cheap, bulk, premium, registered…
//	address_position: right              # where Odoo's layout prints the recipient
//	auto_send: true
//	upload_hosts: [bucket.s3.eu-central-1.amazonaws.com]  # air-gapped mode only
//	timeout: 20s
//
// Package pingen imports the standard library, providers and
// providers/vendorhttp.
package pingen

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/vendorhttp"
)

// Type is the adapter's type name.
const Type = "pingen"

// Production hosts.
const (
	DefaultAPIURL      = "https://api.v2.pingen.com"
	DefaultIdentityURL = "https://identity.pingen.com"
)

func init() { providers.Register(Type, New) }

// Config is the instance's settings.
type Config struct {
	ClientID       string `yaml:"client_id"`
	ClientSecret   string `yaml:"client_secret"`
	OrganisationID string `yaml:"organisation_id"`
	// WebhookSecret is the signing secret of the organisation's webhooks;
	// without it no webhook is accepted (no callback route).
	WebhookSecret string `yaml:"webhook_secret"`
	// APIURL and IdentityURL are the API and OAuth hosts (defaults:
	// production; tests point them at a local server).
	APIURL      string `yaml:"api_url"`
	IdentityURL string `yaml:"identity_url"`
	// DeliveryProduct is Pingen's postal product (default "cheap").
	DeliveryProduct string `yaml:"delivery_product"`
	// AddressPosition is "left" or "right" (default "right": Odoo's
	// layouts print the recipient on the right; "left" for DIN 5008).
	AddressPosition string `yaml:"address_position"`
	// AutoSend sends the letter once Pingen validated it (default true);
	// false leaves drafts for someone to send from Pingen's web app.
	AutoSend *bool `yaml:"auto_send"`
	// UploadHosts are the hosts of Pingen's pre-signed upload URLs, to
	// declare in air-gapped mode (providers.Endpoints).
	UploadHosts []string `yaml:"upload_hosts"`
	// Timeout bounds each API call (default 20s; Odoo waits 30s for the
	// whole print).
	Timeout time.Duration `yaml:"timeout"`
}

// Validate checks c and fills defaults. Its errors never hold secrets.
func (c *Config) Validate() error {
	if c.ClientID == "" || c.ClientSecret == "" {
		return errors.New("client_id and client_secret are required")
	}
	if c.OrganisationID == "" || strings.ContainsAny(c.OrganisationID, "/?#% ") {
		return errors.New("organisation_id: the organisation's UUID is required")
	}
	for _, u := range []*string{&c.APIURL, &c.IdentityURL} {
		if *u == "" {
			continue
		}
		p, err := url.Parse(*u)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" || p.User != nil {
			return fmt.Errorf("api_url and identity_url: want http(s) URLs without credentials, got %q", *u)
		}
		*u = strings.TrimRight(*u, "/")
	}
	if c.APIURL == "" {
		c.APIURL = DefaultAPIURL
	}
	if c.IdentityURL == "" {
		c.IdentityURL = DefaultIdentityURL
	}
	if c.DeliveryProduct == "" {
		c.DeliveryProduct = "cheap"
	}
	switch c.AddressPosition {
	case "":
		c.AddressPosition = "right"
	case "left", "right":
	default:
		return errors.New(`address_position: "left" or "right"`)
	}
	if c.AutoSend == nil {
		t := true
		c.AutoSend = &t
	}
	if c.Timeout == 0 {
		c.Timeout = 20 * time.Second
	}
	if c.Timeout < 0 {
		return errors.New("timeout: must be positive")
	}
	return nil
}

// Pingen is a pingen instance.
type Pingen struct {
	name string
	cfg  Config
	http *http.Client
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	token   string
	expires time.Time

	sinkMu sync.RWMutex
	sink   providers.LetterSink
}

// New builds an instance (the registry's factory).
func New(cfg providers.Config, deps providers.Deps) (providers.Provider, error) {
	var c Config
	if err := cfg.Decode(&c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	p := &Pingen{name: cfg.Name, cfg: c, http: deps.HTTP, log: deps.Logger, now: deps.Now}
	if p.http == nil {
		p.http = &http.Client{}
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	return p, nil
}

// Name implements providers.Provider.
func (p *Pingen) Name() string { return p.name }

// Type implements providers.Provider.
func (p *Pingen) Type() string { return Type }

// Close implements providers.Provider.
func (p *Pingen) Close() error { return nil }

// Hosts implements providers.Endpoints.
func (p *Pingen) Hosts() []string {
	return append([]string{vendorhttp.Host(p.cfg.APIURL), vendorhttp.Host(p.cfg.IdentityURL)}, p.cfg.UploadHosts...)
}

// errorDoc is a JSON:API error answer.
type errorDoc struct {
	Errors []struct {
		Code   string `json:"code"`
		Title  string `json:"title"`
		Detail string `json:"detail"`
	} `json:"errors"`
}

// vendorError builds the *providers.Error of a non-success answer (no
// secret, no body beyond Pingen's error codes and titles).
func (p *Pingen) vendorError(kind providers.Kind, step string, r *vendorhttp.Response) *providers.Error {
	e := &providers.Error{Provider: p.name, Kind: kind, Code: strconv.Itoa(r.Status), Msg: step + ": HTTP " + strconv.Itoa(r.Status)}
	var doc errorDoc
	if json.Unmarshal(r.Body, &doc) == nil && len(doc.Errors) > 0 {
		if doc.Errors[0].Code != "" {
			e.Code = doc.Errors[0].Code
		}
		e.Msg += ": " + clip(doc.Errors[0].Title+" "+doc.Errors[0].Detail, 200)
	}
	return e
}

// unavailable turns any failure before the letter exists into
// Unavailable.
func (p *Pingen) unavailable(step string, err *providers.Error) *providers.Error {
	if err.Kind == providers.Unavailable {
		err.Msg = step + ": " + err.Msg
		return err
	}
	return &providers.Error{Provider: p.name, Kind: providers.Unavailable, Code: err.Code, Msg: step + ": no letter created: " + err.Msg, Err: err.Err}
}

// accessToken returns a cached token, or gets one.
func (p *Pingen) accessToken(ctx context.Context) (string, *providers.Error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.token != "" && p.now().Before(p.expires) {
		return p.token, nil
	}
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {p.cfg.ClientID},
		"client_secret": {p.cfg.ClientSecret},
		"scope":         {"letter"},
	}
	req, err := http.NewRequest(http.MethodPost, p.cfg.IdentityURL+"/auth/access-tokens", strings.NewReader(form.Encode()))
	if err != nil {
		return "", &providers.Error{Provider: p.name, Kind: providers.Unavailable, Msg: "token request", Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, perr := p.do(ctx, req)
	if perr != nil {
		return "", p.unavailable("access token", perr)
	}
	if resp.Status != http.StatusOK {
		return "", p.unavailable("access token", p.vendorError(providers.Unavailable, "access token", resp))
	}
	var tok struct {
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(resp.Body, &tok); err != nil || tok.AccessToken == "" {
		return "", providers.Errorf(p.name, providers.Unavailable, "access token: unreadable answer")
	}
	life := time.Duration(tok.ExpiresIn) * time.Second
	// Renewed a minute early (or at half life for short tokens), so that
	// a token never expires between the check and the call.
	life -= min(time.Minute, life/2)
	p.token, p.expires = tok.AccessToken, p.now().Add(life)
	return p.token, nil
}

func (p *Pingen) dropToken(tok string) {
	p.mu.Lock()
	if p.token == tok {
		p.token = ""
	}
	p.mu.Unlock()
}

// do sends one request bounded by the configured timeout.
func (p *Pingen) do(ctx context.Context, req *http.Request) (*vendorhttp.Response, *providers.Error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	return vendorhttp.Do(ctx, p.http, p.name, req)
}

// SendLetter uploads the PDF and creates the letter; ProviderID is
// Pingen's letter id, Status accepted. See the package documentation for
// the failure classes.
func (p *Pingen) SendLetter(ctx context.Context, l providers.Letter) (providers.LetterResult, error) {
	if err := ctx.Err(); err != nil {
		return providers.LetterResult{}, &providers.Error{Provider: p.name, Kind: providers.Unavailable, Msg: "not sent", Err: err}
	}
	if len(l.PDF) == 0 {
		return providers.LetterResult{}, providers.Errorf(p.name, providers.Invalid, "letter without a PDF")
	}
	if l.To.Country == "" {
		return providers.LetterResult{}, providers.Errorf(p.name, providers.Invalid, "letter without a recipient country")
	}
	res, perr := p.send(ctx, l, true)
	if perr != nil {
		return providers.LetterResult{}, perr
	}
	return res, nil
}

func (p *Pingen) send(ctx context.Context, l providers.Letter, retryAuth bool) (providers.LetterResult, *providers.Error) {
	tok, perr := p.accessToken(ctx)
	if perr != nil {
		return providers.LetterResult{}, perr
	}
	fileURL, fileSig, authFailed, perr := p.upload(ctx, tok, l.PDF)
	if perr != nil {
		if authFailed && retryAuth {
			p.dropToken(tok)
			return p.send(ctx, l, false)
		}
		return providers.LetterResult{}, perr
	}

	printMode, spectrum := "simplex", "grayscale"
	if l.Duplex {
		printMode = "duplex"
	}
	if l.Color {
		spectrum = "color"
	}
	name := l.ID
	if name == "" {
		name = "letter"
	}
	body, _ := json.Marshal(map[string]any{"data": map[string]any{
		"type": "letters",
		"attributes": map[string]any{
			"file_original_name": name + ".pdf",
			"file_url":           fileURL,
			"file_url_signature": fileSig,
			"address_position":   p.cfg.AddressPosition,
			"auto_send":          *p.cfg.AutoSend,
			"delivery_product":   p.cfg.DeliveryProduct,
			"print_mode":         printMode,
			"print_spectrum":     spectrum,
		},
	}})
	req, err := http.NewRequest(http.MethodPost, p.cfg.APIURL+"/organisations/"+url.PathEscape(p.cfg.OrganisationID)+"/letters", bytes.NewReader(body))
	if err != nil {
		return providers.LetterResult{}, &providers.Error{Provider: p.name, Kind: providers.Unavailable, Msg: "letter request", Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/vnd.api+json")
	req.Header.Set("Accept", "application/vnd.api+json")
	resp, perr := p.do(ctx, req)
	if perr != nil {
		perr.Msg = "create letter: " + perr.Msg
		return providers.LetterResult{}, perr // Unavailable before sending, Indeterminate after
	}
	switch s := resp.Status; {
	case s == http.StatusCreated || s == http.StatusOK:
	case s == http.StatusUnauthorized && retryAuth:
		p.dropToken(tok)
		return p.send(ctx, l, false)
	case s == http.StatusBadRequest || s == http.StatusUnprocessableEntity:
		return providers.LetterResult{}, p.vendorError(providers.Invalid, "create letter", resp)
	case s == http.StatusUnauthorized, s == http.StatusForbidden, s == http.StatusTooManyRequests, s == http.StatusServiceUnavailable:
		return providers.LetterResult{}, p.vendorError(providers.Unavailable, "create letter", resp)
	case s >= 500:
		return providers.LetterResult{}, p.vendorError(providers.Indeterminate, "create letter", resp)
	default:
		return providers.LetterResult{}, p.vendorError(providers.Invalid, "create letter", resp)
	}
	var created struct {
		Data struct {
			ID         string `json:"id"`
			Type       string `json:"type"`
			Attributes struct {
				Status string `json:"status"`
			} `json:"attributes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(resp.Body, &created); err != nil || created.Data.ID == "" {
		return providers.LetterResult{}, providers.Errorf(p.name, providers.Indeterminate, "create letter: HTTP %d without a letter id", resp.Status)
	}
	p.log.Info("letter created", "letter", created.Data.ID, "status", created.Data.Attributes.Status, "country", l.Country, "pages", l.Pages)
	return providers.LetterResult{ProviderID: created.Data.ID, Status: providers.LetterAccepted}, nil
}

// upload gets a pre-signed upload URL and PUTs the PDF there. Every
// failure is Unavailable (no letter exists); authFailed reports a 401
// (the token needs renewing).
func (p *Pingen) upload(ctx context.Context, tok string, pdf []byte) (fileURL, sig string, authFailed bool, perr *providers.Error) {
	req, err := http.NewRequest(http.MethodGet, p.cfg.APIURL+"/file-upload", nil)
	if err != nil {
		return "", "", false, &providers.Error{Provider: p.name, Kind: providers.Unavailable, Msg: "upload request", Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/vnd.api+json")
	resp, perr := p.do(ctx, req)
	if perr != nil {
		return "", "", false, p.unavailable("file upload", perr)
	}
	if resp.Status != http.StatusOK {
		return "", "", resp.Status == http.StatusUnauthorized, p.unavailable("file upload", p.vendorError(providers.Unavailable, "file upload", resp))
	}
	var up struct {
		Data struct {
			Attributes struct {
				URL          string `json:"url"`
				URLSignature string `json:"url_signature"`
			} `json:"attributes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(resp.Body, &up); err != nil || up.Data.Attributes.URL == "" || up.Data.Attributes.URLSignature == "" {
		return "", "", false, providers.Errorf(p.name, providers.Unavailable, "file upload: unreadable answer")
	}
	u, err := url.Parse(up.Data.Attributes.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", "", false, providers.Errorf(p.name, providers.Unavailable, "file upload: not an http(s) URL")
	}
	put, err := http.NewRequest(http.MethodPut, up.Data.Attributes.URL, bytes.NewReader(pdf))
	if err != nil {
		return "", "", false, &providers.Error{Provider: p.name, Kind: providers.Unavailable, Msg: "upload request", Err: err}
	}
	put.Header.Set("Content-Type", "application/pdf")
	resp, perr = p.do(ctx, put)
	if perr != nil {
		return "", "", false, p.unavailable("PUT file", perr)
	}
	if resp.Status < 200 || resp.Status > 299 {
		e := p.unavailable("PUT file", providers.Errorf(p.name, providers.Unavailable, "HTTP %d", resp.Status))
		return "", "", false, e
	}
	return up.Data.Attributes.URL, up.Data.Attributes.URLSignature, false, nil
}

// CallbackRoutes implements providers.Callbacks: the webhook route, when
// a webhook secret is configured.
func (p *Pingen) CallbackRoutes() []providers.Callback {
	if p.cfg.WebhookSecret == "" {
		return nil
	}
	return []providers.Callback{{Path: "/providers/" + p.name + "/webhook", Handler: p.webhook}}
}

// SetLetterSink implements providers.LetterReporter.
func (p *Pingen) SetLetterSink(s providers.LetterSink) {
	p.sinkMu.Lock()
	p.sink = s
	p.sinkMu.Unlock()
}

// webhookStatus maps Pingen's webhook event categories to letter states.
var webhookStatus = map[string]providers.LetterStatus{
	"webhook_issues":        providers.LetterFailed,
	"webhook_sent":          providers.LetterSent,
	"webhook_undeliverable": providers.LetterUndeliverable,
	"webhook_delivered":     providers.LetterDelivered,
}

// Sign returns the Signature header Pingen sends with body: hex
// HMAC-SHA256 of the body under the signing secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func (p *Pingen) webhook(ctx context.Context, req *providers.CallbackRequest) providers.CallbackResponse {
	text := func(status int, s string) providers.CallbackResponse {
		return providers.CallbackResponse{Status: status, ContentType: "text/plain; charset=utf-8", Body: []byte(s)}
	}
	if req.Method != http.MethodPost {
		return text(http.StatusMethodNotAllowed, "POST only")
	}
	got := strings.TrimSpace(req.Header.Get("Signature"))
	if got == "" || !vendorhttp.Equal(strings.ToLower(got), Sign(p.cfg.WebhookSecret, req.Body)) {
		p.log.Warn("webhook with a bad signature refused", "remote", req.Remote)
		return text(http.StatusForbidden, "bad signature")
	}
	var ev struct {
		Data struct {
			ID         string `json:"id"`
			Type       string `json:"type"`
			Attributes struct {
				Reason string `json:"reason"`
			} `json:"attributes"`
			Relationships struct {
				Letter struct {
					Data struct {
						ID string `json:"id"`
					} `json:"data"`
				} `json:"letter"`
			} `json:"relationships"`
		} `json:"data"`
	}
	if err := json.Unmarshal(req.Body, &ev); err != nil {
		return text(http.StatusBadRequest, "not a JSON:API document")
	}
	status, known := webhookStatus[ev.Data.Type]
	letter := ev.Data.Relationships.Letter.Data.ID
	if !known || letter == "" {
		// An authentic event of a kind we do not track: acknowledged, so
		// that Pingen does not retry it forever.
		p.log.Info("webhook ignored", "type", clip(ev.Data.Type, 64))
		return text(http.StatusOK, "ignored")
	}
	p.sinkMu.RLock()
	sink := p.sink
	p.sinkMu.RUnlock()
	if sink != nil {
		sink(ctx, p.name, []providers.LetterReport{{ProviderID: letter, Status: status, Code: clip(ev.Data.Attributes.Reason, 200)}})
	}
	return text(http.StatusOK, "ok")
}

func clip(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n]
	}
	return s
}

var (
	_ providers.LetterSender   = (*Pingen)(nil)
	_ providers.LetterReporter = (*Pingen)(nil)
	_ providers.Endpoints      = (*Pingen)(nil)
	_ providers.Factory        = New
)
