package folder

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/providertest"
)

func newFolder(t *testing.T, dir string) *Folder {
	t.Helper()
	var node yaml.Node
	if dir != "" {
		if err := yaml.Unmarshal([]byte("dir: "+dir), &node); err != nil {
			t.Fatal(err)
		}
		node = *node.Content[0]
	}
	p, err := providers.Builtin.New(providers.Config{Name: "print-room", Type: Type, Settings: node},
		providers.Deps{DataDir: t.TempDir(), Now: func() time.Time { return time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p.(*Folder)
}

func TestConformance(t *testing.T) {
	providertest.TestLetterSender(t, providertest.LetterHarness{
		New: func(t *testing.T) providers.LetterSender { return newFolder(t, "") },
		Down: func(t *testing.T) providers.LetterSender {
			f := newFolder(t, filepath.Join(t.TempDir(), "letters"))
			// The directory vanishes (unmounted disk): nothing can be written.
			if err := os.RemoveAll(f.Dir()); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(f.Dir(), []byte("not a directory"), 0o600); err != nil {
				t.Fatal(err)
			}
			return f
		},
		Holds: func(t *testing.T, s providers.LetterSender, l providers.Letter, res providers.LetterResult) bool {
			f := s.(*Folder)
			pdf, err := os.ReadFile(filepath.Join(f.Dir(), res.ProviderID+".pdf"))
			if err != nil || !bytes.Equal(pdf, l.PDF) {
				return false
			}
			var sh Sheet
			b, err := os.ReadFile(filepath.Join(f.Dir(), res.ProviderID+".json"))
			return err == nil && json.Unmarshal(b, &sh) == nil && sh.SendID == res.ProviderID && sh.To == l.To
		},
	})
}

// TestAddressSheet pins what the print room reads, and that no
// temporary file is left.
func TestAddressSheet(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	f := newFolder(t, dir)
	l := providertest.Letter(0)
	l.Pages, l.Duplex, l.Cover = 3, true, true
	res, err := f.SendLetter(t.Context(), l)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, res.ProviderID+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var sh Sheet
	if err := json.Unmarshal(b, &sh); err != nil {
		t.Fatal(err)
	}
	want := Sheet{SendID: res.ProviderID, LetterID: l.ID, Created: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC),
		To: l.To, From: l.From, Country: "BE", Pages: 3, Color: true, Duplex: true, Cover: true, PDF: res.ProviderID + ".pdf"}
	if sh != want {
		t.Errorf("sheet %+v\nwant  %+v", sh, want)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("directory holds %d entries, want the PDF and the sheet: %v", len(ents), ents)
	}
	st, _ := os.Stat(filepath.Join(dir, res.ProviderID+".pdf"))
	if st.Mode().Perm() != 0o640 {
		t.Errorf("PDF mode %v, want 0640", st.Mode().Perm())
	}
}

func TestConfig(t *testing.T) {
	var node yaml.Node
	_ = yaml.Unmarshal([]byte("dir: relative/path"), &node)
	_, err := providers.Builtin.New(providers.Config{Name: "x", Type: Type, Settings: *node.Content[0]}, providers.Deps{DataDir: t.TempDir()})
	if err == nil {
		t.Error("a relative dir was accepted")
	}
	_ = yaml.Unmarshal([]byte("directory: /tmp"), &node)
	_, err = providers.Builtin.New(providers.Config{Name: "x", Type: Type, Settings: *node.Content[0]}, providers.Deps{DataDir: t.TempDir()})
	if err == nil {
		t.Error("an unknown key was accepted")
	}
}

// A folder without dir writes into the data directory, where no print
// room looks: the sandbox; a configured dir is a print room's spool.
func TestSandbox(t *testing.T) {
	if !newFolder(t, "").Sandbox() {
		t.Error("the default folder is not reported as a sandbox")
	}
	if newFolder(t, t.TempDir()).Sandbox() {
		t.Error("a folder with a configured dir is reported as a sandbox")
	}
}
