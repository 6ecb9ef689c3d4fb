package providertest

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"

	"github.com/iapd/iapd/providers"
)

// EmailHarness describes an EmailSender under test.
type EmailHarness struct {
	// New returns a fresh instance whose delivery works. It registers the
	// instance's Close with t.Cleanup.
	New func(t *testing.T) providers.EmailSender
	// Delivered returns every message the instance delivered so far whose
	// Message-ID was made from id, as raw RFC 5322 bytes.
	Delivered func(t *testing.T, s providers.EmailSender, id string) [][]byte
	// Down returns an instance that cannot deliver (server unreachable,
	// directory unwritable): SendEmail must fail Unavailable.
	Down func(t *testing.T) providers.EmailSender
}

// TestEmailSender runs the EmailSender conformance suite.
func TestEmailSender(t *testing.T, h EmailHarness) {
	t.Helper()
	if h.New == nil || h.Delivered == nil || h.Down == nil {
		t.Fatal("providertest: EmailHarness needs New, Delivered and Down")
	}
	t.Run("Identity", func(t *testing.T) {
		s := h.New(t)
		if s.Name() == "" || s.Type() == "" {
			t.Errorf("Name() = %q, Type() = %q; want both set", s.Name(), s.Type())
		}
	})
	t.Run("Text", func(t *testing.T) {
		s := h.New(t)
		m := providers.Email{
			ID:       "alert-text-1",
			To:       []string{"ops@example.com", "Zoë Lefèvre <zoe@example.org>"},
			Subject:  "Crédit faible — SMS: 12.5 crédits restants",
			Text:     "Bonjour,\n\nIl reste 12.5 crédits (seuil : 20).\nRecharger : https://iap.example.com/iap/1/credit?x=1&y=2\n",
			Language: "fr",
		}
		if err := s.SendEmail(ctx(t), m); err != nil {
			t.Fatalf("SendEmail: %v", err)
		}
		msg := one(t, h.Delivered(t, s, m.ID), m.ID)
		checkHeaders(t, msg, m)
		ct, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
		if err != nil || ct != "text/plain" {
			t.Fatalf("Content-Type %q (%v), want text/plain", msg.Header.Get("Content-Type"), err)
		}
		if cs := strings.ToLower(params["charset"]); cs != "utf-8" {
			t.Errorf("charset %q, want utf-8", cs)
		}
		checkBody(t, "text", decodePart(t, msg.Header.Get("Content-Transfer-Encoding"), msg.Body), m.Text)
	})
	t.Run("HTML", func(t *testing.T) {
		s := h.New(t)
		m := providers.Email{
			ID:      "alert-html-1",
			To:      []string{"ops@example.com"},
			Subject: "Low credit: SMS",
			Text:    "Your SMS balance is 3 credits.",
			HTML:    "<p>Your <b>SMS</b> balance is 3 credits. <a href=\"https://iap.example.com/\">Buy credits</a></p>",
		}
		if err := s.SendEmail(ctx(t), m); err != nil {
			t.Fatalf("SendEmail: %v", err)
		}
		msg := one(t, h.Delivered(t, s, m.ID), m.ID)
		checkHeaders(t, msg, m)
		ct, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
		if err != nil || ct != "multipart/alternative" {
			t.Fatalf("Content-Type %q (%v), want multipart/alternative", msg.Header.Get("Content-Type"), err)
		}
		mr := multipart.NewReader(msg.Body, params["boundary"])
		var types []string
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("multipart: %v", err)
			}
			pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
			types = append(types, pt)
			body := decodePart(t, p.Header.Get("Content-Transfer-Encoding"), p)
			switch pt {
			case "text/plain":
				checkBody(t, "text part", body, m.Text)
			case "text/html":
				checkBody(t, "html part", body, m.HTML)
			}
		}
		if strings.Join(types, ",") != "text/plain,text/html" {
			t.Errorf("parts %v, want text/plain then text/html (the preferred last)", types)
		}
	})
	t.Run("RetrySameID", func(t *testing.T) {
		s := h.New(t)
		m := providers.Email{ID: "alert-retry-1", To: []string{"ops@example.com"}, Subject: "Low credit", Text: "3 credits left"}
		for i := 0; i < 2; i++ {
			if err := s.SendEmail(ctx(t), m); err != nil {
				t.Fatalf("SendEmail #%d: %v", i+1, err)
			}
		}
		got := h.Delivered(t, s, m.ID)
		if len(got) == 0 {
			t.Fatal("nothing delivered")
		}
		var first string
		for i, raw := range got {
			msg, err := mail.ReadMessage(bytes.NewReader(raw))
			if err != nil {
				t.Fatalf("copy %d: %v", i, err)
			}
			if i == 0 {
				first = msg.Header.Get("Message-Id")
			} else if msg.Header.Get("Message-Id") != first {
				t.Errorf("copies carry different Message-IDs %q and %q", first, msg.Header.Get("Message-Id"))
			}
		}
	})
	t.Run("Invalid", func(t *testing.T) {
		s := h.New(t)
		for i, m := range []providers.Email{
			{ID: "inv-1", Subject: "no recipient", Text: "x"},
			{ID: "inv-2", To: []string{"not an address"}, Subject: "bad recipient", Text: "x"},
			{ID: "inv-3", To: []string{"ops@example.com\r\nBcc: evil@example.net"}, Subject: "injected recipient", Text: "x"},
			{ID: "", To: []string{"ops@example.com"}, Subject: "no id", Text: "x"},
		} {
			err := s.SendEmail(ctx(t), m)
			if err == nil || providers.KindOf(err) != providers.Invalid {
				t.Errorf("case %d: SendEmail = %v, want Invalid", i+1, err)
			}
		}
	})
	t.Run("HeaderInjection", func(t *testing.T) {
		s := h.New(t)
		m := providers.Email{ID: "alert-inject-1", To: []string{"ops@example.com"}, Subject: "Low credit\r\nBcc: evil@example.net", Text: "x"}
		err := s.SendEmail(ctx(t), m)
		if err != nil {
			if providers.KindOf(err) != providers.Invalid {
				t.Fatalf("SendEmail = %v, want success or Invalid", err)
			}
			return
		}
		for _, raw := range h.Delivered(t, s, m.ID) {
			msg, err := mail.ReadMessage(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			if len(msg.Header["Bcc"]) != 0 {
				t.Errorf("a Subject with CRLF added a Bcc header:\n%s", raw)
			}
		}
	})
	t.Run("Down", func(t *testing.T) {
		err := h.Down(t).SendEmail(ctx(t), providers.Email{ID: "alert-down-1", To: []string{"ops@example.com"}, Subject: "x", Text: "x"})
		if err == nil || providers.KindOf(err) != providers.Unavailable {
			t.Errorf("SendEmail = %v, want Unavailable", err)
		}
	})
}

func one(t *testing.T, got [][]byte, id string) *mail.Message {
	t.Helper()
	if len(got) != 1 {
		t.Fatalf("%d messages delivered for %s, want 1", len(got), id)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(got[0]))
	if err != nil {
		t.Fatalf("delivered message does not parse: %v\n%s", err, got[0])
	}
	return msg
}

func checkHeaders(t *testing.T, msg *mail.Message, m providers.Email) {
	t.Helper()
	if _, err := mail.ParseAddress(msg.Header.Get("From")); err != nil {
		t.Errorf("From %q: %v", msg.Header.Get("From"), err)
	}
	to, err := msg.Header.AddressList("To")
	if err != nil || len(to) != len(m.To) {
		t.Errorf("To %q (%v), want %d addresses", msg.Header.Get("To"), err, len(m.To))
	}
	for i, a := range to {
		want, _ := mail.ParseAddress(m.To[i])
		if want != nil && (a.Address != want.Address || a.Name != want.Name) {
			t.Errorf("To[%d] = %v, want %v", i, a, want)
		}
	}
	subj, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil || subj != m.Subject {
		t.Errorf("Subject decodes to %q (%v), want %q", subj, err, m.Subject)
	}
	if _, err := msg.Header.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	id := msg.Header.Get("Message-Id")
	if !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, ">") || !strings.Contains(id, "@") || !strings.Contains(id, m.ID) {
		t.Errorf("Message-ID %q, want <…%s…@…>", id, m.ID)
	}
	if v := msg.Header.Get("Mime-Version"); v != "1.0" {
		t.Errorf("MIME-Version %q", v)
	}
	if m.Language != "" && msg.Header.Get("Content-Language") != m.Language {
		t.Errorf("Content-Language %q, want %q", msg.Header.Get("Content-Language"), m.Language)
	}
	for k, vs := range msg.Header {
		for _, v := range vs {
			for _, r := range v {
				if r > 127 {
					t.Errorf("header %s has a raw non-ASCII character: %q", k, v)
					break
				}
			}
		}
	}
}

func decodePart(t *testing.T, cte string, r io.Reader) string {
	t.Helper()
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, newlineStripper{r})
	case "", "7bit", "8bit":
	default:
		t.Fatalf("unexpected Content-Transfer-Encoding %q", cte)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decoding %s body: %v", cte, err)
	}
	return string(b)
}

type newlineStripper struct{ r io.Reader }

func (n newlineStripper) Read(p []byte) (int, error) {
	k, err := n.r.Read(p)
	j := 0
	for _, c := range p[:k] {
		if c != '\r' && c != '\n' {
			p[j] = c
			j++
		}
	}
	return j, err
}

func checkBody(t *testing.T, what, got, want string) {
	t.Helper()
	norm := func(s string) string {
		return strings.TrimRight(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	}
	if norm(got) != norm(want) {
		t.Errorf("%s body = %q, want %q", what, got, want)
	}
}
