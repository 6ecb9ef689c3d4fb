package badger

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger/internal/journal"
)

// Defaults sized for a small server (2 cores, server RSS under 100 MB with
// cmd/iapd's default Go memory limit; README "Performance"): Badger's own defaults (64
// MiB memtables ×5, 256 MiB block cache, Snappy) are meant for much bigger
// machines. Most of Badger's memory is Go heap: the memtable arenas, and
// the buffers of the table builders of flushes and compactions, which
// Badger pools (up to 8, each twice the table size, grown to hold a whole
// memtable for a flush). With 4 MiB memtables and 1 MiB tables the live
// heap was about 50 MiB and, under a 64 MiB limit, the collector ran
// without pause (about 40% of the CPU under load); with 1 MiB memtables
// and 512 KiB tables it is about 20 MiB. Level 0 then takes 10 tables
// before it is compacted, so that a compaction still merges about 10 MiB
// (with 5 tables of 1 MiB, compactions took a fifth of the CPU).
const (
	DefaultMemTableSize   = 1 << 20
	DefaultNumMemtables   = 3
	DefaultIndexCacheSize = 4 << 20
	// MinMemTableSize is the smallest MemTableSize Open accepts.
	MinMemTableSize = 256 << 10

	baseTableSize           = 512 << 10
	numLevelZeroTables      = 10
	numLevelZeroTablesStall = 25 // Badger stalls writes when level 0 has this many tables

	// baseLevelSize is the target size of the level below level 0
	// (Badger's default is 10 MiB). Measured over 60 s runs of
	// authorize+capture, once the tree holds 100 MB and more
	// (docs/performance.md, "Longer runs"): p99 39–43 → 25–35 ms and
	// about 7 % more throughput; 64 MiB was no better (one run), a level
	// multiplier of 5 instead of 10 half as good, 2 MiB tables far worse.
	baseLevelSize = 32 << 20
)

const (
	nStripes           = 1024 // per-account mutexes; a power of two
	maxConflictRetries = 10
	defaultLimit       = 100
)

// Options configure Open.
type Options struct {
	// Dir is the data directory, created if missing. Required unless
	// InMemory.
	Dir string
	// Logger receives the ledger's and Badger's logs; nil discards them.
	// Account tokens, service keys and transaction tokens are never logged.
	Logger *slog.Logger
	// EngineLogger receives Badger's own logs (compactions, flushes,
	// value-log replays), at the levels Badger gives them; nil sends only
	// its warnings and errors, to Logger.
	EngineLogger *slog.Logger
	// Now is the clock for every time the ledger records; nil is time.Now.
	Now func() time.Time
	// InMemory keeps everything in memory, for tests: nothing is durable.
	InMemory bool

	// MemTableSize is the size of one Badger memtable (and its WAL file);
	// 0 is DefaultMemTableSize; at least MinMemTableSize.
	MemTableSize int64
	// NumMemtables is how many memtables (the active one plus those
	// waiting to be flushed) may exist; 0 is DefaultNumMemtables.
	NumMemtables int
	// IndexCacheSize bounds Badger's cache of SST indexes and bloom
	// filters; 0 is DefaultIndexCacheSize, a negative value keeps every
	// index in memory (faster, unbounded). There is no block cache: blocks
	// are not compressed and are read from the mmapped tables.
	IndexCacheSize int64

	// OnSync, if set, is called after each group sync round of the
	// journal (which every change goes through) with the number of
	// records it made durable and the round's duration. It must be quick and must
	// not call the ledger.
	OnSync func(batch int, d time.Duration)
	// OnCheckpoint, if set, is called after each checkpoint of the
	// journal (overlay.go) with the number of keys written into Badger and
	// its duration, until durable. It must be quick and must not call the
	// ledger.
	OnCheckpoint func(keys int, d time.Duration)

	// FreeSpace measures the bytes available on the data volume (space.go);
	// nil is StatFS.
	FreeSpace FreeSpaceFunc
	// DiskReserve is the free space below which the writes that grow the
	// ledger are refused (ErrDiskFull); the ledger raises it to its floor
	// plus 2 MiB when Badger's tree needs more. 0 is DefaultDiskReserve;
	// negative keeps only the floor plus 2 MiB.
	DiskReserve int64
	// SpacePoll is how often free space is measured in the background
	// (writes also measure it when the last measurement is over 20 ms
	// old); 0 is DefaultSpacePoll.
	SpacePoll time.Duration
	// Refusals, if set, counts the writes refused for lack of space
	// (reason "disk_full").
	Refusals Refusals

	// JournalCorrupt says what Open does with a journal damaged before
	// its end (JournalCorruptError); the zero value is JournalRefuse.
	JournalCorrupt JournalCorruptAction
}

// Ledger is the Badger implementation of storage.Ledger. Create it with
// Open; it is safe for concurrent use.
type Ledger struct {
	db   *badger.DB
	dir  string // "" in memory
	log  *slog.Logger
	now  func() time.Time
	seed maphash.Seed

	stripes [nStripes]stripe
	// sharedMu serialises the writes of the keys no account owns
	// (services, the key index, vouchers, the alert queue's deliveries,
	// migrations): with the journal there is no conflict detection, so
	// every writer of a key holds the one mutex its key has (overlay.go).
	sharedMu sync.Mutex
	recLocks [recordLocks]sync.Mutex // kv.go
	alerts   alertIDs                // alerts.go
	services serviceCache
	txns     txnCache
	maxValue int // the largest value that stays out of the value log

	// The journal every change goes through and its overlay
	// (internal/journal, overlay.go); nil and empty in memory.
	jn     *journal.Journal
	ov     overlay
	ckMu   sync.Mutex   // one checkpoint at a time
	ckRW   sync.RWMutex // held by a checkpoint's commits; readTxn waits for them
	ckKick chan struct{}
	onCk   func(keys int, d time.Duration) // Options.OnCheckpoint
	ckStop chan struct{}
	ckDone chan struct{}

	space         *spaceWatch // nil in memory (space.go)
	agg           aggregates  // flat.go
	pendingFormat uint64      // a migration step left for finishUpgrade (version.go)

	gate   sync.RWMutex // held shared by every call, exclusively by Close
	closed bool
	broken atomic.Bool // a commit failed in a way that may have half-written
}

// Open opens (creating if needed) the ledger in opts.Dir. Errors are
// *storage.Error: Invalid for bad options, Unavailable when the data
// directory cannot be opened (another process holds it, permissions, …),
// Internal wrapping a *JournalCorruptError (errors.As) when the journal is
// corrupt and opts.JournalCorrupt is JournalRefuse: nothing was changed.
func Open(opts Options) (*Ledger, error) {
	const op = "open"
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	if !opts.InMemory && opts.Dir == "" {
		return nil, storage.E(op, storage.Invalid, "no data directory")
	}
	mts := opts.MemTableSize
	if mts == 0 {
		mts = DefaultMemTableSize
	}
	if mts < MinMemTableSize {
		return nil, storage.Ef(op, storage.Invalid, "memtable size %d below %d", mts, MinMemTableSize)
	}
	nmt := opts.NumMemtables
	if nmt == 0 {
		nmt = DefaultNumMemtables
	}
	if nmt < 1 {
		return nil, storage.E(op, storage.Invalid, "NumMemtables must be positive")
	}
	ics := opts.IndexCacheSize
	switch {
	case ics == 0:
		ics = DefaultIndexCacheSize
	case ics < 0:
		ics = 0 // Badger: no cache, all indexes in memory
	}

	dir := opts.Dir
	if opts.InMemory {
		dir = ""
	}
	bo := badger.DefaultOptions(dir).
		WithInMemory(opts.InMemory).
		WithLogger(engineLogger(log, opts.EngineLogger)).
		// Every change is made durable by the journal; Badger is written
		// only by checkpoints (and at Open before the journal starts), and
		// a checkpoint's txns must be on stable storage before the journal
		// files that hold them go. With SyncWrites Badger syncs each of its
		// write batches before Commit returns, whichever memtable it went
		// to: db.Sync() alone would miss a memtable rotated meanwhile.
		WithSyncWrites(true).
		WithDetectConflicts(true).
		WithMetricsEnabled(false). // Badger's metrics are process-global expvars
		WithMemTableSize(mts).
		WithNumMemtables(nmt).
		WithBaseTableSize(baseTableSize).
		WithBaseLevelSize(baseLevelSize).
		WithNumLevelZeroTables(numLevelZeroTables).
		WithNumLevelZeroTablesStall(numLevelZeroTablesStall).
		// Ledger records are small and mostly varints and hex: not worth
		// compressing on two cores, and uncompressed tables need no block
		// cache (a compressing table builder also doubles its buffers).
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithIndexCacheSize(ics).
		WithNumCompactors(2).
		// Keep every value in the LSM tree (wtxn.set refuses bigger
		// ones): the value log stays empty and needs neither syncing nor
		// garbage collection.
		WithValueThreshold(valueThreshold(mts)).
		WithValueLogFileSize(4 << 20)
	freeFn := opts.FreeSpace
	if freeFn == nil {
		freeFn = StatFS
	}
	reserve := opts.DiskReserve
	switch {
	case reserve == 0:
		reserve = DefaultDiskReserve
	case reserve < 0:
		reserve = 0
	}
	poll := opts.SpacePoll
	if poll <= 0 {
		poll = DefaultSpacePoll
	}
	flushTable := mts + mts/4 // an L0 table from one memtable: its entries, index and bloom filter
	if !opts.InMemory {
		// Badger's Open writes through mmap (a new memtable, the tables
		// of the memtables a crash left): never where it would fault.
		if err := checkOpenSpace(dir, freeFn, flushTable, log); err != nil {
			return nil, err
		}
		// Not a durability path: a start-up repair of a Badger v4.9 bug
		// (recover.go).
		if err := removeEmptyWALs(dir, log); err != nil {
			return nil, storage.Wrap(op, storage.Unavailable, err)
		}
	}
	db, err := badger.Open(bo)
	if err != nil {
		return nil, storage.Wrap(op, storage.Unavailable, err)
	}
	l := &Ledger{db: db, dir: dir, log: log, now: now, seed: maphash.MakeSeed(), maxValue: int(valueThreshold(mts)) - 1}
	if !opts.InMemory {
		l.space = &spaceWatch{dir: dir, freeFn: freeFn, reserveCfg: reserve, flushTable: flushTable,
			tree: l.treeSize, overlay: l.ov.bytes, refusals: opts.Refusals, log: log,
			stop: make(chan struct{}), done: make(chan struct{})}
		l.space.st.Store(&SpaceStatus{})
		if s := l.space.measure(); s.Level != SpaceOK {
			log.Warn("starting with little free space on the data volume: "+s.Reason(), "free", s.Free, "reserve", s.Reserve, "floor", s.Floor)
		}
		go l.space.run(poll)
	}
	if err := l.upgrade(dir); err != nil { // version.go: format check, migrations
		return nil, err
	}
	if !opts.InMemory {
		if err := l.replayJournal(dir, opts.OnSync, opts.JournalCorrupt); err != nil { // overlay.go
			_ = l.Close()
			return nil, storage.Wrap(op, storage.Internal, err)
		}
		l.ckKick, l.ckStop, l.ckDone = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		l.onCk = opts.OnCheckpoint
		go l.checkpointer()
	}
	if err := l.finishUpgrade(); err != nil { // flat.go: steps after the replay
		_ = l.Close()
		return nil, err
	}
	if err := l.loadAlertIDs(); err != nil {
		_ = l.Close()
		return nil, storage.Wrap(op, storage.Internal, fmt.Errorf("reading the alert queue: %w", err))
	}
	log.Info("ledger opened", "dir", dir, "in_memory", opts.InMemory, "memtable_size", mts)
	return l, nil
}

// valueThreshold is Badger's ValueThreshold for a memtable size: values
// this big or bigger would go to the value log. Badger requires it to be at
// most 15% of the memtable; ledger values stay below 16 KiB (text fields are
// bounded), far below the threshold of the smallest memtable.
func valueThreshold(memTableSize int64) int64 { return min(64<<10, memTableSize*15/100) }

// Close waits for the calls in progress, makes everything durable, stops
// the background goroutines and closes the database. Every later call,
// Close included, fails with kind Unavailable.
func (l *Ledger) Close() error {
	l.gate.Lock()
	if l.closed {
		l.gate.Unlock()
		return storage.E("close", storage.Unavailable, "ledger closed")
	}
	l.closed = true
	l.gate.Unlock()
	if l.ckStop != nil {
		close(l.ckStop)
		<-l.ckDone
	}
	defer l.space.close()
	// Below the floor, Badger may not even have room to flush its
	// memtable: the journal and the memtable's WAL, both durable, are
	// left to the next start, which replays them once space allows.
	var sp SpaceStatus
	if l.space != nil {
		sp = l.space.measure()
	}
	if l.jn != nil {
		// The last checkpoint: what the journal holds goes into Badger,
		// and the journal files go once it is durable there.
		cerr := l.checkpoint()
		if cerr != nil {
			l.log.Error("last checkpoint failed; the journal is kept and replayed at the next start", "err", cerr)
		}
		if err := l.jn.Close(cerr == nil && !l.broken.Load()); err != nil {
			l.log.Error("closing the journal", "err", err)
		}
	}
	if sp.Level == SpaceCritical && sp.Free < l.space.flushTable+spaceSlack {
		l.log.Error("closing without flushing Badger's memtable: the data volume cannot take it; its WAL is durable and replayed at the next start",
			"free", sp.Free)
		return nil
	}
	if err := l.db.Close(); err != nil {
		l.log.Error("closing ledger", "err", err)
		return storage.Wrap("close", storage.Internal, err)
	}
	l.log.Info("ledger closed")
	return nil
}

// Check reports readiness: nil while the ledger is open and healthy, an
// error of kind Unavailable once it is closed or stopped after a storage
// failure.
func (l *Ledger) Check() error {
	if err := l.enter("check", nil); err != nil {
		return err
	}
	l.gate.RUnlock()
	return nil
}

// enter admits a call: it fails Unavailable when the ledger is closed or
// broken, or ctx is done. On success the caller must call l.leave.
func (l *Ledger) enter(op string, ctx context.Context) error {
	if ctx != nil {
		if err := ctx.Err(); err != nil {
			return storage.Wrap(op, storage.Unavailable, err)
		}
	}
	l.gate.RLock()
	switch {
	case l.closed:
		l.gate.RUnlock()
		return storage.E(op, storage.Unavailable, "ledger closed")
	case l.broken.Load() || l.jn != nil && l.jn.Failed():
		l.gate.RUnlock()
		return storage.E(op, storage.Unavailable, "ledger stopped after a storage failure; restart it")
	}
	return nil
}

func (l *Ledger) leave() { l.gate.RUnlock() }

// clock is the time recorded for a change: UTC, without monotonic reading.
func (l *Ledger) clock() time.Time { return l.now().Round(0).UTC() }

// stripe returns the stripe of an account: its lock and record cache.
func (l *Ledger) stripe(svc storage.ServiceName, tok storage.AccountToken) *stripe {
	var h maphash.Hash
	h.SetSeed(l.seed)
	h.WriteString(string(svc))
	h.WriteByte(0)
	h.WriteString(string(tok))
	return &l.stripes[h.Sum64()&(nStripes-1)]
}

// wtxn is the write of one operation: a read-write Badger txn, or for a
// journaled write the list of its writes (journaled, pend). It counts its
// writes and keeps every value out of the value log. Under an account
// stripe (st), it reads and writes account records through the stripe's
// cache.
type wtxn struct {
	*badger.Txn
	// journaled: the writes are collected in pend for the journal
	// (journal.go) instead of going to a Badger txn; Txn is then nil and
	// reads go through the caches, the overlay and Badger (readLatest).
	journaled bool
	pend      []journal.Write
	writes    int
	size      int64 // bytes of the writes, as Badger counts a txn (roughly)
	maxValue  int
	st        *stripe // the stripe held, nil for writes outside any account
	l         *Ledger
	accts     []acct // account records written, cached once committed
	acctBuf   [1]acct
	txns      []cachedTxn // transaction records written, cached once committed
	txnBuf    [1]cachedTxn
	aggs      []aggDelta // changes to the aggregate figures (flat.go)
	aggBuf    [1]aggDelta
}

func (w *wtxn) set(k, v []byte) error {
	if len(v) > w.maxValue {
		return fmt.Errorf("record of %d bytes exceeds %d", len(v), w.maxValue)
	}
	if w.journaled {
		if err := w.grow(k, v); err != nil {
			return err
		}
		w.writes++
		w.pend = append(w.pend, journal.Write{Key: k, Value: v})
		return nil
	}
	w.writes++
	return w.Txn.Set(k, v)
}

// grow counts a journaled write against the bounds of one Badger txn,
// which a journaled write keeps as a Badger write did (an atomic write
// too big for one txn fails badger.ErrTxnTooBig), so that records stay
// small (far below journal's bound) and a caller sees the same limit with
// or without a journal.
func (w *wtxn) grow(k, v []byte) error {
	size := w.size + int64(len(k)+len(v)) + 12 // Badger's per-entry meta, roughly
	if size >= w.l.db.MaxBatchSize() || int64(w.writes+1) >= w.l.db.MaxBatchCount() {
		return badger.ErrTxnTooBig
	}
	w.size = size
	return nil
}

// setNew is set for a key the caller has just created (an expiry index
// key): in a journaled write, deleting it before a checkpoint has written
// it then costs Badger nothing.
func (w *wtxn) setNew(k, v []byte) error {
	if err := w.set(k, v); err != nil || !w.journaled {
		return err
	}
	w.pend[len(w.pend)-1].Fresh = true
	return nil
}

func (w *wtxn) del(k []byte) error {
	if w.journaled {
		if err := w.grow(k, nil); err != nil {
			return err
		}
		w.writes++
		w.pend = append(w.pend, journal.Write{Key: k, Del: true})
		return nil
	}
	w.writes++
	return w.Txn.Delete(k)
}

// change is the body of a write: it reads and writes through tx. A non-nil
// err discards the txn and is returned; otherwise the txn is committed and,
// once durable, after (nil or a refusal decided after writing, such as
// Forbidden after creating an account on first sight) is returned. It may
// run several times (Badger conflicts) and must leave no other trace.
type change func(tx *wtxn, now time.Time) (after error, err error)

// write runs fn under st (the account's stripe, or nil: the ledger's
// shared lock), commits, and waits until the commit is durable: a journal
// record (writeJournaled), or in memory and at Open before the journal
// starts a Badger txn. When fn writes nothing or fails, write still waits
// until what fn read is durable, so that no answer rests on a change a
// crash could take back.
func (l *Ledger) write(op string, st *stripe, fn change) error {
	return l.writeAlso(op, st, nil, fn)
}

// writeAlso is write holding also (if not nil) too, taken after st's
// mutex: for a write under an account's stripe that also writes a key
// shared with other accounts.
func (l *Ledger) writeAlso(op string, st *stripe, also *sync.Mutex, fn change) error {
	if l.jn != nil {
		mu := &l.sharedMu
		if st != nil {
			mu = &st.mu
		}
		return l.writeJournaled(context.Background(), op, mu, also, st, fn)
	}
	after, committed, err := l.commitAlso(op, st, also, fn)
	if err != nil {
		return err
	}
	if committed {
		if err := l.syncBadger(); err != nil {
			return l.syncErr(op, err)
		}
	}
	return after
}

// commitAlso is writeAlso's Badger txn, without the wait for a committed
// change: committed reports a commit the caller must complete with
// syncBadger.
func (l *Ledger) commitAlso(op string, st *stripe, also *sync.Mutex, fn change) (after error, committed bool, err error) {
	var mu *sync.Mutex
	if st != nil {
		mu = &st.mu
	}
	if also != nil {
		// Badger's conflict detection guards the shared keys here; the
		// lock keeps the order of writeJournaled's.
		if mu == nil {
			mu = also
		} else {
			also.Lock()
			defer also.Unlock()
		}
	}
	return l.commitLocked(op, st, mu, fn)
}

// writeHold is write for the hold operations (authorize, capture,
// cancel): write under the account's stripe st, whose wait for the
// journal record ends with ctx (writeJournaled). In memory there is no
// journal: it is write.
func (l *Ledger) writeHold(ctx context.Context, op string, st *stripe, fn change) error {
	if l.jn == nil {
		return l.write(op, st, fn)
	}
	return l.writeJournaled(ctx, op, &st.mu, nil, st, fn)
}

// writeRecord is write for the bookkeeping records (kv.go), under their
// record lock mu, whose wait ends with ctx (writeJournaled).
func (l *Ledger) writeRecord(ctx context.Context, op string, mu *sync.Mutex, fn change) error {
	if l.jn == nil {
		return l.writeLocked(op, mu, fn)
	}
	return l.writeJournaled(ctx, op, mu, nil, nil, fn)
}

// writeJournaled commits fn and waits until its record is durable, or
// until ctx is done: the change is then committed but not confirmed
// durable, and the error (Unavailable: "try again later") does not say
// it failed, since it may well not have (a retry of a capture or cancel
// is idempotent; an authorize's hold left unanswered expires).
func (l *Ledger) writeJournaled(ctx context.Context, op string, mu, also *sync.Mutex, st *stripe, fn change) error {
	after, seq, err := l.commitJournaled(op, mu, also, st, fn)
	if err != nil {
		return err
	}
	if err := l.waitJournaled(ctx, op, seq); err != nil {
		return err
	}
	return after
}

// waitJournaled is writeJournaled's wait for the journal record seq (0:
// none) to be durable.
func (l *Ledger) waitJournaled(ctx context.Context, op string, seq uint64) error {
	if seq == 0 {
		return nil
	}
	if err := l.jn.WaitCtx(ctx, seq); err != nil {
		if errors.Is(err, journal.ErrNotYetDurable) {
			return storage.Wrap(op, storage.Unavailable, err)
		}
		return l.syncErr(op, err)
	}
	return nil
}

// commitJournaled runs fn under mu (st: the account stripe whose mutex mu
// is, or nil) and also (if not nil, taken after mu) with its writes going
// to the journal and the overlay, and returns without waiting: seq is the
// journal record to wait for (0: nothing was written, and what fn read is
// durable). Every writer of the keys fn writes must hold mu or also:
// there is no conflict detection here.
func (l *Ledger) commitJournaled(op string, mu, also *sync.Mutex, st *stripe, fn change) (after error, seq uint64, err error) {
	mu.Lock()
	unlock := mu.Unlock
	if also != nil {
		also.Lock()
		unlock = func() { also.Unlock(); mu.Unlock() }
	}
	tx := &wtxn{journaled: true, maxValue: l.maxValue, st: st, l: l}
	tx.accts, tx.txns = tx.acctBuf[:0], tx.txnBuf[:0]
	after, err = fn(tx, l.clock())
	if err == nil && tx.writes > 0 {
		err = l.space.admit(op) // space.go
	}
	if err == nil {
		err = tx.flushAgg() // flat.go
	}
	if err != nil || tx.writes == 0 {
		unlock()
		if serr := l.settle(op); serr != nil {
			return nil, 0, serr
		}
		if err != nil {
			return nil, 0, l.wrap(op, err)
		}
		return after, 0, nil
	}
	l.ov.mu.Lock()
	seq, jerr := l.jn.Append(tx.pend)
	if jerr == nil {
		l.ov.put(seq, tx.pend)
	}
	big, huge := l.ov.size >= checkpointBytes, l.ov.size >= maxOverlayBytes
	l.ov.mu.Unlock()
	if jerr == nil && st != nil {
		for i := range tx.accts {
			st.store(&tx.accts[i])
		}
		for i := range tx.txns {
			l.txns.store(tx.txns[i].id, &tx.txns[i].t)
		}
		tx.keepAgg()
	}
	unlock()
	if jerr != nil {
		return nil, 0, l.syncErr(op, jerr)
	}
	if huge {
		if err := l.drain(); err != nil {
			return nil, 0, l.syncErr(op, err)
		}
	} else if big || l.space.low() {
		select {
		case l.ckKick <- struct{}{}:
		default:
		}
	}
	return after, seq, nil
}

// writeLocked is write for changes outside any account, serialised by mu
// (held around the read-modify-write and the commit, never across the wait
// for durability).
func (l *Ledger) writeLocked(op string, mu *sync.Mutex, fn change) error {
	after, committed, err := l.commitLocked(op, nil, mu, fn)
	if err != nil {
		return err
	}
	if committed {
		if err := l.syncBadger(); err != nil {
			return l.syncErr(op, err)
		}
	}
	return after
}

// commitLocked is commit holding mu (nil: no lock); st, if not nil, is the
// account stripe whose mutex mu is.
func (l *Ledger) commitLocked(op string, st *stripe, mu *sync.Mutex, fn change) (after error, committed bool, err error) {
	for attempt := 1; ; attempt++ {
		if mu != nil {
			mu.Lock()
		}
		// A write that goes to Badger directly first has the overlay
		// written there (overlay.go): it reads Badger alone.
		if err := l.drain(); err != nil {
			if mu != nil {
				mu.Unlock()
			}
			return nil, false, l.syncErr(op, err)
		}
		tx := &wtxn{Txn: l.db.NewTransaction(true), maxValue: l.maxValue, st: st, l: l}
		tx.accts, tx.txns = tx.acctBuf[:0], tx.txnBuf[:0]
		after, err := fn(tx, l.clock())
		if err == nil && tx.writes > 0 {
			err = l.space.admit(op) // space.go
		}
		if err == nil {
			err = tx.flushAgg() // flat.go
		}
		if err != nil || tx.writes == 0 {
			tx.Discard()
			if mu != nil {
				mu.Unlock()
			}
			if serr := l.settle(op); serr != nil {
				return nil, false, serr
			}
			if err != nil {
				return nil, false, l.wrap(op, err)
			}
			return after, false, nil
		}
		cerr := tx.Commit()
		if cerr == nil && st != nil {
			for i := range tx.accts {
				st.store(&tx.accts[i])
			}
			for i := range tx.txns {
				l.txns.store(tx.txns[i].id, &tx.txns[i].t)
			}
			tx.keepAgg()
		}
		if mu != nil {
			mu.Unlock()
		}
		if cerr == nil {
			return after, true, nil
		}
		if errors.Is(cerr, badger.ErrConflict) {
			if attempt < maxConflictRetries {
				time.Sleep(time.Duration(attempt) * 20 * time.Microsecond)
				continue
			}
			l.log.Warn("giving up after repeated write conflicts", "op", op, "attempts", attempt)
			return nil, false, storage.E(op, storage.Unavailable, "too much contention; retry")
		}
		if !errors.Is(cerr, badger.ErrTxnTooBig) {
			l.broken.Store(true)
			l.log.Error("commit failed; the ledger stops accepting work", "op", op, "err", cerr)
		}
		return nil, false, storage.Wrap(op, storage.Internal, cerr)
	}
}

// view runs a read-only Badger txn, then waits until what it read is
// durable.
func (l *Ledger) view(op string, fn func(txn *badger.Txn) error) error {
	if err := l.drain(); err != nil {
		return l.syncErr(op, err)
	}
	txn := l.readTxn()
	err := fn(txn)
	txn.Discard()
	if serr := l.settle(op); serr != nil {
		return serr
	}
	return l.wrap(op, err)
}

// pointRead reads one key as last written (readLatest: the overlay, then
// Badger; no checkpoint, unlike view) and waits until what it read is
// durable.
func (l *Ledger) pointRead(op string, key []byte, dec func([]byte) error) (bool, error) {
	found, err := l.readLatest(key, dec)
	if serr := l.settle(op); serr != nil {
		return false, serr
	}
	return found, l.wrap(op, err)
}

// readTxn opens a read-only Badger txn between checkpoints: a checkpoint
// commits the overlay in several Badger txns, and a snapshot taken between
// two of them would show half of it (an account without its entries).
// Readers drain first (drain), so the snapshot holds every write they may
// have seen.
func (l *Ledger) readTxn() *badger.Txn {
	l.ckRW.RLock()
	defer l.ckRW.RUnlock()
	return l.db.NewTransaction(false)
}

// settle waits until every change a reader may have seen is durable.
// Only journal records can be seen before they are durable: a Badger
// commit is durable when it returns (syncBadger).
func (l *Ledger) settle(op string) error {
	if l.jn == nil {
		return nil
	}
	if err := l.jn.Wait(l.jn.LastSeq()); err != nil {
		return l.syncErr(op, err)
	}
	return nil
}

// syncBadger completes the durability of the Badger txns committed so
// far, each synced by Badger itself (SyncWrites): Badger creates its
// memtable files without syncing the directory, so a commit that went to
// a file created meanwhile needs the data directory synced. A no-op in
// memory.
func (l *Ledger) syncBadger() error {
	if l.dir == "" {
		return nil
	}
	return syncDir(l.dir)
}

func (l *Ledger) syncErr(op string, err error) error {
	if errors.Is(err, ErrDiskFull) {
		return err // a checkpoint that may not run: nothing was written
	}
	return storage.Wrap(op, storage.Internal,
		fmt.Errorf("sync failed, the outcome may or may not be durable: %w", err))
}

// wrap gives err a kind: *storage.Error values pass through, corrupt
// records are Internal, everything else from Badger is Internal too.
func (l *Ledger) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var se *storage.Error
	if errors.As(err, &se) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return storage.Wrap(op, storage.Unavailable, err)
	}
	l.log.Error("ledger failure", "op", op, "err", err)
	return storage.Wrap(op, storage.Internal, err)
}

// badgerLogger sends Badger's logs to slog, each at the level Badger
// gives it, and none below min.
type badgerLogger struct {
	log *slog.Logger
	min slog.Level
}

// engineLogger is the Badger logger of Open: engine at Badger's levels,
// or, when nil, log for warnings and errors only.
func engineLogger(log, engine *slog.Logger) badgerLogger {
	if engine == nil {
		return badgerLogger{log: log, min: slog.LevelWarn}
	}
	return badgerLogger{log: engine, min: slog.LevelDebug}
}

func (b badgerLogger) Errorf(f string, a ...any)   { b.logf(slog.LevelError, f, a) }
func (b badgerLogger) Warningf(f string, a ...any) { b.logf(slog.LevelWarn, f, a) }
func (b badgerLogger) Infof(f string, a ...any)    { b.logf(slog.LevelInfo, f, a) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.logf(slog.LevelDebug, f, a) }

func (b badgerLogger) logf(level slog.Level, f string, a []any) {
	ctx := context.Background()
	if level < b.min || !b.log.Enabled(ctx, level) {
		return
	}
	b.log.Log(ctx, level, strings.TrimSpace(fmt.Sprintf(f, a...)), "engine", "badger")
}

var _ storage.Ledger = (*Ledger)(nil)
