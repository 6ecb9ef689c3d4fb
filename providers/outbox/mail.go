package outbox

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/internal/mailmsg"
)

// MailDir is the directory of the .eml files in the data directory.
const MailDir = "mail"

// MailPath returns the file an e-mail with this ID is written to.
func (o *Outbox) MailPath(id string) string {
	return filepath.Join(o.dir, MailDir, mailmsg.IDPart(id)+".eml")
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

// compose renders m as the RFC 5322 message smtp would send
// (mailmsg.Compose), its Message-ID's domain that of the From address.
func (o *Outbox) compose(m providers.Email) ([]byte, error) {
	domain := "localhost"
	if at := strings.LastIndexByte(o.from.Address, '@'); at >= 0 {
		domain = o.from.Address[at+1:]
	}
	raw, _, err := mailmsg.Compose(o.name, o.from, m, o.now(), domain)
	return raw, err
}
