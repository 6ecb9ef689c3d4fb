package badger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
)

// dump returns every key and value of the ledger's database.
func dump(t testing.TB, l *Ledger) map[string]string {
	t.Helper()
	out := map[string]string{}
	if err := l.db.View(func(txn *badger.Txn) error {
		return eachKey(context.Background(), txn, true, func(k, v []byte) error {
			out[string(k)] = string(v)
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func backupOf(t testing.TB, l *Ledger) ([]byte, BackupInfo) {
	t.Helper()
	var buf bytes.Buffer
	info, err := l.Backup(context.Background(), &buf)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	return buf.Bytes(), info
}

func TestBackupRestoreRoundTrip(t *testing.T) {
	clock := newFakeClock()
	l := openTemp(t, t.TempDir(), clock.now, nil)
	p := populate(t, l, clock)
	file, info := backupOf(t, l)
	if info.FileFormat != BackupFileFormat || info.LedgerFormat != FormatVersion || !strings.HasPrefix(info.IAPD, "iapd ") ||
		info.Counts.Services != 3 || info.Counts.Accounts != 5 || info.Counts.Transactions != 6 || info.Counts.Entries != 16 ||
		info.Size != int64(len(file)) || len(info.SHA256) != 64 || info.ReadTs == 0 {
		t.Fatalf("backup info: %+v (%d bytes)", info, len(file))
	}
	if !bytes.HasPrefix(file, []byte(backupMagic)) {
		t.Fatalf("no magic: %q", file[:16])
	}
	checked, err := CheckBackup(bytes.NewReader(file))
	if err != nil {
		t.Fatalf("CheckBackup: %v", err)
	}
	if checked.SHA256 != info.SHA256 || checked.Size != info.Size || checked.Counts != info.Counts || !checked.CreatedAt.Equal(info.CreatedAt) {
		t.Fatalf("CheckBackup gives %+v, Backup gave %+v", checked, info)
	}
	if hdr, err := ReadBackupHeader(bytes.NewReader(file)); err != nil || hdr.Counts != info.Counts {
		t.Fatalf("ReadBackupHeader: %+v, %v", hdr, err)
	}

	dir := filepath.Join(t.TempDir(), "restored")
	restored, err := Restore(context.Background(), Options{Dir: dir}, bytes.NewReader(file))
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if restored.SHA256 != info.SHA256 || restored.Counts != info.Counts {
		t.Fatalf("Restore gives %+v", restored)
	}
	if _, err := os.Stat(filepath.Join(dir, restoringFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s left behind: %v", restoringFile, err)
	}
	l2 := openTemp(t, dir, clock.now, nil)
	want, got := dump(t, l), dump(t, l2)
	if len(want) != len(got) || int64(len(got)) != info.Counts.Keys {
		t.Fatalf("restored %d keys, the source has %d, the header counts %d", len(got), len(want), info.Counts.Keys)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("key %q: restored %q, source %q", k, got[k], v)
		}
	}
	if r := verifyAt(t, l2, p.ended, 0); !r.Clean() || r.Warnings != 0 {
		t.Fatalf("restored ledger:\n%s", problemsString(r))
	}
	// The restored ledger works: the open hold captures, the ref replays.
	ctx := context.Background()
	if tr, err := l2.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: p.open.Token}); err != nil || tr.State != storage.Captured {
		t.Fatalf("capture on the restored ledger: %+v, %v", tr, err)
	}
	if e, err := l2.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: tokA, Amount: 100 * storage.Scale, Kind: storage.EntryRecharge, Ref: "invoice-1"}); err != nil || e.Seq != 1 {
		t.Fatalf("replayed ref on the restored ledger: %+v, %v", e, err)
	}
}

func TestBackupDamaged(t *testing.T) {
	clock := newFakeClock()
	l := openTemp(t, t.TempDir(), clock.now, nil)
	populate(t, l, clock)
	file, _ := backupOf(t, l)
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), file...)) }
	cases := map[string][]byte{
		"empty":              {},
		"not a backup":       []byte("SQLite format 3\x00 and then some more bytes"),
		"header byte":        mutate(func(b []byte) []byte { b[20] ^= 1; return b }),
		"record byte":        mutate(func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b }),
		"checksum byte":      mutate(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }),
		"truncated":          file[:len(file)*2/3],
		"checksum truncated": file[:len(file)-5],
		"no checksum":        file[:len(file)-backupChecksumLen],
		"trailing data":      append(append([]byte(nil), file...), 0),
	}
	for name, b := range cases {
		if _, err := CheckBackup(bytes.NewReader(b)); err == nil {
			t.Errorf("%s: CheckBackup accepted it", name)
		} else if !errors.Is(err, ErrBadBackup) {
			t.Errorf("%s: %v, want ErrBadBackup", name, err)
		}
	}
	// A load that finds the damage only at the checksum leaves the
	// directory marked, and Open refuses it.
	dir := filepath.Join(t.TempDir(), "restored")
	if _, err := Restore(context.Background(), Options{Dir: dir}, bytes.NewReader(cases["checksum byte"])); err == nil || !errors.Is(err, ErrBadBackup) {
		t.Fatalf("Restore of a damaged file: %v", err)
	}
	if l2, err := Open(Options{Dir: dir}); err == nil {
		l2.Close()
		t.Fatal("a half-restored directory opened")
	}
}

func TestRestoreRefuses(t *testing.T) {
	clock := newFakeClock()
	l := openTemp(t, t.TempDir(), clock.now, nil)
	populate(t, l, clock)
	file, _ := backupOf(t, l)

	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(context.Background(), Options{Dir: full}, bytes.NewReader(file)); !storage.Is(err, storage.Exists) {
		t.Fatalf("Restore into a non-empty directory: %v", err)
	}
	// Sub-directories are not the ledger's: Restore loads beside them and
	// leaves them as they are.
	beside := t.TempDir()
	secret := filepath.Join(beside, "portal", "secret")
	if err := os.MkdirAll(filepath.Dir(secret), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(context.Background(), Options{Dir: beside}, bytes.NewReader(file)); err != nil {
		t.Fatalf("Restore into a directory holding only a sub-directory: %v", err)
	}
	if b, err := os.ReadFile(secret); err != nil || string(b) != "kept" {
		t.Fatalf("Restore changed a sub-directory: %q, %v", b, err)
	}

	// A backup of a newer ledger format is refused before anything is
	// written.
	rawSet(t, l, metaKey(), []byte(`{"format": 7, "written_by": "iapd v9.1.0"}`))
	future, info := backupOf(t, l)
	dir := filepath.Join(t.TempDir(), "restored")
	_, err := Restore(context.Background(), Options{Dir: dir}, bytes.NewReader(future))
	if !errors.Is(err, ErrFutureFormat) || !strings.Contains(err.Error(), "ledger format 7") ||
		!strings.Contains(err.Error(), "restore it with "+info.IAPD+" or a later release") {
		t.Fatalf("Restore of a format-7 backup: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused restore created %s: %v", dir, err)
	}
}

// TestRestoreMigratesOlderFormat restores a backup whose ledger format is
// older than this code's: the first Open migrates it.
func TestRestoreMigratesOlderFormat(t *testing.T) {
	clock := newFakeClock()
	l := openTemp(t, t.TempDir(), clock.now, nil)
	p := populate(t, l, clock)
	rawSet(t, l, metaKey(), []byte(`{"format": 0}`))
	file, info := backupOf(t, l)
	if info.LedgerFormat != 0 {
		t.Fatalf("ledger format %d", info.LedgerFormat)
	}
	dir := filepath.Join(t.TempDir(), "restored")
	if _, err := Restore(context.Background(), Options{Dir: dir}, bytes.NewReader(file)); err != nil {
		t.Fatal(err)
	}
	l2 := openTemp(t, dir, clock.now, nil)
	if m, _ := readMarker(t, l2); m.Format != FormatVersion {
		t.Fatalf("format after open: %+v", m)
	}
	if r := verifyAt(t, l2, p.ended, 0); !r.Clean() {
		t.Fatalf("restored ledger:\n%s", problemsString(r))
	}
}

// TestBackupUnderLoad takes a backup while workers authorize, capture and
// cancel, restores it, and checks that every operation acknowledged before
// the backup began is in it and that it verifies clean.
func TestBackupUnderLoad(t *testing.T) {
	ctx := context.Background()
	l := openTemp(t, t.TempDir(), nil, nil)
	if _, err := l.EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true}); err != nil {
		t.Fatal(err)
	}
	const nAccts = 8
	acct := func(i int) storage.AccountToken { return storage.AccountToken(fmt.Sprintf("acct%d", i)) }
	for i := 0; i < nAccts; i++ {
		if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: acct(i), Amount: 1 << 40, Kind: storage.EntryRecharge}); err != nil {
			t.Fatal(err)
		}
	}
	type acked struct {
		token string
		state storage.TransactionState
		at    int64 // the op counter when acknowledged
	}
	var (
		mu    sync.Mutex
		log   []acked
		clock atomic.Int64 // ticks at every acknowledgement
		stop  atomic.Bool
		wg    sync.WaitGroup
	)
	errs := make(chan error, 8)
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for !stop.Load() {
				tr, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: acct(rng.IntN(nAccts)), Amount: storage.Credits(1 + rng.IntN(10000)), TTL: time.Hour})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				log = append(log, acked{tr.Token, storage.Held, clock.Add(1)})
				mu.Unlock()
				state := storage.Captured
				if rng.IntN(3) == 0 {
					_, err = l.Cancel(ctx, "sms", tr.Token)
					state = storage.Cancelled
				} else {
					_, err = l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: tr.Token})
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				log = append(log, acked{tr.Token, state, clock.Add(1)})
				mu.Unlock()
			}
		}()
	}
	// Let the load run (at least 50 operations, however slow the CPU: a
	// minute at most).
	time.Sleep(300 * time.Millisecond)
	for deadline := time.Now().Add(time.Minute); clock.Load() < 50 && len(errs) == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	began := clock.Load() // every op acknowledged so far must be in the backup
	var buf bytes.Buffer
	info, err := l.Backup(ctx, &buf)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	dir := filepath.Join(t.TempDir(), "restored")
	if _, err := Restore(ctx, Options{Dir: dir}, bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	l2 := openTemp(t, dir, nil, nil)
	r := verifyAt(t, l2, time.Now(), 0)
	if !r.Clean() || r.Warnings != 0 {
		t.Fatalf("backup under load:\n%s", problemsString(r))
	}
	want := map[string]storage.TransactionState{}
	after := 0
	for _, a := range log {
		if a.at <= began {
			want[a.token] = a.state
		} else {
			after++
		}
	}
	for tok, state := range want {
		tr, err := l2.Transaction(ctx, tok)
		if err != nil {
			t.Fatalf("transaction acknowledged before the backup: %v", err)
		}
		if tr.State != state && !(state == storage.Held && tr.State != storage.Held) {
			t.Fatalf("transaction acknowledged %s before the backup is %s in it", state, tr.State)
		}
	}
	t.Logf("backup of %d keys (%d bytes) taken after %d acknowledgements (%d more during and after): all present, verify clean",
		info.Counts.Keys, info.Size, began, after)
	if began < 50 {
		t.Fatalf("only %d operations before the backup: the load did not run", began)
	}
}

func TestExport(t *testing.T) {
	clock := newFakeClock()
	l := openTemp(t, t.TempDir(), clock.now, nil)
	p := populate(t, l, clock)
	ctx := context.Background()
	collect := func(f ExportFilter) []storage.Entry {
		t.Helper()
		var out []storage.Entry
		if err := l.Export(ctx, f, func(e storage.Entry) error { out = append(out, e); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	all := collect(ExportFilter{})
	if len(all) != 16 {
		t.Fatalf("%d entries exported, want 16", len(all))
	}
	for i := 1; i < len(all); i++ {
		a, b := all[i-1], all[i]
		if a.Service > b.Service || a.Service == b.Service && (a.Account > b.Account || a.Account == b.Account && a.Seq >= b.Seq) {
			t.Fatalf("out of order: %v/%v/%d then %v/%v/%d", a.Service, a.Account, a.Seq, b.Service, b.Account, b.Seq)
		}
	}
	if got := collect(ExportFilter{Service: "sms"}); len(got) != 12 || got[0].Kind != storage.EntryRecharge || got[0].Ref != "invoice-1" {
		t.Fatalf("sms: %d entries", len(got))
	}
	if got := collect(ExportFilter{Account: tokB}); len(got) != 3 || got[0].Service != "geocoding" {
		t.Fatalf("account B: %+v", got)
	}
	if got := collect(ExportFilter{Service: "geocoding", Account: tokB}); len(got) != 3 {
		t.Fatalf("geocoding/B: %d entries", len(got))
	}
	mid := all[5].Time
	since, until := collect(ExportFilter{Since: mid}), collect(ExportFilter{Until: mid})
	if len(since)+len(until) != len(all) {
		t.Fatalf("since %d + until %d != %d", len(since), len(until), len(all))
	}
	for _, e := range since {
		if e.Time.Before(mid) {
			t.Fatalf("entry of %v exported since %v", e.Time, mid)
		}
	}
	if got := collect(ExportFilter{Since: p.ended.Add(time.Hour)}); len(got) != 0 {
		t.Fatalf("%d entries after the end", len(got))
	}
	stopErr := errors.New("enough")
	n := 0
	if err := l.Export(ctx, ExportFilter{}, func(storage.Entry) error { n++; return stopErr }); err != stopErr || n != 1 {
		t.Fatalf("fn error: %v after %d entries", err, n)
	}
	if err := l.Export(ctx, ExportFilter{Service: "Bad!"}, func(storage.Entry) error { return nil }); !storage.Is(err, storage.Invalid) {
		t.Fatalf("bad service: %v", err)
	}
}
