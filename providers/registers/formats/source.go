package formats

import (
	"archive/zip"
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/iapd/iapd/providers/registers"
)

// maxRecordBytes bounds one CSV record (a row, with its quoted line
// breaks): an unterminated quote would otherwise pull the rest of the
// file into one field. The registers' longest rows are a few KiB.
const maxRecordBytes = 1 << 20

// progressEvery is how many rows pass between two Options.Progress calls
// and two checks of the context.
const progressEvery = 4096

// source is one opened register file: plain CSV or a zip of CSVs, read
// through a ReaderAt that counts the bytes read for progress.
type source struct {
	f    *os.File
	size int64
	read atomic.Int64 // bytes of the file read so far
	zr   *zip.Reader  // nil: the file is the CSV itself
	name string       // base name, for Bad
}

// openSource opens path; a file starting with the zip signature is read
// as a zip.
func openSource(path string) (*source, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("not a regular file")
	}
	s := &source{f: f, size: fi.Size(), name: filepath.Base(path)}
	var sig [4]byte
	if n, _ := f.ReadAt(sig[:], 0); n == 4 && string(sig[:]) == "PK\x03\x04" {
		zr, err := zip.NewReader(countingReaderAt{s}, s.size)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("zip: %w", err)
		}
		s.zr = zr
	}
	return s, nil
}

func (s *source) Close() error { return s.f.Close() }

type countingReaderAt struct{ s *source }

func (c countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.s.f.ReadAt(p, off)
	c.s.read.Add(int64(n))
	return n, err
}

// open returns the CSV named by want: the file itself when it is not a
// zip, else the member whose base name, lower-cased, satisfies want.
// name is what Bad is told (file, or file!member).
func (s *source) open(want func(member string) bool) (rc io.ReadCloser, name string, err error) {
	if s.zr == nil {
		return io.NopCloser(io.NewSectionReader(countingReaderAt{s}, 0, s.size)), s.name, nil
	}
	for _, f := range s.zr.File {
		if strings.HasSuffix(f.Name, "/") || !want(strings.ToLower(filepath.Base(f.Name))) {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return nil, "", fmt.Errorf("zip member %s: %w", f.Name, err)
		}
		return rc, s.name + "!" + f.Name, nil
	}
	return nil, "", errMissing
}

var errMissing = errors.New("member not found")

// csvMember wants the zip's only-or-first CSV member.
func csvMember(m string) bool { return strings.HasSuffix(m, ".csv") }

// table reads one CSV with a header row, row by row, telling bad rows to
// the reader's Options.Bad and skipping them.
type table struct {
	file  string
	rd    *csv.Reader
	lim   *limitedRecords
	hdr   []string
	col   map[string]int
	rec   []string
	line  int64 // line of rec
	bad   func(line int64, err error)
	count int64 // rows read, good or bad
}

// newTable reads the header row of r. Header names are trimmed (Companies
// House pads some with a space) and a UTF-8 byte-order mark dropped.
func newTable(file string, r io.Reader, comma rune, bad func(line int64, err error)) (*table, error) {
	lim := &limitedRecords{r: bufio.NewReaderSize(r, 64<<10)}
	rd := csv.NewReader(lim)
	rd.Comma = comma
	rd.ReuseRecord = true
	lim.csv = rd
	hdr, err := rd.Read()
	if err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("%s: empty, no header row", file)
		}
		return nil, fmt.Errorf("%s: header row: %w", file, err)
	}
	hdr = slices.Clone(hdr)
	t := &table{file: file, rd: rd, lim: lim, hdr: hdr, col: make(map[string]int, len(hdr)), bad: bad}
	for i, h := range hdr {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		if _, dup := t.col[h]; !dup {
			t.col[h] = i
		}
	}
	return t, nil
}

// require fails unless the header has every name.
func (t *table) require(names ...string) error {
	var miss []string
	for _, n := range names {
		if _, ok := t.col[n]; !ok {
			miss = append(miss, n)
		}
	}
	if len(miss) > 0 {
		return fmt.Errorf("%s: not the register's layout: header lacks %s", t.file, strings.Join(miss, ", "))
	}
	return nil
}

// next reads the next well-formed row into t.rec; false at the end. Rows
// with the wrong number of fields or broken quoting are told to bad and
// skipped; any other error (I/O, a record over maxRecordBytes) is
// returned.
func (t *table) next() (bool, error) {
	for {
		rec, err := t.rd.Read()
		if err == io.EOF {
			return false, nil
		}
		t.count++
		t.lim.mark()
		var pe *csv.ParseError
		switch {
		case errors.As(err, &pe):
			t.line = int64(pe.StartLine)
			if !errors.Is(err, errRecordTooLong) {
				t.bad(t.line, pe.Err)
				continue
			}
		case err == nil:
			line, _ := t.rd.FieldPos(0)
			t.line = int64(line)
		default:
			// The line the failed record started on: the one after the
			// last record read.
			t.line++
		}
		if err != nil {
			return false, fmt.Errorf("%s line %d: %w", t.file, t.line, err)
		}
		t.rec = rec
		if i, ok := t.col[lineCol]; ok && i < len(rec) {
			// A sorted copy (sort.go): the line in the original file.
			t.line, _ = strconv.ParseInt(rec[i], 10, 64)
		}
		return true, nil
	}
}

// get returns the value of column name, trimmed, valid UTF-8, its line
// breaks and tabs folded to spaces ("" when the header has no such
// column).
func (t *table) get(name string) string {
	i, ok := t.col[name]
	if !ok || i >= len(t.rec) {
		return ""
	}
	v := strings.TrimSpace(t.rec[i])
	if strings.ContainsAny(v, "\r\n\t") {
		v = strings.Join(strings.Fields(v), " ")
	}
	if !utf8.ValidString(v) {
		v = strings.ToValidUTF8(v, "\uFFFD")
	}
	return v
}

var errRecordTooLong = fmt.Errorf("record longer than %d bytes", maxRecordBytes)

// limitedRecords fails a read once the record being parsed passes
// maxRecordBytes, so memory stays bounded on a broken quote.
type limitedRecords struct {
	r     io.Reader
	csv   *csv.Reader
	given int64 // bytes handed to csv
	start int64 // offset where the current record starts
}

func (l *limitedRecords) mark() { l.start = l.csv.InputOffset() }

func (l *limitedRecords) Read(p []byte) (int, error) {
	if l.given-l.start > maxRecordBytes {
		return 0, errRecordTooLong
	}
	n, err := l.r.Read(p)
	l.given += int64(n)
	return n, err
}

// emitter hands records to the sink, counting, reporting progress and
// watching the context.
type emitter struct {
	ctx  context.Context
	sink registers.Sink
	opt  Options
	srcs []*source
	st   Stats
	rows int64
	// passes is how many times the files are read (1, or 2 for the
	// joins: the order check first), for the progress total.
	passes int64
}

func newEmitter(ctx context.Context, sink registers.Sink, opt Options, srcs ...*source) *emitter {
	return &emitter{ctx: ctx, sink: sink, opt: opt, srcs: srcs, passes: 1}
}

// badFor returns the Bad callback of one table of file.
func (e *emitter) badFor(file string) func(int64, error) {
	return func(line int64, err error) {
		e.st.Bad++
		if e.opt.Bad != nil {
			e.opt.Bad(file, line, err)
		}
	}
}

// tick is called once per row read; it reports progress and checks the
// context now and then.
func (e *emitter) tick() error {
	e.rows++
	if e.rows%progressEvery != 0 {
		return nil
	}
	e.progress()
	return e.ctx.Err()
}

func (e *emitter) put(rec registers.Record) error {
	if err := e.sink.Put(rec); err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	e.st.Records++
	return nil
}

// done reports the final progress.
func (e *emitter) done() { e.progress() }

func (e *emitter) progress() {
	if e.opt.Progress == nil {
		return
	}
	var done, total int64
	for _, s := range e.srcs {
		done += s.read.Load()
		total += s.size * e.passes
	}
	e.opt.Progress(min(done, total), total)
}

// readSingleCSV reads a register published as one CSV (plain, or the
// first CSV member of a zip) with the required header columns: each row
// goes through record, which returns the record, or skip (a row
// deliberately not imported, counted Skipped), or why the row is bad
// (reported with its line and skipped).
func readSingleCSV(ctx context.Context, path string, sink registers.Sink, opt Options, required []string,
	record func(t *table) (rec registers.Record, skip bool, bad string)) (Stats, error) {
	src, err := openSource(path)
	if err != nil {
		return Stats{}, err
	}
	defer src.Close()
	e := newEmitter(ctx, sink, opt, src)
	rc, name, err := src.open(csvMember)
	if err != nil {
		return e.st, err
	}
	defer rc.Close()
	t, err := newTable(name, rc, ',', e.badFor(name))
	if err != nil {
		return e.st, err
	}
	if err := t.require(required...); err != nil {
		return e.st, err
	}
	for {
		ok, err := t.next()
		if err != nil || !ok {
			e.done()
			return e.st, err
		}
		if err := e.tick(); err != nil {
			return e.st, err
		}
		rec, skip, bad := record(t)
		switch {
		case skip:
			e.st.Skipped++
		case bad != "":
			t.bad(t.line, errRow(bad))
		default:
			if err := e.put(rec); err != nil {
				return e.st, err
			}
		}
	}
}
