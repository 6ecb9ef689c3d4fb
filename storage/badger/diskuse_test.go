package badger

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
)

// DiskUse counts the ledger's own files by part, the journal's writes
// included, and nothing of the subdirectories other parts of iapd keep in
// the data directory.
func TestDiskUse(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true, UnitName: "Credits"}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "acct", Amount: 10 * storage.Scale, Kind: storage.EntryRecharge, Ref: "r1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: "acct", Amount: storage.Scale, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "providers", "folder"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "providers", "folder", "big.pdf"), make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}

	d, err := l.DiskUse()
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			want += fi.Size()
		}
	}
	if d.Total() != want || d.Journal == 0 || d.Memtables == 0 || d.Other == 0 {
		t.Errorf("DiskUse %+v (total %d), want total %d of the top-level files, with journal, memtables and other", d, d.Total(), want)
	}

	m, err := Open(Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if d, err := m.DiskUse(); err != nil || d != (DiskUse{}) {
		t.Errorf("in memory: %+v %v", d, err)
	}
}

// BenchmarkDiskUse: the cost of one scrape's listing of a data directory.
func BenchmarkDiskUse(b *testing.B) {
	l, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	for b.Loop() {
		if _, err := l.DiskUse(); err != nil {
			b.Fatal(err)
		}
	}
}
