package badger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage/badger/internal/journal"
)

// The overlay holds the writes of journaled operations (every write, once
// the journal is started at Open; storage/badger/internal/journal) that no
// checkpoint has written into Badger yet: for each key, its last value (or
// its deletion) and the seq of the record that wrote it.
//
// Who reads what:
//
//   - The writes read through their own writes, the stripe and
//     transaction caches, then the overlay, then Badger (wtxn.get,
//     wtxn.account, wtxn.txn, Ledger.lookupTxn). Badger is read with a
//     txn opened after the overlay was consulted: a checkpoint removes a
//     key from the overlay only after committing it to Badger, so such a
//     read finds the key in one place or the other.
//   - Point reads (Ledger.pointRead) read the overlay, then Badger, as
//     the writes do. Scans first drain the overlay (Ledger.drain: a
//     checkpoint of everything appended so far), then read Badger alone.
//
// There is no conflict detection: every writer of a key holds the one
// mutex that key has. The keys an account owns (account, transaction,
// expiry index, entry, token index, recharge refs, queued alert,
// aggregate share of its stripe) are written under its stripe; the
// bookkeeping records (kv.go) under their record lock; the keys no
// account owns (services, key index, vouchers, the alert queue's
// deliveries, the format marker and migrations) under the ledger's
// sharedMu — a voucher's redemption holds its account's stripe and
// sharedMu.
type overlay struct {
	mu   sync.Mutex
	m    map[string]*ovEntry
	size int // bytes of keys and values held, roughly
}

type ovEntry struct {
	value []byte
	del   bool
	seq   uint64
	// fresh: the key is not in Badger (the operation that created it
	// said so, and no checkpoint has written it since); a deletion of a
	// fresh key needs no tombstone.
	fresh bool
}

// get returns the overlay's value of key: found reports that the overlay
// knows the key; del that it is deleted.
func (o *overlay) get(key []byte) (value []byte, del, found bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	e, ok := o.m[string(key)]
	if !ok {
		return nil, false, false
	}
	return e.value, e.del, true
}

// put applies the writes of record seq. The caller holds o.mu.
func (o *overlay) put(seq uint64, ws []journal.Write) {
	if o.m == nil {
		o.m = make(map[string]*ovEntry)
	}
	for _, w := range ws {
		k := string(w.Key)
		e, ok := o.m[k]
		if !ok {
			e = &ovEntry{fresh: w.Fresh}
			o.m[k] = e
			o.size += len(k) + 48
		} else {
			o.size -= len(e.value)
		}
		e.seq = seq
		e.del = w.Del
		e.value = w.Value
		o.size += len(w.Value)
	}
}

// bytes returns the overlay's size, roughly.
func (o *overlay) bytes() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return int64(o.size)
}

// ckWrite is one key of a checkpoint.
type ckWrite struct {
	key   string
	value []byte
	del   bool
	seq   uint64
}

// snapshot returns every write a checkpoint must make, and marks the keys
// no longer fresh (the checkpoint may write them into Badger). Fresh
// deletions are left out: Badger never had those keys. The caller holds
// o.mu.
func (o *overlay) snapshot() []ckWrite {
	out := make([]ckWrite, 0, len(o.m))
	for k, e := range o.m {
		if e.del && e.fresh {
			continue
		}
		e.fresh = false
		out = append(out, ckWrite{key: k, value: e.value, del: e.del, seq: e.seq})
	}
	return out
}

// forget removes the keys a checkpoint has committed to Badger, unless a
// later record changed them meanwhile, and the fresh deletions of records
// up to marker.
func (o *overlay) forget(marker uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for k, e := range o.m {
		if e.seq <= marker {
			delete(o.m, k)
			o.size -= len(k) + 48 + len(e.value)
		}
	}
	if len(o.m) == 0 {
		o.size = 0
	}
}

// The checkpoint marker: the seq of the last journal record whose writes
// are all in Badger. One key, outside the tables of keys.go.
const pJournalMark = 'j'

func journalMarkKey() []byte { return []byte{pJournalMark} }

func (l *Ledger) readJournalMark() (uint64, error) {
	var mark uint64
	err := l.db.View(func(txn *badger.Txn) error {
		_, err := get(txn, journalMarkKey(), func(b []byte) error {
			v, n := binary.Uvarint(b)
			if n != len(b) {
				return errCorrupt
			}
			mark = v
			return nil
		})
		return err
	})
	return mark, err
}

// Checkpoints start when the overlay holds checkpointBytes, and at least
// every checkpointEvery while it holds anything. When checkpoints fall
// behind (Badger stalls its writes while compactions catch up), a hold
// operation that finds the overlay over maxOverlayBytes waits for one
// before it answers: the overlay stays bounded and the callers feel the
// disk, as they did before the journal.
const (
	checkpointBytes = 256 << 10
	checkpointEvery = 200 * time.Millisecond
)

var maxOverlayBytes = 8 << 20 // a variable for tests

// checkpointer runs the background checkpoints until stop is closed.
func (l *Ledger) checkpointer() {
	defer close(l.ckDone)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-l.ckStop:
			return
		case <-t.C:
		case <-l.ckKick:
		}
		if err := l.checkpoint(); errors.Is(err, ErrDiskFull) {
			continue // paused below the floor (space.go)
		} else if err != nil {
			l.log.Error("checkpoint failed; the ledger stops accepting work", "err", err)
			l.broken.Store(true)
			return
		}
	}
}

// drain checkpoints everything appended to the journal so far: when it
// returns, Badger holds every write a caller may have seen, and it is
// durable there. A no-op when nothing is in the overlay (and always in
// memory).
func (l *Ledger) drain() error {
	if l.jn == nil {
		return nil
	}
	if err := l.checkpoint(); err != nil {
		if !errors.Is(err, ErrDiskFull) { // paused below the floor: nothing written
			l.broken.Store(true)
		}
		return err
	}
	return nil
}

// checkpoint writes the overlay into Badger with its marker, makes them
// durable, forgets what it wrote and deletes the journal files it covers.
func (l *Ledger) checkpoint() error {
	l.ckMu.Lock()
	defer l.ckMu.Unlock()
	start := time.Now()
	if l.ov.bytes() > 0 && !l.space.checkpointAllowed() { // space.go
		return diskFullErr("checkpoint")
	}
	l.ov.mu.Lock()
	if len(l.ov.m) == 0 {
		l.ov.mu.Unlock()
		return nil
	}
	ws := l.ov.snapshot()
	// Every record up to mark is in the snapshot (with the overlay's
	// mutex held, no record is half applied).
	mark := l.jn.LastSeq()
	l.ov.mu.Unlock()
	// Only durable records reach Badger: a crash after the checkpoint
	// must find in the journal every record above the previous marker
	// that the checkpoint may have written.
	if err := l.jn.Wait(mark); err != nil {
		return err
	}
	l.ckRW.Lock()
	err := l.applyToBadger(ws, mark)
	l.ckRW.Unlock()
	if err != nil {
		return err
	}
	// Durable in Badger before the journal files that hold it go.
	if err := l.syncBadger(); err != nil {
		return fmt.Errorf("checkpoint sync: %w", err)
	}
	l.ov.forget(mark)
	l.jn.Covered(mark)
	if l.onCk != nil {
		l.onCk(len(ws), time.Since(start))
	}
	return nil
}

// applyToBadger commits ws and the marker mark in as few Badger txns as
// Badger's size limits allow, the marker in the last; each is synced by
// Badger (SyncWrites) when its Commit returns.
func (l *Ledger) applyToBadger(ws []ckWrite, mark uint64) error {
	txn := l.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	commit := func() error {
		if err := txn.Commit(); err != nil {
			return err
		}
		txn = l.db.NewTransaction(true)
		return nil
	}
	// put writes one key into the txn, in a new txn when it is full.
	put := func(k, v []byte, del bool) error {
		for try := 0; ; try++ {
			var err error
			if del {
				err = txn.Delete(k)
			} else {
				err = txn.Set(k, v)
			}
			if !errors.Is(err, badger.ErrTxnTooBig) || try > 0 {
				return err
			}
			if err := commit(); err != nil {
				return err
			}
		}
	}
	for _, w := range ws {
		if err := put([]byte(w.key), w.value, w.del); err != nil {
			return err
		}
	}
	if err := put(journalMarkKey(), binary.AppendUvarint(nil, mark), false); err != nil {
		return err
	}
	return commit()
}

// replayJournal applies, at Open, the journal records above Badger's
// marker, makes them durable, removes the journal files and starts a new
// journal.
//
// It walks the journal first and sorts the damage found (journal.Classify):
//   - a torn tail: a crash during a write; nothing in it was
//     acknowledged. The records before it are replayed, the damage is
//     logged and dropped.
//   - damage whose unreadable records are all at or below the marker:
//     Badger holds them, nothing is lost. The records after it are
//     replayed; the journal files are moved aside (journal.MoveAside), as
//     evidence of a failing disk, and an error is logged.
//   - anything else is corruption: acknowledged records are unreadable,
//     and the valid ones after them cannot be replayed over the gap (each
//     record holds whole values written on top of what the lost ones
//     wrote: an account's held total that counts a hold whose own record
//     is lost, a capture whose hold still looks open). With
//     JournalRefuse, Open fails with a *JournalCorruptError before writing
//     anything; with JournalMoveAside it replays the records before the
//     damage — a consistent ledger as of that record — and moves every
//     journal file aside, the records after the damage with them.
func (l *Ledger) replayJournal(dir string, onSync func(int, time.Duration), action JournalCorruptAction) error {
	mark, err := l.readJournalMark()
	if err != nil {
		return fmt.Errorf("reading the journal marker: %w", err)
	}
	scan, err := journal.Walk(dir, nil)
	if err != nil {
		return err
	}
	v := scan.Classify(mark)
	for _, d := range v.Torn {
		l.log.Warn("journal ends with a torn record (a crash during a write); it was never acknowledged",
			"file", filepath.Base(d.Path), "offset", d.At.Off, "bytes", d.End-d.At.Off, "what", d.Why)
	}
	for _, d := range v.Covered {
		l.log.Error("journal damaged where the checkpoint already holds the records: nothing lost; the disk may be failing",
			"file", d.Path, "offset", d.At.Off, "bytes", d.End-d.At.Off, "what", d.Why)
	}
	corrupt := v.Corrupt
	var cerr *JournalCorruptError
	if corrupt == nil && action == JournalMoveAside {
		l.log.Warn("the journal is not corrupt: nothing to move aside; start without the move-aside option from now on")
	}
	if corrupt != nil {
		if cerr, err = describeCorruption(dir, corrupt, mark); err != nil {
			return err
		}
		if action != JournalMoveAside {
			return cerr
		}
	}

	var (
		pending = map[string]*ckWrite{}
		order   []string
		applied int
		last    = mark
	)
	flush := func(upTo uint64) error {
		if len(order) == 0 {
			return nil
		}
		ws := make([]ckWrite, 0, len(order))
		for _, k := range order {
			ws = append(ws, *pending[k])
		}
		if err := l.applyToBadger(ws, upTo); err != nil {
			return err
		}
		if err := l.syncBadger(); err != nil {
			return err
		}
		clear(pending)
		order = order[:0]
		return nil
	}
	if _, err := journal.Walk(dir, func(at journal.Pos, seq uint64, ws []journal.Write) error {
		if seq <= mark || corrupt != nil && !at.Before(corrupt.At) {
			return nil
		}
		for _, w := range ws {
			k := string(w.Key)
			p, ok := pending[k]
			if !ok {
				p = &ckWrite{key: k}
				pending[k] = p
				order = append(order, k)
			}
			p.value, p.del, p.seq = append([]byte(nil), w.Value...), w.Del, seq
		}
		applied++
		last = seq
		if len(order) >= 4096 {
			return flush(seq)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("replaying the journal: %w", err)
	}
	if err := flush(last); err != nil {
		return fmt.Errorf("replaying the journal: %w", err)
	}
	if applied > 0 {
		l.log.Info("journal replayed", "records", applied, "from", mark+1, "to", last)
	}
	switch {
	case cerr != nil:
		aside, err := moveJournalAside(dir, scan.Files, cerr, last)
		if err != nil {
			return fmt.Errorf("moving the damaged journal aside: %w", err)
		}
		l.log.Error("journal corrupt: started from the records before the damage; the journal files are moved aside",
			"file", cerr.File, "offset", cerr.Offset, "what", cerr.Reason,
			"replayed", applied, "replayed_to", last, "records_after", cerr.After,
			"not_replayed", cerr.Unreplayed+int(cerr.Unreadable), "moved_to", aside, "files", len(scan.Files))
	case len(v.Covered) > 0:
		kept := v.Covered[0]
		aside, err := moveJournalAside(dir, scan.Files, &JournalCorruptError{
			File: kept.Path, Offset: kept.At.Off, Reason: kept.Why, LastGood: kept.Prev, After: kept.After,
		}, last)
		if err != nil {
			return fmt.Errorf("moving the damaged journal aside: %w", err)
		}
		l.log.Error("the damaged journal files are moved aside", "moved_to", aside, "files", len(scan.Files))
	default:
		for _, f := range scan.Files {
			if err := os.Remove(f); err != nil {
				return err
			}
		}
	}
	// journal.Start syncs the directory as it creates the new file: the
	// removals are durable with it (and harmless if lost: a replayed
	// record at or below the marker is skipped). It starts above every
	// seq read, those moved aside included.
	l.jn, err = journal.Start(dir, max(last, scan.Top), l.log, onSync)
	return err
}
