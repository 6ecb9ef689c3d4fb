package badger

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
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

	// Owned by the syncer goroutine.
	wals map[string]*os.File // WAL files (*.mem) seen, kept open across rounds
	dirF *os.File
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
		wals: make(map[string]*os.File),
		dirF: dirF,
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
		for name, f := range s.wals {
			_ = f.Close()
			delete(s.wals, name)
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
		s.mu.Lock()
		r := s.next
		if r.n == 0 {
			s.mu.Unlock()
			return
		}
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

// syncRound makes every write committed so far durable: it fdatasyncs
// every WAL file (*.mem) in the directory — the active memtable's and those
// of memtables Badger rotated out but has not flushed yet — and fsyncs the
// directory when the set of WAL files changed. A WAL file that has vanished
// was flushed into an SST that Badger synced and recorded in its synced
// MANIFEST before deleting the WAL. See the package comment for why
// db.Sync() is not called.
func (s *groupSync) syncRound() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	changed := false
	present := make(map[string]bool, 4)
	for _, de := range ents {
		name := de.Name()
		if !strings.HasSuffix(name, ".mem") {
			continue
		}
		f := s.wals[name]
		if f == nil {
			f, err = os.Open(filepath.Join(s.dir, name))
			if errors.Is(err, fs.ErrNotExist) {
				continue // flushed and deleted since ReadDir
			}
			if err != nil {
				return err
			}
			s.wals[name] = f
			changed = true
		}
		present[name] = true
		// fdatasync acts on the inode, so it writes back the pages Badger
		// dirtied through its mmap too (what msync would do). Keeping the
		// file open across rounds means a write-back error is reported to
		// this descriptor even if it happened between rounds.
		if err := datasync(f); err != nil {
			return err
		}
	}
	if n := int64(len(present)); n > s.mostWALs.Load() {
		s.mostWALs.Store(n)
	}
	for name, f := range s.wals {
		if !present[name] {
			_ = f.Close()
			delete(s.wals, name)
			changed = true
		}
	}
	if changed {
		return s.dirF.Sync()
	}
	return nil
}
