package badger

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger/internal/journal"
)

// Journal integrity (issue 13, finding 6): a ledger writes hold
// operations through its journal, is closed as a kill -9 leaves it (no
// checkpoint: every acknowledged operation is only in the journal), then
// its journal is damaged or torn and the directory reopened.

const (
	jdHolds    = 200 // authorizes, then captures of the first jdCaptures
	jdCaptures = 100
	jdOps      = jdHolds + jdCaptures
)

// stopCheckpoints stops l's checkpointer: hold operations stay in the
// journal (and the overlay) from now on.
func stopCheckpoints(l *Ledger) {
	close(l.ckStop)
	<-l.ckDone
	l.ckStop = nil
}

// crashClose closes l as a kill -9 leaves it: the journal as written
// (every acknowledged record synced), no last checkpoint, so Badger has
// nothing past its marker; the journal files stay.
func crashClose(t *testing.T, l *Ledger) {
	t.Helper()
	l.gate.Lock()
	l.closed = true
	l.gate.Unlock()
	if l.ckStop != nil {
		stopCheckpoints(l)
	}
	if err := l.jn.Close(false); err != nil {
		t.Fatal(err)
	}
	if err := l.db.Close(); err != nil {
		t.Fatal(err)
	}
}

// jdJournal is a data directory left by a crash after jdOps acknowledged
// hold operations, one journal record each, in order: op i is record
// base+1+i.
type jdJournal struct {
	dir   string
	holds []string // transaction tokens; op i < jdHolds authorized holds[i], op jdHolds+i captured holds[i]
	file  string   // the journal file (one)
	offs  []int64  // offs[i]: where op i's record starts
	base  uint64   // the seq before op 0's
}

const jdToken = storage.AccountToken("0123456789abcdef0123456789abcdef")

// buildJDJournal writes the journal; with checkpointAfter > 0 a
// checkpoint covers the first checkpointAfter operations.
func buildJDJournal(t *testing.T, checkpointAfter int) jdJournal {
	t.Helper()
	ctx := context.Background()
	j := jdJournal{dir: filepath.Join(t.TempDir(), "data")}
	l := openTemp(t, j.dir, nil, nil)
	stopCheckpoints(l)
	if _, err := l.EnsureService(ctx, storage.Service{Name: "jsvc"}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "jsvc", Account: jdToken, Amount: 1000 * storage.Scale, Ref: "seed", Kind: storage.EntryRecharge}); err != nil {
		t.Fatal(err)
	}
	j.base = l.jn.LastSeq()
	for i := range jdOps {
		if i == checkpointAfter && i > 0 {
			if err := l.checkpoint(); err != nil {
				t.Fatal(err)
			}
		}
		if i < jdHolds {
			txn, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: "jsvc", Account: jdToken, Amount: storage.Scale, TTL: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			j.holds = append(j.holds, txn.Token)
		} else if _, err := l.Capture(ctx, storage.CaptureRequest{Service: "jsvc", Transaction: j.holds[i-jdHolds]}); err != nil {
			t.Fatal(err)
		}
	}
	crashClose(t, l)
	scan, err := journal.Walk(j.dir, func(at journal.Pos, seq uint64, _ []journal.Write) error {
		if seq > j.base {
			j.offs = append(j.offs, at.Off)
		}
		return nil
	})
	if err != nil || len(scan.Files) != 1 || len(scan.Damages) != 0 || len(j.offs) != jdOps || scan.Top != j.base+jdOps {
		t.Fatalf("the journal written: %d files, %d damages, %d records after %d (top %d), %v; want 1 file, %d records",
			len(scan.Files), len(scan.Damages), len(j.offs), j.base, scan.Top, err, jdOps)
	}
	j.file = scan.Files[0]
	return j
}

// opsPresent counts the operations found in the ledger (op i < jdHolds: its
// hold exists; op jdHolds+i: holds[i] is captured), checking they are a
// prefix: all of 0…n-1 and none after.
func (j jdJournal) opsPresent(t *testing.T, l *Ledger) int {
	t.Helper()
	ctx := context.Background()
	n, gap := 0, false
	for i := range jdOps {
		var present bool
		if i < jdHolds {
			_, err := l.Transaction(ctx, j.holds[i])
			if err != nil && !storage.Is(err, storage.NotFound) {
				t.Fatal(err)
			}
			present = err == nil
		} else {
			txn, err := l.Transaction(ctx, j.holds[i-jdHolds])
			if err != nil && !storage.Is(err, storage.NotFound) {
				t.Fatal(err)
			}
			present = err == nil && txn.State == storage.Captured
		}
		switch {
		case present && gap:
			t.Fatalf("operation %d is in the ledger after a missing one: not a prefix", i)
		case present:
			n++
		default:
			gap = true
		}
	}
	return n
}

// verifyProblems runs Verify and returns its problems.
func verifyProblems(t *testing.T, l *Ledger) []Problem {
	t.Helper()
	rep, err := l.Verify(context.Background(), VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return rep.Problems
}

// recordOf is the operation whose record holds byte off of the file.
func (j jdJournal) recordOf(off int64) int {
	i := 0
	for i+1 < len(j.offs) && j.offs[i+1] <= off {
		i++
	}
	return i
}

// A bit flipped anywhere before the last record is corruption: Open
// refuses, naming the file and the offset of the damaged record and
// counting the valid records after it, and changes nothing; the journal
// is still there, byte for byte.
func TestJournalBitFlipRefused(t *testing.T) {
	j := buildJDJournal(t, 0)
	size := j.offs[len(j.offs)-1]
	for _, tc := range []struct {
		name string
		off  int64
		bit  byte
	}{
		{"10%", size / 10, 0},
		{"50%", size / 2, 5},
		{"length field", j.offs[jdOps/3], 2},          // the record gets 4 bytes longer or shorter
		{"length field high", j.offs[jdOps/3] + 3, 7}, // an impossible length
		{"checksum", j.offs[jdOps/2] + 5, 1},
		{"first record", j.offs[0] + 9, 0},
		{"next to last record", j.offs[jdOps-2] + 10, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, j.dir)
			path := filepath.Join(dir, filepath.Base(j.file))
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[tc.off] ^= 1 << tc.bit
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			k := j.recordOf(tc.off)
			_, err = Open(Options{Dir: dir})
			var ce *JournalCorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("Open: %v; want a JournalCorruptError", err)
			}
			if ce.File != path || ce.Offset != j.offs[k] || ce.After != jdOps-1-k || ce.Unreplayed != jdOps-1-k ||
				ce.AfterFirst != j.base+uint64(k)+2 || ce.AfterLast != j.base+jdOps || ce.Unreadable != 1 || ce.LastGood != j.base+uint64(k) {
				t.Fatalf("%+v; want file %s, offset %d, %d records after", ce, path, j.offs[k], jdOps-1-k)
			}
			for _, want := range []string{filepath.Base(path), "byte " + itoa(j.offs[k]), itoa(int64(jdOps-1-k)) + " valid records follow"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, b) {
				t.Fatalf("the journal changed after a refused Open: %v", err)
			}
			if as, _ := ListJournalAside(dir); len(as) != 0 {
				t.Fatalf("moved aside without the flag: %+v", as)
			}
			// Refused again: Open wrote nothing that hides the damage.
			if _, err := Open(Options{Dir: dir}); !errors.As(err, &ce) {
				t.Fatalf("second Open: %v", err)
			}

			// With JournalMoveAside: the records before the damage are
			// replayed, the journal goes aside, the ledger is consistent
			// and Verify reports the folder.
			l := openTemp(t, dir, nil, func(o *Options) { o.JournalCorrupt = JournalMoveAside })
			if n := j.opsPresent(t, l); n != k {
				t.Errorf("%d operations in the ledger, want the %d before the damage", n, k)
			}
			ps := verifyProblems(t, l)
			if len(ps) != 1 || ps[0].Check != CheckJournal || ps[0].Severity != SeverityError ||
				!strings.Contains(ps[0].Detail, itoa(int64(jdOps-1-k))+" records after the damage and 1 in it not replayed") {
				t.Fatalf("verify: %+v; want the one journal error", ps)
			}
			as, err := ListJournalAside(dir)
			if err != nil || len(as) != 1 || as[0].Err != nil || as[0].Damage.After != jdOps-1-k || as[0].Damage.ReplayedTo != j.base+uint64(k) {
				t.Fatalf("aside: %+v, %v", as, err)
			}
			// damage.json lists the holds the records after the damage
			// wrote, in the state the last of them left each.
			want := map[string]storage.TransactionState{}
			for i := k + 1; i < jdOps; i++ {
				if i < jdHolds {
					want[j.holds[i]] = storage.Held
				} else {
					want[j.holds[i-jdHolds]] = storage.Captured
				}
			}
			if got := as[0].Damage.Transactions; len(got) != len(want) {
				t.Errorf("damage.json lists %d transactions, want %d", len(got), len(want))
			}
			for _, tx := range as[0].Damage.Transactions {
				if want[tx.Transaction] != tx.State || tx.Account != jdToken || tx.Amount != storage.Scale {
					t.Errorf("damage.json: %+v; want state %q", tx, want[tx.Transaction])
				}
			}
			if moved, err := os.ReadFile(filepath.Join(as[0].Path, filepath.Base(path))); err != nil || !bytes.Equal(moved, b) {
				t.Fatalf("the moved journal file: %v", err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			// The next start is a normal one; the folder stays reported
			// until removed.
			l = openTemp(t, dir, nil, nil)
			if n := j.opsPresent(t, l); n != k {
				t.Errorf("after a restart: %d operations, want %d", n, k)
			}
			if err := os.RemoveAll(as[0].Path); err != nil {
				t.Fatal(err)
			}
			if ps := verifyProblems(t, l); len(ps) != 0 {
				t.Fatalf("verify once the folder is removed: %+v", ps)
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// What a crash leaves at the end of the newest file — a record cut short
// at any point, zeros of a size written back before its data, garbage of
// the last unsynced round — is a torn tail: Open starts, every
// acknowledged operation is there, and Verify is clean.
func TestJournalTornTailOpens(t *testing.T) {
	j := buildJDJournal(t, 0)
	// The record a crash interrupted: the one the next operation would
	// have written.
	next := journal.AppendRecord(nil, j.base+jdOps+1, []journal.Write{{Key: []byte("x-never-acknowledged"), Value: bytes.Repeat([]byte("v"), 40)}})
	garbage := make([]byte, 300)
	for i := range garbage {
		garbage[i] = byte(rand.IntN(256))
	}
	for _, tc := range []struct {
		name string
		tail []byte
	}{
		{"partial header", next[:5]},
		{"header only", next[:8]},
		{"cut in the body", next[:20]},
		{"all but one byte", next[:len(next)-1]},
		{"whole, bad checksum", func() []byte { b := bytes.Clone(next); b[len(b)-1] ^= 1; return b }()},
		{"zeros", make([]byte, 4096)},
		{"header then zeros", append(bytes.Clone(next[:8]), make([]byte, 100)...)},
		{"garbage", garbage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, j.dir)
			f, err := os.OpenFile(filepath.Join(dir, filepath.Base(j.file)), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(tc.tail); err != nil {
				t.Fatal(err)
			}
			f.Close()
			l := openTemp(t, dir, nil, nil)
			if n := j.opsPresent(t, l); n != jdOps {
				t.Errorf("%d of %d acknowledged operations after a torn tail", n, jdOps)
			}
			if ps := verifyProblems(t, l); len(ps) != 0 {
				t.Errorf("verify: %+v", ps)
			}
			if as, _ := ListJournalAside(dir); len(as) != 0 {
				t.Errorf("a torn tail moved aside: %+v", as)
			}
		})
	}
	// Cutting into the last acknowledged record looks the same as a torn
	// write (a crash cannot be told from a file that lost synced bytes at
	// its very end): Open starts with the records before it.
	for _, cut := range []int64{1, 7, 12} {
		dir := copyDir(t, j.dir)
		path := filepath.Join(dir, filepath.Base(j.file))
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, st.Size()-cut); err != nil {
			t.Fatal(err)
		}
		l := openTemp(t, dir, nil, nil)
		if n := j.opsPresent(t, l); n != jdOps-1 {
			t.Errorf("cut %d bytes: %d operations, want %d", cut, n, jdOps-1)
		}
		if ps := verifyProblems(t, l); len(ps) != 0 {
			t.Errorf("cut %d bytes: verify: %+v", cut, ps)
		}
	}
}

// Damage to records a checkpoint already wrote into Badger loses
// nothing: Open replays the records after it, keeps the journal aside as
// evidence, and Verify warns.
func TestJournalDamageCoveredByCheckpoint(t *testing.T) {
	j := buildJDJournal(t, jdHolds)
	path := filepath.Join(j.dir, filepath.Base(j.file))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[j.offs[jdHolds/2]+12] ^= 0x10
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	l := openTemp(t, j.dir, nil, nil)
	if n := j.opsPresent(t, l); n != jdOps {
		t.Errorf("%d of %d operations", n, jdOps)
	}
	ps := verifyProblems(t, l)
	if len(ps) != 1 || ps[0].Check != CheckJournal || ps[0].Severity != SeverityWarning || !strings.Contains(ps[0].Detail, "nothing lost") {
		t.Fatalf("verify: %+v; want the one journal warning", ps)
	}
}

// Damage in a file that is not the newest is corruption even with
// nothing valid after it in that file: a file is closed only once its
// last round is synced.
func TestJournalDamageInOlderFile(t *testing.T) {
	const base = uint64(1) << 40
	rec := func(seq uint64) []byte {
		return journal.AppendRecord(nil, seq, []journal.Write{{Key: recordKey("test", itoa(int64(seq))), Value: encodeRecord(time.Time{}, []byte("v"))}})
	}
	f1 := append(append(rec(base+1), rec(base+2)...), rec(base+3)...)
	f1[len(f1)-1] ^= 1
	for _, tc := range []struct {
		name  string
		f2    []byte
		after int
	}{
		{"records in the next file", append(rec(base+4), rec(base+5)...), 2},
		{"next file empty", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openTemp(t, dir, nil, nil)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, journal.FileName(base+1)), f1, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, journal.FileName(base+4)), tc.f2, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Open(Options{Dir: dir})
			var ce *JournalCorruptError
			if !errors.As(err, &ce) || filepath.Base(ce.File) != journal.FileName(base+1) || ce.After != tc.after || ce.Unreadable != 1 {
				t.Fatalf("Open: %v (%+v); want corruption in %s with %d records after", err, ce, journal.FileName(base+1), tc.after)
			}
			if files, _ := journal.List(dir); len(files) != 2 {
				t.Fatalf("journal files after a refusal: %v", files)
			}
		})
	}
}
