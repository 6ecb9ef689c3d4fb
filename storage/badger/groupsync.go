package badger

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// groupSync makes committed Badger txns durable in batches: callers queue
// on the round that is forming, a single goroutine takes the whole queue,
// runs one sync round for all of them and releases them together. The next
// round forms while one runs. See the package comment for why a round is
// enough for durability.
type groupSync struct {
	dir    string
	log    *slog.Logger
	onSync func(batch int, d time.Duration)

	// unsynced counts commits that have begun (begin) and are neither
	// aborted nor covered by a finished round. A commit is counted before
	// it becomes visible, so unsynced == 0 means that everything any reader
	// can see is durable.
	unsynced atomic.Int64

	mu   sync.Mutex
	next *round // the round forming
	err  error  // first failure; sticky: nothing is durable after it

	failed atomic.Bool // err != nil, readable without mu

	kick chan struct{} // capacity 1: "the forming round has waiters"
	stop chan struct{}
	done chan struct{}

	// mostWALs is the most WAL files one round has synced: more than one
	// means a rotated memtable's WAL was covered (tests read it).
	mostWALs atomic.Int64
	// testRound, set by tests, is called by the syncer in each round: at
	// its start (phase 0), before it syncs (1) and with the WAL files it
	// synced (2).
	testRound func(phase int, synced []int)

	// Owned by the syncer goroutine.
	lastBatch   int              // callers the last round released (written under mu)
	gatherTimer *time.Timer      // see gather
	wals        map[int]*os.File // WAL files (NNNNN.mem) to sync, by number
	newest      int              // the newest WAL file seen: the active memtable's
	doneBelow   int              // WAL files numbered below it are synced for good
	watch       *walWatch        // new WAL files as they are created; nil: list the directory every round
	listed      bool             // the directory was listed once
	dirF        *os.File
}

type round struct {
	done  chan struct{} // closed when the round is over; err is then set
	err   error
	n     int   // waiters
	owned int64 // waiters whose commit this round settles in unsynced
}

func newRound() *round { return &round{done: make(chan struct{})} }

func startGroupSync(dir string, log *slog.Logger, onSync func(int, time.Duration)) (*groupSync, error) {
	dirF, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	s := &groupSync{
		dir: dir, log: log, onSync: onSync,
		next: newRound(),
		kick: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
		wals: make(map[int]*os.File),
		dirF: dirF,
	}
	// Watch before the first listing, so that no WAL file created in
	// between is missed.
	if s.watch, err = newWALWatch(dir); err != nil {
		log.Warn("watching the data directory failed; listing it at every sync round instead", "err", err)
		s.watch = nil
	}
	go s.run()
	return s, nil
}

// begin is called just before a Badger commit; abort undoes it when the
// commit fails; a successful commit is settled by waitCommitted.
func (s *groupSync) begin() { s.unsynced.Add(1) }
func (s *groupSync) abort() { s.unsynced.Add(-1) }

// waitCommitted waits until the caller's n commits (each begun with begin
// and returned without error) are durable.
func (s *groupSync) waitCommitted(n int64) error { return s.join(n) }

// waitVisible waits until everything the caller may have read is durable.
// It returns at once when no commit is pending.
func (s *groupSync) waitVisible() error {
	if s.unsynced.Load() == 0 {
		return nil
	}
	return s.join(0)
}

// failedNow reports whether a round has failed: nothing is durable since.
func (s *groupSync) failedNow() bool { return s.failed.Load() }

func (s *groupSync) join(owned int64) error {
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	r := s.next
	r.n++
	r.owned += owned
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default: // a kick is pending already
	}
	<-r.done
	return r.err
}

// close runs a last round for any waiter and stops the goroutine. No
// caller may join after close.
func (s *groupSync) close() {
	close(s.stop)
	<-s.done
}

func (s *groupSync) run() {
	defer close(s.done)
	defer func() {
		for n, f := range s.wals {
			_ = f.Close()
			delete(s.wals, n)
		}
		if s.watch != nil {
			s.watch.close()
		}
		_ = s.dirF.Close()
	}()
	for {
		select {
		case <-s.kick:
		case <-s.stop:
			s.drain()
			return
		}
		s.drain()
	}
}

// drain runs rounds until no waiter is queued.
func (s *groupSync) drain() {
	for {
		s.gather()
		s.mu.Lock()
		r := s.next
		if r.n == 0 {
			s.mu.Unlock()
			return
		}
		s.lastBatch = r.n
		s.next = newRound()
		failed := s.err
		s.mu.Unlock()

		start := time.Now()
		err := failed
		if err == nil {
			err = s.syncRound()
		}
		d := time.Since(start)
		if err != nil && failed == nil {
			s.log.Error("sync failed; the ledger stops accepting work", "err", err)
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			s.failed.Store(true)
		}
		r.err = err
		if err == nil {
			s.unsynced.Add(-r.owned)
		}
		close(r.done)
		if s.onSync != nil {
			s.onSync(r.n, d)
		}
	}
}

// Gathering. Under load, a round that releases many callers is followed by
// a round of the one or two of them that come back first: they cost a whole
// sync round (a device cache flush), and the others, who need a request's
// worth of CPU each before they commit again, then wait for that round to
// end before theirs can start. So when the last round released at least
// gatherFrom callers and fewer than a quarter as many are queued, the
// syncer waits, at most gatherMax, for half as many. Measured at 64
// connections on two cores: with no wait, 48% of the rounds synced a single
// caller and a round served 13 callers on average; waiting up to 250µs,
// about 35% and 14; up to 1ms, about 20% and 18 to 20 (and fewer rounds:
// less CPU, fewer device flushes). A lone caller, or a load that stops, costs at most one
// such wait.
const (
	gatherFrom = 8
	gatherMax  = time.Millisecond
)

// gather waits for callers as above before a round is taken.
func (s *groupSync) gather() {
	s.mu.Lock()
	last := s.lastBatch
	s.mu.Unlock()
	gatherWait(&s.gatherTimer, last, func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.next.n
	}, s.kick, s.stop)
}

// gatherWait is the wait above for a syncing goroutine (the group
// syncer's, the journal's): last is how many its last round released,
// queued reports how many wait now; kick is sent to when one more queues,
// stop ends the wait. t is the goroutine's reusable timer.
func gatherWait(t **time.Timer, last int, queued func() int, kick, stop <-chan struct{}) {
	n := queued()
	if last < gatherFrom || n == 0 || n >= last/4 {
		return
	}
	want := last / 2
	if *t == nil {
		*t = time.NewTimer(gatherMax)
	} else {
		(*t).Reset(gatherMax)
	}
	defer (*t).Stop()
	for {
		select {
		case <-kick: // a caller queued
		case <-(*t).C:
			return
		case <-stop:
			return
		}
		if queued() >= want {
			return
		}
	}
}

// syncRound makes every write committed so far durable. It fdatasyncs
// every WAL file (NNNNN.mem) that may hold a commit not yet synced — the
// active memtable's, and once more each one Badger has rotated out since
// the last round — and fsyncs the directory when a WAL file was created.
// See the package comment for why db.Sync() is not called.
//
// Badger numbers WAL files in sequence and writes only to the newest one
// (all writes are made by one goroutine, which creates WAL n+1 after its
// last write to WAL n), so a WAL file below the newest one seen is
// complete: synced once after that, it is closed and never synced again.
// (A vanished WAL file was flushed into an SST that Badger synced and
// recorded in its synced MANIFEST before deleting the WAL.) New WAL files
// are learnt from the watch (inotify on Linux: one read per round) or, with
// no watch, by listing the directory every round; a commit made before a
// round began is in a WAL file created before it began, which the round
// learns about.
func (s *groupSync) syncRound() error {
	var tested []int
	if s.testRound != nil {
		s.testRound(0, nil)
		defer func() { s.testRound(2, tested) }()
	}
	changed := false
	list := !s.listed || s.watch == nil
	if !list {
		overflow, err := s.watch.created(func(name string) error {
			c, err := s.noteWAL(name)
			changed = changed || c
			return err
		})
		if err != nil {
			return err
		}
		list = overflow // events were lost: list the directory
	}
	if list {
		ents, err := os.ReadDir(s.dir)
		if err != nil {
			return err
		}
		for _, de := range ents {
			c, err := s.noteWAL(de.Name())
			if err != nil {
				return err
			}
			changed = changed || c
		}
		s.listed = true
	}
	if s.testRound != nil {
		s.testRound(1, nil)
	}
	synced := int64(0)
	for n, f := range s.wals {
		// fdatasync acts on the inode, so it writes back the pages Badger
		// dirtied through its mmap too (what msync would do). Keeping the
		// active WAL open across rounds means a write-back error is
		// reported to this descriptor even if it happened between rounds.
		if err := datasync(f); err != nil {
			return err
		}
		synced++
		if s.testRound != nil {
			tested = append(tested, n)
		}
		if n < s.newest { // complete, and now durable
			_ = f.Close()
			delete(s.wals, n)
		}
	}
	s.doneBelow = s.newest
	if synced > s.mostWALs.Load() {
		s.mostWALs.Store(synced)
	}
	if changed {
		return s.dirF.Sync()
	}
	return nil
}

// noteWAL opens a WAL file not seen yet; changed reports a WAL file new to
// the directory since the last round. Other names are ignored.
func (s *groupSync) noteWAL(name string) (changed bool, err error) {
	num, ok := strings.CutSuffix(name, ".mem")
	if !ok {
		return false, nil
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < s.doneBelow || s.wals[n] != nil {
		return false, nil
	}
	s.newest = max(s.newest, n) // even if it vanished: the older ones are complete
	f, err := os.Open(filepath.Join(s.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil // flushed and deleted already
	}
	if err != nil {
		return false, err
	}
	s.wals[n] = f
	return true, nil
}
