package outbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/providertest"
)

func newOutbox(t *testing.T, dir, settings string) *Outbox {
	t.Helper()
	cfg := providers.Config{Name: "sandbox", Type: Type}
	if settings != "" {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(settings), &doc); err != nil {
			t.Fatal(err)
		}
		cfg.Settings = *doc.Content[0]
	}
	p, err := providers.Builtin.New(cfg, providers.Deps{
		Logger:  slog.New(slog.DiscardHandler),
		DataDir: dir,
		Now:     func() time.Time { return time.Date(2026, 11, 28, 14, 0, 0, 0, time.UTC) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p.(*Outbox)
}

// notADir is a data directory the outbox cannot write to: a path under a
// regular file.
func notADir(t *testing.T) string {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(f, "data")
}

func TestSMSConformance(t *testing.T) {
	providertest.TestSMSSender(t, providertest.SMSHarness{
		New: func(t *testing.T) providers.SMSSender {
			return newOutbox(t, t.TempDir(), "reject_prefixes: [\"+999\"]")
		},
		Down:          func(t *testing.T) providers.SMSSender { return newOutbox(t, notADir(t), "") },
		Rejected:      "+999123456789",
		ReportsItself: true,
		StatusURL:     "http://iapd.test/providers/sandbox/status",
	})
}

func TestEmailConformance(t *testing.T) {
	providertest.TestEmailSender(t, providertest.EmailHarness{
		New: func(t *testing.T) providers.EmailSender {
			return newOutbox(t, t.TempDir(), `from: "Alertes iapd <alerts@iapd.example>"`)
		},
		Down: func(t *testing.T) providers.EmailSender { return newOutbox(t, notADir(t), "") },
		Delivered: func(t *testing.T, s providers.EmailSender, id string) [][]byte {
			b, err := os.ReadFile(s.(*Outbox).MailPath(id))
			if os.IsNotExist(err) {
				return nil
			}
			if err != nil {
				t.Fatal(err)
			}
			return [][]byte{b}
		},
	})
}

// TestSMSFile checks the JSONL outbox: one line per message sent, in
// order, with what was sent, and the report going to the sink.
func TestSMSFile(t *testing.T) {
	dir := t.TempDir()
	o := newOutbox(t, dir, "report_status: undelivered")
	got := make(chan []providers.DeliveryReport, 1)
	o.SetSink(func(_ context.Context, _ string, r []providers.DeliveryReport) {
		got <- r
	})
	msgs := []providers.SMS{
		{ID: "0a1b2c3d4e5f60718293a4b5c6d7e8f9", To: "+32470123456", Body: "Ünïcödé\nline 2", Sender: "iapd", StatusURL: "http://iapd.test/x"},
		{ID: "bad", To: "32470", Body: "x"},
		{ID: "1a1b2c3d4e5f60718293a4b5c6d7e8f9", To: "+33612345678", Body: "second"},
	}
	res, err := o.SendSMS(context.Background(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Status != providers.SMSAccepted || res[1].Err == nil || res[1].Err.Code != "wrong_number_format" || res[2].Err != nil {
		t.Fatalf("results %+v", res)
	}
	f, err := os.Open(filepath.Join(dir, SMSFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []SMSLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l SMSLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	if l := lines[0]; l.ID != msgs[0].ID || l.To != msgs[0].To || l.Body != msgs[0].Body || l.Sender != "iapd" ||
		l.ProviderID != res[0].ProviderID || l.StatusURL != msgs[0].StatusURL || l.Report != "undelivered" || !l.Time.Equal(time.Date(2026, 11, 28, 14, 0, 0, 0, time.UTC)) {
		t.Errorf("line 0 = %+v", l)
	}
	if lines[1].ID != msgs[2].ID {
		t.Errorf("line 1 = %+v", lines[1])
	}
	select {
	case r := <-got:
		if len(r) != 2 || r[0].ProviderID != res[0].ProviderID || r[1].ProviderID != res[2].ProviderID || r[0].Status != providers.SMSUndelivered {
			t.Errorf("reports %+v", r)
		}
	case <-time.After(time.Minute):
		t.Fatal("no report")
	}
}

// TestNoSinkDelivered: without a sink the send result itself says
// delivered (nobody would hear a report).
func TestNoSinkDelivered(t *testing.T) {
	o := newOutbox(t, t.TempDir(), "")
	res, err := o.SendSMS(context.Background(), []providers.SMS{{ID: "a", To: "+32470123456", Body: "x"}})
	if err != nil || res[0].Status != providers.SMSDelivered {
		t.Fatalf("%+v %v", res, err)
	}
}

// TestEmailFile pins the .eml layout: CRLF lines, encoded headers, a
// hashed name for an ID unfit for a file name, no temporary files left.
func TestEmailFile(t *testing.T) {
	dir := t.TempDir()
	o := newOutbox(t, dir, "")
	m := providers.Email{ID: "../../etc/passwd", To: []string{"Zoë <zoe@example.org>"}, Subject: "Crédit", Text: "é", Language: "fr_FR"}
	if err := o.SendEmail(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, MailDir))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || !strings.HasPrefix(entries[0].Name(), "h") || !strings.HasSuffix(entries[0].Name(), ".eml") {
		t.Fatalf("mail dir holds %v", entries)
	}
	raw, err := os.ReadFile(o.MailPath(m.ID))
	if err != nil {
		t.Fatal(err)
	}
	head, body, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	for _, want := range []string{
		"From: \"iapd\" <iapd@localhost>\r\n",
		"To: =?utf-8?q?Zo=C3=AB?= <zoe@example.org>\r\n",
		"Subject: =?utf-8?q?Cr=C3=A9dit?=\r\n",
		"Date: Sat, 28 Nov 2026 14:00:00 +0000\r\n",
		"Message-ID: <" + strings.TrimSuffix(entries[0].Name(), ".eml") + "@localhost>\r\n",
		"Content-Language: fr-FR\r\n",
		"Content-Transfer-Encoding: quoted-printable\r\n",
	} {
		if !bytes.Contains(append(head, "\r\n"...), []byte(want)) {
			t.Errorf("header %q missing in\n%s", want, head)
		}
	}
	if string(body) != "=C3=A9\r\n" {
		t.Errorf("body %q", body)
	}
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
		t.Error("bare LF in the message")
	}
}

func TestConfigStrict(t *testing.T) {
	for _, s := range []string{"colour: red", "report_status: lost", "from: nobody", "reject_prefixes: [\"32\"]"} {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(s), &doc); err != nil {
			t.Fatal(err)
		}
		_, err := providers.Builtin.New(providers.Config{Name: "x", Type: Type, Settings: *doc.Content[0]}, providers.Deps{DataDir: t.TempDir()})
		if err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	if _, err := providers.Builtin.New(providers.Config{Name: "x", Type: Type}, providers.Deps{}); err == nil {
		t.Error("no data dir accepted")
	}
}

// The outbox never sends: always a sandbox, whatever its settings.
func TestSandbox(t *testing.T) {
	if !newOutbox(t, t.TempDir(), "report_status: none\n").Sandbox() {
		t.Error("the outbox is not reported as a sandbox")
	}
}
