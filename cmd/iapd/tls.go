package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
)

// certReloader holds the public listener's certificate, read from
// tls_cert_file and tls_key_file and read again on SIGHUP: a renewed
// certificate is served to new connections without a restart. A reload
// that fails keeps the previous certificate (and logs why).
type certReloader struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
	log               *slog.Logger
}

// reload reads the key pair and makes it the one served.
func (r *certReloader) reload() error {
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tls_cert_file/tls_key_file: %w", err)
	}
	r.cert.Store(&c)
	return nil
}

// getCertificate is tls.Config.GetCertificate.
func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// wrapPublicTLS returns ln serving TLS and the scheme "https" when
// tls_cert_file and tls_key_file are set (ln as is and "http" when
// neither is). The certificate is reloaded on SIGHUP until ctx is done.
func wrapPublicTLS(ctx context.Context, cfg Config, ln net.Listener, log *slog.Logger) (net.Listener, string, error) {
	if cfg.TLSCertFile == "" && cfg.TLSKeyFile == "" {
		return ln, "http", nil
	}
	if cfg.TLSCertFile == "" || cfg.TLSKeyFile == "" {
		return nil, "", errors.New("config: tls_cert_file and tls_key_file go together: set both, or neither for plain HTTP")
	}
	r := &certReloader{certFile: cfg.TLSCertFile, keyFile: cfg.TLSKeyFile, log: log.With("component", "tls")}
	if err := r.reload(); err != nil {
		return nil, "", fmt.Errorf("config: %w", err)
	}
	reloadOnHUP := onSIGHUP(func() {
		if err := r.reload(); err != nil {
			r.log.Error("reloading the certificate on SIGHUP failed; the previous one is still served", "err", err)
			return
		}
		r.log.Info("certificate reloaded", "cert", r.certFile)
	})
	go reloadOnHUP(ctx)
	return tls.NewListener(ln, &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.getCertificate,
		NextProtos:     []string{"http/1.1"}, // fasthttp speaks HTTP/1.1
	}), "https", nil
}

// onSIGHUP listens for SIGHUP from now on and returns the loop that calls
// f on each one, until ctx is done; then it stops listening.
func onSIGHUP(f func()) func(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return func(ctx context.Context) {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				f()
			}
		}
	}
}
