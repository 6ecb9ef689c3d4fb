package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/iapd/iapd/storage"
)

// Config configures the admin API.
type Config struct {
	// Ledger is the ledger the API manages. Required.
	Ledger storage.Ledger
	// Token is the admin bearer token. Empty disables the API: every
	// authenticated route answers 401.
	Token string
	// Logger receives one line per request (method, path, status; never
	// the query string nor any token). Nil discards.
	Logger *slog.Logger
	// Ready reports readiness for GET /readyz; nil means always ready.
	Ready func() error
	// Operator serves backup, verify and export (operations.go); nil
	// makes those routes answer 503.
	Operator Operator
	// Registers runs online imports of company registers
	// (registers.go); nil makes those routes answer 503.
	Registers RegisterImports
}

// maxBodyBytes bounds every request body of the admin API.
const maxBodyBytes = 1 << 20

// New returns the admin API handler. It panics if c.Ledger is nil (a
// wiring bug).
func New(c Config) http.Handler {
	if c.Ledger == nil {
		panic("admin.New: nil Ledger")
	}
	s := &server{
		ledger:  c.Ledger,
		enabled: c.Token != "",
		token:   sha256.Sum256([]byte(c.Token)),
		log:     c.Logger,
		ready:   c.Ready,
		ops:     c.Operator,
		regs:    c.Registers,
		mux:     http.NewServeMux(),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.routes()
	return s
}

type server struct {
	ledger  storage.Ledger
	enabled bool
	token   [32]byte // SHA-256 of the admin token, compared in constant time
	log     *slog.Logger
	ready   func() error
	ops     Operator // backup, verify, export
	regs    RegisterImports
	mux     *http.ServeMux

	// mu serialises the admin API's own read-then-write sequences (create a
	// service, change an account's state) so that two operators cannot
	// interleave them. The ledger operations themselves are atomic.
	mu sync.Mutex
}

func (s *server) routes() {
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)

	s.mux.HandleFunc("GET /v1/services", s.listServices)
	s.mux.HandleFunc("POST /v1/services", s.createService)
	s.mux.HandleFunc("GET /v1/services/{service}", s.showService)
	s.mux.HandleFunc("POST /v1/services/{service}/key", s.rotateKey)

	s.mux.HandleFunc("GET /v1/accounts", s.listAccounts)
	s.mux.HandleFunc("GET /v1/account", s.showAccount)
	s.mux.HandleFunc("POST /v1/account/ban", s.ban)
	s.mux.HandleFunc("POST /v1/account/unban", s.unban)
	s.mux.HandleFunc("POST /v1/account/register", s.register)
	s.mux.HandleFunc("POST /v1/account/credit", s.credit)
	s.mux.HandleFunc("GET /v1/account/history", s.history)
	s.mux.HandleFunc("GET /v1/transaction", s.showTransaction)
	s.operatorRoutes() // GET /v1/backup, /v1/verify, /v1/export (operations.go)
	s.voucherRoutes()  // POST and GET /v1/vouchers (vouchers.go)
	s.registerRoutes() // POST and GET /v1/registers/import (registers.go)

	// Go's profiles, behind the admin token like every route but the
	// probes: an operator takes a CPU profile of a live server with curl
	// and the bearer token, then reads it with go tool pprof (README
	// "Performance").
	s.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	s.mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	s.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)

	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, storage.E("", storage.NotFound, "no such route"))
	})
}

// ServeHTTP authenticates every route but the probes, then routes.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	w = rec
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if r.URL.Path != "/healthz" && r.URL.Path != "/readyz" && !s.authenticate(w, r) {
		s.logRequest(r, rec.status, start)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	// A request in flight when the server shuts down is finished, not
	// refused: its context is not cancelled by the shutdown.
	r = r.WithContext(context.WithoutCancel(r.Context()))
	s.mux.ServeHTTP(w, r)
	s.logRequest(r, rec.status, start)
}

func (s *server) logRequest(r *http.Request, status int, start time.Time) {
	lvl := slog.LevelInfo
	if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || (r.Method == http.MethodGet && r.URL.Path == "/v1/registers/import" && status == http.StatusOK) {
		lvl = slog.LevelDebug // probes, and an import's progress polled
	}
	// The path only: query strings carry account and transaction tokens.
	s.log.Log(r.Context(), lvl, "admin request", "method", r.Method, "path", r.URL.Path,
		"status", status, "duration", time.Since(start).Round(time.Microsecond))
}

// authenticate checks the bearer token in constant time and answers 401
// when it is missing, wrong, or when the API is disabled.
func (s *server) authenticate(w http.ResponseWriter, r *http.Request) bool {
	if !s.enabled {
		w.Header().Set("WWW-Authenticate", `Bearer realm="iapd"`)
		s.fail(w, r, storage.E("", storage.Unauthorized, "the admin API is disabled: no admin token is configured"))
		return false
	}
	auth := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="iapd"`)
		s.fail(w, r, storage.E("", storage.Unauthorized, "missing bearer token"))
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	if subtle.ConstantTimeCompare(got[:], s.token[:]) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="iapd", error="invalid_token"`)
		s.fail(w, r, storage.E("", storage.Unauthorized, "wrong admin token"))
		return false
	}
	return true
}

func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	s.reply(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.ready != nil {
		if err := s.ready(); err != nil {
			s.reply(w, http.StatusServiceUnavailable, errorBody{Error: errorDetail{
				Kind: "unavailable", Message: "not ready: " + err.Error(),
			}})
			return
		}
	}
	s.reply(w, http.StatusOK, map[string]string{"status": "ready"})
}

// reply writes v as JSON with the given status.
func (s *server) reply(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.log.Error("admin: encoding answer", "err", err)
		http.Error(w, `{"error":{"kind":"internal","message":"internal error"}}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// fail answers err as {"error": {...}} with the status of its kind.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, kind, msg := classify(err)
	if status >= 500 {
		s.log.Error("admin request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	s.reply(w, status, errorBody{Error: errorDetail{Kind: kind, Message: msg}})
}

// decode reads a JSON body into v, refusing unknown fields and trailing
// data. An empty body leaves v alone when allowEmpty.
func decode(r *http.Request, v any, allowEmpty bool) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) && allowEmpty {
			return nil
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return storage.Ef("decode", storage.Invalid, "request body larger than %d bytes", mbe.Limit)
		}
		if errors.Is(err, io.EOF) {
			return storage.E("decode", storage.Invalid, "empty request body; a JSON object is expected")
		}
		return storage.Ef("decode", storage.Invalid, "bad JSON body: %v", err)
	}
	if dec.More() {
		return storage.E("decode", storage.Invalid, "bad JSON body: data after the object")
	}
	return nil
}

// statusRecorder remembers the status written, for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// parseToken validates an account token as the operator typed it; a
// "+suffix" (e.g. "+disabled") is dropped as Odoo's tokens carry one.
func parseToken(op, raw string) (storage.AccountToken, error) {
	if raw == "" {
		return "", storage.E(op, storage.Invalid, "missing account token")
	}
	tok, _, ok := storage.SplitToken(raw)
	if !ok {
		return "", storage.E(op, storage.Invalid, "malformed account token")
	}
	return tok, nil
}

// parseService validates a service name.
func parseService(op, raw string) (storage.ServiceName, error) {
	if raw == "" {
		return "", storage.E(op, storage.Invalid, "missing service name")
	}
	if !storage.ValidServiceName(raw) {
		return "", storage.Ef(op, storage.Invalid, "invalid service name %q: 1 to 64 of a-z, 0-9, _ and -, starting with a letter", raw)
	}
	return storage.ServiceName(raw), nil
}

// parseLimit reads a page size: def when empty, at most max.
func parseLimit(op, raw string, def, max int) (int, error) {
	if raw == "" {
		return def, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n <= 0 {
		return 0, storage.Ef(op, storage.Invalid, "limit must be a positive integer, got %q", raw)
	}
	if n > max {
		n = max
	}
	return n, nil
}
