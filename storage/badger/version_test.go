package badger

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
)

// copyDir copies the files of src (no subdirectories) into a new temp dir.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func readMarker(t testing.TB, l *Ledger) (formatMarker, bool) {
	t.Helper()
	var m formatMarker
	var found bool
	if err := l.db.View(func(txn *badger.Txn) (err error) {
		found, err = get(txn, metaKey(), func(b []byte) error { return decodeMarker(b, &m) })
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return m, found
}

func TestFormatMarkerOfNewDirectory(t *testing.T) {
	dir := t.TempDir()
	l := openTemp(t, dir, nil, nil)
	m, found := readMarker(t, l)
	if !found || m.Format != FormatVersion || !strings.HasPrefix(m.WrittenBy, "iapd ") || m.WrittenAt.IsZero() {
		t.Fatalf("marker of a new directory: %+v (found %v)", m, found)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTemp(t, dir, nil, nil) // reopened: left alone
	if m2, _ := readMarker(t, l); !m2.WrittenAt.Equal(m.WrittenAt) {
		t.Fatalf("marker rewritten at reopen: %+v, was %+v", m2, m)
	}
	mem := openTemp(t, "", nil, func(o *Options) { o.InMemory = true })
	if m, found := readMarker(t, mem); !found || m.Format != FormatVersion {
		t.Fatalf("in-memory marker: %+v (found %v)", m, found)
	}
}

// TestOpenFormat0 opens testdata/v0, a data directory written by iapd
// before the format marker existed (see testdata/README.md), and checks
// that it is migrated, that everything in it reads as written, and that
// the result verifies clean.
func TestOpenFormat0(t *testing.T) {
	testOpenOldFormat(t, "v0", time.Date(2025, 6, 1, 12, 2, 22, 0, time.UTC), "from=0 to=1", "from=1 to=2")
}

// TestOpenFormat1 opens testdata/v1, the same ledger written by iapd at
// format 1 (the marker, no alert state in account records, no vouchers,
// alerts or records; see testdata/README.md): the previous format of
// this iapd.
func TestOpenFormat1(t *testing.T) {
	testOpenOldFormat(t, "v1", time.Date(2025, 6, 1, 12, 2, 23, 0, time.UTC), "from=1 to=2")
}

// TestOpenFormat2 opens testdata/v2, the same ledger written by the last
// format-2 iapd (before the hold operations were journaled).
func TestOpenFormat2(t *testing.T) {
	testOpenOldFormat(t, "v2", time.Date(2025, 6, 1, 12, 2, 23, 0, time.UTC), "from=2 to=3")
}

// testOpenOldFormat opens a copy of testdata/<name> (both fixtures hold
// the same ledger, see testdata/README.md), checks the migrations logged,
// every record, a clean Verify, and that a write and a reopen need no
// second migration.
func testOpenOldFormat(t *testing.T, name string, fixtureEnd time.Time, migrations ...string) {
	dir := copyDir(t, filepath.Join("testdata", name))
	var logs bytes.Buffer
	l, err := Open(Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Now: func() time.Time { return fixtureEnd }})
	if err != nil {
		t.Fatalf("opening the %s directory: %v", name, err)
	}
	defer l.Close()
	if !strings.Contains(logs.String(), "data directory migrated") {
		t.Fatalf("no migration logged:\n%s", logs.String())
	}
	for _, m := range migrations {
		if !strings.Contains(logs.String(), m) {
			t.Fatalf("migration %s not logged:\n%s", m, logs.String())
		}
	}
	if name != "v0" && strings.Contains(logs.String(), "from=0") {
		t.Fatalf("a format-1 directory migrated from 0:\n%s", logs.String())
	}
	if m, found := readMarker(t, l); !found || m.Format != FormatVersion {
		t.Fatalf("marker after migration: %+v (found %v)", m, found)
	}

	ctx := context.Background()
	a, err := l.LookupAccount(ctx, "sms", tokA)
	if err != nil {
		t.Fatal(err)
	}
	// 100 recharged, -0.5 adjusted; 10 + 2 captured; 7 held.
	if a.Recharged != 995000 || a.Available != 805000 || a.Held != 70000 || a.Captured != 120000 || a.Seq != 12 ||
		a.State != storage.Registered || len(a.Alerts.Recipients) != 1 || a.Alerts.Recipients[0].Email != "ops@example.com" {
		t.Fatalf("sms account after migration: %+v", a)
	}
	b, err := l.LookupAccount(ctx, "geocoding", tokB)
	if err != nil || b.Recharged != 25000 || b.Captured != 15000 || b.Available != 10000 {
		t.Fatalf("geocoding account after migration: %+v, %v", b, err)
	}
	if s, err := l.ServiceByKey(ctx, storage.HashKey("v0-fixture-sms-key-0123456789")); err != nil || s.Name != "sms" {
		t.Fatalf("service key after migration: %+v, %v", s, err)
	}
	if c, err := l.LookupAccount(ctx, "snailmail", tokC); err != nil || c.State != storage.Unregistered {
		t.Fatalf("snailmail account: %+v, %v", c, err)
	}
	if banned, err := l.LookupAccount(ctx, "sms", tokB); err != nil || banned.State != storage.Banned {
		t.Fatalf("banned account: %+v, %v", banned, err)
	}
	r := verifyAt(t, l, fixtureEnd, 0)
	if !r.Clean() || r.Warnings != 0 || r.Accounts != 5 || r.OpenHolds != 1 {
		t.Fatalf("%s directory after migration: %+v\n%s", name, r, problemsString(r))
	}
	// And it is an ordinary ledger now: a write, a reopen without migration.
	if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: tokA, Amount: storage.Scale, Kind: storage.EntryRecharge, Ref: "after-migration"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	l2, err := Open(Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()
	if strings.Contains(logs.String(), "migrated") {
		t.Fatalf("migrated twice:\n%s", logs.String())
	}
}

func TestOpenRefusesFutureFormat(t *testing.T) {
	dir := t.TempDir()
	l := openTemp(t, dir, nil, nil)
	if _, err := l.EnsureService(context.Background(), storage.Service{Name: "sms"}); err != nil {
		t.Fatal(err)
	}
	future := []byte(`{"format": 7, "written_by": "iapd v9.1.0 0123456789ab", "written_at": "2031-01-01T00:00:00Z", "new_field": true}`)
	rawSet(t, l, metaKey(), future)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := Open(Options{Dir: dir})
	if err == nil {
		l2.Close()
		t.Fatal("a directory of format 7 was opened")
	}
	msg := err.Error()
	if !errors.Is(err, ErrFutureFormat) || !storage.Is(err, storage.Unavailable) ||
		!strings.Contains(msg, "ledger format 7") || !strings.Contains(msg, "run iapd v9.1.0 0123456789ab or a later release") ||
		!strings.Contains(msg, fmt.Sprintf("opens formats up to %d", FormatVersion)) {
		t.Fatalf("refusal: %v", err)
	}
	// Nothing was written: the marker is the newer iapd's still, and the
	// directory can be opened again (the lock was released).
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(metaKey())
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error {
			if !bytes.Equal(b, future) {
				t.Errorf("marker changed to %s", b)
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefusesInterruptedRestore(t *testing.T) {
	dir := t.TempDir()
	l := openTemp(t, dir, nil, nil)
	l.Close()
	if err := os.WriteFile(filepath.Join(dir, restoringFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if l2, err := Open(Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "interrupted restore") {
		if l2 != nil {
			l2.Close()
		}
		t.Fatalf("Open of a half-restored directory: %v", err)
	}
}
