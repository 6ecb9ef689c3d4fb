// Package providers is the provider SPI: what iapd's services (rpc/sms,
// rpc/snailmail, rpc/company, the alert notifier) call to do the actual
// work, and the registry of the adapters that implement it.
//
// A provider instance is configured by the operator under a name
// ("providers.twilio-eu: {type: twilio, …}") and mapped to services. An
// instance is a Provider plus one or more capability interfaces (SMSSender,
// LetterSender, CompanyFinder, …); a service asserts the capability it
// needs when it is wired, so a misconfiguration fails at startup.
//
// Adapters live in sub-packages (providers/twilio, providers/outbox, …),
// each registering its type from init() (as database/sql drivers do);
// providers/all imports them all for cmd/iapd.
//
// Every failure an adapter returns is an *Error with a Kind that tells the
// caller what became of the work, and so of the credit held for it:
// Invalid (the request can never succeed: cancel the hold, report it to
// the user), Unavailable (nothing was done: cancel, or fail over to the
// next provider), Indeterminate (the provider may have done it: keep the
// hold for reconciliation, never retry on another provider).
package providers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// Provider is what every adapter instance is.
type Provider interface {
	// Name is the instance name from the configuration.
	Name() string
	// Type is the adapter type ("twilio", "outbox", …).
	Type() string
	// Close releases the instance's resources.
	Close() error
}

// Kind classifies a provider failure by what became of the work.
type Kind int

// Failure kinds.
const (
	// Invalid: the request can never succeed as it is (bad number, address
	// the provider rejects, refused content). Nothing was done.
	Invalid Kind = iota + 1
	// Unavailable: the provider could not be reached or refused before
	// doing anything (connection refused, 5xx before acceptance, auth
	// failure, rate limit). Nothing was done; another provider may do it.
	Unavailable
	// Indeterminate: the request may have been carried out (timeout after
	// sending, connection lost while waiting for the answer, an answer
	// that cannot be read). Do not retry elsewhere; keep the hold.
	Indeterminate
)

func (k Kind) String() string {
	switch k {
	case Invalid:
		return "invalid"
	case Unavailable:
		return "unavailable"
	case Indeterminate:
		return "indeterminate"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is a provider failure.
type Error struct {
	Provider string // instance name
	Kind     Kind
	Code     string // the vendor's error code, if any ("21211")
	Msg      string // for logs and operators; never holds credentials
	Err      error  // cause, may be nil
}

func (e *Error) Error() string {
	s := e.Provider + ": " + e.Kind.String()
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of kind k.
func Errorf(provider string, k Kind, format string, args ...any) *Error {
	return &Error{Provider: provider, Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// KindOf returns the Kind of err's *Error; an error that is not one is
// Indeterminate (we cannot know what happened).
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Indeterminate
}

// Deps are what the registry passes to every factory.
type Deps struct {
	Logger *slog.Logger
	// HTTP is the client adapters use for vendor APIs (timeouts, proxy,
	// and in air-gapped mode the dialer guard, are set by the caller).
	HTTP *http.Client
	Now  func() time.Time
	// DataDir is a directory the instance may own for its files (outbox,
	// folder, directory cache): <data>/providers/<name>, created.
	DataDir string
	// PublicURL is how vendors reach iapd's public listener (status
	// callback URLs): <public_url>, no trailing slash.
	PublicURL string
}

// Config is one provider instance of the configuration.
type Config struct {
	Name string
	Type string
	// Settings is the instance's YAML mapping without "type"; the factory
	// decodes it (strictly: unknown keys are an error).
	Settings yaml.Node
}

// Decode decodes c.Settings into v, refusing unknown keys. An empty
// mapping leaves v as it is.
func (c Config) Decode(v any) error {
	if c.Settings.Kind == 0 {
		return nil
	}
	b, err := yaml.Marshal(&c.Settings)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytesReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("provider %s (%s): %w", c.Name, c.Type, err)
	}
	return nil
}

// Factory builds an instance from its configuration.
type Factory func(cfg Config, deps Deps) (Provider, error)

// Registry maps adapter types to factories.
type Registry struct {
	mu sync.RWMutex
	m  map[string]Factory
}

// NewRegistry returns an empty registry (tests); Builtin is the one
// adapters register into.
func NewRegistry() *Registry { return &Registry{m: map[string]Factory{}} }

// Builtin is the registry the adapter packages fill from init(). It is the
// one piece of package state here, as database/sql's drivers: it is
// written only during program initialisation.
var Builtin = NewRegistry()

// Register adds a type to Builtin. It panics on a duplicate or empty
// type, at init time.
func Register(typ string, f Factory) { Builtin.Register(typ, f) }

// Register adds a type; it panics on a duplicate or empty type or nil
// factory.
func (r *Registry) Register(typ string, f Factory) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if typ == "" || f == nil {
		panic("providers: Register needs a type and a factory")
	}
	if _, dup := r.m[typ]; dup {
		panic("providers: type registered twice: " + typ)
	}
	r.m[typ] = f
}

// Types lists the registered types, sorted.
func (r *Registry) Types() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.m))
	for t := range r.m {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// New builds an instance.
func (r *Registry) New(cfg Config, deps Deps) (Provider, error) {
	r.mu.RLock()
	f := r.m[cfg.Type]
	r.mu.RUnlock()
	if f == nil {
		return nil, fmt.Errorf("provider %s: unknown type %q (known: %v)", cfg.Name, cfg.Type, r.Types())
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.HTTP == nil {
		deps.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	deps.Logger = deps.Logger.With("provider", cfg.Name, "type", cfg.Type)
	p, err := f(cfg, deps)
	if err != nil {
		return nil, fmt.Errorf("provider %s (%s): %w", cfg.Name, cfg.Type, err)
	}
	return p, nil
}

// Callbacks is implemented by providers that receive calls from their
// vendor on iapd's public listener (delivery reports, letter status
// webhooks). The wiring registers each path with rpc.Server.HandlePage.
type Callbacks interface {
	// CallbackRoutes lists the instance's callback paths (under
	// /providers/<name>/, e.g. "/providers/twilio-eu/status") and their
	// handlers. A handler verifies the vendor's signature before it
	// trusts anything, answers the vendor, and hands what it learnt to the
	// sink the service gave with SetSink.
	CallbackRoutes() []Callback
}

// Callback is one callback path and its handler.
type Callback struct {
	Path    string
	Handler func(ctx context.Context, req *CallbackRequest) CallbackResponse
}

// CallbackRequest is an HTTP request from a vendor, already read (the
// body bounded by the listener).
type CallbackRequest struct {
	Method string
	URL    string // the full URL as the vendor called it (public_url + path + query), for signatures
	Header http.Header
	Body   []byte
	Remote string
}

// CallbackResponse is the answer to the vendor.
type CallbackResponse struct {
	Status      int
	ContentType string
	Body        []byte
}
