package badger

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger/internal/journal"
)

// Free space on the data volume (issue 13: a full disk never kills iapd).
//
// Badger writes its memtables' WAL files (*.mem) and builds its tables
// (*.sst) through mmap on files it has only ftruncated
// (ristretto z.OpenMmapFile: no fallocate): a store to a mapped page the
// file system cannot back raises SIGBUS, which kills the process — on
// tmpfs and ext4 alike, at a memtable flush, a compaction, a commit, and at
// Open, which writes a new memtable's header. Nothing in Badger turns this
// into an error, and iapd cannot allocate those files' blocks ahead of
// Badger (it creates and fills them in one call). So the ledger keeps
// Badger away from a full volume instead:
//
//   - The floor is what Badger's own work may still write once iapd stops
//     giving it new data (spaceWatch.floor): one memtable flushed into a
//     table before its WAL is deleted, the journal's overlay written into
//     Badger by a checkpoint (its WAL, its table, slack), and the biggest
//     compactions that may run — bounded by the tree's size, its level 0
//     up to where Badger stalls writes, its base level, and one table of a
//     deeper level with the tables it overlaps — plus a little for the
//     MANIFEST and the pages of a new WAL. It is computed from Badger's
//     levels at every measurement, so it is small for a small tree.
//   - The reserve is max(Options.DiskReserve, floor + spaceGap). Below it,
//     the writes that grow the ledger on a caller's behalf (an account seen
//     for the first time, a hold, a recharge, an account or alert setting,
//     a record) are refused with kind Unavailable (ErrDiskFull), counted
//     as Refused("disk_full"); what settles money already held (capture,
//     cancel, the expiry of a hold) and the bookkeeping that ends work
//     already done (an alert marked sent, records deleted) goes on, as do
//     the checkpoints, which the checkpointer then runs promptly so that
//     the overlay stays small.
//   - Below the floor, every write is refused and the checkpoint pauses; a
//     read that would need the overlay written into Badger first (the
//     checkpointer has usually emptied it) is answered Unavailable too.
//     Close then leaves the journal to be replayed at the next start, and,
//     if even a memtable's flush may not fit, Badger's memtable as well (it
//     is durable in its WAL).
//
// Free space is measured with statfs (the bytes available to an
// unprivileged writer): every Options.SpacePoll by a goroutine, and by a
// write whose last measurement is older than spaceStale, so that a burst
// of writes sees its own effect within a few milliseconds. The gap
// between the floor and the reserve absorbs what is admitted between two
// measurements and the settling writes below the reserve.
//
// What this cannot prevent: another process filling the volume past the
// floor while Badger flushes or compacts. The data directory belongs on a
// volume of its own.
const (
	// DefaultDiskReserve is Options.DiskReserve's default: above the
	// floor of a tree of a few hundred GB with Badger as Open sets it up
	// (level 0 up to its stall, 31 MiB; a base level of 32 MiB that may
	// hold twice that; a deeper table of 2 MiB and its overlap, 30 MiB; a
	// checkpoint of the largest overlay, 24 MiB; a flush, 1.25 MiB), with
	// room to alert on before writes are refused.
	DefaultDiskReserve = 256 << 20
	// DefaultSpacePoll is Options.SpacePoll's default.
	DefaultSpacePoll = time.Second

	spaceGap   = 2 << 20               // reserve above the floor, at least
	spaceSlack = 1 << 20               // MANIFEST appends, a new WAL's first pages, journal files
	spaceStale = 20 * time.Millisecond // a write measures again after this
)

// ErrDiskFull is the cause of the Unavailable errors of writes refused for
// lack of free space on the data volume (storage.ErrDiskFull).
var ErrDiskFull = storage.ErrDiskFull

// FreeSpaceFunc returns the bytes available for writing on the volume that
// holds dir.
type FreeSpaceFunc func(dir string) (int64, error)

// Refusals counts protective refusals (metrics.(*Metrics).Refused); reason
// is a fixed snake_case word.
type Refusals interface{ Refused(reason string) }

// SpaceLevel is how the ledger stands with free space.
type SpaceLevel int32

// The levels, from best to worst.
const (
	SpaceOK       SpaceLevel = iota // every write admitted
	SpaceLow                        // below the reserve: new writes refused
	SpaceCritical                   // below the floor: every write refused, checkpoints paused
)

func (v SpaceLevel) String() string {
	switch v {
	case SpaceOK:
		return "ok"
	case SpaceLow:
		return "low"
	case SpaceCritical:
		return "critical"
	}
	return "unknown"
}

// SpaceStatus is one measurement of the data volume.
type SpaceStatus struct {
	Free    int64 // bytes available on the volume
	Reserve int64 // new writes are refused below it
	Floor   int64 // every write and the checkpoint stop below it
	Level   SpaceLevel
	At      time.Time // when measured; zero when space is not watched
}

// Reason says, for an operator, why writes are refused; "" at SpaceOK.
func (s SpaceStatus) Reason() string {
	switch s.Level {
	case SpaceLow:
		return fmt.Sprintf("disk space low: %d bytes free on the data volume, below the reserve of %d: new writes refused, captures, cancels and reads served", s.Free, s.Reserve)
	case SpaceCritical:
		return fmt.Sprintf("disk space critical: %d bytes free on the data volume, below the %d Badger may still need: every write refused and checkpoints paused, reads served", s.Free, s.Floor)
	}
	return ""
}

// spaceClass is what a write does to the volume.
type spaceClass int

const (
	grows   spaceClass = iota // a caller's new data: refused below the reserve
	settles                   // ends what is under way, or start-up's own: refused below the floor
)

// classOf returns the class of a write operation, by its op name.
func classOf(op string) spaceClass {
	switch op {
	case "capture", "cancel", "expire due", // money already held
		"alert sent", "alert failed", // an e-mail already sent or tried
		"delete record", "delete expired records", // frees space
		"open", "ensure service": // start-up: the format marker, the configured services
		return settles
	}
	return grows
}

// spaceWatch measures free space and admits writes.
type spaceWatch struct {
	dir        string
	freeFn     FreeSpaceFunc
	reserveCfg int64
	flushTable int64           // an L0 table from one memtable, at most
	tree       func() treeSize // Badger's levels now
	overlay    func() int64    // bytes in the overlay
	refusals   Refusals
	log        *slog.Logger

	mu     sync.Mutex // one measurement at a time
	st     atomic.Pointer[SpaceStatus]
	failed bool // the last measurement failed (logged once), under mu

	stop, done chan struct{}
}

// treeSize is what the floor needs to know of Badger's levels.
type treeSize struct {
	total    int64 // every table
	l0       int64 // level 0
	base     int64 // the base level (Badger's dynamic level sizing)
	deepFile int64 // the largest table size of the levels below the base
}

// floorFor is the floor for a tree, an overlay of ov bytes and
// extraFlushes memtables waiting to be flushed on top of the active one.
func floorFor(flushTable int64, t treeSize, ov int64, extraFlushes int) int64 {
	flush := flushTable * int64(1+extraFlushes)
	checkpoint := 3 * ov // its WAL entries, its table, slack
	// The compactions that may run at once (Badger runs two): level 0
	// into the base level, rewriting the base level it overlaps; one
	// table of a deeper level with the ~14 tables of the next one its
	// key range covers. Each writes its new tables before deleting the
	// old ones; none writes more than the tree holds.
	l0 := max(t.l0, numLevelZeroTablesStall*flushTable)
	compaction := min(t.total, l0+t.base+15*max(t.deepFile, 2*baseTableSize))
	compaction += compaction / 10 // table indexes and bloom filters
	return flush + checkpoint + compaction + spaceSlack
}

// statusFor classifies free bytes against a floor and the configured
// reserve.
func statusFor(free, floor, reserveCfg int64, at time.Time) SpaceStatus {
	s := SpaceStatus{Free: free, Floor: floor, Reserve: max(reserveCfg, floor+spaceGap), At: at}
	switch {
	case free < s.Floor:
		s.Level = SpaceCritical
	case free < s.Reserve:
		s.Level = SpaceLow
	}
	return s
}

// measure takes a fresh measurement (one at a time; a caller that finds
// one under way uses the last) and logs changes of level.
func (w *spaceWatch) measure() SpaceStatus {
	if !w.mu.TryLock() {
		return *w.st.Load()
	}
	defer w.mu.Unlock()
	prev := *w.st.Load()
	free, err := w.freeFn(w.dir)
	if err != nil {
		if !w.failed {
			w.failed = true
			w.log.Error("cannot measure free space on the data volume; the last measurement stands", "dir", w.dir, "err", err)
		}
		return prev
	}
	w.failed = false
	s := statusFor(free, floorFor(w.flushTable, w.tree(), w.overlay(), 0), w.reserveCfg, time.Now())
	w.st.Store(&s)
	if s.Level != prev.Level {
		switch s.Level {
		case SpaceOK:
			w.log.Warn("disk space recovered: writes admitted again", "free", s.Free, "reserve", s.Reserve)
		case SpaceLow:
			w.log.Warn("disk space low: new writes refused until space is freed", "free", s.Free, "reserve", s.Reserve, "floor", s.Floor)
		case SpaceCritical:
			w.log.Error("disk space critical: every write refused and checkpoints paused until space is freed", "free", s.Free, "floor", s.Floor)
		}
	}
	return s
}

// status returns the last measurement, measuring again if it is older
// than spaceStale.
func (w *spaceWatch) status() SpaceStatus {
	s := w.st.Load()
	if time.Since(s.At) < spaceStale {
		return *s
	}
	return w.measure()
}

// admit returns nil when a write of op may go to disk now, else an
// Unavailable error caused by ErrDiskFull, counted as a refusal.
func (w *spaceWatch) admit(op string) error {
	if w == nil {
		return nil
	}
	s := w.status()
	if s.Level == SpaceOK || s.Level == SpaceLow && classOf(op) == settles {
		return nil
	}
	if w.refusals != nil {
		w.refusals.Refused("disk_full")
	}
	return diskFullErr(op)
}

// checkpointAllowed reports whether a checkpoint may write into Badger.
func (w *spaceWatch) checkpointAllowed() bool {
	return w == nil || w.status().Level != SpaceCritical
}

// low reports whether new writes are refused (the checkpointer then
// empties the overlay promptly).
func (w *spaceWatch) low() bool {
	return w != nil && w.st.Load().Level != SpaceOK
}

// run measures every poll until close.
func (w *spaceWatch) run(poll time.Duration) {
	defer close(w.done)
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.measure()
		}
	}
}

func (w *spaceWatch) close() {
	if w != nil && w.stop != nil {
		close(w.stop)
		<-w.done
	}
}

// diskFullErr is the error of a checkpoint that may not run.
func diskFullErr(op string) error {
	return &storage.Error{Op: op, Kind: storage.Unavailable,
		Msg: "the server's disk is full; retry later", Err: ErrDiskFull}
}

// Space returns the last measurement of the data volume, measured again
// if it is older than spaceStale; the zero SpaceStatus (SpaceOK, At zero)
// when space is not watched (in memory).
func (l *Ledger) Space() SpaceStatus {
	if l.space == nil {
		return SpaceStatus{}
	}
	return l.space.status()
}

// checkOpenSpace refuses to open the ledger when the volume cannot take
// what opening and closing it may write: the memtables left by a crash
// flushed into tables, the journal replayed into Badger, the compactions
// these may start, and a new memtable. The error names the shortfall.
func checkOpenSpace(dir string, freeFn FreeSpaceFunc, flushTable int64, log *slog.Logger) error {
	var t treeSize
	var mems int
	var jbytes int64
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		switch name := e.Name(); {
		case strings.HasSuffix(name, ".sst"):
			t.total += fi.Size()
		case strings.HasSuffix(name, ".mem"):
			mems++
		case journal.IsFile(name):
			jbytes += fi.Size()
		}
	}
	// The levels are unknown before Open: every table may be in the base
	// level (bounded by the tree's size in floorFor).
	t.base = t.total
	probe := dir
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		probe = filepath.Dir(filepath.Clean(dir)) // Badger creates it
	}
	free, err := freeFn(probe)
	if err != nil {
		log.Error("cannot measure free space on the data volume; opening without the check", "dir", dir, "err", err)
		return nil
	}
	need := floorFor(flushTable, t, jbytes, mems)
	if free >= need {
		return nil
	}
	return &storage.Error{Op: "open", Kind: storage.Unavailable, Err: ErrDiskFull, Msg: fmt.Sprintf(
		"not enough free space on the volume of %s to open the ledger without risking a crash: %d bytes free, %d needed "+
			"(%d memtable(s) to flush, %d bytes of journal to replay, %d bytes of tables Badger may compact); free at least %d more bytes",
		dir, free, need, mems+1, jbytes, t.total, need-free)}
}

// treeSize reads Badger's levels.
func (l *Ledger) treeSize() treeSize {
	var t treeSize
	below := false
	for _, li := range l.db.Levels() {
		t.total += li.Size
		switch {
		case li.Level == 0:
			t.l0 = li.Size
		case li.IsBaseLevel:
			t.base, below = li.Size, true
		case below:
			t.deepFile = max(t.deepFile, li.TargetFileSize)
		}
	}
	return t
}
