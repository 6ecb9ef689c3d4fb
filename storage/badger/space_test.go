package badger

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
)

// fakeSpace is an injected FreeSpaceFunc.
type fakeSpace struct{ free atomic.Int64 }

func (f *fakeSpace) fn(string) (int64, error) { return f.free.Load(), nil }

// countRefusals counts Refused calls by reason.
type countRefusals struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countRefusals) Refused(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[reason]++
}

func (c *countRefusals) get(reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[reason]
}

const testReserve = 64 << 20

// openSpace opens a ledger on a temporary directory whose free space fs
// decides, with a reserve of 64 MiB and an sms service.
func openSpace(t *testing.T, fs *fakeSpace, rc *countRefusals) *Ledger {
	t.Helper()
	fs.free.Store(1 << 40)
	l := openTemp(t, t.TempDir(), nil, func(o *Options) {
		o.FreeSpace, o.DiskReserve, o.Refusals = fs.fn, testReserve, rc
	})
	if _, err := l.EnsureService(context.Background(), storage.Service{Name: "sms", AutoRegister: true, TrialCredits: 100 * storage.Scale}); err != nil {
		t.Fatal(err)
	}
	return l
}

// setFree sets the free space and waits until the ledger has measured it.
func setFree(t *testing.T, l *Ledger, fs *fakeSpace, free int64) SpaceStatus {
	t.Helper()
	fs.free.Store(free)
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := l.Space()
		if s.Free == free {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ledger never measured %d bytes free (last %+v)", free, s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func isDiskFull(err error) bool {
	return storage.Is(err, storage.Unavailable) && errors.Is(err, ErrDiskFull)
}

// Below the reserve the writes that grow the ledger are refused
// (Unavailable, ErrDiskFull, counted), reads are served, and captures and
// cancels of holds taken before go on; below the floor those are refused
// too; when space returns, every write is admitted again by itself.
func TestSpaceAdmission(t *testing.T) {
	ctx := context.Background()
	fs, rc := &fakeSpace{}, &countRefusals{}
	l := openSpace(t, fs, rc)

	// Holds taken while space is plentiful.
	var holds []storage.Transaction
	for range 3 {
		h, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: "known", Amount: 2 * storage.Scale, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		holds = append(holds, h)
	}

	s := setFree(t, l, fs, testReserve-1)
	if s.Level != SpaceLow || s.Reserve != testReserve || s.Floor >= s.Reserve || s.Reason() == "" {
		t.Fatalf("status below the reserve: %+v %q", s, s.Reason())
	}
	// Refused: a new account, a hold, a recharge, a setting, a record.
	refused := map[string]error{}
	_, refused["account"] = l.Account(ctx, "sms", "newcomer", storage.FirstSight{})
	_, refused["authorize"] = l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: "known", Amount: storage.Scale, TTL: time.Hour})
	_, refused["recharge"] = l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "known", Amount: storage.Scale, Kind: storage.EntryRecharge, Ref: "r1"})
	_, refused["update account"] = l.UpdateAccount(ctx, "sms", "known", storage.AccountUpdate{Alerts: &storage.Alerts{Enabled: true, Threshold: 5 * storage.Scale}})
	refused["put record"] = l.PutRecord(ctx, "test", "k", []byte("v"), time.Now().Add(time.Hour))
	for op, err := range refused {
		if !isDiskFull(err) {
			t.Errorf("%s below the reserve: %v, want Unavailable caused by ErrDiskFull", op, err)
		}
	}
	if n := rc.get("disk_full"); n != len(refused) {
		t.Errorf("Refused(disk_full) counted %d times, want %d", n, len(refused))
	}
	// Served: reads, and an account that exists is no write.
	a, err := l.Account(ctx, "sms", "known", storage.FirstSight{})
	if err != nil || a.Held != 6*storage.Scale {
		t.Fatalf("existing account below the reserve: %+v %v", a, err)
	}
	if _, err := l.History(ctx, "sms", "known", storage.HistoryQuery{}); err != nil {
		t.Fatalf("history below the reserve: %v", err)
	}
	if _, err := l.LookupAccount(ctx, "sms", "newcomer"); !storage.Is(err, storage.NotFound) {
		t.Fatalf("the refused account exists: %v", err)
	}
	// Settled: capture and cancel of holds taken before.
	if _, err := l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: holds[0].Token}); err != nil {
		t.Fatalf("capture below the reserve: %v", err)
	}
	if _, err := l.Cancel(ctx, "sms", holds[1].Token); err != nil {
		t.Fatalf("cancel below the reserve: %v", err)
	}

	// Below the floor: settling is refused too, reads still served once
	// the checkpointer has emptied the overlay (it did so promptly while
	// space was low).
	waitOverlayEmpty(t, l)
	s = setFree(t, l, fs, s.Floor/2)
	if s.Level != SpaceCritical {
		t.Fatalf("status below the floor: %+v", s)
	}
	if _, err := l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: holds[2].Token}); !isDiskFull(err) {
		t.Fatalf("capture below the floor: %v, want disk full", err)
	}
	if _, err := l.History(ctx, "sms", "known", storage.HistoryQuery{}); err != nil {
		t.Fatalf("history below the floor: %v", err)
	}

	// Space returns: writes resume by themselves.
	setFree(t, l, fs, 1<<40)
	if _, err := l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: holds[2].Token}); err != nil {
		t.Fatalf("capture after space returned: %v", err)
	}
	if _, err := l.Account(ctx, "sms", "newcomer", storage.FirstSight{}); err != nil {
		t.Fatalf("new account after space returned: %v", err)
	}
	a, err = l.Account(ctx, "sms", "known", storage.FirstSight{})
	if err != nil || a.Held != 0 || a.Available != 96*storage.Scale {
		t.Fatalf("account at the end: %+v %v (want 4 captured, 2 released, none held)", a, err)
	}
	if rep, err := l.Verify(ctx, VerifyOptions{}); err != nil || rep.Errors != 0 {
		t.Fatalf("verify: %v %+v", err, rep)
	}
}

func waitOverlayEmpty(t *testing.T, l *Ledger) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for l.ov.bytes() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the checkpointer never emptied the overlay")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Below the floor the checkpoint pauses: the overlay stays, a read that
// needs it in Badger is answered Unavailable (never a fault, never stale),
// and the ledger is not broken: when space returns the checkpoint runs and
// the read is served.
func TestSpaceCheckpointPaused(t *testing.T) {
	ctx := context.Background()
	fs, rc := &fakeSpace{}, &countRefusals{}
	l := openSpace(t, fs, rc)
	s := l.Space()
	// Stop the checkpointer from running between the hold and the drop.
	l.ckMu.Lock()
	h, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: "a", Amount: storage.Scale, TTL: time.Hour})
	if err != nil {
		l.ckMu.Unlock()
		t.Fatal(err)
	}
	fs.free.Store(s.Floor / 2)
	time.Sleep(2 * spaceStale)
	l.space.measure()
	l.ckMu.Unlock()
	time.Sleep(3 * checkpointEvery) // the checkpointer's ticks find no room
	if l.ov.bytes() == 0 {
		t.Fatal("a checkpoint ran below the floor")
	}
	if _, err := l.History(ctx, "sms", "a", storage.HistoryQuery{}); !isDiskFull(err) {
		t.Fatalf("a read needing a checkpoint below the floor: %v, want disk full", err)
	}
	if err := l.Check(); err != nil {
		t.Fatalf("the ledger stopped: %v", err)
	}
	setFree(t, l, fs, 1<<40)
	es, err := l.History(ctx, "sms", "a", storage.HistoryQuery{})
	if err != nil || len(es) == 0 || es[0].Transaction != h.Token {
		t.Fatalf("history after space returned: %v %+v", err, es)
	}
}

// Open refuses, with a message naming the shortfall, a volume that cannot
// take what opening writes; it opens once space is there, in the state
// the free space says.
func TestSpaceOpen(t *testing.T) {
	dir := t.TempDir()
	fs := &fakeSpace{}
	fs.free.Store(1 << 40)
	opts := Options{Dir: dir, FreeSpace: fs.fn, DiskReserve: testReserve}
	l, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.EnsureService(context.Background(), storage.Service{Name: "sms", AutoRegister: true}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	fs.free.Store(4096)
	l, err = Open(opts)
	if err == nil {
		_ = l.Close()
		t.Fatal("opened with 4096 bytes free")
	}
	if !isDiskFull(err) || !strings.Contains(err.Error(), "4096 bytes free") || !strings.Contains(err.Error(), "free at least") {
		t.Fatalf("open without space: %v", err)
	}
	// Between the floor and the reserve: it opens, refusing new writes.
	fs.free.Store(testReserve - 1)
	l, err = Open(opts)
	if err != nil {
		t.Fatalf("open below the reserve: %v", err)
	}
	defer l.Close()
	if s := l.Space(); s.Level != SpaceLow {
		t.Fatalf("status at open: %+v", s)
	}
	if _, err := l.Account(context.Background(), "sms", "new", storage.FirstSight{}); !isDiskFull(err) {
		t.Fatalf("new account after opening below the reserve: %v", err)
	}
}

// The default reserve covers the floor of a large tree with Badger as
// Open sets it up: level 0 at its stall, a base level twice its target,
// tables of 2 MiB below it and the largest overlay.
func TestDefaultDiskReserveCoversLargeTree(t *testing.T) {
	flush := int64(DefaultMemTableSize + DefaultMemTableSize/4)
	big := treeSize{total: 1 << 40, l0: numLevelZeroTablesStall * flush, base: 2 * baseLevelSize, deepFile: 2 << 20}
	floor := floorFor(flush, big, int64(maxOverlayBytes), 0)
	if floor+spaceGap > DefaultDiskReserve {
		t.Fatalf("floor of a large tree %d MiB + gap exceeds the default reserve %d MiB", floor>>20, DefaultDiskReserve>>20)
	}
	t.Logf("floor of a large tree: %.1f MiB; default reserve %d MiB", float64(floor)/(1<<20), DefaultDiskReserve>>20)
	// A small tree needs little: no more than it holds to compact.
	small := floorFor(flush, treeSize{total: 1 << 20, l0: 1 << 20}, 0, 0)
	if small > 4<<20 {
		t.Fatalf("floor of a 1 MiB tree: %d", small)
	}
}

// A restore stops, refused, once the volume is below the reserve.
func TestSpaceRestore(t *testing.T) {
	ctx := context.Background()
	fs, rc := &fakeSpace{}, &countRefusals{}
	l := openSpace(t, fs, rc)
	if _, err := l.Account(ctx, "sms", "someone", storage.FirstSight{}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := l.Backup(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	fs.free.Store(testReserve - 1)
	_, err := Restore(ctx, Options{Dir: t.TempDir(), FreeSpace: fs.fn, DiskReserve: testReserve}, bytes.NewReader(buf.Bytes()))
	if !isDiskFull(err) {
		t.Fatalf("restore below the reserve: %v", err)
	}
	fs.free.Store(1 << 40)
	if _, err := Restore(ctx, Options{Dir: t.TempDir(), FreeSpace: fs.fn, DiskReserve: testReserve}, bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("restore with space: %v", err)
	}
}

// BenchmarkSpaceAdmit is the admission check a write pays: a load and a
// clock read, and a statfs with a look at Badger's levels once per
// spaceStale.
func BenchmarkSpaceAdmit(b *testing.B) {
	l := openTemp(b, b.TempDir(), nil, nil)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.space.admit("authorize"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSpaceMeasure is one measurement: statfs and Badger's levels.
func BenchmarkSpaceMeasure(b *testing.B) {
	l := openTemp(b, b.TempDir(), nil, nil)
	for b.Loop() {
		l.space.measure()
	}
}
