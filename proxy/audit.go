package proxy

import (
	"encoding/json"
	"io"
	"os"
	"sync"
	"time"
)

// AuditRecord is one line of the audit log: one forwarded request. It
// never holds a body nor a raw account token.
type AuditRecord struct {
	Time     time.Time `json:"time"`
	Route    string    `json:"route"`    // normalised path
	Service  string    `json:"service"`  // IAP service, or the role for a path no route serves
	Upstream string    `json:"upstream"` // base URL forwarded to
	// Account is Odoo's account_uuid_hashed of the request's
	// account_token (SHA-1 hex of the token without its +suffix, the value
	// Odoo 19 shows in its credit links); empty when there is none.
	Account       string  `json:"account,omitempty"`
	RequestBytes  int     `json:"request_bytes"`
	ResponseBytes int     `json:"response_bytes"`
	Status        int     `json:"status"`  // upstream HTTP status; 0 when none came
	Outcome       string  `json:"outcome"` // see Outcomes
	DurationMS    float64 `json:"duration_ms"`
}

// Audit writes AuditRecords as JSON lines. Safe for concurrent use.
type Audit struct {
	mu   sync.Mutex
	w    io.Writer
	path string
	f    *os.File
}

// NewAudit writes to w (tests, or a pipe).
func NewAudit(w io.Writer) *Audit { return &Audit{w: w} }

// OpenAudit appends to the file at path (created 0600).
func OpenAudit(path string) (*Audit, error) {
	a := &Audit{path: path}
	if err := a.Reopen(); err != nil {
		return nil, err
	}
	return a, nil
}

// Reopen reopens the file (after logrotate moved it); a no-op for an
// Audit on a writer.
func (a *Audit) Reopen() error {
	if a.path == "" {
		return nil
	}
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600) // #nosec G304 -- the operator's audit log path
	if err != nil {
		return err
	}
	a.mu.Lock()
	old := a.f
	a.f, a.w = f, f
	a.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

// Write appends one record; a failure is returned for the caller to log
// (the request it describes was answered already).
func (a *Audit) Write(r AuditRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	_, err = a.w.Write(b)
	return err
}

// Close closes the file, if any.
func (a *Audit) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	a.w = io.Discard
	return err
}
