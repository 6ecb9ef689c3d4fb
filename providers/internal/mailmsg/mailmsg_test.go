package mailmsg

import (
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/iapd/iapd/providers"
)

func TestIDPart(t *testing.T) {
	for id, want := range map[string]bool{"alert-1.acct": true, "a": true, ".x": false, "a..b": false, "a b": false, "x/../y": false} {
		got := IDPart(id)
		if (got == id) != want {
			t.Errorf("IDPart(%q) = %q, kept as is: %v, want %v", id, got, got == id, want)
		}
		if !want && (!strings.HasPrefix(got, "h") || len(got) != 33 || !safeID.MatchString(got)) {
			t.Errorf("IDPart(%q) = %q, want h and 32 hex digits", id, got)
		}
	}
}

func TestCompose(t *testing.T) {
	from := &mail.Address{Name: "iapd", Address: "ops@example.org"}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m := providers.Email{ID: "a b", To: []string{"Ann <ann@example.com>", "bob@example.com"}, Subject: "Crédit bas", Text: "line 1\nline 2", Language: "fr_FR"}
	raw, rcpts, err := Compose("p", from, m, now, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rcpts, ",") != "ann@example.com,bob@example.com" {
		t.Errorf("recipients %q", rcpts)
	}
	msg, err := mail.ReadMessage(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("not RFC 5322: %v\n%s", err, raw)
	}
	for k, want := range map[string]string{
		"Message-ID":       "<" + IDPart("a b") + "@example.org>",
		"Subject":          "=?utf-8?q?Cr=C3=A9dit_bas?=",
		"Content-Language": "fr-FR",
		"Date":             "Fri, 02 Jan 2026 03:04:05 +0000",
		"Auto-Submitted":   "auto-generated",
	} {
		if got := msg.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if !strings.Contains(string(raw), "\r\n\r\nline 1\r\nline 2\r\n") {
		t.Errorf("body not in CRLF lines:\n%q", raw)
	}

	for _, bad := range []providers.Email{
		{To: []string{"a@b.c"}},
		{ID: "x"},
		{ID: "x", To: []string{"not an address"}},
		{ID: "x", To: []string{"a@b.c\r\nBcc: e@f.g"}},
	} {
		if _, _, err := Compose("p", from, bad, now, "d"); providers.KindOf(err) != providers.Invalid {
			t.Errorf("Compose(%+v): %v, want Invalid", bad, err)
		}
	}
}
