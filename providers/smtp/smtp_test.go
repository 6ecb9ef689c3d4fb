package smtp

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/mail"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/providertest"
	"github.com/iapd/iapd/providers/smtp/smtptest"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// newFor builds a Sender through the registry from YAML settings, as
// cmd/iapd does.
func newFor(t *testing.T, settings string, logs *bytes.Buffer) *Sender {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(settings), &n); err != nil {
		t.Fatal(err)
	}
	deps := providers.Deps{Now: func() time.Time { return time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC) }}
	if logs != nil {
		deps.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	p, err := providers.Builtin.New(providers.Config{Name: "mail", Type: Type, Settings: *n.Content[0]}, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p.(*Sender)
}

func settingsFor(srv *smtptest.Server, extra string) string {
	s := "host: 127.0.0.1\nport: " + itoa(srv.Port()) + "\nfrom: \"IAP <iapd@example.com>\"\nhelo_name: iapd.example.com\n"
	if srv.CAPEM != "" {
		s += "ca_pem: |\n  " + strings.ReplaceAll(strings.TrimSpace(srv.CAPEM), "\n", "\n  ") + "\n"
	}
	return s + extra
}

func itoa(n int) string { b, _ := yaml.Marshal(n); return strings.TrimSpace(string(b)) }

// closedPort returns an address nothing listens on.
func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// TestEmailConformance runs the EmailSender suite against a real SMTP
// server with STARTTLS and AUTH.
func TestEmailConformance(t *testing.T) {
	servers := map[*Sender]*smtptest.Server{}
	providertest.TestEmailSender(t, providertest.EmailHarness{
		New: func(t *testing.T) providers.EmailSender {
			srv := smtptest.Start(t, smtptest.Options{TLS: "starttls", User: "u@example.com", Password: "s3cret"})
			s := newFor(t, settingsFor(srv, "username: u@example.com\npassword: s3cret\n"), nil)
			servers[s] = srv
			return s
		},
		Delivered: func(t *testing.T, s providers.EmailSender, id string) [][]byte {
			var out [][]byte
			for _, m := range servers[s.(*Sender)].Messages() {
				msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
				if err == nil && strings.Contains(msg.Header.Get("Message-Id"), "<"+id+"@") {
					out = append(out, m.Data)
				}
			}
			return out
		},
		Down: func(t *testing.T) providers.EmailSender {
			return newFor(t, "host: 127.0.0.1\nport: "+itoa(closedPort(t))+"\nfrom: iapd@example.com\n", nil)
		},
	})
}

func alert(id string, to ...string) providers.Email {
	return providers.Email{ID: id, To: to, Subject: "Low credit: sms", Text: "3 credits left\n", Language: "en_US"}
}

func TestTLSModesAndAuth(t *testing.T) {
	for _, tc := range []struct {
		name, tls, auth string
	}{
		{"starttls-plain", "starttls", "plain"},
		{"starttls-login", "starttls", "login"},
		{"implicit-auto", "implicit", ""},
		{"opportunistic-offered", "opportunistic", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srvTLS := tc.tls
			if srvTLS == "opportunistic" {
				srvTLS = "starttls"
			}
			srv := smtptest.Start(t, smtptest.Options{TLS: srvTLS, User: "bob", Password: "pw-Zz9"})
			extra := "tls: " + tc.tls + "\nusername: bob\npassword: pw-Zz9\n"
			if tc.auth != "" {
				extra += "auth: " + tc.auth + "\n"
			}
			var logs bytes.Buffer
			s := newFor(t, settingsFor(srv, extra), &logs)
			if err := s.SendEmail(ctx(t), alert("a-1", "ops@example.com")); err != nil {
				t.Fatal(err)
			}
			ms := srv.Messages()
			if len(ms) != 1 || !ms[0].TLS || ms[0].User != "bob" || ms[0].From != "iapd@example.com" || ms[0].To[0] != "ops@example.com" {
				t.Fatalf("received %+v", ms)
			}
			if strings.Contains(logs.String(), "pw-Zz9") {
				t.Fatal("password in the logs")
			}
		})
	}
}

func TestOpportunisticWithoutTLS(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	s := newFor(t, settingsFor(srv, "tls: opportunistic\n"), nil)
	if err := s.SendEmail(ctx(t), alert("a-2", "ops@example.com")); err != nil {
		t.Fatal(err)
	}
	if ms := srv.Messages(); len(ms) != 1 || ms[0].TLS {
		t.Fatalf("received %+v", ms)
	}
}

// TestClassification: what becomes of the message decides the kind.
func TestClassification(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     smtptest.Options
		extra    string
		to       string
		want     providers.Kind
		code     string
		received int // messages the server kept
	}{
		{"starttls required, not offered", smtptest.Options{}, "", "ops@example.com", providers.Unavailable, "", 0},
		{"wrong password", smtptest.Options{TLS: "starttls", User: "bob", Password: "right"}, "username: bob\npassword: wrong-Q7\n", "ops@example.com", providers.Unavailable, "535", 0},
		{"password over plain text refused", smtptest.Options{User: "bob", Password: "pw"}, "tls: opportunistic\nusername: bob\npassword: pw\n", "ops@example.com", providers.Unavailable, "", 0},
		{"4xx at MAIL FROM", smtptest.Options{TempFail: true}, "tls: none\n", "ops@example.com", providers.Unavailable, "451", 0},
		{"5xx recipient", smtptest.Options{RejectRcpt: "nobody"}, "tls: none\n", "nobody@example.com", providers.Invalid, "550", 0},
		{"5xx after DATA", smtptest.Options{RejectData: true}, "tls: none\n", "ops@example.com", providers.Invalid, "554", 0},
		{"no answer after the message", smtptest.Options{DropAfterData: true}, "tls: none\n", "ops@example.com", providers.Indeterminate, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.Start(t, tc.opts)
			s := newFor(t, settingsFor(srv, tc.extra), nil)
			err := s.SendEmail(ctx(t), alert("c-1", tc.to))
			var pe *providers.Error
			if !errors.As(err, &pe) || pe.Kind != tc.want || pe.Code != tc.code {
				t.Fatalf("SendEmail = %v, want %v code %q", err, tc.want, tc.code)
			}
			if strings.Contains(err.Error(), "wrong-Q7") {
				t.Fatal("password in the error")
			}
			if n := len(srv.Messages()); n != tc.received {
				t.Fatalf("%d messages kept", n)
			}
		})
	}
}

func TestUnreachableAndCancelled(t *testing.T) {
	s := newFor(t, "host: 127.0.0.1\nport: "+itoa(closedPort(t))+"\nfrom: iapd@example.com\ntls: implicit\n", nil)
	if err := s.SendEmail(ctx(t), alert("u-1", "ops@example.com")); providers.KindOf(err) != providers.Unavailable {
		t.Fatalf("closed port: %v", err)
	}
	srv := smtptest.Start(t, smtptest.Options{})
	s = newFor(t, settingsFor(srv, "tls: none\n"), nil)
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.SendEmail(c, alert("u-2", "ops@example.com")); providers.KindOf(err) != providers.Unavailable {
		t.Fatalf("cancelled: %v", err)
	}
	if len(srv.Messages()) != 0 {
		t.Fatal("sent with a cancelled context")
	}
}

// TestTimeoutBeforeGreeting: a server that accepts but never speaks is
// Unavailable within the configured timeout.
func TestTimeoutBeforeGreeting(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	s := newFor(t, "host: 127.0.0.1\nport: "+itoa(l.Addr().(*net.TCPAddr).Port)+"\nfrom: iapd@example.com\ntls: none\ntimeout: 200ms\n", nil)
	if err := s.SendEmail(ctx(t), alert("t-1", "ops@example.com")); providers.KindOf(err) != providers.Unavailable {
		t.Fatalf("silent server: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, bad := range []string{
		"from: a@b.c\n",                       // no host
		"host: h\n",                           // no from
		"host: h\nfrom: a@b.c\ntls: ssl\n",    // unknown mode
		"host: h\nfrom: a@b.c\nport: 70000\n", // port
		"host: h\nfrom: a@b.c\nusername: u\n", // password missing
		"host: h\nfrom: a@b.c\ntls: none\nusername: u\npassword: p\n", // clear auth
		"host: h\nfrom: a@b.c\nauth: cram-md5\nusername: u\npassword: p\n",
		"host: h\nfrom: a@b.c\nca_pem: nope\n",
		"host: h\nfrom: a@b.c\nunknown_key: 1\n",
	} {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(bad), &n); err != nil {
			t.Fatal(err)
		}
		if _, err := providers.Builtin.New(providers.Config{Name: "m", Type: Type, Settings: *n.Content[0]}, providers.Deps{}); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	c := Config{Host: "smtp.example.com", From: "a@example.com", TLS: "implicit"}
	if err := c.Validate(); err != nil || c.Port != 465 || c.HeloName != "localhost" {
		t.Fatalf("defaults: %v %+v", err, c)
	}
}
