package outbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/iapd/iapd/providers"
)

// MailDir is the directory of the .eml files in the data directory.
const MailDir = "mail"

// safeID is an Email.ID usable as it is in a file name and in the left
// part of a Message-ID (a dot-atom without dots at the ends).
var safeID = regexp.MustCompile(`^[A-Za-z0-9_+=-]([A-Za-z0-9._+=-]{0,126}[A-Za-z0-9_+=-])?$`)

// idPart returns the form of id used in the file name and Message-ID:
// id itself when safe, else a hash of it.
func idPart(id string) string {
	if safeID.MatchString(id) && !strings.Contains(id, "..") {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "h" + hex.EncodeToString(sum[:16])
}

// MailPath returns the file an e-mail with this ID is written to.
func (o *Outbox) MailPath(id string) string {
	return filepath.Join(o.dir, MailDir, idPart(id)+".eml")
}

// SendEmail implements providers.EmailSender: it writes m as an RFC 5322
// message to <DataDir>/mail/<id>.eml (a temporary file, fsynced, renamed,
// the directory fsynced). A second call with the same ID does nothing.
// Errors: a missing ID or recipient, or a recipient that is not an
// address → Invalid; the directory cannot be created or written →
// Unavailable (nothing delivered); the rename or directory sync fails →
// Indeterminate.
func (o *Outbox) SendEmail(ctx context.Context, m providers.Email) error {
	if err := ctx.Err(); err != nil {
		return &providers.Error{Provider: o.name, Kind: providers.Unavailable, Msg: "not sent", Err: err}
	}
	raw, err := o.compose(m)
	if err != nil {
		return err
	}
	dir := filepath.Join(o.dir, MailDir)
	unavailable := func(err error) error {
		return &providers.Error{Provider: o.name, Kind: providers.Unavailable, Msg: "mail outbox not writable", Err: err}
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return unavailable(err)
	}
	final := o.MailPath(m.ID)
	o.mailMu.Lock()
	defer o.mailMu.Unlock()
	if _, err := os.Stat(final); err == nil {
		return nil // delivered before: idempotent by ID
	} else if !errors.Is(err, fs.ErrNotExist) {
		return unavailable(err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*.eml")
	if err != nil {
		return unavailable(err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	_, err = tmp.Write(raw)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return unavailable(err)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return unavailable(err)
	}
	if err := syncDir(dir); err != nil {
		return &providers.Error{Provider: o.name, Kind: providers.Indeterminate, Msg: "mail outbox not synced", Err: err}
	}
	o.log.Info("e-mail written to the outbox", "file", filepath.Base(final), "recipients", len(m.To))
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// compose renders m as an RFC 5322 message with CRLF line ends: headers
// in ASCII (non-ASCII words as RFC 2047 encoded words), bodies UTF-8 in
// quoted-printable, multipart/alternative when m.HTML is set.
func (o *Outbox) compose(m providers.Email) ([]byte, error) {
	invalid := func(format string, args ...any) error {
		return &providers.Error{Provider: o.name, Kind: providers.Invalid, Msg: fmt.Sprintf(format, args...)}
	}
	if m.ID == "" {
		return nil, invalid("e-mail without an ID")
	}
	if len(m.To) == 0 {
		return nil, invalid("e-mail without a recipient")
	}
	to := make([]string, len(m.To))
	for i, s := range m.To {
		if strings.ContainsAny(s, "\r\n") {
			return nil, invalid("recipient %d has a line break", i+1)
		}
		a, err := mail.ParseAddress(s)
		if err != nil {
			return nil, invalid("recipient %d is not an address: %v", i+1, err)
		}
		to[i] = a.String()
	}
	domain := "localhost"
	if at := strings.LastIndexByte(o.from.Address, '@'); at >= 0 {
		domain = o.from.Address[at+1:]
	}
	var b bytes.Buffer
	h := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	h("From", o.from.String())
	h("To", strings.Join(to, ", "))
	h("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	h("Date", o.now().Format(time.RFC1123Z))
	h("Message-ID", "<"+idPart(m.ID)+"@"+domain+">")
	h("MIME-Version", "1.0")
	if lang := languageTag(m.Language); lang != "" {
		h("Content-Language", lang)
	}
	h("Auto-Submitted", "auto-generated") // RFC 3834: no auto-replies
	if m.HTML == "" {
		h("Content-Type", "text/plain; charset=utf-8")
		h("Content-Transfer-Encoding", "quoted-printable")
		b.WriteString("\r\n")
		if err := writeQP(&b, m.Text); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, p := range []struct{ ct, text string }{{"text/plain", m.Text}, {"text/html", m.HTML}} {
		w, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {p.ct + "; charset=utf-8"},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		if err != nil {
			return nil, err
		}
		if err := writeQP(w, p.text); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	h("Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": mw.Boundary()}))
	b.WriteString("\r\n")
	b.Write(body.Bytes())
	return b.Bytes(), nil
}

func writeQP(w io.Writer, s string) error {
	qp := quotedprintable.NewWriter(w)
	if _, err := qp.Write([]byte(s)); err != nil {
		return err
	}
	if err := qp.Close(); err != nil {
		return err
	}
	_, err := w.Write([]byte("\r\n"))
	return err
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
