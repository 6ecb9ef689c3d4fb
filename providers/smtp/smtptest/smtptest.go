// Package smtptest runs a real SMTP server in process (emersion/go-smtp)
// for the tests of the smtp adapter and of the alert dispatcher: it
// records the messages it accepted and can be told to refuse recipients,
// require authentication, offer STARTTLS or implicit TLS, or drop the
// connection after the message was sent without answering.
//
// It is for tests only; nothing in iapd's server imports it.
package smtptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Message is one message the server accepted.
type Message struct {
	From string
	To   []string
	Data []byte // as received, CRLF line ends, dots unstuffed
	TLS  bool   // the session was encrypted
	User string // the authenticated user, if any
}

// Options configure a Server.
type Options struct {
	// TLS: "" (plain), "starttls" (offer STARTTLS), "implicit" (TLS from
	// the first byte).
	TLS string
	// User and Password, set, make AUTH PLAIN and LOGIN required.
	User, Password string
	// RejectRcpt refuses recipients containing this string with 550.
	RejectRcpt string
	// RejectData refuses every message after DATA with 554.
	RejectData bool
	// TempFail answers 451 to MAIL FROM.
	TempFail bool
	// DropAfterData reads the whole message then closes the connection
	// without answering (the "did it get queued?" case).
	DropAfterData bool
}

// Server is a running SMTP server.
type Server struct {
	Addr string // host:port
	// CAPEM is the PEM certificate clients must trust (TLS modes).
	CAPEM string

	srv  *smtp.Server
	mu   sync.Mutex
	opts Options
	msgs []Message
	got  chan struct{}
}

// Start starts a server on 127.0.0.1 and stops it when t ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	s, err := StartAt("127.0.0.1:0", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// StartAt starts a server listening on addr (a fixed port: a restarted
// server at the same address).
func StartAt(addr string, o Options) (*Server, error) {
	s := &Server{opts: o, got: make(chan struct{}, 1024)}
	s.srv = smtp.NewServer(s)
	s.srv.Domain = "smtptest.local"
	s.srv.ReadTimeout = 30 * time.Second
	s.srv.WriteTimeout = 30 * time.Second
	s.srv.MaxMessageBytes = 1 << 20
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.AllowInsecureAuth = o.TLS == "" // a plain server still tests AUTH
	var l net.Listener
	var err error
	if o.TLS != "" {
		cert, pemCert, err := selfSigned()
		if err != nil {
			return nil, err
		}
		s.CAPEM = pemCert
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if o.TLS == "implicit" {
		l, err = tls.Listen("tcp", addr, s.srv.TLSConfig)
	} else {
		l, err = net.Listen("tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	s.Addr = l.Addr().String()
	go func() { _ = s.srv.Serve(l) }()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() { _ = s.srv.Close() }

// Messages returns the accepted messages so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Received is signalled once per message accepted (or dropped after
// DATA).
func (s *Server) Received() <-chan struct{} { return s.got }

// Host and Port split Addr.
func (s *Server) Host() string { h, _, _ := net.SplitHostPort(s.Addr); return h }

// Port is the listening port.
func (s *Server) Port() int {
	_, p, _ := net.SplitHostPort(s.Addr)
	n, _ := strconv.Atoi(p)
	return n
}

// NewSession implements smtp.Backend.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{s: s, conn: c}, nil
}

type session struct {
	s    *Server
	conn *smtp.Conn
	user string
	msg  Message
}

func (se *session) AuthMechanisms() []string {
	if se.s.opts.User == "" {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (se *session) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		if user != se.s.opts.User || pass != se.s.opts.Password {
			return smtp.ErrAuthFailed
		}
		se.user = user
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error { return check(user, pass) }), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (se *session) Mail(from string, _ *smtp.MailOptions) error {
	if se.s.opts.User != "" && se.user == "" {
		return smtp.ErrAuthRequired
	}
	if se.s.opts.TempFail {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	se.msg = Message{From: from, TLS: isTLS(se.conn), User: se.user}
	return nil
}

func isTLS(c *smtp.Conn) bool { _, ok := c.TLSConnectionState(); return ok }

func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if se.s.opts.RejectRcpt != "" && strings.Contains(to, se.s.opts.RejectRcpt) {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	se.msg.To = append(se.msg.To, to)
	return nil
}

func (se *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if se.s.opts.DropAfterData {
		_ = se.conn.Conn().Close()
		se.s.got <- struct{}{}
		return errors.New("dropped")
	}
	if se.s.opts.RejectData {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "content refused"}
	}
	se.msg.Data = bytes.Clone(b)
	se.s.mu.Lock()
	se.s.msgs = append(se.s.msgs, se.msg)
	se.s.mu.Unlock()
	se.s.got <- struct{}{}
	return nil
}

func (se *session) Reset()        { se.msg = Message{} }
func (se *session) Logout() error { return nil }

// loginServer is the server side of AUTH LOGIN (go-sasl has only the
// client).
type loginServer struct {
	check      func(user, pass string) error
	step       int
	user, pass string
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	l.step++
	switch l.step {
	case 1:
		if resp != nil { // initial response: the user name
			l.user = string(resp)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 2:
		l.user = string(resp)
		return []byte("Password:"), false, nil
	case 3:
		l.pass = string(resp)
		return nil, true, l.check(l.user, l.pass)
	}
	return nil, true, errors.New("unexpected response")
}

// selfSigned makes a certificate for 127.0.0.1 and localhost.
func selfSigned() (tls.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "smtptest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, string(p), nil
}
