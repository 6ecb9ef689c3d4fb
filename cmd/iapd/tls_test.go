package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/iapd/iapd/rpc/rpctest"
)

// testCA is a certificate authority made for one test, as a site makes
// its own to serve Odoo's IAP host names.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "iapd test site CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue writes a server certificate for Odoo's IAP host names (and
// localhost) signed by ca, with the given serial, to certFile/keyFile.
func (ca *testCA) issue(t *testing.T, serial int64, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "iap.odoo.com"},
		DNSNames: []string{"iap.odoo.com", "sms.api.odoo.com", "iap-sms.odoo.com", "iap-snailmail.odoo.com",
			"partner-autocomplete.odoo.com", "iap-services.odoo.com", "localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Written beside and renamed, as a certificate renewal tool does.
	for _, f := range []struct {
		name string
		data []byte
	}{
		{certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})},
		{keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})},
	} {
		if err := os.WriteFile(f.name+".new", f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f.name+".new", f.name); err != nil {
			t.Fatal(err)
		}
	}
}

var httpsLine = regexp.MustCompile(`(?m)^iapd: public https://(\S+)$`)

// TestTLSPublicListener serves the public listener over TLS with a
// certificate of a site's own CA for Odoo's IAP host names. A client that
// trusts the CA and resolves those names to iapd (as the site's DNS would)
// reaches every route with Odoo's captured requests; a client that does
// not trust it is refused; SIGHUP swaps the certificate for a renewed one
// without a restart.
func TestTLSPublicListener(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "iapd.crt"), filepath.Join(dir, "iapd.key")
	ca := newTestCA(t)
	ca.issue(t, 100, certFile, keyFile)
	cfgPath := filepath.Join(dir, "iapd.yaml")
	if err := os.WriteFile(cfgPath, []byte("tls_cert_file: "+certFile+"\ntls_key_file: "+keyFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "-config", cfgPath, "-listen", "127.0.0.1:0", "-ops-listen", "127.0.0.1:0",
			"-data", filepath.Join(dir, "data")}, func(string) string { return "" }, strings.NewReader(""), stdout, stderr)
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("run did not return")
		}
	}()
	var addr string
	deadline := time.After(time.Minute)
	for addr == "" {
		if m := httpsLine.FindStringSubmatch(stdout.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case err := <-done:
			done <- nil // for the deferred wait
			t.Fatalf("run returned %v before serving:\n%s", err, stderr.String())
		case <-deadline:
			t.Fatalf("no https address printed:\n%s%s", stdout.String(), stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
	}

	// The site's DNS sends Odoo's host names to iapd: here, the dialer.
	var lastSerial atomic.Int64 // serial of the certificate of the last handshake
	client := func(pool *x509.CertPool) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
			TLSClientConfig: &tls.Config{RootCAs: pool, VerifyConnection: func(cs tls.ConnectionState) error {
				lastSerial.Store(cs.PeerCertificates[0].SerialNumber.Int64())
				return nil
			}},
			DisableKeepAlives: true,
		}}
	}
	trusting := client(ca.pool)

	hosts := map[string]string{ // route prefix → Odoo's default host (PROTOCOL §2)
		"/iap/sms/": "https://sms.api.odoo.com", "/api/sms/": "https://sms.api.odoo.com",
		"/iap/snailmail/": "https://iap-snailmail.odoo.com", "/api/dnb/": "https://partner-autocomplete.odoo.com",
		"/iap/partner_autocomplete/": "https://partner-autocomplete.odoo.com", "/iap/clearbit/": "https://iap-services.odoo.com",
	}
	hostOf := func(path string) string {
		for p, h := range hosts {
			if strings.HasPrefix(path, p) {
				return h
			}
		}
		return "https://iap.odoo.com"
	}
	served := map[string]bool{}
	for _, v := range rpctest.Versions {
		for _, r := range rpctest.Load(t, v, fixturePath) {
			code, got := proxyPost(t, trusting, hostOf(r.Path)+r.Path, r.Wire(t))
			if code != 200 {
				t.Fatalf("%s/%s over TLS: HTTP %d %s", v, r.Name, code, got)
			}
			odooReadable(t, v+"/"+r.Name, got)
			if !bytes.Contains(got, r.ID(t)) {
				t.Errorf("%s/%s: id not echoed: %s", v, r.Name, got)
			}
			served[r.Path] = true
		}
	}
	if len(served) < 20 || lastSerial.Load() != 100 {
		t.Fatalf("%d routes reached, serial %v", len(served), lastSerial.Load())
	}
	// The balance really comes from the ledger over TLS.
	_, got := proxyPost(t, trusting, "https://iap.odoo.com/iap/1/balance",
		[]byte(`{"jsonrpc":"2.0","method":"call","id":9,"params":{"dbuuid":"d","account_token":"0123456789abcdef0123456789abcdef","service_name":"sms"}}`))
	if res, name := odooReadable(t, "balance", got); name != "" || strings.Trim(string(res), "0.") != "" {
		t.Errorf("balance over TLS: %s", got)
	}

	// Not trusting the site's CA: the handshake fails.
	if _, err := client(x509.NewCertPool()).Post("https://iap.odoo.com/iap/1/balance", "application/json", strings.NewReader("{}")); err == nil ||
		!strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted client: %v", err)
	}

	// Renewal: new files, SIGHUP, and new connections get the new one.
	ca.issue(t, 200, certFile, keyFile)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline = time.After(time.Minute)
	for !strings.Contains(stderr.String(), "certificate reloaded") {
		select {
		case <-deadline:
			t.Fatalf("no reload after SIGHUP:\n%s", stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	if code, _ := proxyPost(t, trusting, "https://iap.odoo.com/iap/1/balance", []byte(`{"jsonrpc":"2.0","method":"call","id":1,"params":{}}`)); code != 200 || lastSerial.Load() != 200 {
		t.Fatalf("after SIGHUP: HTTP %d, serial %v; want the renewed certificate", code, lastSerial.Load())
	}

	// A broken renewal keeps the certificate being served.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(stderr.String(), "the previous one is still served") {
		select {
		case <-deadline:
			t.Fatalf("no failed reload logged:\n%s", stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	if code, _ := proxyPost(t, trusting, "https://iap.odoo.com/iap/1/balance", []byte(`{"jsonrpc":"2.0","method":"call","id":1,"params":{}}`)); code != 200 || lastSerial.Load() != 200 {
		t.Fatalf("after a broken renewal: HTTP %d, serial %v", code, lastSerial.Load())
	}
}

// TestTLSConfigNeedsBoth: a certificate without its key is refused at
// startup.
func TestTLSConfigNeedsBoth(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "iapd.yaml")
	if err := os.WriteFile(cfg, []byte("tls_cert_file: "+filepath.Join(dir, "x.crt")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tryStartServer(t, nil, "-config", cfg); err == nil || !strings.Contains(err.Error(), "tls_key_file") {
		t.Fatalf("err = %v", err)
	}
}
