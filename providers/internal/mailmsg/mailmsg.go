// Package mailmsg renders a providers.Email as the RFC 5322 message that
// both the smtp adapter sends and the outbox adapter writes, so that one
// alert gets the same Message-ID and the same form through either.
//
// It imports providers and the standard library, nothing else of iapd.
package mailmsg

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
	"time"

	"github.com/iapd/iapd/providers"
)

// safeID is an Email.ID usable as it is in a file name and in the left
// part of a Message-ID (a dot-atom without dots at the ends).
var safeID = regexp.MustCompile(`^[A-Za-z0-9_+=-]([A-Za-z0-9._+=-]{0,126}[A-Za-z0-9_+=-])?$`)

// IDPart returns the form of id used in a Message-ID (and the outbox's
// file name): id itself when safe, else "h" and a hash of it.
func IDPart(id string) string {
	if safeID.MatchString(id) && !strings.Contains(id, "..") {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "h" + hex.EncodeToString(sum[:16])
}

// Compose checks m and renders it as an RFC 5322 message with CRLF line
// ends (headers in ASCII, RFC 2047 words for the rest; UTF-8 bodies in
// quoted-printable; multipart/alternative when m.HTML is set), with the
// Message-ID <IDPart(m.ID)@domain>. It returns the message and the
// envelope recipients. Its only errors are Invalid, for a message that
// can never be sent (no ID, no recipient, a recipient that is not an
// address), naming provider.
func Compose(provider string, from *mail.Address, m providers.Email, now time.Time, domain string) ([]byte, []string, error) {
	invalid := func(format string, args ...any) error {
		return providers.Errorf(provider, providers.Invalid, format, args...)
	}
	if m.ID == "" {
		return nil, nil, invalid("e-mail without an ID")
	}
	if len(m.To) == 0 {
		return nil, nil, invalid("e-mail without a recipient")
	}
	to := make([]string, len(m.To))
	rcpts := make([]string, len(m.To))
	for i, s := range m.To {
		if strings.ContainsAny(s, "\r\n") {
			return nil, nil, invalid("recipient %d has a line break", i+1)
		}
		a, err := mail.ParseAddress(s)
		if err != nil {
			return nil, nil, invalid("recipient %d is not an address: %v", i+1, err)
		}
		to[i] = a.String()
		rcpts[i] = a.Address
	}
	var b bytes.Buffer
	h := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	h("From", from.String())
	h("To", strings.Join(to, ", "))
	h("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	h("Date", now.Format(time.RFC1123Z))
	h("Message-ID", "<"+IDPart(m.ID)+"@"+domain+">")
	h("MIME-Version", "1.0")
	if lang := languageTag(m.Language); lang != "" {
		h("Content-Language", lang)
	}
	h("Auto-Submitted", "auto-generated") // RFC 3834: no auto-replies
	if m.HTML == "" {
		h("Content-Type", "text/plain; charset=utf-8")
		h("Content-Transfer-Encoding", "quoted-printable")
		b.WriteString("\r\n")
		writeQP(&b, m.Text)
		return b.Bytes(), rcpts, nil
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, p := range []struct{ ct, text string }{{"text/plain", m.Text}, {"text/html", m.HTML}} {
		w, _ := mw.CreatePart(textproto.MIMEHeader{ // writes to a bytes.Buffer: no error
			"Content-Type":              {p.ct + "; charset=utf-8"},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		writeQP(w, p.text)
	}
	_ = mw.Close()
	h("Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": mw.Boundary()}))
	b.WriteString("\r\n")
	b.Write(body.Bytes())
	return b.Bytes(), rcpts, nil
}

// writeQP writes s quoted-printable with CRLF line ends to w, which
// writes to memory.
func writeQP(w io.Writer, s string) {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
	qp := quotedprintable.NewWriter(w)
	_, _ = qp.Write([]byte(s))
	_ = qp.Close()
	_, _ = w.Write([]byte("\r\n"))
}

var langRE = regexp.MustCompile(`^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$`)

// languageTag turns Odoo's "fr_FR" into the BCP 47 "fr-FR" of
// Content-Language; anything else is dropped.
func languageTag(s string) string {
	s = strings.ReplaceAll(s, "_", "-")
	if langRE.MatchString(s) {
		return s
	}
	return ""
}
