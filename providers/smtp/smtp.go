// Package smtp is the SMTP notifier adapter (type "smtp"): it delivers
// providers.Email (the low-credit alerts) to an SMTP submission server,
// over implicit TLS (port 465), STARTTLS (required or opportunistic) or
// plain TCP, with AUTH PLAIN or LOGIN.
//
// Failures are classified by what became of the message
// (providers.Kind): nothing reached the server's queue — connection
// refused or timed out, TLS or authentication refused, a 4xx answer, the
// sender refused — is Unavailable; a recipient refused with 5xx, or the
// message refused with 5xx after DATA, is Invalid; the connection lost
// after the final "." was sent and before the server answered is
// Indeterminate (the server may have queued it: a retry may duplicate the
// message, which carries Email.ID in its Message-ID so that receivers can
// drop the copy).
//
// Credentials are never logged nor put in errors. It imports providers,
// providers/internal/mailmsg (the message, the same as the outbox
// adapter's), the standard library (net/smtp) and nothing else.
package smtp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/internal/mailmsg"
)

// Type is the adapter type in the configuration.
const Type = "smtp"

func init() { providers.Register(Type, New) }

// TLS modes.
const (
	TLSStartTLS      = "starttls"      // STARTTLS required (default)
	TLSOpportunistic = "opportunistic" // STARTTLS when offered, else plain
	TLSImplicit      = "implicit"      // TLS from the first byte (port 465)
	TLSNone          = "none"          // plain TCP (a relay on localhost)
)

// Config is the configuration of an smtp instance.
//
//	providers:
//	  mail:
//	    type: smtp
//	    host: smtp.example.com
//	    port: 587                # default: 465 with tls: implicit, 587 otherwise
//	    tls: starttls            # starttls | opportunistic | implicit | none
//	    username: iapd@example.com
//	    password: ${SMTP_PASSWORD}
//	    from: "IAP credits <iapd@example.com>"
type Config struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	// TLS is starttls (default), opportunistic, implicit or none.
	TLS string `yaml:"tls"`
	// Username and Password, both set, authenticate (AUTH PLAIN when the
	// server offers it, else LOGIN). Credentials are only sent over TLS
	// unless AllowInsecureAuth.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// Auth forces a mechanism: "plain" or "login"; empty chooses.
	Auth              string `yaml:"auth"`
	AllowInsecureAuth bool   `yaml:"allow_insecure_auth"`
	// From is the From header and the envelope sender (MAIL FROM).
	From string `yaml:"from"`
	// HeloName is the name given in EHLO; default "localhost".
	HeloName string `yaml:"helo_name"`
	// DialTimeout bounds the connection (TCP and TLS handshake); default
	// 10s. Timeout bounds each command's answer, the final one included;
	// default 60s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	Timeout     time.Duration `yaml:"timeout"`
	// CAPEM adds trusted roots (PEM) to the system's, for a server with a
	// private CA; TLSServerName overrides the name the certificate must
	// carry (default Host).
	CAPEM         string `yaml:"ca_pem"`
	TLSServerName string `yaml:"tls_server_name"`
}

// Validate checks c and fills defaults.
func (c *Config) Validate() error {
	c.Host = strings.TrimSpace(c.Host)
	if c.Host == "" || strings.ContainsAny(c.Host, " /:\r\n") && net.ParseIP(c.Host) == nil {
		return fmt.Errorf("host: %q is not a host name or address", c.Host)
	}
	switch c.TLS {
	case "":
		c.TLS = TLSStartTLS
	case TLSStartTLS, TLSOpportunistic, TLSImplicit, TLSNone:
	default:
		return fmt.Errorf("tls: %q is not starttls, opportunistic, implicit or none", c.TLS)
	}
	if c.Port == 0 {
		c.Port = 587
		if c.TLS == TLSImplicit {
			c.Port = 465
		}
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("port: %d out of range", c.Port)
	}
	if (c.Username == "") != (c.Password == "") {
		return errors.New("username and password go together")
	}
	switch strings.ToLower(c.Auth) {
	case "":
	case "plain", "login":
		c.Auth = strings.ToLower(c.Auth)
		if c.Username == "" {
			return errors.New("auth: set username and password too")
		}
	default:
		return fmt.Errorf("auth: %q is not plain or login", c.Auth)
	}
	if c.Username != "" && c.TLS == TLSNone && !c.AllowInsecureAuth {
		return errors.New("username with tls: none would send the password in clear; set allow_insecure_auth to mean it")
	}
	if c.From == "" {
		return errors.New("from: required (the sender of the alerts)")
	}
	from, err := mail.ParseAddress(c.From)
	if err != nil || strings.ContainsAny(c.From, "\r\n") {
		return fmt.Errorf("from: %q is not an address", c.From)
	}
	c.From = from.String()
	if c.HeloName == "" {
		c.HeloName = "localhost"
	}
	if strings.ContainsAny(c.HeloName, " \r\n") {
		return fmt.Errorf("helo_name: %q", c.HeloName)
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 60 * time.Second
	}
	if c.DialTimeout < 0 || c.Timeout < 0 {
		return errors.New("timeouts must be positive")
	}
	if c.CAPEM != "" && !x509.NewCertPool().AppendCertsFromPEM([]byte(c.CAPEM)) {
		return errors.New("ca_pem: no certificate in it")
	}
	return nil
}

// Sender is an smtp instance.
type Sender struct {
	name string
	cfg  Config
	from *mail.Address
	tls  *tls.Config
	now  func() time.Time
	log  *slog.Logger
	// dial is the dialer behind deps.HTTP (providers.DialerOf): in
	// air-gapped mode it is the guarded one, so the relay is reached
	// through the same checks as every vendor API.
	dial providers.DialFunc
}

// New is the factory registered for "smtp".
func New(pc providers.Config, deps providers.Deps) (providers.Provider, error) {
	var c Config
	if err := pc.Decode(&c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return newSender(pc.Name, c, deps)
}

func newSender(name string, c Config, deps providers.Deps) (*Sender, error) {
	from, _ := mail.ParseAddress(c.From)
	tc := &tls.Config{ServerName: c.Host, MinVersion: tls.VersionTLS12}
	if c.TLSServerName != "" {
		tc.ServerName = c.TLSServerName
	}
	if c.CAPEM != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		pool.AppendCertsFromPEM([]byte(c.CAPEM))
		tc.RootCAs = pool
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Sender{name: name, cfg: c, from: from, tls: tc, now: now, log: log,
		dial: providers.DialerOf(deps.HTTP)}, nil
}

// Name implements providers.Provider.
func (s *Sender) Name() string { return s.name }

// Type implements providers.Provider.
func (s *Sender) Type() string { return Type }

// Close implements providers.Provider: a Sender holds no connection
// between messages.
func (s *Sender) Close() error { return nil }

// LogValue keeps the password out of logs.
func (s *Sender) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", s.name), slog.String("host", s.cfg.Host),
		slog.Int("port", s.cfg.Port), slog.String("tls", s.cfg.TLS), slog.Bool("auth", s.cfg.Username != ""))
}

// SendEmail implements providers.EmailSender: one SMTP session per
// message (EHLO, STARTTLS, AUTH, MAIL, RCPT for each of m.To, DATA).
//
// Errors: no ID, no recipient, a recipient that is not a bare-able
// address → Invalid before connecting; a recipient or the message refused
// with 5xx → Invalid; anything that fails before the final "." (dial,
// TLS, auth, 4xx, the sender refused, ctx done) → Unavailable; the
// connection lost or timed out after the final "." → Indeterminate.
func (s *Sender) SendEmail(ctx context.Context, m providers.Email) error {
	m.Subject = strings.Join(strings.Fields(m.Subject), " ") // no CR/LF can reach the header
	raw, rcpts, err := mailmsg.Compose(s.name, s.from, m, s.now(), s.domain())
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return s.fail(providers.Unavailable, "", "not sent", err)
	}
	err = s.session(ctx, rcpts, raw)
	if err == nil {
		s.log.Info("e-mail sent", "id", m.ID, "recipients", len(rcpts))
	}
	return err
}

func (s *Sender) domain() string {
	if at := strings.LastIndexByte(s.from.Address, '@'); at >= 0 {
		return s.from.Address[at+1:]
	}
	return s.cfg.HeloName
}

func (s *Sender) fail(k providers.Kind, code, msg string, err error) *providers.Error {
	return &providers.Error{Provider: s.name, Kind: k, Code: code, Msg: msg, Err: err}
}

// replyError classifies an SMTP answer: 5xx → k5, 4xx (or anything that
// is not an answer) → Unavailable.
func (s *Sender) replyError(step string, err error, k5 providers.Kind) *providers.Error {
	var te *textproto.Error
	if errors.As(err, &te) {
		k := providers.Unavailable
		if te.Code >= 500 && te.Code < 600 {
			k = k5
		}
		return s.fail(k, strconv.Itoa(te.Code), step+" refused", errors.New(oneLine(te.Msg)))
	}
	return s.fail(providers.Unavailable, "", step+" failed", err)
}

func (s *Sender) session(ctx context.Context, rcpts []string, raw []byte) error {
	addr := net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port))
	dctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	var conn net.Conn
	var err error
	conn, err = s.dial(dctx, "tcp", addr)
	if err == nil && s.cfg.TLS == TLSImplicit {
		tc := tls.Client(conn, s.tls)
		if err = tc.HandshakeContext(dctx); err != nil {
			_ = conn.Close()
		}
		conn = tc
	}
	if err != nil {
		return s.fail(providers.Unavailable, "", "cannot connect", err)
	}
	// ctx cancelled: unblock whatever the session waits for.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	defer conn.Close()
	// Deadlines are on the wall clock (s.now is for the Date header).
	arm := func() { _ = conn.SetDeadline(time.Now().Add(s.cfg.Timeout)) }
	if ctx.Err() != nil {
		return s.fail(providers.Unavailable, "", "not sent", ctx.Err())
	}

	arm()
	c, err := smtp.NewClient(conn, s.cfg.Host)
	if err != nil {
		return s.replyError("greeting", err, providers.Unavailable)
	}
	defer c.Close()
	arm()
	if err := c.Hello(s.cfg.HeloName); err != nil {
		return s.replyError("EHLO", err, providers.Unavailable)
	}
	if s.cfg.TLS == TLSStartTLS || s.cfg.TLS == TLSOpportunistic {
		arm()
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(s.tls); err != nil {
				return s.replyError("STARTTLS", err, providers.Unavailable)
			}
		} else if s.cfg.TLS == TLSStartTLS {
			return s.fail(providers.Unavailable, "", "server offers no STARTTLS (tls: starttls requires it)", nil)
		}
	}
	if s.cfg.Username != "" {
		arm()
		if err := s.auth(c); err != nil {
			return err
		}
	}
	arm()
	if err := c.Mail(s.from.Address); err != nil {
		// The sender refused is the configuration's fault, not the
		// message's: retry later (Unavailable) rather than drop the alert.
		return s.replyError("MAIL FROM", err, providers.Unavailable)
	}
	for _, r := range rcpts {
		arm()
		if err := c.Rcpt(r); err != nil {
			return s.replyError("RCPT TO", err, providers.Invalid)
		}
	}
	arm()
	w, err := c.Data()
	if err != nil {
		return s.replyError("DATA", err, providers.Invalid)
	}
	if _, err := w.Write(raw); err != nil {
		// The final "." was not sent: the server cannot have queued it.
		return s.fail(providers.Unavailable, "", "connection lost while sending the message", err)
	}
	arm()
	if err := w.Close(); err != nil {
		var te *textproto.Error
		if errors.As(err, &te) {
			return s.replyError("message", err, providers.Invalid)
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return s.fail(providers.Indeterminate, "", "no answer after the message was sent", err)
	}
	arm()
	_ = c.Quit() // the message is queued; a lost QUIT changes nothing
	return nil
}

// auth authenticates with PLAIN or LOGIN.
func (s *Sender) auth(c *smtp.Client) error {
	ok, mechs := c.Extension("AUTH")
	if !ok {
		return s.fail(providers.Unavailable, "", "server offers no AUTH", nil)
	}
	offered := map[string]bool{}
	for _, m := range strings.Fields(strings.ToUpper(mechs)) {
		offered[m] = true
	}
	mech := s.cfg.Auth
	if mech == "" {
		switch {
		case offered["PLAIN"]:
			mech = "plain"
		case offered["LOGIN"]:
			mech = "login"
		default:
			return s.fail(providers.Unavailable, "", "server offers neither AUTH PLAIN nor LOGIN: "+oneLine(mechs), nil)
		}
	}
	a := &auth{mech: mech, user: s.cfg.Username, pass: s.cfg.Password, insecure: s.cfg.AllowInsecureAuth}
	if err := c.Auth(a); err != nil {
		var te *textproto.Error
		if errors.As(err, &te) {
			return s.fail(providers.Unavailable, strconv.Itoa(te.Code), "authentication refused", errors.New(oneLine(te.Msg)))
		}
		if errors.Is(err, errClearAuth) {
			return s.fail(providers.Unavailable, "", "authentication not attempted", err)
		}
		return s.fail(providers.Unavailable, "", "authentication failed", err)
	}
	return nil
}

var errClearAuth = errors.New("the connection is not encrypted: refusing to send the password (allow_insecure_auth)")

// auth is smtp.Auth for PLAIN (RFC 4616) and LOGIN. It refuses to run
// over a connection without TLS unless insecure is set.
type auth struct {
	mech       string
	user, pass string
	insecure   bool
	step       int
}

func (a *auth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !server.TLS && !a.insecure {
		return "", nil, errClearAuth
	}
	if a.mech == "plain" {
		return "PLAIN", []byte("\x00" + a.user + "\x00" + a.pass), nil
	}
	return "LOGIN", nil, nil
}

func (a *auth) Next(fromServer []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	if a.mech != "login" {
		return nil, errors.New("unexpected server challenge")
	}
	a.step++
	switch a.step {
	case 1:
		return []byte(a.user), nil
	case 2:
		return []byte(a.pass), nil
	}
	return nil, errors.New("unexpected server challenge")
}

// oneLine bounds a server's text for errors and logs.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

var (
	_ providers.EmailSender = (*Sender)(nil)
	_ slog.LogValuer        = (*Sender)(nil)
	_ smtp.Auth             = (*auth)(nil)
)
