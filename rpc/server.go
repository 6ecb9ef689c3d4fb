package rpc

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gorilla "github.com/gorilla/rpc/v2"
	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/rpc/limit"
	"github.com/iapd/iapd/storage"
)

// DefaultMaxBodyBytes is the largest request body accepted when
// Config.MaxBodyBytes is zero, and the MaxRequestBodySize NewHTTPServer
// sets: no lower than the largest route's limit (snailmail's letters,
// 32 MiB), so that each route's own limit applies.
const DefaultMaxBodyBytes = 32 << 20

// Config configures a Server.
type Config struct {
	// Ledger is the credit ledger. Required.
	Ledger storage.Ledger
	// PublicURL is the base URL Odoo databases use as iap.endpoint, e.g.
	// "https://iap.example.org" (a trailing slash is removed). It builds
	// the base_url of InsufficientCreditError (<PublicURL>/iap/1/credit).
	// Required, absolute http or https.
	PublicURL string
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// MaxBodyBytes caps the body size of every route (each route has its
	// own, smaller limit in the routes table). Zero means
	// DefaultMaxBodyBytes. The fasthttp server's MaxRequestBodySize should
	// not be below it.
	MaxBodyBytes int
	// Observer, if set, is told about every request the public handler
	// answers (Handler), with its route, outcome and duration. Nil means
	// none.
	Observer Observer
	// MaxAlertRecipients is the most low-credit alert recipients an
	// account may have: an alert-settings call with more is refused
	// (issue 13). Zero means limit.DefaultAlertRecipients.
	MaxAlertRecipients int
	// Refusals, if set, counts and logs the protective refusals: the
	// front's "body_too_large" (Front) and "too_many_items" (a list over
	// its route's MaxItems), and "alert_recipients". Nil counts none.
	Refusals *limit.Reporter
	// AccessLog, if set, receives one line at Info per public request
	// once answered (Front): method, path, service, account (TokenRef,
	// never the token), outcome, error (the name Odoo got), status,
	// duration, request and response bytes, client, odoo_version. Nil
	// writes none.
	AccessLog *slog.Logger
	// ClientIPHeader is the header the access log reads the client
	// address from, as limit.ClientIP does; empty: the peer's.
	ClientIPHeader string
}

// Observer is told about the requests the public handler answers. Its
// method runs on the request's goroutine once the answer is ready, before
// it is sent: it must be quick, must not block and must be safe for
// concurrent use.
type Observer interface {
	// ObserveRequest records one answered request. route is a path of the
	// routes table ("/iap/1/authorize"), a path registered with HandleGET,
	// or RouteUnknown: never a path a client made up, so the set of values
	// is bounded. outcome is one of Outcomes(). d is the time from the
	// router's start to the answer being ready.
	ObserveRequest(route, outcome string, d time.Duration)
}

// Server is the public JSON-RPC front. Its handler is safe for concurrent
// use.
type Server struct {
	ledger    storage.Ledger
	log       *slog.Logger
	publicURL string
	creditURL string // <publicURL>/iap/1/credit
	maxBody   int
	observer  Observer
	// maxRecipients bounds an account's alert recipients.
	maxRecipients int
	refusals      *limit.Reporter
	access        *slog.Logger // Config.AccessLog; nil: no access log
	clientHeader  string
	bodies        *sync.Pool // of *bodyBuffer (Front)

	routes map[string]*Served
	order  []string // route paths in registration order
	// accountRoutes holds the paths and methods of the Account routes
	// (their outage answer, errorTable's account column).
	accountRoutes map[string]bool
	gorilla       *gorilla.Server
	seam          *seam

	serviceInfo atomic.Pointer[ServiceInfoFunc] // SetServiceInfo (serviceinfo.go)

	getsMu sync.Mutex                         // serialises HandleGET
	gets   atomic.Pointer[map[string]getPage] // copy on write
}

// New returns a Server serving the routes of the routes table.
func New(cfg Config) (*Server, error) {
	if cfg.Ledger == nil {
		return nil, errors.New("rpc: Config.Ledger is required")
	}
	pub := strings.TrimRight(cfg.PublicURL, "/")
	u, err := url.Parse(pub)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("rpc: Config.PublicURL %q is not an absolute http(s) URL", cfg.PublicURL)
	}
	if cfg.MaxBodyBytes < 0 {
		return nil, errors.New("rpc: Config.MaxBodyBytes is negative")
	}
	s := &Server{
		ledger:    cfg.Ledger,
		log:       cfg.Logger,
		publicURL: pub,
		creditURL: pub + "/iap/1/credit",
		maxBody:   cfg.MaxBodyBytes,
		observer:  cfg.Observer,
		bodies:    newBodyPool(),
		routes:    make(map[string]*Served, len(routes)),

		accountRoutes: map[string]bool{},

		maxRecipients: cfg.MaxAlertRecipients,
		refusals:      cfg.Refusals,
		access:        cfg.AccessLog,
		clientHeader:  cfg.ClientIPHeader,
	}
	if s.maxRecipients <= 0 {
		s.maxRecipients = limit.DefaultAlertRecipients
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxBody == 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	s.gets.Store(&map[string]getPage{})

	s.gorilla = gorilla.NewServer()
	s.gorilla.RegisterCodec(&codec{s: s}, "application/json")
	if s.observer != nil || s.access != nil {
		// Tells the router how a call that reached its method ended
		// (noteOutcome); one small allocation per call, so only when
		// someone listens.
		s.gorilla.RegisterAfterFunc(noteOutcome)
	}
	if err := s.gorilla.RegisterService(&Account{s: s}, "Account"); err != nil {
		return nil, fmt.Errorf("rpc: %w", err)
	}
	if err := s.gorilla.RegisterService(&Transaction{s: s}, "Transaction"); err != nil {
		return nil, fmt.Errorf("rpc: %w", err)
	}
	if err := s.addRoutes(routes); err != nil {
		return nil, err
	}
	s.seam = newSeam(s.gorilla)
	return s, nil
}

// addRoutes adds routes whose gorilla methods are registered.
func (s *Server) addRoutes(rs []Route) error {
	for _, r := range rs {
		if normalizePath(r.Path) != r.Path || s.routes[r.Path] != nil || !s.gorilla.HasMethod(r.Method) || r.MaxBody <= 0 {
			return fmt.Errorf("rpc: bad route %s → %s", r.Path, r.Method)
		}
		if r.Endpoint == "" {
			r.Endpoint = "iap.endpoint"
		}
		if r.Timeout == 0 {
			r.Timeout = DefaultTimeout
		}
		if r.MaxItems <= 0 {
			r.MaxItems = DefaultMaxItems
		}
		s.routes[r.Path] = &Served{Route: r, maxBody: min(r.MaxBody, s.maxBody), creditErrors: r.CreditErrors, budget: budgetOf(r.Timeout),
			srv: s, index: len(s.order)}
		s.order = append(s.order, r.Path)
		if r.Account {
			s.accountRoutes[r.Path], s.accountRoutes[r.Method] = true, true
		}
	}
	return nil
}

// Register adds a service package's JSON-RPC routes: receiver is a
// gorilla/rpc service (exported methods of the form
// func(*http.Request, *Args, *Reply) error) registered under name, and
// every route's Method must be one of its methods ("name.Method"). Its
// handlers use the same codec, error table and limits as the core
// routes; they read the Server's helpers (PublicURL, Ledger) through
// what they were built with, not through the Server.
//
// Register must be called before Handler serves its first request: the
// routes table is read without a lock.
func (s *Server) Register(name string, receiver any, rs []Route) error {
	if err := s.gorilla.RegisterService(receiver, name); err != nil {
		return fmt.Errorf("rpc: %w", err)
	}
	for _, r := range rs {
		if !strings.HasPrefix(r.Method, name+".") {
			return fmt.Errorf("rpc: route %s: method %s is not of service %s", r.Path, r.Method, name)
		}
	}
	return s.addRoutes(rs)
}

// Routes returns every JSON-RPC route the server serves, core routes
// first, then in registration order, with Endpoint and Timeout filled in.
func (s *Server) Routes() []Route {
	out := make([]Route, 0, len(s.order))
	for _, p := range s.order {
		out = append(out, s.routes[p].Route)
	}
	return out
}

// CancelRequests cancels the context of every JSON-RPC request in flight
// and of every one that starts after: their handlers stop waiting (ledger,
// providers) and answer. For shutdown, once the grace period for
// in-flight requests is over.
func (s *Server) CancelRequests() { s.seam.cancelAll() }

// CreditURL is the page InsufficientCreditError links to
// (<PublicURL>/iap/1/credit).
func (s *Server) CreditURL() string { return s.creditURL }

// Handler returns the public handler: the router in front of the seam.
func (s *Server) Handler() fasthttp.RequestHandler { return s.serve }

// HandleGET registers h for GET and HEAD requests on path (normalised like
// every path), for pages a browser opens (PROTOCOL §4.7). It may be called
// at any time; a later registration of the same path replaces the earlier.
// It panics if path is empty or h is nil.
func (s *Server) HandleGET(path string, h fasthttp.RequestHandler) {
	s.handlePage(path, h, false)
}

// HandlePage registers h for GET, HEAD and POST requests on path: a page
// with forms, or a callback a provider POSTs to (delivery reports). A POST
// to a path of the JSON-RPC routes table never reaches it. h answers at
// the HTTP level; it must check its own content type and body. It may be
// called at any time and panics if path is empty or h is nil.
func (s *Server) HandlePage(path string, h fasthttp.RequestHandler) {
	s.handlePage(path, h, true)
}

func (s *Server) handlePage(path string, h fasthttp.RequestHandler, post bool) {
	if path == "" || h == nil {
		panic("rpc: HandleGET and HandlePage need a path and a handler")
	}
	s.getsMu.Lock()
	defer s.getsMu.Unlock()
	old := *s.gets.Load()
	m := make(map[string]getPage, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	p := normalizePath(path)
	m[p] = getPage{path: p, h: h, post: post}
	s.gets.Store(&m)
}

// getPage is a page registered with HandleGET; path, its normalised path,
// is the route the Observer is told.
type getPage struct {
	path string
	h    fasthttp.RequestHandler
	post bool // HandlePage: POST too
}

// NewHTTPServer returns the fasthttp server for the public listener, with
// limits fit for Odoo's calls (PROTOCOL §13: clients wait 15 s, up to 300 s
// for enrichment; handlers are not bounded by these timeouts, which apply
// to reading the request and writing the answer):
// ReadTimeout 30 s, WriteTimeout 30 s, IdleTimeout 90 s, request bodies
// streamed (fasthttp reads one byte of a body before the handler; h must
// be behind Server.Front, which reads the rest within the path's limit),
// MaxRequestBodySize DefaultMaxBodyBytes (moot with streaming), no
// multipart pre-parsing, no Server header, error logs without request
// contents, fasthttp's logs at Info on logger (nil discards them).
func NewHTTPServer(h fasthttp.RequestHandler, logger *slog.Logger) *fasthttp.Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &fasthttp.Server{
		Handler:            h,
		ReadTimeout:        30 * time.Second,
		WriteTimeout:       30 * time.Second,
		IdleTimeout:        90 * time.Second,
		MaxRequestBodySize: DefaultMaxBodyBytes,
		StreamRequestBody:  true,
		// fasthttp reads min(this, Content-Length, 8 KiB) bytes of a
		// streamed body before calling the handler; 1 (0 means its
		// default) makes it call Front as soon as the body starts, which
		// then refuses an oversized Content-Length at once and reads the
		// rest itself.
		HeaderReceived: func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
			return fasthttp.RequestConfig{MaxRequestBodySize: 1}
		},
		NoDefaultServerHeader: true,
		// Odoo sends JSON; a multipart content type must not make fasthttp
		// parse the body as a form (it answers 400 when that fails).
		DisablePreParseMultipartForm: true,
		SecureErrorLogMessage:        true,
		CloseOnShutdown:              true,
		Logger:                       fasthttpLogger{logger.With("component", "fasthttp")},
		ErrorHandler:                 transportError,
	}
}

// transportError answers a request fasthttp could not read. The client
// gets a transport error whatever is answered (PROTOCOL §1.2: any status
// but 2xx); the status says why.
func transportError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		ctx.Error("413 Request Entity Too Large", fasthttp.StatusRequestEntityTooLarge)
	case errors.As(err, &small):
		ctx.Error("431 Request Header Fields Too Large", fasthttp.StatusRequestHeaderFieldsTooLarge)
	case errors.As(err, &netErr) && netErr.Timeout():
		ctx.Error("408 Request Timeout", fasthttp.StatusRequestTimeout)
	default:
		ctx.Error("400 Bad Request", fasthttp.StatusBadRequest)
	}
}

// fasthttpLogger adapts slog to fasthttp.Logger.
type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Info(fmt.Sprintf(format, args...))
}
