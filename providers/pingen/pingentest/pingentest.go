// Package pingentest is a local server speaking the shape of Pingen's v2
// API (identity host, file upload, letters, JSON:API errors) for the
// tests of providers/pingen and of the services that use it. It checks
// what the real API requires (form-encoded client credentials, Bearer
// tokens, an upload PUT without Authorization, a letter whose file_url and
// signature are those handed out) and can be told to fail each step.
//
// It imports only the standard library; it is imported only by tests.
package pingentest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// Credentials the server accepts.
const (
	ClientID     = "client-0123456789"
	ClientSecret = "secret-abcdefghijklmnop"
	Organisation = "6a7c2c1e-1f0b-4d9e-9b1a-0c2b3d4e5f60"
)

var a4 = regexp.MustCompile(`/MediaBox\s*\[\s*0\s+0\s+595(\.\d+)?\s+84[12](\.\d+)?\s*\]`)

// Mode tells the server how to answer the next letter creations.
type Mode string

// Modes.
const (
	OK           Mode = ""             // 201
	BadAuth      Mode = "bad-auth"     // the identity host refuses the credentials (401)
	UploadDown   Mode = "upload-503"   // GET /file-upload answers 503
	Throttled    Mode = "create-429"   // letter creation 429
	CreateDown   Mode = "create-503"   // letter creation 503
	CreateFailed Mode = "create-500"   // letter creation 500 (may have been created)
	Hang         Mode = "create-hang"  // letter creation never answers (until Close)
	ExpireOnce   Mode = "create-401-1" // the first creation answers 401 (token revoked), then OK
)

// Letter is a letter the server created.
type Letter struct {
	ID         string
	Attributes map[string]any
	PDF        []byte
}

// Server is the fake Pingen.
type Server struct {
	*httptest.Server

	mu           sync.Mutex
	mode         Mode
	tokens       map[string]bool
	tokenCalls   int
	uploads      map[string][]byte // signature → PDF
	uploadURLs   map[string]string // signature → URL
	letters      []Letter
	createCalls  int
	hang         chan struct{}
	hangOnce     sync.Once
	badRequests  []string
	expiresInSec int
}

// New starts a server; it is closed with t.Cleanup.
func New(t *testing.T) *Server {
	s := &Server{tokens: map[string]bool{}, uploads: map[string][]byte{}, uploadURLs: map[string]string{}, hang: make(chan struct{}), expiresInSec: 43200}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /auth/access-tokens", s.token)
	mux.HandleFunc("GET /file-upload", s.fileUpload)
	mux.HandleFunc("PUT /upload/{n}", s.put)
	mux.HandleFunc("POST /organisations/{org}/letters", s.create)
	s.Server = httptest.NewServer(mux)
	t.Cleanup(func() {
		s.hangOnce.Do(func() { close(s.hang) })
		s.Server.Close()
	})
	return s
}

// SetMode changes how the server answers from now on.
func (s *Server) SetMode(m Mode) {
	s.mu.Lock()
	s.mode = m
	s.mu.Unlock()
}

// Letters returns the letters created so far.
func (s *Server) Letters() []Letter {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Letter(nil), s.letters...)
}

// TokenCalls is how many tokens were issued.
func (s *Server) TokenCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenCalls
}

// CreateCalls is how many letter creations were received.
func (s *Server) CreateCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.createCalls
}

// BadRequests lists the protocol violations the server saw (wrong
// content type, missing token, Authorization on the upload…); a test
// fails when it is not empty.
func (s *Server) BadRequests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.badRequests...)
}

func (s *Server) bad(w http.ResponseWriter, status int, code, detail string) {
	s.badRequests = append(s.badRequests, detail)
	jsonErr(w, status, code, detail)
}

func jsonErr(w http.ResponseWriter, status int, code, detail string) {
	w.Header().Set("Content-Type", "application/vnd.api+json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"title":%q,"detail":%q}]}`, code, http.StatusText(status), detail) // #nosec G705 -- JSON for the adapter under test, not a page
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		s.bad(w, 400, "invalid_request", "token request not form-encoded")
		return
	}
	if err := r.ParseForm(); err != nil {
		s.bad(w, 400, "invalid_request", "unreadable form")
		return
	}
	if r.PostForm.Get("grant_type") != "client_credentials" {
		s.bad(w, 400, "unsupported_grant_type", "grant_type")
		return
	}
	if s.mode == BadAuth || r.PostForm.Get("client_id") != ClientID || r.PostForm.Get("client_secret") != ClientSecret {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(401)
		_, _ = io.WriteString(w, `{"error":"invalid_client","error_description":"Client authentication failed","message":"Client authentication failed"}`)
		return
	}
	s.tokenCalls++
	tok := fmt.Sprintf("access-token-%d", s.tokenCalls)
	s.tokens[tok] = true
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"token_type":"Bearer","expires_in":%d,"access_token":%q}`, s.expiresInSec, tok)
}

// authorized checks the Bearer token; the lock is held.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !s.tokens[tok] {
		jsonErr(w, 401, "unauthenticated", "Unauthenticated.")
		return false
	}
	return true
}

func (s *Server) fileUpload(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.authorized(w, r) {
		return
	}
	if s.mode == UploadDown {
		jsonErr(w, 503, "service_unavailable", "maintenance")
		return
	}
	n := len(s.uploadURLs) + 1
	sig := fmt.Sprintf("sig-%d-0f3a9c", n)
	u := fmt.Sprintf("%s/upload/%d?X-Amz-Signature=%s", s.URL, n, sig)
	s.uploadURLs[sig] = u
	w.Header().Set("Content-Type", "application/vnd.api+json")
	fmt.Fprintf(w, `{"data":{"id":"%d","type":"file_uploads","attributes":{"url":%q,"url_signature":%q,"expires_at":"2026-11-28T13:00:00+0100"},"links":{"self":"%s/file-upload"}}}`, n, u, sig, s.URL)
}

func (s *Server) put(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Header.Get("Authorization") != "" {
		s.bad(w, 400, "invalid_request", "the upload PUT carried an Authorization header")
		return
	}
	sig := r.URL.Query().Get("X-Amz-Signature")
	if _, ok := s.uploadURLs[sig]; !ok {
		s.bad(w, 403, "forbidden", "upload to an URL not handed out")
		return
	}
	s.uploads[sig] = body
	w.WriteHeader(200)
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.createCalls++
	mode := s.mode
	if mode == ExpireOnce {
		// The token was revoked: every token issued so far is refused.
		s.tokens = map[string]bool{}
		s.mode = OK
	}
	if !s.authorized(w, r) {
		s.mu.Unlock()
		return
	}
	if r.PathValue("org") != Organisation {
		s.mu.Unlock()
		jsonErr(w, 403, "forbidden", "not your organisation")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/vnd.api+json" {
		s.bad(w, 415, "unsupported_media_type", "letter creation with content type "+ct)
		s.mu.Unlock()
		return
	}
	switch mode {
	case Throttled:
		s.mu.Unlock()
		w.Header().Set("Retry-After", "30")
		jsonErr(w, 429, "too_many_requests", "Too Many Attempts.")
		return
	case CreateDown:
		s.mu.Unlock()
		jsonErr(w, 503, "service_unavailable", "maintenance")
		return
	case CreateFailed:
		s.mu.Unlock()
		jsonErr(w, 500, "server_error", "Server Error")
		return
	case Hang:
		s.mu.Unlock()
		select {
		case <-s.hang:
		case <-r.Context().Done():
		}
		return
	}
	defer s.mu.Unlock()
	var doc struct {
		Data struct {
			Type       string         `json:"type"`
			Attributes map[string]any `json:"attributes"`
		} `json:"data"`
	}
	if err := json.NewDecoder(r.Body).Decode(&doc); err != nil || doc.Data.Type != "letters" {
		s.bad(w, 400, "invalid_request", "not a letters document")
		return
	}
	a := doc.Data.Attributes
	for _, k := range []string{"file_original_name", "file_url", "file_url_signature", "address_position", "auto_send", "delivery_product", "print_mode", "print_spectrum"} {
		if _, ok := a[k]; !ok {
			s.bad(w, 422, "validation_failed", "missing attribute "+k)
			return
		}
	}
	sig, _ := a["file_url_signature"].(string)
	pdf, ok := s.uploads[sig]
	if !ok || s.uploadURLs[sig] != a["file_url"] {
		s.bad(w, 422, "validation_failed", "file_url and file_url_signature do not match an upload")
		return
	}
	if pm := a["print_mode"]; pm != "simplex" && pm != "duplex" {
		s.bad(w, 422, "validation_failed", fmt.Sprintf("print_mode %v", pm))
		return
	}
	if ps := a["print_spectrum"]; ps != "color" && ps != "grayscale" {
		s.bad(w, 422, "validation_failed", fmt.Sprintf("print_spectrum %v", ps))
		return
	}
	// Pingen prints A4 only (595 × 842 points).
	if !a4.Match(pdf) {
		jsonErr(w, 422, "file_format_invalid", "The file must be A4 (210 x 297 mm).")
		return
	}
	id := fmt.Sprintf("0b1e5d3a-0000-4000-8000-%012d", len(s.letters)+1)
	s.letters = append(s.letters, Letter{ID: id, Attributes: a, PDF: pdf})
	w.Header().Set("Content-Type", "application/vnd.api+json")
	w.WriteHeader(201)
	fmt.Fprintf(w, `{"data":{"id":%q,"type":"letters","attributes":{"status":"validating","file_original_name":%q,"file_pages":null,"address":null,"address_position":%q,"country":null,"delivery_product":%q,"print_mode":%q,"print_spectrum":%q,"price_currency":null,"price_value":null},"relationships":{"organisation":{"data":{"id":%q,"type":"organisations"}}},"links":{"self":"%s/organisations/%s/letters/%s"}}}`,
		id, a["file_original_name"], a["address_position"], a["delivery_product"], a["print_mode"], a["print_spectrum"], Organisation, s.URL, Organisation, id)
}

// Webhook returns the JSON:API body Pingen posts for a letter event of
// category typ ("webhook_sent", "webhook_issues", …).
func Webhook(typ, letterID, reason string) []byte {
	return []byte(fmt.Sprintf(`{"data":{"type":%q,"id":"7f0c9a8e-1111-4222-8333-444455556666","attributes":{"reason":%q,"url":"https://iap.example.org/providers/pingen/webhook","created_at":"2026-11-28T12:00:00+0100"},"relationships":{"organisation":{"data":{"id":%q,"type":"organisations"}},"letter":{"data":{"id":%q,"type":"letters"}},"event":{"data":{"id":"e1","type":"letters_events"}}}},"included":[]}`,
		typ, reason, Organisation, letterID))
}
