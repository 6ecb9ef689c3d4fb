package badger

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The journal: how the hold operations (authorize, capture, cancel, the
// expiry of one hold) become durable without a Badger txn each.
//
// Such an operation runs under its account's stripe as every write does,
// but its writes are not given to Badger: they are encoded as one journal
// record (the keys set and deleted, in order), appended to the journal
// and applied to the overlay (overlay.go), both under one mutex so that
// the journal's order is the overlay's. The caller is answered once a
// group fdatasync of the journal file covers its record. A checkpoint
// later writes the overlay into Badger in a few large txns — an account
// written a hundred times meanwhile is written once, a hold authorized and
// captured meanwhile has one transaction record written and no expiry
// index at all — together with a marker: the sequence number of the last
// record the checkpoint covers. Journal files whose records are all at or
// below a durable marker are deleted.
//
// Open replays, in order, every valid record above the marker, then
// checkpoints (overlay.go, replayJournal). What a crash can leave is a torn
// tail: records are appended in sequence order by one goroutine, a round
// writes its records and fdatasyncs before any of them is acknowledged,
// and a file is closed (a new one started) only after the fdatasync of its
// last round; so only the newest file's last round can be short, hold
// zeros (a file size written back before its data) or garbage, and
// nothing in it was acknowledged. Any other damage is corruption: a bad
// record followed by a valid one (walkJournal resynchronises past it), or
// a bad record in a file that is not the newest. See replayJournal for
// what Open does with each.
//
// Record layout: length u32 (of what follows the checksum), CRC-32C u32
// (Castagnoli, of what follows it), seq uvarint, then for each write a kind
// byte (jSet, jDel), the key (uvarint length, bytes) and for jSet the value
// (uvarint length, bytes).

const (
	jSet = 1
	jDel = 2

	journalPrefix = "journal-"
	journalSuffix = ".log"
	// journalFileSize: a file is closed once it holds this much; a new
	// one is started (and the old one deleted once a checkpoint covers it).
	journalFileSize = 8 << 20
	// maxJournalRecord bounds a record's length at replay: a hold
	// operation writes a handful of small records.
	maxJournalRecord = 1 << 24
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// jwrite is one write of a journaled operation.
type jwrite struct {
	key   []byte
	value []byte // nil for a delete
	del   bool
	fresh bool // the key was created by this operation (see overlay.put)
}

// appendRecord encodes a record for seq and writes.
func appendRecord(b []byte, seq uint64, ws []jwrite) []byte {
	start := len(b)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0) // length, checksum
	b = binary.AppendUvarint(b, seq)
	for _, w := range ws {
		if w.del {
			b = append(b, jDel)
		} else {
			b = append(b, jSet)
		}
		b = binary.AppendUvarint(b, uint64(len(w.key)))
		b = append(b, w.key...)
		if !w.del {
			b = binary.AppendUvarint(b, uint64(len(w.value)))
			b = append(b, w.value...)
		}
	}
	body := b[start+8:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(body)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(body, castagnoli))
	return b
}

// decodeJournalRecord decodes a record's body (after length and checksum).
func decodeJournalRecord(body []byte) (seq uint64, ws []jwrite, err error) {
	bad := errors.New("malformed journal record")
	seq, n := binary.Uvarint(body)
	if n <= 0 {
		return 0, nil, bad
	}
	body = body[n:]
	field := func() ([]byte, bool) {
		l, n := binary.Uvarint(body)
		if n <= 0 || l > uint64(len(body)-n) {
			return nil, false
		}
		v := body[n : n+int(l)]
		body = body[n+int(l):]
		return v, true
	}
	for len(body) > 0 {
		kind := body[0]
		body = body[1:]
		k, ok := field()
		if !ok {
			return 0, nil, bad
		}
		switch kind {
		case jSet:
			v, ok := field()
			if !ok {
				return 0, nil, bad
			}
			ws = append(ws, jwrite{key: k, value: v})
		case jDel:
			ws = append(ws, jwrite{key: k, del: true})
		default:
			return 0, nil, bad
		}
	}
	return seq, ws, nil
}

// journal appends records to the active journal file and makes them
// durable in group fdatasyncs run by one goroutine.
type journal struct {
	dir    string
	log    *slog.Logger
	onSync func(batch int, d time.Duration) // Options.OnSync, may be nil

	mu      sync.Mutex
	buf     []byte // records appended and not yet written
	recs    int    // records in buf
	spare   []byte
	last    uint64 // the last seq handed out
	next    *jround
	err     error // sticky: nothing is durable after a failure
	durable atomic.Uint64
	failed  atomic.Bool

	kick chan struct{}
	stop chan struct{}
	done chan struct{}

	// Owned by the writer goroutine (and by Open before it starts).
	lastBatch   int // records the last round made durable
	gatherTimer *time.Timer
	f           *os.File
	fSize       int64
	fFirst      uint64 // the first seq of the active file (its name)
	// closedFiles are the files closed by rotation, with the last seq
	// each holds, oldest first (guarded by mu: checkpoints prune them).
	closedFiles []journalFile
	dirF        *os.File
}

type journalFile struct {
	path string
	last uint64
}

type jround struct {
	done chan struct{}
	err  error
}

func journalName(first uint64) string {
	return fmt.Sprintf("%s%020d%s", journalPrefix, first, journalSuffix)
}

// listJournal returns the journal files of dir in sequence order.
func listJournal(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	type named struct {
		first uint64
		path  string
	}
	var fs []named
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, journalPrefix) || !strings.HasSuffix(n, journalSuffix) {
			continue
		}
		first, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(n, journalPrefix), journalSuffix), 10, 64)
		if err != nil {
			continue
		}
		fs = append(fs, named{first, filepath.Join(dir, n)})
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].first < fs[j].first })
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.path
	}
	return out, nil
}

// minJournalRecord is the length of the smallest record: the header and
// a one-byte seq.
const minJournalRecord = 9

// jpos is a place in the journal: a file (its index in sequence order)
// and a byte offset in it.
type jpos struct {
	file int
	off  int64
}

func (a jpos) before(b jpos) bool { return a.file < b.file || a.file == b.file && a.off < b.off }

// journalDamage is a stretch of a journal file that does not read as
// records: from at up to end (the next valid record of the file, or its
// end).
type journalDamage struct {
	path   string
	at     jpos
	end    int64
	why    string
	prev   uint64 // the seq of the last record read before it; 0: none
	next   uint64 // the first seq known to follow it (a record read after it, or a later file's name); 0: none
	after  int    // valid records read after it, in this file and later ones
	newest bool   // in the newest journal file
	// unscanned: the search for a valid record after it gave up (its
	// budget ran out); what follows is unknown.
	unscanned bool
}

// journalScan is what walkJournal read.
type journalScan struct {
	files   []string
	records int    // valid records
	top     uint64 // the highest seq read
	damages []journalDamage
}

// walkJournal reads the journal files of dir in sequence order and calls
// rec (if not nil) for every valid record, in order. Where a file does
// not read as records, it notes a journalDamage and resumes at the next
// valid record of that file, if any: a position whose header has a
// possible length, whose seq could follow the last one read (seqs go up
// by one per record, so at most one per minJournalRecord bytes) and whose
// checksum and body are good. Checking a position costs a few loads;
// the checksums computed while resynchronising are bounded by twice the
// file's size (past it the damage is marked unscanned), so a walk is
// linear in the journal's size. A valid record whose seq is not above the
// last one read is damage too. An error is a file that cannot be read, or
// rec's error.
func walkJournal(dir string, rec func(at jpos, seq uint64, ws []jwrite) error) (journalScan, error) {
	var scan journalScan
	files, err := listJournal(dir)
	if err != nil {
		return scan, err
	}
	scan.files = files
	var (
		last    uint64
		pending []int // damages whose next is not known yet
	)
	for fi, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			return scan, err
		}
		first, named := journalFirst(path)
		if named {
			for _, i := range pending {
				scan.damages[i].next = first
			}
			pending = pending[:0]
		}
		lower := last // seqs in this file are above it
		if named && first > 0 {
			lower = max(lower, first-1)
		}
		budget := 2*len(b) + 1<<20
		for p := 0; p < len(b); {
			n, seq, ws, why := parseJournalRecord(b, p)
			if why == "" && last != 0 && seq <= last {
				why = fmt.Sprintf("a record out of sequence (%d after %d)", seq, last)
			}
			if why == "" {
				if rec != nil {
					if err := rec(jpos{fi, int64(p)}, seq, ws); err != nil {
						return scan, err
					}
				}
				for _, i := range pending {
					scan.damages[i].next = seq
				}
				pending = pending[:0]
				scan.records++
				last, lower, scan.top = seq, seq, seq
				p += n
				continue
			}
			q, found, exhausted := resyncJournal(b, p, lower, &budget)
			d := journalDamage{path: path, at: jpos{fi, int64(p)}, end: int64(len(b)), why: why, prev: last,
				after: -scan.records, newest: fi == len(files)-1, unscanned: exhausted}
			if found {
				d.end = int64(q)
			}
			pending = append(pending, len(scan.damages))
			scan.damages = append(scan.damages, d)
			if !found {
				break
			}
			p = q
		}
	}
	for i := range scan.damages {
		scan.damages[i].after += scan.records
	}
	return scan, nil
}

// parseJournalRecord reads the record at b[p:]: its length n, seq and
// writes, or why it is not a valid record.
func parseJournalRecord(b []byte, p int) (n int, seq uint64, ws []jwrite, why string) {
	if len(b)-p < 8 {
		return 0, 0, nil, "a partial record header"
	}
	l := binary.LittleEndian.Uint32(b[p:])
	switch {
	case l == 0 && binary.LittleEndian.Uint32(b[p+4:]) == 0:
		return 0, 0, nil, "zeros"
	case l == 0 || l > maxJournalRecord:
		return 0, 0, nil, fmt.Sprintf("an impossible record length (%d)", l)
	case int64(l) > int64(len(b)-p-8):
		return 0, 0, nil, "a partial record"
	}
	body := b[p+8 : p+8+int(l)]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[p+4:]) {
		return 0, 0, nil, "a record that fails its checksum"
	}
	seq, ws, err := decodeJournalRecord(body)
	if err != nil {
		return 0, 0, nil, "a record that does not decode"
	}
	return 8 + int(l), seq, ws, ""
}

// resyncJournal looks for the first valid record of b after the damage
// at bad, whose seq must be above lower (the last seq read). budget is
// what is left of the bytes it may checksum; exhausted reports that it
// ran out before the end of b.
func resyncJournal(b []byte, bad int, lower uint64, budget *int) (q int, found, exhausted bool) {
	for p := bad + 1; p+minJournalRecord <= len(b); p++ {
		l := int64(binary.LittleEndian.Uint32(b[p:]))
		if l == 0 || l > maxJournalRecord || l > int64(len(b)-p-8) {
			continue
		}
		seq, k := binary.Uvarint(b[p+8 : p+8+int(l)])
		// The records lost in b[bad:p] are at least one and at most one
		// per minJournalRecord bytes.
		if k <= 0 || seq <= lower || seq > lower+1+uint64(p-bad)/minJournalRecord ||
			!journalBodyShaped(b[p+8+k:p+8+int(l)]) {
			continue
		}
		if *budget < int(l) {
			return 0, false, true
		}
		*budget -= int(l)
		if _, _, _, why := parseJournalRecord(b, p); why == "" {
			return p, true, false
		}
	}
	return 0, false, false
}

// journalBodyShaped reports whether the writes of a record body (after
// its seq) decode: kinds jSet or jDel, lengths that fit, nothing left
// over. On random bytes it fails within a few fields, without reading the
// keys and values: the check that makes resyncJournal cheap.
func journalBodyShaped(b []byte) bool {
	skip := func() bool {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return false
		}
		b = b[n+int(l):]
		return true
	}
	for len(b) > 0 {
		kind := b[0]
		b = b[1:]
		if kind != jSet && kind != jDel || !skip() || kind == jSet && !skip() {
			return false
		}
	}
	return true
}

// journalFirst is the first seq a journal file's name says it holds.
func journalFirst(path string) (uint64, bool) {
	n := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), journalPrefix), journalSuffix)
	first, err := strconv.ParseUint(n, 10, 64)
	return first, err == nil
}

// startJournal starts a new journal file in dir whose first record will
// be last+1, and the writer goroutine. Older journal files must have been
// replayed and removed.
func startJournal(dir string, last uint64, log *slog.Logger, onSync func(int, time.Duration)) (*journal, error) {
	dirF, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	j := &journal{
		dir: dir, log: log, onSync: onSync, last: last, next: &jround{done: make(chan struct{})},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		dirF: dirF,
	}
	j.durable.Store(last)
	if err := j.openFile(last + 1); err != nil {
		dirF.Close()
		return nil, err
	}
	go j.run()
	return j, nil
}

// openFile creates the journal file whose first record is first and
// syncs the directory, so that the file survives a crash once a record in
// it is synced.
func (j *journal) openFile(first uint64) error {
	f, err := os.OpenFile(filepath.Join(j.dir, journalName(first)), os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if err := j.dirF.Sync(); err != nil {
		f.Close()
		return err
	}
	j.f, j.fSize, j.fFirst = f, 0, first
	return nil
}

// append hands out the next seq and queues the record of ws. The caller
// holds the overlay's mutex (so that records are in overlay order).
func (j *journal) append(ws []jwrite) (uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return 0, j.err
	}
	j.last++
	j.recs++
	j.buf = appendRecord(j.buf, j.last, ws)
	return j.last, nil
}

// lastSeq is the last seq handed out: what a reader may have seen.
func (j *journal) lastSeq() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.last
}

// wait returns once the record seq is durable.
func (j *journal) wait(seq uint64) error { return j.waitCtx(context.Background(), seq) }

// errNotYetDurable: ctx ended before the record was durable. The record
// is committed (readers see it) and becomes durable with the writer's
// next round unless the journal fails: the outcome is unknown to the
// caller, not failed.
var errNotYetDurable = errors.New("the change is committed but was not yet confirmed durable when the request's deadline came; it becomes durable unless the journal fails")

// waitCtx is wait giving up when ctx is done, with errNotYetDurable
// wrapping ctx's error.
func (j *journal) waitCtx(ctx context.Context, seq uint64) error {
	for {
		if j.durable.Load() >= seq {
			return nil
		}
		j.mu.Lock()
		if j.err != nil {
			err := j.err
			j.mu.Unlock()
			return err
		}
		if j.durable.Load() >= seq {
			j.mu.Unlock()
			return nil
		}
		r := j.next
		j.mu.Unlock()
		select {
		case j.kick <- struct{}{}:
		default:
		}
		select {
		case <-r.done:
		case <-ctx.Done():
			return fmt.Errorf("%w (%w)", errNotYetDurable, ctx.Err())
		}
		if r.err != nil {
			return r.err
		}
	}
}

func (j *journal) failedNow() bool { return j.failed.Load() }

// run is the writer goroutine: each round writes what was appended since
// the last one, fdatasyncs the file and releases the round's waiters.
func (j *journal) run() {
	defer close(j.done)
	for {
		select {
		case <-j.kick:
		case <-j.stop:
			j.round()
			return
		}
		j.gather()
		j.round()
	}
}

// gather waits, before a round, for more records when the last round made
// many durable and few are queued: the group syncer's reasoning
// (groupsync.go, gatherFrom and gatherMax), with records for callers.
func (j *journal) gather() {
	gatherWait(&j.gatherTimer, j.lastBatch, func() int {
		j.mu.Lock()
		defer j.mu.Unlock()
		return j.recs
	}, j.kick, j.stop)
}

func (j *journal) round() {
	j.mu.Lock()
	buf, last, r, recs := j.buf, j.last, j.next, j.recs
	j.buf, j.recs = j.spare[:0], 0
	j.next = &jround{done: make(chan struct{})}
	err := j.err
	j.mu.Unlock()
	if err == nil && len(buf) > 0 {
		start := time.Now()
		err = j.writeSync(buf, last)
		d := time.Since(start)
		if d > time.Second {
			j.log.Warn("slow journal sync", "duration", d.Round(time.Millisecond))
		}
		if err == nil && j.onSync != nil {
			j.onSync(recs, d)
		}
	}
	if err == nil {
		j.durable.Store(last)
		if len(buf) > 0 {
			j.lastBatch = recs
		}
	} else {
		j.mu.Lock()
		if j.err == nil {
			j.err = err
			j.failed.Store(true)
			j.log.Error("journal write failed; the ledger stops accepting work", "err", err)
		}
		j.mu.Unlock()
	}
	j.mu.Lock()
	j.spare = buf[:0]
	j.mu.Unlock()
	r.err = err
	close(r.done)
}

// writeSync writes buf (records up to last) and fdatasyncs; then starts a
// new file if this one is full.
func (j *journal) writeSync(buf []byte, last uint64) error {
	if _, err := j.f.Write(buf); err != nil {
		return err
	}
	if err := datasync(j.f); err != nil {
		return err
	}
	j.fSize += int64(len(buf))
	if j.fSize < journalFileSize {
		return nil
	}
	old := j.f
	if err := j.openFile(last + 1); err != nil {
		return err
	}
	if err := old.Close(); err != nil {
		return err
	}
	j.mu.Lock()
	j.closedFiles = append(j.closedFiles, journalFile{path: old.Name(), last: last})
	j.mu.Unlock()
	return nil
}

// covered deletes the closed journal files whose records are all at or
// below marker, a checkpoint marker that is durable in Badger.
func (j *journal) covered(marker uint64) {
	j.mu.Lock()
	var del []journalFile
	for len(j.closedFiles) > 0 && j.closedFiles[0].last <= marker {
		del = append(del, j.closedFiles[0])
		j.closedFiles = j.closedFiles[1:]
	}
	j.mu.Unlock()
	for _, f := range del {
		if err := os.Remove(f.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			j.log.Warn("removing a checkpointed journal file", "file", filepath.Base(f.path), "err", err)
		}
	}
}

// close writes and syncs what is left, stops the writer and closes the
// file. With removeAll (everything is checkpointed and durable in
// Badger), it also deletes every journal file.
func (j *journal) close(removeAll bool) error {
	close(j.stop)
	<-j.done
	j.mu.Lock()
	err := j.err
	files := j.closedFiles
	j.closedFiles = nil
	j.mu.Unlock()
	cerr := j.f.Close()
	if err == nil {
		err = cerr
	}
	if removeAll && err == nil {
		for _, f := range files {
			_ = os.Remove(f.path)
		}
		_ = os.Remove(j.f.Name())
		_ = j.dirF.Sync()
	}
	j.dirF.Close()
	return err
}
