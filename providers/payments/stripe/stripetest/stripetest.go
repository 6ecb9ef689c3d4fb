// Package stripetest runs, in process, a server that speaks the parts of
// Stripe's API the stripe adapter uses, in Stripe's shapes: Checkout
// Sessions created by a form-encoded POST /v1/checkout/sessions, read by
// GET /v1/checkout/sessions/{id} and listed by payment_intent, refunds
// (made by Refund) listed by GET /v1/refunds?payment_intent=…, answered
// as Stripe's JSON; a hosted checkout page (/pay/{id}) a browser pays on;
// and webhook events (checkout.session.completed, charge.refunded,
// charge.dispute.closed) signed as Stripe signs them and delivered to a
// webhook URL.
//
// It is for tests only; nothing in iapd's server imports it.
//
// It imports stripe-go's webhook package (for the signature).
package stripetest

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stripe/stripe-go/v82/webhook"
)

// Session is a Checkout Session as the server keeps it.
type Session struct {
	ID            string
	AmountTotal   int64
	Currency      string
	Metadata      map[string]string
	PaymentStatus string // unpaid, paid
	Status        string // open, complete
	SuccessURL    string
	CancelURL     string
	PaymentIntent string // set when paid
	ProductName   string
}

// Refund is a refund as the server keeps it.
type Refund struct {
	ID            string
	Amount        int64
	PaymentIntent string
	Status        string // succeeded, pending, failed, canceled
	Created       int64
}

// Server is the fake Stripe.
type Server struct {
	URL           string
	SecretKey     string
	WebhookSecret string

	srv *httptest.Server
	hc  *http.Client

	mu       sync.Mutex
	sessions map[string]*Session
	order    []string
	webhook  string
	creates  int
	refunds  []*Refund // oldest first
}

// New starts a server that accepts secretKey and signs events with
// webhookSecret. Close it when done.
func New(secretKey, webhookSecret string) *Server {
	s := &Server{SecretKey: secretKey, WebhookSecret: webhookSecret, sessions: map[string]*Session{},
		hc: &http.Client{Timeout: 60 * time.Second}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// SetWebhook sets where events are delivered (iapd's
// /payments/stripe/webhook).
func (s *Server) SetWebhook(u string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.webhook = u
}

// Creates is the number of sessions created.
func (s *Server) Creates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.creates
}

// Sessions returns copies of the sessions, oldest first.
func (s *Server) Sessions() []Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Session, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, *s.sessions[id])
	}
	return out
}

// Session returns a copy of one session.
func (s *Server) Session(id string) (Session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	x, ok := s.sessions[id]
	if !ok {
		return Session{}, false
	}
	return *x, true
}

func randID(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Pay marks the session paid (a PaymentIntent is made) and returns the
// checkout.session.completed event, unsigned.
func (s *Server) Pay(id string) ([]byte, error) {
	s.mu.Lock()
	x, ok := s.sessions[id]
	if ok && x.PaymentStatus != "paid" {
		x.PaymentStatus, x.Status, x.PaymentIntent = "paid", "complete", randID("pi_test_")
	}
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("stripetest: no session %s", id)
	}
	return s.SessionEvent("checkout.session.completed", id)
}

// SessionEvent returns an event of type typ whose object is the session
// as it is now.
func (s *Server) SessionEvent(typ, id string) ([]byte, error) {
	s.mu.Lock()
	x, ok := s.sessions[id]
	var obj map[string]any
	if ok {
		obj = s.sessionJSON(x)
	}
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("stripetest: no session %s", id)
	}
	return Event(typ, obj), nil
}

// Refund refunds amount (minor units) of the session's payment, as
// Stripe's POST /v1/refunds does (refused beyond what is left), and
// returns the charge.refunded event it sends: the charge with its total
// amount_refunded, refunded true once all of it is, and its refunds not
// expanded (Stripe's API since 2022-11-15).
func (s *Server) Refund(id string, amount int64) ([]byte, error) {
	x, ok := s.Session(id)
	if !ok || x.PaymentIntent == "" {
		return nil, fmt.Errorf("stripetest: session %s is not paid", id)
	}
	s.mu.Lock()
	left := x.AmountTotal - s.refundedLocked(x.PaymentIntent)
	if amount < 1 || amount > left {
		s.mu.Unlock()
		return nil, fmt.Errorf("stripetest: refund of %d asked, %d left to refund", amount, left)
	}
	s.refunds = append(s.refunds, &Refund{ID: randID("re_test_"), Amount: amount, PaymentIntent: x.PaymentIntent,
		Status: "succeeded", Created: time.Now().Unix()})
	s.mu.Unlock()
	return s.ChargeRefunded(id)
}

// ChargeRefunded returns a charge.refunded event of the session's payment
// as it is now.
func (s *Server) ChargeRefunded(id string) ([]byte, error) {
	x, ok := s.Session(id)
	if !ok || x.PaymentIntent == "" {
		return nil, fmt.Errorf("stripetest: session %s is not paid", id)
	}
	s.mu.Lock()
	refunded := s.refundedLocked(x.PaymentIntent)
	s.mu.Unlock()
	return Event("charge.refunded", map[string]any{
		"id": "ch_" + x.PaymentIntent[3:], "object": "charge", "amount": x.AmountTotal, "amount_captured": x.AmountTotal,
		"amount_refunded": refunded, "currency": x.Currency, "paid": true, "captured": true,
		"refunded": refunded == x.AmountTotal, "payment_intent": x.PaymentIntent, "status": "succeeded",
		"metadata": map[string]string{}, "livemode": false, "created": time.Now().Unix(),
	}), nil
}

// SetRefundStatus changes a refund's status (a refund that failed).
func (s *Server) SetRefundStatus(refundID, status string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.refunds {
		if r.ID == refundID {
			r.Status = status
			return true
		}
	}
	return false
}

// Refunds returns copies of the refunds of a PaymentIntent, oldest first.
func (s *Server) Refunds(paymentIntent string) []Refund {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Refund
	for _, r := range s.refunds {
		if r.PaymentIntent == paymentIntent {
			out = append(out, *r)
		}
	}
	return out
}

// refundedLocked is the amount refunded of a PaymentIntent (failed and
// cancelled refunds apart). s.mu is held.
func (s *Server) refundedLocked(pi string) int64 {
	var n int64
	for _, r := range s.refunds {
		if r.PaymentIntent == pi && r.Status != "failed" && r.Status != "canceled" {
			n += r.Amount
		}
	}
	return n
}

func refundJSON(r *Refund, currency string) map[string]any {
	return map[string]any{
		"id": r.ID, "object": "refund", "amount": r.Amount, "currency": currency, "status": r.Status,
		"payment_intent": r.PaymentIntent, "charge": "ch_" + r.PaymentIntent[3:], "created": r.Created,
		"metadata": map[string]string{}, "reason": nil,
	}
}

// listRefunds serves GET /v1/refunds?payment_intent=…: newest first,
// limit (1-100, default 10) a page, starting_after the last id seen.
func (s *Server) listRefunds(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 10
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			stripeError(w, http.StatusBadRequest, "invalid_request_error", "Invalid integer: limit")
			return
		}
		limit = n
	}
	pi, after := q.Get("payment_intent"), q.Get("starting_after")
	s.mu.Lock()
	cur := map[string]string{}
	for _, x := range s.sessions {
		if x.PaymentIntent != "" {
			cur[x.PaymentIntent] = x.Currency
		}
	}
	data, skipping := []any{}, after != ""
	hasMore := false
	for i := len(s.refunds) - 1; i >= 0; i-- {
		x := s.refunds[i]
		if pi != "" && x.PaymentIntent != pi {
			continue
		}
		if skipping {
			skipping = x.ID != after
			continue
		}
		if len(data) == limit {
			hasMore = true
			break
		}
		data = append(data, refundJSON(x, cur[x.PaymentIntent]))
	}
	s.mu.Unlock()
	writeJSON(w, map[string]any{"object": "list", "data": data, "has_more": hasMore, "url": "/v1/refunds"})
}

// Dispute returns the charge.dispute.closed event of the session's
// payment with the status (lost, won).
func (s *Server) Dispute(id, status string) ([]byte, error) {
	x, ok := s.Session(id)
	if !ok || x.PaymentIntent == "" {
		return nil, fmt.Errorf("stripetest: session %s is not paid", id)
	}
	return Event("charge.dispute.closed", map[string]any{
		"id": randID("dp_"), "object": "dispute", "amount": x.AmountTotal, "currency": x.Currency,
		"charge": "ch_" + x.PaymentIntent[3:], "payment_intent": x.PaymentIntent, "status": status,
		"reason": "fraudulent", "metadata": map[string]string{}, "livemode": false, "created": time.Now().Unix(),
	}), nil
}

// Event builds an event payload in Stripe's shape.
func Event(typ string, object map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{
		"id": randID("evt_"), "object": "event", "api_version": "2025-08-27.basil", "created": time.Now().Unix(),
		"type": typ, "livemode": false, "pending_webhooks": 1,
		"request": map[string]any{"id": nil, "idempotency_key": nil},
		"data":    map[string]any{"object": object},
	})
	return b
}

// Sign returns the Stripe-Signature header of payload signed at t with
// secret.
func Sign(payload []byte, secret string, t time.Time) string {
	return fmt.Sprintf("t=%d,v1=%s", t.Unix(), hex.EncodeToString(webhook.ComputeSignature(t, payload, secret)))
}

// Deliver posts payload, signed now with the webhook secret, to the
// webhook URL and returns the HTTP status.
func (s *Server) Deliver(payload []byte) (int, error) {
	return s.DeliverSigned(payload, Sign(payload, s.WebhookSecret, time.Now()))
}

// DeliverSigned posts payload with the given Stripe-Signature header.
func (s *Server) DeliverSigned(payload []byte, signature string) (int, error) {
	s.mu.Lock()
	u := s.webhook
	s.mu.Unlock()
	if u == "" {
		return 0, fmt.Errorf("stripetest: no webhook URL")
	}
	req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(payload))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
	if signature != "" {
		req.Header.Set("Stripe-Signature", signature)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, nil
}

func (s *Server) sessionJSON(x *Session) map[string]any {
	var pi any
	if x.PaymentIntent != "" {
		pi = x.PaymentIntent
	}
	return map[string]any{
		"id": x.ID, "object": "checkout.session", "mode": "payment", "amount_total": x.AmountTotal,
		"amount_subtotal": x.AmountTotal, "currency": x.Currency, "metadata": x.Metadata,
		"payment_status": x.PaymentStatus, "status": x.Status, "success_url": x.SuccessURL,
		"cancel_url": x.CancelURL, "url": s.URL + "/pay/" + x.ID, "payment_intent": pi,
		"livemode": false, "created": time.Now().Unix(), "client_reference_id": nil,
	}
}

func stripeError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"type": typ, "message": msg}})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/pay/") {
		s.page(w, r, strings.TrimPrefix(r.URL.Path, "/pay/"))
		return
	}
	want := "Bearer " + s.SecretKey
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(want)) != 1 {
		stripeError(w, http.StatusUnauthorized, "invalid_request_error", "Invalid API Key provided")
		return
	}
	switch {
	case r.URL.Path == "/v1/checkout/sessions" && r.Method == http.MethodPost:
		s.create(w, r)
	case r.URL.Path == "/v1/checkout/sessions" && r.Method == http.MethodGet:
		pi := r.URL.Query().Get("payment_intent")
		data := []any{}
		s.mu.Lock()
		for _, id := range s.order {
			if x := s.sessions[id]; pi != "" && x.PaymentIntent == pi {
				data = append(data, s.sessionJSON(x))
			}
		}
		s.mu.Unlock()
		writeJSON(w, map[string]any{"object": "list", "data": data, "has_more": false, "url": "/v1/checkout/sessions"})
	case r.URL.Path == "/v1/refunds" && r.Method == http.MethodGet:
		s.listRefunds(w, r)
	case strings.HasPrefix(r.URL.Path, "/v1/checkout/sessions/") && r.Method == http.MethodGet:
		id := strings.TrimPrefix(r.URL.Path, "/v1/checkout/sessions/")
		s.mu.Lock()
		x, ok := s.sessions[id]
		var obj map[string]any
		if ok {
			obj = s.sessionJSON(x)
		}
		s.mu.Unlock()
		if !ok {
			stripeError(w, http.StatusNotFound, "invalid_request_error", "No such checkout.session: '"+id+"'")
			return
		}
		writeJSON(w, obj)
	default:
		stripeError(w, http.StatusNotFound, "invalid_request_error", "Unrecognized request URL")
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// create reads the form-encoded parameters as Stripe does.
func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		stripeError(w, http.StatusBadRequest, "invalid_request_error", "form-encoded parameters expected")
		return
	}
	if err := r.ParseForm(); err != nil {
		stripeError(w, http.StatusBadRequest, "invalid_request_error", err.Error())
		return
	}
	f := r.PostForm
	amount, err := strconv.ParseInt(f.Get("line_items[0][price_data][unit_amount]"), 10, 64)
	qty := f.Get("line_items[0][quantity]")
	cur := f.Get("line_items[0][price_data][currency]")
	switch {
	case f.Get("mode") != "payment":
		stripeError(w, http.StatusBadRequest, "invalid_request_error", "Missing required param: mode.")
		return
	case err != nil || amount < 1 || qty != "1" || cur == "" || strings.ToLower(cur) != cur:
		stripeError(w, http.StatusBadRequest, "invalid_request_error", "Invalid line_items[0].")
		return
	case !absURL(f.Get("success_url")) || !absURL(f.Get("cancel_url")):
		stripeError(w, http.StatusBadRequest, "invalid_request_error", "Not a valid URL")
		return
	}
	meta := map[string]string{}
	for k, vs := range f {
		if name, ok := strings.CutPrefix(k, "metadata["); ok && strings.HasSuffix(name, "]") && len(vs) > 0 {
			if len(vs[0]) > 500 {
				stripeError(w, http.StatusBadRequest, "invalid_request_error", "Metadata values can have up to 500 characters")
				return
			}
			meta[strings.TrimSuffix(name, "]")] = vs[0]
		}
	}
	x := &Session{ID: randID("cs_test_"), AmountTotal: amount, Currency: cur, Metadata: meta,
		PaymentStatus: "unpaid", Status: "open", SuccessURL: f.Get("success_url"), CancelURL: f.Get("cancel_url"),
		ProductName: f.Get("line_items[0][price_data][product_data][name]")}
	s.mu.Lock()
	s.sessions[x.ID] = x
	s.order = append(s.order, x.ID)
	s.creates++
	obj := s.sessionJSON(x)
	s.mu.Unlock()
	writeJSON(w, obj)
}

func absURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// page is the hosted checkout page: GET shows the amount and a Pay
// button; POST pays, delivers checkout.session.completed to the webhook
// and sends the browser to the success URL.
func (s *Server) page(w http.ResponseWriter, r *http.Request, id string) {
	x, ok := s.Session(id)
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method == http.MethodPost {
		ev, err := s.Pay(id)
		if err == nil {
			var status int
			if status, err = s.Deliver(ev); err == nil && status != http.StatusOK {
				err = fmt.Errorf("webhook answered %d", status)
			}
		}
		if err != nil {
			http.Error(w, "stripetest: "+err.Error(), http.StatusBadGateway)
			return
		}
		http.Redirect(w, r, strings.ReplaceAll(x.SuccessURL, "{CHECKOUT_SESSION_ID}", id), http.StatusSeeOther)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, `<!DOCTYPE html><html><head><title>Checkout (test)</title></head><body>
<h1 id="product">%s</h1><p id="amount">%d %s</p>
<form method="post" action="/pay/%s"><button type="submit" id="pay">Pay</button></form>
<p><a id="cancel" href="%s">Back</a></p></body></html>`,
		html.EscapeString(x.ProductName), x.AmountTotal, html.EscapeString(strings.ToUpper(x.Currency)),
		html.EscapeString(id), html.EscapeString(x.CancelURL))
}
