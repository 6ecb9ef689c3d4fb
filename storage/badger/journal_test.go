package badger

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger/internal/journal"
)

// Open replays the journal records above the checkpoint marker, in order,
// ignores a torn tail, and removes the journal files; Close checkpoints and
// leaves none.
func TestOpenReplaysJournal(t *testing.T) {
	dir := t.TempDir()
	l := openTemp(t, dir, nil, nil)
	ctx := context.Background()
	if err := l.PutRecord(ctx, "test", "before", []byte("1"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if files, _ := journal.List(dir); len(files) != 0 {
		t.Fatalf("journal files after a clean Close: %v", files)
	}

	// What a crash leaves: records above any marker, one file per
	// rotation, the last record torn.
	const base = uint64(1) << 40
	put := func(seq uint64, key, value string) []byte {
		return journal.AppendRecord(nil, seq, []journal.Write{{Key: recordKey("test", key), Value: encodeRecord(time.Time{}, []byte(value))}})
	}
	f1 := append(put(base+1, "a", "old"), put(base+2, "before", "2")...)
	f2 := append(put(base+3, "a", "new"), put(base+4, "b", "torn")[:9]...)
	if err := os.WriteFile(filepath.Join(dir, journal.FileName(base+1)), f1, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, journal.FileName(base+3)), f2, 0o600); err != nil {
		t.Fatal(err)
	}

	l = openTemp(t, dir, nil, nil)
	for key, want := range map[string]string{"a": "new", "before": "2"} {
		v, err := l.GetRecord(ctx, "test", key)
		if err != nil || string(v) != want {
			t.Errorf("record %s after replay = %q, %v; want %q", key, v, err, want)
		}
	}
	if _, err := l.GetRecord(ctx, "test", "b"); !storage.Is(err, storage.NotFound) {
		t.Errorf("the torn record was applied: %v", err)
	}
	if files, _ := journal.List(dir); len(files) != 1 || filepath.Base(files[0]) != journal.FileName(base+4) {
		t.Errorf("journal files after replay: %v, want only the new %s", files, journal.FileName(base+4))
	}
	if mark, err := l.readJournalMark(); err != nil || mark != base+3 {
		t.Errorf("marker after replay = %d, %v; want %d", mark, err, base+3)
	}
	rep, err := l.Verify(ctx, VerifyOptions{})
	if err != nil || len(rep.Problems) != 0 {
		t.Fatalf("verify after replay: %v %+v", err, rep.Problems)
	}

	// Hold operations go through the journal; a reopen after Close finds
	// them in Badger.
	holds := seedHolds(t, l, 20)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTemp(t, dir, nil, nil)
	for _, txn := range holds {
		if got, err := l.Transaction(ctx, txn); err != nil || got.State != storage.Held {
			t.Fatalf("hold %s after reopen: %+v, %v", txn, got, err)
		}
	}
}

// seedHolds makes a service, an account with credit and n holds on it.
func seedHolds(t *testing.T, l *Ledger, n int) []string {
	t.Helper()
	ctx := context.Background()
	if _, err := l.EnsureService(ctx, storage.Service{Name: "jsvc"}); err != nil {
		t.Fatal(err)
	}
	const tok = storage.AccountToken("0123456789abcdef0123456789abcdef")
	if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "jsvc", Account: tok, Amount: 1000 * storage.Scale, Ref: "seed", Kind: storage.EntryRecharge}); err != nil {
		t.Fatal(err)
	}
	var out []string
	for range n {
		txn, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: "jsvc", Account: tok, Amount: storage.Scale, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, txn.Token)
	}
	return out
}

// When checkpoints fall behind, hold operations wait for one: the overlay
// stays bounded, and every hold is still there after a reopen.
func TestOverlayBounded(t *testing.T) {
	defer func(v int) { maxOverlayBytes = v }(maxOverlayBytes)
	maxOverlayBytes = 4 << 10
	dir := t.TempDir()
	l := openTemp(t, dir, nil, nil)
	holds := seedHolds(t, l, 300)
	l.ov.mu.Lock()
	size := l.ov.size
	l.ov.mu.Unlock()
	if size > maxOverlayBytes+4<<10 {
		t.Fatalf("overlay holds %d bytes, bound %d", size, maxOverlayBytes)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTemp(t, dir, nil, nil)
	a, err := l.LookupAccount(context.Background(), "jsvc", "0123456789abcdef0123456789abcdef")
	if err != nil || a.Held != storage.Credits(len(holds))*storage.Scale {
		t.Fatalf("after reopen: held %v, %v; want %d holds", a.Held, err, len(holds))
	}
}
