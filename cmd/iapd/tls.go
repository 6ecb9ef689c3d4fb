package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
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
// neither is). The certificate is reloaded on SIGHUP (added to reloads).
func wrapPublicTLS(cfg Config, ln net.Listener, reloads *hupReloads, log *slog.Logger) (net.Listener, string, error) {
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
	reloads.add("certificate", func() error {
		if err := r.reload(); err != nil {
			return err // logged by the reload loop; the previous one is still served
		}
		r.log.Info("certificate reloaded", "cert", r.certFile)
		return nil
	})
	return tls.NewListener(ln, &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.getCertificate,
		NextProtos:     []string{"http/1.1"}, // fasthttp speaks HTTP/1.1
	}), "https", nil
}
