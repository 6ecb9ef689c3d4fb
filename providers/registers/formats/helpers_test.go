package formats

import (
	"archive/zip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iapd/iapd/providers/registers"
)

// sliceSink keeps every record.
type sliceSink []registers.Record

func (s *sliceSink) Put(r registers.Record) error { *s = append(*s, r); return nil }

func (s sliceSink) byKey(t *testing.T) map[string]registers.Record {
	t.Helper()
	m := make(map[string]registers.Record, len(s))
	for _, r := range s {
		if _, dup := m[r.Key]; dup {
			t.Errorf("key %s given twice", r.Key)
		}
		m[r.Key] = r
	}
	return m
}

type badRow struct {
	file string
	line int64
	err  string
}

// read runs ReadFile and returns the records, the bad rows and the stats.
func read(t *testing.T, format, path string, opt Options) (sliceSink, []badRow, Stats, error) {
	t.Helper()
	var sink sliceSink
	var bad []badRow
	opt.Bad = func(file string, line int64, err error) { bad = append(bad, badRow{file, line, err.Error()}) }
	st, err := ReadFile(context.Background(), format, path, &sink, opt)
	return sink, bad, st, err
}

// zipFiles writes a zip at out holding each src file under its member name
// (deflated, as the registers distribute them).
func zipFiles(t testing.TB, out string, members map[string]string) string {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for name, src := range members {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate})
		if err != nil {
			t.Fatal(err)
		}
		in, err := os.Open(src)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(w, in); err != nil {
			t.Fatal(err)
		}
		in.Close()
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// zipDir zips every file of dir, members named as the files.
func zipDir(t testing.TB, out, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range ents {
		m[e.Name()] = filepath.Join(dir, e.Name())
	}
	return zipFiles(t, out, m)
}

// lines of the bad rows, as "file:line" with file's base member name.
func badLines(bad []badRow) []string {
	var out []string
	for _, b := range bad {
		name := b.file
		if i := strings.LastIndexByte(name, '!'); i >= 0 {
			name = name[i+1:]
		}
		out = append(out, fmt.Sprintf("%s:%d", filepath.Base(name), b.line))
	}
	return out
}
