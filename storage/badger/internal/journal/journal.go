package journal

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

const (
	// Set and Del are the kinds of a write in a record.
	Set = 1
	Del = 2

	filePrefix = "journal-"
	fileSuffix = ".log"
	// maxRecord bounds a record's length at replay: a hold
	// operation writes a handful of small records.
	maxRecord = 1 << 24
)

// fileSize: a file is closed once it holds this much; a new one is
// started (and the old one deleted once the caller says it is covered).
// A variable for tests.
var fileSize int64 = 8 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Write is one write of a record: Value set at Key, or with Del the key
// deleted.
type Write struct {
	Key   []byte
	Value []byte // nil for a delete
	Del   bool
	// Fresh is not recorded: the caller's mark that the write created the
	// key (storage/badger's overlay needs no tombstone for it).
	Fresh bool
}

// AppendRecord encodes a record for seq and writes.
func AppendRecord(b []byte, seq uint64, ws []Write) []byte {
	start := len(b)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0) // length, checksum
	b = binary.AppendUvarint(b, seq)
	for _, w := range ws {
		if w.Del {
			b = append(b, Del)
		} else {
			b = append(b, Set)
		}
		b = binary.AppendUvarint(b, uint64(len(w.Key)))
		b = append(b, w.Key...)
		if !w.Del {
			b = binary.AppendUvarint(b, uint64(len(w.Value)))
			b = append(b, w.Value...)
		}
	}
	body := b[start+8:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(body)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(body, castagnoli))
	return b
}

// decodeRecord decodes a record's body (after length and checksum).
func decodeRecord(body []byte) (seq uint64, ws []Write, err error) {
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
		case Set:
			v, ok := field()
			if !ok {
				return 0, nil, bad
			}
			ws = append(ws, Write{Key: k, Value: v})
		case Del:
			ws = append(ws, Write{Key: k, Del: true})
		default:
			return 0, nil, bad
		}
	}
	return seq, ws, nil
}

// Journal appends records to the active journal file and makes them
// durable in group fdatasyncs run by one goroutine. Create it with Start.
type Journal struct {
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
	closedFiles []closedFile
	dirF        *os.File
}

type closedFile struct {
	path string
	last uint64
}

type jround struct {
	done chan struct{}
	err  error
}

// FileName is the name of the journal file whose first record is first.
func FileName(first uint64) string {
	return fmt.Sprintf("%s%020d%s", filePrefix, first, fileSuffix)
}

// List returns the journal files of dir in sequence order.
func List(dir string) ([]string, error) {
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
		if !strings.HasPrefix(n, filePrefix) || !strings.HasSuffix(n, fileSuffix) {
			continue
		}
		first, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(n, filePrefix), fileSuffix), 10, 64)
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

// minRecord is the length of the smallest record: the header and
// a one-byte seq.
const minRecord = 9

// Pos is a place in the journal: a file (its index in sequence order)
// and a byte offset in it.
type Pos struct {
	File int   // the index of the file in Scan.Files
	Off  int64 // the byte offset in it
}

// Before reports whether a is before b in the journal.
func (a Pos) Before(b Pos) bool { return a.File < b.File || a.File == b.File && a.Off < b.Off }

// Damage is a stretch of a journal file that does not read as
// records: from at up to end (the next valid record of the file, or its
// end).
type Damage struct {
	Path string
	At   Pos
	End  int64 // the offset of the next valid record of the file, or its size
	Why  string
	Prev uint64 // the seq of the last record read before it; 0: none
	Next uint64 // the first seq known to follow it (a record read after it, or a later file's name); 0: none
	// After counts the valid records read after it, in this file and
	// later ones.
	After  int
	Newest bool // in the newest journal file
	// Unscanned: the search for a valid record after it gave up (its
	// budget ran out); what follows is unknown.
	Unscanned bool
}

// Scan is what Walk read.
type Scan struct {
	Files   []string // the journal files, in sequence order
	Records int      // valid records
	Top     uint64   // the highest seq read
	Damages []Damage
}

// Walk reads the journal files of dir in sequence order and calls
// rec (if not nil) for every valid record, in order. Where a file does
// not read as records, it notes a Damage and resumes at the next
// valid record of that file, if any: a position whose header has a
// possible length, whose seq could follow the last one read (seqs go up
// by one per record, so at most one per minRecord bytes) and whose
// checksum and body are good. Checking a position costs a few loads;
// the checksums computed while resynchronising are bounded by twice the
// file's size (past it the damage is marked unscanned), so a walk is
// linear in the journal's size. A valid record whose seq is not above the
// last one read is damage too. An error is a file that cannot be read, or
// rec's error.
func Walk(dir string, rec func(at Pos, seq uint64, ws []Write) error) (Scan, error) {
	var scan Scan
	files, err := List(dir)
	if err != nil {
		return scan, err
	}
	scan.Files = files
	var (
		last    uint64
		pending []int // damages whose next is not known yet
	)
	for fi, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			return scan, err
		}
		first, named := fileFirst(path)
		if named {
			for _, i := range pending {
				scan.Damages[i].Next = first
			}
			pending = pending[:0]
		}
		lower := last // seqs in this file are above it
		if named && first > 0 {
			lower = max(lower, first-1)
		}
		budget := 2*len(b) + 1<<20
		for p := 0; p < len(b); {
			n, seq, ws, why := parseRecord(b, p)
			if why == "" && last != 0 && seq <= last {
				why = fmt.Sprintf("a record out of sequence (%d after %d)", seq, last)
			}
			if why == "" {
				if rec != nil {
					if err := rec(Pos{File: fi, Off: int64(p)}, seq, ws); err != nil {
						return scan, err
					}
				}
				for _, i := range pending {
					scan.Damages[i].Next = seq
				}
				pending = pending[:0]
				scan.Records++
				last, lower, scan.Top = seq, seq, seq
				p += n
				continue
			}
			q, found, exhausted := resync(b, p, lower, &budget)
			d := Damage{Path: path, At: Pos{File: fi, Off: int64(p)}, End: int64(len(b)), Why: why, Prev: last,
				After: -scan.Records, Newest: fi == len(files)-1, Unscanned: exhausted}
			if found {
				d.End = int64(q)
			}
			pending = append(pending, len(scan.Damages))
			scan.Damages = append(scan.Damages, d)
			if !found {
				break
			}
			p = q
		}
	}
	for i := range scan.Damages {
		scan.Damages[i].After += scan.Records
	}
	return scan, nil
}

// parseRecord reads the record at b[p:]: its length n, seq and
// writes, or why it is not a valid record.
func parseRecord(b []byte, p int) (n int, seq uint64, ws []Write, why string) {
	if len(b)-p < 8 {
		return 0, 0, nil, "a partial record header"
	}
	l := binary.LittleEndian.Uint32(b[p:])
	switch {
	case l == 0 && binary.LittleEndian.Uint32(b[p+4:]) == 0:
		return 0, 0, nil, "zeros"
	case l == 0 || l > maxRecord:
		return 0, 0, nil, fmt.Sprintf("an impossible record length (%d)", l)
	case int64(l) > int64(len(b)-p-8):
		return 0, 0, nil, "a partial record"
	}
	body := b[p+8 : p+8+int(l)]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[p+4:]) {
		return 0, 0, nil, "a record that fails its checksum"
	}
	seq, ws, err := decodeRecord(body)
	if err != nil {
		return 0, 0, nil, "a record that does not decode"
	}
	return 8 + int(l), seq, ws, ""
}

// resync looks for the first valid record of b after the damage
// at bad, whose seq must be above lower (the last seq read). budget is
// what is left of the bytes it may checksum; exhausted reports that it
// ran out before the end of b.
func resync(b []byte, bad int, lower uint64, budget *int) (q int, found, exhausted bool) {
	for p := bad + 1; p+minRecord <= len(b); p++ {
		l := int64(binary.LittleEndian.Uint32(b[p:]))
		if l == 0 || l > maxRecord || l > int64(len(b)-p-8) {
			continue
		}
		seq, k := binary.Uvarint(b[p+8 : p+8+int(l)])
		// The records lost in b[bad:p] are at least one and at most one
		// per minRecord bytes.
		if k <= 0 || seq <= lower || seq > lower+1+uint64(p-bad)/minRecord ||
			!bodyShaped(b[p+8+k:p+8+int(l)]) {
			continue
		}
		if *budget < int(l) {
			return 0, false, true
		}
		*budget -= int(l)
		if _, _, _, why := parseRecord(b, p); why == "" {
			return p, true, false
		}
	}
	return 0, false, false
}

// bodyShaped reports whether the writes of a record body (after
// its seq) decode: kinds Set or Del, lengths that fit, nothing left
// over. On random bytes it fails within a few fields, without reading the
// keys and values: the check that makes resync cheap.
func bodyShaped(b []byte) bool {
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
		if kind != Set && kind != Del || !skip() || kind == Set && !skip() {
			return false
		}
	}
	return true
}

// fileFirst is the first seq a journal file's name says it holds.
func fileFirst(path string) (uint64, bool) {
	n := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), filePrefix), fileSuffix)
	first, err := strconv.ParseUint(n, 10, 64)
	return first, err == nil
}

// Start starts a new journal file in dir whose first record will
// be last+1, and the writer goroutine. Older journal files must have been
// replayed and removed.
func Start(dir string, last uint64, log *slog.Logger, onSync func(int, time.Duration)) (*Journal, error) {
	dirF, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	j := &Journal{
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
func (j *Journal) openFile(first uint64) error {
	f, err := os.OpenFile(filepath.Join(j.dir, FileName(first)), os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
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

// Append hands out the next seq and queues the record of ws; the record
// is durable once Wait(seq) returns nil. Records are in the order of the
// Append calls: a caller that keeps an in-memory view of the records
// serialises its Append with the update of that view.
func (j *Journal) Append(ws []Write) (uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return 0, j.err
	}
	j.last++
	j.recs++
	j.buf = AppendRecord(j.buf, j.last, ws)
	return j.last, nil
}

// LastSeq is the last seq handed out: what a reader may have seen.
func (j *Journal) LastSeq() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.last
}

// Wait returns once the record seq is durable, or the error that means
// it may never be (a failed write or sync).
func (j *Journal) Wait(seq uint64) error { return j.WaitCtx(context.Background(), seq) }

// ErrNotYetDurable: ctx ended before the record was durable. The record
// is committed (readers see it) and becomes durable with the writer's
// next round unless the journal fails: the outcome is unknown to the
// caller, not failed.
var ErrNotYetDurable = errors.New("the change is committed but was not yet confirmed durable when the request's deadline came; it becomes durable unless the journal fails")

// WaitCtx is Wait giving up when ctx is done, with ErrNotYetDurable
// wrapping ctx's error.
func (j *Journal) WaitCtx(ctx context.Context, seq uint64) error {
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
			return fmt.Errorf("%w (%w)", ErrNotYetDurable, ctx.Err())
		}
		if r.err != nil {
			return r.err
		}
	}
}

// Failed reports whether a write or sync has failed: nothing is durable
// since, and every Append fails.
func (j *Journal) Failed() bool { return j.failed.Load() }

// run is the writer goroutine: each round writes what was appended since
// the last one, fdatasyncs the file and releases the round's waiters.
func (j *Journal) run() {
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
// many durable and few are queued (gatherWait).
func (j *Journal) gather() {
	gatherWait(&j.gatherTimer, j.lastBatch, func() int {
		j.mu.Lock()
		defer j.mu.Unlock()
		return j.recs
	}, j.kick, j.stop)
}

func (j *Journal) round() {
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
func (j *Journal) writeSync(buf []byte, last uint64) error {
	if _, err := j.f.Write(buf); err != nil {
		return err
	}
	if err := datasync(j.f); err != nil {
		return err
	}
	j.fSize += int64(len(buf))
	if j.fSize < fileSize {
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
	j.closedFiles = append(j.closedFiles, closedFile{path: old.Name(), last: last})
	j.mu.Unlock()
	return nil
}

// Covered deletes the closed journal files whose records are all at or
// below marker: the caller holds their writes durably elsewhere.
func (j *Journal) Covered(marker uint64) {
	j.mu.Lock()
	var del []closedFile
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

// Close writes and syncs what is left, stops the writer and closes the
// file. With removeAll (the caller holds every record durably
// elsewhere), it also deletes every journal file.
func (j *Journal) Close(removeAll bool) error {
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

// Gathering. Under load, a round that makes many records durable is
// followed by a round of the one or two callers that come back first:
// they cost a whole sync round (a device cache flush), and the others,
// who need a request's worth of CPU each before they append again, then
// wait for that round to end before theirs can start. So when the last
// round made at least gatherFrom records durable and fewer than a quarter
// as many are queued, the writer waits, at most gatherMax, for half as
// many. Measured at 64 connections on two cores: with no wait, 48% of the
// rounds synced a single caller and a round served 13 on average; waiting
// up to 1ms, about 20% and 18 to 20. A lone caller, or a load that stops,
// costs at most one such wait.
const (
	gatherFrom = 8
	gatherMax  = time.Millisecond
)

// gatherWait is that wait: last is how many the last round made durable,
// queued reports how many wait now; kick is sent to when one more
// queues, stop ends the wait. t is the writer's reusable timer.
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
		case <-kick:
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

// IsFile reports whether name is a journal file's name.
func IsFile(name string) bool {
	return strings.HasPrefix(name, filePrefix) && strings.HasSuffix(name, fileSuffix)
}
