// Package folder is the sandbox / in-house print room letter provider:
// each letter is written to a directory as <send_id>.pdf (the document)
// and <send_id>.json (the address sheet: recipient, return address,
// options, pages, iapd's letter id), for a person or a script to print
// and post. Nothing leaves the machine. It is iapd's default snailmail
// provider, so that Odoo's "Send by post" can be tried without a print
// service.
//
// Files are written atomically (temporary file, fsync, rename, fsync of
// the directory): a letter is accepted only once both files are durable,
// and the address sheet, written last, marks the letter complete. Write
// failures are Unavailable (nothing was accepted, the partial files are
// removed).
//
// Configuration (providers.<name>):
//
//	type: folder
//	dir: /var/spool/iapd/letters   # default <data>/providers/<name>/letters
//
// Package folder imports only the standard library and providers.
package folder

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/iapd/iapd/providers"
)

// Type is the adapter's type name.
const Type = "folder"

func init() { providers.Register(Type, New) }

// Config is the instance's settings.
type Config struct {
	// Dir is where letters are written, created if missing (mode 0750).
	// Default: <data dir of the instance>/letters.
	Dir string `yaml:"dir"`
}

// Validate reports the first problem of the settings.
func (c Config) Validate() error {
	if c.Dir != "" && !filepath.IsAbs(c.Dir) {
		return fmt.Errorf("dir %q: an absolute path is required", c.Dir)
	}
	return nil
}

// Folder is a folder instance.
type Folder struct {
	name    string
	dir     string
	sandbox bool // no dir configured: letters land in the data directory
	log     *slog.Logger
	now     func() time.Time
}

// New builds an instance (the registry's factory).
func New(cfg providers.Config, deps providers.Deps) (providers.Provider, error) {
	var c Config
	if err := cfg.Decode(&c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	dir := c.Dir
	if dir == "" {
		if deps.DataDir == "" {
			return nil, errors.New("dir is required (no data directory)")
		}
		dir = filepath.Join(deps.DataDir, "letters")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("letters directory: %w", err)
	}
	f := &Folder{name: cfg.Name, dir: dir, sandbox: c.Dir == "", log: deps.Logger, now: deps.Now}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.now == nil {
		f.now = time.Now
	}
	return f, nil
}

// Name implements providers.Provider.
func (f *Folder) Name() string { return f.name }

// Type implements providers.Provider.
func (f *Folder) Type() string { return Type }

// Close implements providers.Provider.
func (f *Folder) Close() error { return nil }

// Dir is the directory letters are written to.
func (f *Folder) Dir() string { return f.dir }

// Sandbox implements providers.Sandboxed: without a configured dir the
// letters go to the instance's data directory, where no print room looks;
// a configured dir is a print room's spool, real.
func (f *Folder) Sandbox() bool { return f.sandbox }

// Sheet is the address sheet written beside each PDF.
type Sheet struct {
	SendID   string            `json:"send_id"`
	LetterID string            `json:"letter_id"` // iapd's id of the letter
	Created  time.Time         `json:"created"`
	To       providers.Address `json:"to"`
	From     providers.Address `json:"from"`
	Country  string            `json:"country"`
	Pages    int               `json:"pages"`
	Color    bool              `json:"color"`
	Duplex   bool              `json:"duplex"`
	Cover    bool              `json:"cover"` // print this sheet's recipient as a cover page (counted in pages)
	PDF      string            `json:"pdf"`   // file name of the document
}

// SendLetter writes the letter's PDF and address sheet and returns its
// send_id ("FOLDER-" and 16 hex digits) as ProviderID, status accepted.
//
// Failures: Invalid for a letter without a PDF or a recipient country;
// Unavailable when ctx is done or the files cannot be written (nothing is
// left behind). It is never Indeterminate.
func (f *Folder) SendLetter(ctx context.Context, l providers.Letter) (providers.LetterResult, error) {
	if err := ctx.Err(); err != nil {
		return providers.LetterResult{}, &providers.Error{Provider: f.name, Kind: providers.Unavailable, Msg: "not written", Err: err}
	}
	if len(l.PDF) == 0 {
		return providers.LetterResult{}, providers.Errorf(f.name, providers.Invalid, "letter without a PDF")
	}
	if l.To.Country == "" || l.To.City == "" {
		return providers.LetterResult{}, providers.Errorf(f.name, providers.Invalid, "letter without a recipient city and country")
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:]) // never fails (Go 1.24+)
	id := "FOLDER-" + hex.EncodeToString(rnd[:])
	sheet := Sheet{SendID: id, LetterID: l.ID, Created: f.now().UTC(), To: l.To, From: l.From, Country: l.Country,
		Pages: l.Pages, Color: l.Color, Duplex: l.Duplex, Cover: l.Cover, PDF: id + ".pdf"}
	js, err := json.MarshalIndent(sheet, "", "  ")
	if err != nil {
		return providers.LetterResult{}, &providers.Error{Provider: f.name, Kind: providers.Invalid, Msg: "address sheet", Err: err}
	}
	pdfPath := filepath.Join(f.dir, id+".pdf")
	if err := writeAtomic(f.dir, pdfPath, l.PDF); err != nil {
		return providers.LetterResult{}, &providers.Error{Provider: f.name, Kind: providers.Unavailable, Msg: "writing the PDF", Err: err}
	}
	if err := writeAtomic(f.dir, filepath.Join(f.dir, id+".json"), append(js, '\n')); err != nil {
		_ = os.Remove(pdfPath)
		return providers.LetterResult{}, &providers.Error{Provider: f.name, Kind: providers.Unavailable, Msg: "writing the address sheet", Err: err}
	}
	f.log.Info("letter written", "send_id", id, "pages", l.Pages, "country", l.Country)
	return providers.LetterResult{ProviderID: id, Status: providers.LetterAccepted}, nil
}

// writeAtomic writes path through a temporary file in dir: written,
// fsynced, renamed, and the directory fsynced.
// On failure nothing is left behind, not even a renamed file whose
// directory entry could not be made durable.
func writeAtomic(dir, path string, data []byte) (err error) {
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	renamed := false
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
			if renamed {
				_ = os.Remove(path)
			}
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err = tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Chmod(tmp.Name(), 0o640); err != nil { // #nosec G302 -- the print room's group reads the letters
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	renamed = true
	d, err := os.Open(dir) // #nosec G304 -- the configured letters directory
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

var (
	_ providers.LetterSender = (*Folder)(nil)
	_ providers.Sandboxed    = (*Folder)(nil)
	_ providers.Factory      = New
)
