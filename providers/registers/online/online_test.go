package online

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/registers"
	"github.com/iapd/iapd/providers/registers/formats"
)

func company(key, name string) registers.Record {
	return registers.Record{Key: key, Active: true, Licence: "test licence",
		Company: providers.Company{Name: name, Country: "GB"}}
}

// serving opens a registers provider on an empty index, as iapd does.
func serving(t *testing.T) *registers.Registers {
	t.Helper()
	r, err := (&registers.Config{Dir: filepath.Join(t.TempDir(), "registers")}).New("registers", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func file(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "register.csv")
	if err := os.WriteFile(f, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// reader puts recs, reports bad rows, then waits for release (or the
// context) before it returns.
func reader(release <-chan struct{}, bad int, recs ...registers.Record) ReadFunc {
	return func(ctx context.Context, format, path string, sink registers.Sink, opt formats.Options) (formats.Stats, error) {
		for _, r := range recs {
			if err := sink.Put(r); err != nil {
				return formats.Stats{}, err
			}
		}
		for i := range bad {
			opt.Bad(filepath.Base(path), int64(i+2), errors.New("bad row"))
		}
		select {
		case <-release:
		case <-ctx.Done():
			return formats.Stats{}, ctx.Err()
		}
		return formats.Stats{Records: int64(len(recs)), Bad: int64(bad)}, nil
	}
}

func waitDone(t *testing.T, im *Importer) Status {
	t.Helper()
	im.Wait()
	st, ok := im.Status()
	if !ok || st.State == "running" {
		t.Fatalf("after Wait: %+v, %v", st, ok)
	}
	return st
}

func TestStartRefusesBadRequests(t *testing.T) {
	im := New(context.Background(), serving(t), reader(nil, 0), nil, nil)
	dir := t.TempDir()
	for _, c := range []struct {
		format string
		files  []string
	}{
		{"nosuch", []string{file(t)}},
		{"kbo", nil},
		{"kbo", []string{"relative.csv"}},
		{"kbo", []string{filepath.Join(dir, "absent.csv")}},
		{"kbo", []string{dir}},
	} {
		if err := im.Start(c.format, c.files); !errors.Is(err, ErrInvalid) {
			t.Errorf("Start(%q, %q): %v, want ErrInvalid", c.format, c.files, err)
		}
	}
	if _, ok := im.Status(); ok {
		t.Errorf("a refused request left a status")
	}
}

// One import at a time; the records are found while it runs and once
// committed; bad rows are counted, the first MaxBadRows named.
func TestOneImportAtATime(t *testing.T) {
	r := serving(t)
	release := make(chan struct{})
	im := New(context.Background(), r, reader(release, MaxBadRows+20, company("00000001", "ALPHA LTD"), company("00000002", "BETA LTD")), nil, nil)
	f := file(t)
	if err := im.Start("companies-house", []string{f}); err != nil {
		t.Fatal(err)
	}
	if err := im.Start("companies-house", []string{f}); !errors.Is(err, ErrRunning) {
		t.Errorf("second Start while one runs: %v, want ErrRunning", err)
	}
	if st, _ := im.Status(); st.State != "running" {
		t.Errorf("status while running: %+v", st)
	}
	close(release)
	st := waitDone(t, im)
	if st.State != "done" || st.Error != "" || st.Records != 2 || st.Stats.New != 2 || st.Bad != MaxBadRows+20 || len(st.BadRows) != MaxBadRows || st.BadRows[0] != "register.csv:2: bad row" || st.Finished.IsZero() {
		t.Errorf("status: %+v", st)
	}
	if c, err := r.CompanyByID(context.Background(), "companies-house:00000002"); err != nil || c == nil || c.Name != "BETA LTD" {
		t.Errorf("imported company: %+v, %v", c, err)
	}
	// Another import may start once the first is done.
	release2 := make(chan struct{})
	close(release2)
	im.read = reader(release2, 0, company("00000001", "ALPHA LTD"))
	if err := im.Start("companies-house", []string{f}); err != nil {
		t.Fatal(err)
	}
	if st := waitDone(t, im); st.State != "done" || st.Stats.Unchanged != 1 || st.Stats.StruckOff != 1 {
		t.Errorf("second import: %+v", st)
	}
}

// The server's context cancelled (iapd stopping) aborts the import:
// nothing struck off, the status says aborted.
func TestShutdownAborts(t *testing.T) {
	r := serving(t)
	f := file(t)
	done := make(chan struct{})
	close(done)
	first := New(context.Background(), r, reader(done, 0, company("00000001", "ALPHA LTD"), company("00000002", "BETA LTD")), nil, nil)
	if err := first.Start("companies-house", []string{f}); err != nil {
		t.Fatal(err)
	}
	waitDone(t, first)

	ctx, cancel := context.WithCancel(context.Background())
	im := New(ctx, r, reader(make(chan struct{}), 0, company("00000001", "ALPHA LTD")), nil, nil)
	if err := im.Start("companies-house", []string{f}); err != nil {
		t.Fatal(err)
	}
	cancel()
	st := waitDone(t, im)
	if st.State != "aborted" || st.Error == "" || st.Stats.StruckOff != 0 {
		t.Errorf("status after shutdown: %+v", st)
	}
	mined, err := r.SearchCompanies(context.Background(), providers.Criteria{Countries: []string{"GB"}, Limit: 10})
	if err != nil || len(mined) != 2 {
		t.Errorf("after an aborted import, active companies %v, %v; want both", mined, err)
	}
	if err := im.Start("companies-house", []string{f}); err == nil || !errors.Is(err, context.Canceled) {
		t.Errorf("Start once stopping: %v", err)
	}
	// A new session can begin: the aborted one released the index.
	again := New(context.Background(), r, reader(done, 0), func() time.Time { return time.Unix(0, 0) }, nil)
	if err := again.Start("companies-house", []string{f}); err != nil {
		t.Errorf("an import after an aborted one: %v", err)
	}
	waitDone(t, again)
}
