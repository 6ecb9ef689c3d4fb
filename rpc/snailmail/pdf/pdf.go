// Package pdf counts the pages of a PDF document, which is what a letter
// is billed by (PROTOCOL §7: snailmail prices extra pages). It reads
// classic cross-reference tables, cross-reference streams and object
// streams (PDF 1.5+), follows incremental updates (/Prev, /XRefStm) and,
// when the cross-reference data is damaged, rebuilds it from the objects
// of the file, as PDF viewers do. It counts the leaves of the page tree
// rather than trusting the root's /Count, so that a document cannot claim
// fewer pages than a printer would print.
//
// The input is untrusted (it comes from any Odoo database), so the reader
// is linear in it: one forward pass indexes where objects, "trailer" and
// "endstream" are; an object is read only up to the next object header
// (its stream's end is looked up in the index, never searched); each
// object is parsed at most once; decompression is bounded by the size of
// the input. On top of that every read has a budget of steps (Budget) and
// a context, checked as it goes: a document that cannot be read within
// them is an error, never a guess. Encrypted documents are refused (a
// print service cannot print them either).
//
// It imports only the standard library. A hand-written reader was
// preferred to github.com/pdfcpu/pdfcpu 0.11: the same page counts on the
// fixtures and on pdfcpu's own output, about 12 µs per fixture PDF
// against pdfcpu's 130–320 µs (BenchmarkFixturePageCount), and ten fewer
// modules.
package pdf

import (
	"bytes"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
)

// Limits on what a document may make the reader do.
const (
	// MaxPages is the largest page count reported; a tree with more
	// leaves is an error (no letter has that many pages).
	MaxPages = 10000
	// maxDecoded bounds the decoded size of one stream, and maxTotal the
	// decoded bytes of one document (decompression bombs); a document
	// may also decode at most decodedPerByte bytes per byte of its own.
	maxDecoded     = 16 << 20
	maxTotal       = 64 << 20
	decodedPerByte = 64
	decodedBase    = 1 << 20
	maxDepth       = 64  // nesting of arrays, dictionaries, the page tree
	maxXRefs       = 256 // cross-reference sections followed through /Prev
	maxObjects     = 1 << 20
	maxToken       = 256     // a number or keyword
	maxHeaders     = 1 << 17 // "N G obj" in one file (a 10 000-page document has ~40 000)
	// maxElements bounds the array elements and dictionary entries
	// parsed in one document, which the reader keeps until it is done
	// (~16-100 bytes each: at most ~25 MB; a 10 000-page tree has
	// ~100 000); an element costs elementCost steps, an entry (a map
	// insertion and its key) entryCost.
	maxElements = 1 << 18
	elementCost = 4
	entryCost   = 16
	// objectCost is the steps charged for parsing or entering one
	// object besides its bytes (allocations, maps), scanPerStep the
	// bytes one step of the index's search (bytes.Index) covers.
	objectCost  = 16
	scanPerStep = 16
	// maxLead is how much white space may lie between a cross-reference
	// offset and what it points at.
	maxLead = 64
)

// ErrEncrypted is returned for an encrypted document.
var ErrEncrypted = errors.New("pdf: document is encrypted")

// ErrBudget is in the chain of the *Error returned for a document that
// needs more steps than its budget, or more array elements and
// dictionary entries than the reader keeps.
var ErrBudget = errors.New("more work than its budget")

// Error is a document that cannot be read.
type Error struct {
	Msg string
	err error // ErrBudget, or nil
}

func (e *Error) Error() string { return "pdf: " + e.Msg }

// Unwrap returns ErrBudget for a document refused for its budget.
func (e *Error) Unwrap() error { return e.err }

func errf(format string, args ...any) error { return &Error{Msg: fmt.Sprintf(format, args...)} }

// Budget bounds the steps of one read: PerByte steps per byte of the
// document plus Base, at most Max. A step is about one byte scanned or
// decoded, or one object, entry or lookup. The zero value of a field is
// its default (DefaultPerByte, DefaultBase, DefaultMax).
type Budget struct {
	PerByte int64
	Base    int64
	Max     int64
}

// Defaults of Budget. Any document takes at most 24 steps per byte of
// its own and of what it decodes, plus 4096 (TestStepsLinear and
// FuzzPageCount check it), and decodes at most 64 bytes per byte plus
// 1 MiB: DefaultPerByte is above that, so that only DefaultMax refuses a
// read in practice (the per-byte part guards against a bug in that
// claim). A step costs 2-20 ns (BenchmarkHostile): DefaultMax keeps a
// read to about a second of CPU at worst.
const (
	DefaultPerByte = 32
	DefaultBase    = 1 << 20
	DefaultMax     = 1 << 26
)

// For returns the steps allowed for a document of n bytes.
func (b Budget) For(n int) int64 {
	if b.PerByte <= 0 {
		b.PerByte = DefaultPerByte
	}
	if b.Base <= 0 {
		b.Base = DefaultBase
	}
	if b.Max <= 0 {
		b.Max = DefaultMax
	}
	if int64(n) > (b.Max-b.Base)/b.PerByte {
		return b.Max
	}
	return min(b.Max, b.PerByte*int64(n)+b.Base)
}

// Stats is what a read did.
type Stats struct {
	Steps   int64 // steps taken
	Decoded int64 // bytes decompressed
}

// PageCount is Count with no deadline and the default budget.
func PageCount(b []byte) (int, error) {
	n, _, err := Count(context.Background(), b, Budget{})
	return n, err
}

// Count returns the number of pages of the document b: the leaves of its
// page tree. It fails with *Error for a document it cannot read (not a
// PDF, damaged beyond repair, no page, too large, or more steps than
// budget allows: then errors.Is(err, ErrBudget)), with ErrEncrypted for
// an encrypted one, and with ctx.Err() when ctx is done before it
// finishes (checked every few thousand steps). Stats says what it did,
// whatever the outcome.
func Count(ctx context.Context, b []byte, budget Budget) (pages int, st Stats, err error) {
	m := &meter{ctx: ctx, limit: budget.For(len(b)), decodeLimit: min(maxTotal, decodedPerByte*int64(len(b))+decodedBase)}
	m.next = min(m.limit, checkEvery)
	defer func() {
		st = Stats{Steps: m.steps, Decoded: m.decoded}
		if r := recover(); r != nil {
			a, ok := r.(abort)
			if !ok {
				panic(r)
			}
			pages, err = 0, a.err
		}
	}()
	if err := ctx.Err(); err != nil {
		return 0, st, err
	}
	pages, err = count(b, m)
	return pages, st, err
}

func count(b []byte, m *meter) (int, error) {
	if len(b) == 0 {
		return 0, errf("empty document")
	}
	head := b[:min(len(b), 1024)]
	if !bytes.Contains(head, []byte("%PDF-")) {
		return 0, errf("not a PDF (no %%PDF- header)")
	}
	ix, err := buildIndex(b, m)
	if err != nil {
		return 0, err
	}
	d := newDoc(b, m, ix)
	n, err := d.count()
	if err == nil || errors.Is(err, ErrEncrypted) {
		return n, err
	}
	// The cross-reference data may be damaged: rebuild it from the
	// objects in the file and try once more.
	d2 := newDoc(b, m, ix)
	if rerr := d2.reconstruct(); rerr != nil {
		return 0, err
	}
	if n, err2 := d2.countFrom(d2.trailer); err2 == nil || errors.Is(err2, ErrEncrypted) {
		return n, err2
	}
	return 0, err
}

// checkEvery is how many steps go between two looks at the context.
const checkEvery = 1 << 14

// meter counts the steps of one read and stops it (panicking with
// abort, recovered by Count) when they exceed the limit or the context
// is done.
type meter struct {
	ctx         context.Context
	steps       int64
	limit       int64
	next        int64 // steps at which to check next
	decoded     int64
	decodeLimit int64
	elements    int
}

type abort struct{ err error }

// element counts one array element or dictionary entry of cost steps.
func (m *meter) element(cost int) {
	m.elements++
	if m.elements > maxElements {
		panic(abort{&Error{Msg: fmt.Sprintf("more than %d array elements and dictionary entries", maxElements), err: ErrBudget}})
	}
	m.charge(cost)
}

func (m *meter) charge(n int) {
	m.steps += int64(n)
	if m.steps < m.next {
		return
	}
	if m.steps > m.limit {
		panic(abort{&Error{Msg: fmt.Sprintf("document needs more than %d steps", m.limit), err: ErrBudget}})
	}
	if err := m.ctx.Err(); err != nil {
		panic(abort{err})
	}
	m.next = min(m.limit+1, m.steps+checkEvery)
}

// index is where things are in the file, found in one forward pass.
type index struct {
	headers    []header // "N G obj", by position
	markers    []int32  // header starts and "trailer" keywords: where an object's text ends at the latest
	trailers   []int32  // "trailer" keywords
	endstreams []int32  // "endstream" keywords
}

type header struct{ start, num int32 }

func buildIndex(b []byte, m *meter) (*index, error) {
	if len(b) >= 1<<31-1 {
		return nil, errf("document too large")
	}
	ix := &index{}
	var err error
	each := func(word string, f func(at int) bool) {
		for i := 0; err == nil; {
			j := bytes.Index(b[i:], []byte(word))
			if j < 0 {
				m.charge((len(b)-i)/scanPerStep + 1)
				return
			}
			m.charge((j+len(word))/scanPerStep + 1)
			at := i + j
			i = at + len(word)
			if !f(at) {
				err = errf("too many objects")
			}
		}
	}
	each("obj", func(at int) bool {
		start, num, ok := objHeaderBefore(b, at)
		m.charge(32)
		if !ok {
			return true
		}
		ix.headers = append(ix.headers, header{int32(start), int32(num)}) // #nosec G115 -- len(b) < 1<<31
		return len(ix.headers) <= maxHeaders
	})
	each("trailer", func(at int) bool {
		ix.trailers = append(ix.trailers, int32(at)) // #nosec G115 -- len(b) < 1<<31
		return len(ix.trailers) <= maxObjects
	})
	each("endstream", func(at int) bool {
		ix.endstreams = append(ix.endstreams, int32(at)) // #nosec G115 -- len(b) < 1<<31
		return len(ix.endstreams) <= maxObjects
	})
	if err != nil {
		return nil, err
	}
	ix.markers = make([]int32, 0, len(ix.headers)+len(ix.trailers))
	for _, h := range ix.headers {
		ix.markers = append(ix.markers, h.start)
	}
	ix.markers = append(ix.markers, ix.trailers...)
	slices.Sort(ix.markers)
	m.charge(len(ix.markers))
	return ix, nil
}

// limitAfter returns the first marker after p, else n.
func (ix *index) limitAfter(p, n int) int {
	i := sort.Search(len(ix.markers), func(i int) bool { return int(ix.markers[i]) > p })
	if i == len(ix.markers) {
		return n
	}
	return int(ix.markers[i])
}

// endstreamFrom returns the first "endstream" at or after p, or -1.
func (ix *index) endstreamFrom(p int) int {
	i := sort.Search(len(ix.endstreams), func(i int) bool { return int(ix.endstreams[i]) >= p })
	if i == len(ix.endstreams) {
		return -1
	}
	return int(ix.endstreams[i])
}

// headerAt returns the index of the header that starts at off, after at
// most maxLead bytes of white space, or -1.
func (ix *index) headerAt(b []byte, off int) int {
	i := sort.Search(len(ix.headers), func(i int) bool { return int(ix.headers[i].start) >= off })
	if i == len(ix.headers) {
		return -1
	}
	s := int(ix.headers[i].start)
	if s-off > maxLead {
		return -1
	}
	for _, c := range b[off:s] {
		if !isSpace(c) {
			return -1
		}
	}
	return i
}

// object is a PDF object: nil (null), bool, int64, real (a number with a
// fraction, kept as text), name, []byte (string), []object (array), dict,
// ref, *stream.
type object any

type (
	name   string
	real   string
	dict   map[name]object
	ref    struct{ num, gen int }
	stream struct {
		dict dict
		raw  []byte // the bytes between "stream" and "endstream"
	}
)

type xrefEntry struct {
	kind   byte // 1: at offset; 2: in object stream stm at index idx
	offset int
	stm    int
	idx    int
}

type objStm struct {
	offsets map[int]int // object number → offset in data
	ends    []int       // the offsets, sorted: an object ends at the next one
	data    []byte
	parsed  map[int]parsed // by offset
}

// parsed is the memo of one object's parse.
type parsed struct {
	o   object
	err error
}

type doc struct {
	b       []byte
	m       *meter
	ix      *index
	xref    map[int]xrefEntry
	trailer dict
	objStms map[int]*objStm
	stmErrs map[int]error // object streams that could not be read
	parsed  []*parsed     // objects of the file, by header
	loading []int         // objects being resolved (cycles through /Length): a short stack
}

func newDoc(b []byte, m *meter, ix *index) *doc {
	return &doc{b: b, m: m, ix: ix, xref: map[int]xrefEntry{}, objStms: map[int]*objStm{},
		stmErrs: map[int]error{}, parsed: make([]*parsed, len(ix.headers))}
}

func (d *doc) count() (int, error) {
	start, err := d.startXRef()
	if err != nil {
		return 0, err
	}
	if err := d.loadXRefChain(start); err != nil {
		return 0, err
	}
	return d.countFrom(d.trailer)
}

func (d *doc) countFrom(trailer dict) (int, error) {
	if trailer == nil {
		return 0, errf("no trailer")
	}
	if enc, ok := trailer["Encrypt"]; ok && enc != nil {
		return 0, ErrEncrypted
	}
	root, err := d.resolveDict(trailer["Root"])
	if err != nil {
		return 0, errf("document catalog: %v", err)
	}
	pagesRef := root["Pages"]
	n := 0
	seen := map[ref]bool{}
	if err := d.walk(pagesRef, 0, seen, &n); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, errf("no page")
	}
	return n, nil
}

// walk counts the leaves under a page tree node.
func (d *doc) walk(o object, depth int, seen map[ref]bool, n *int) error {
	if depth > maxDepth {
		return errf("page tree too deep")
	}
	d.m.charge(1)
	if r, ok := o.(ref); ok {
		if seen[r] {
			return errf("page tree has a cycle")
		}
		seen[r] = true
	}
	node, err := d.resolveDict(o)
	if err != nil {
		return errf("page tree: %v", err)
	}
	typ, _ := node["Type"].(name)
	kids, hasKids := node["Kids"]
	if typ == "Page" || (typ == "" && !hasKids) {
		*n++
		if *n > MaxPages {
			return errf("more than %d pages", MaxPages)
		}
		return nil
	}
	if typ != "Pages" && typ != "" {
		return errf("page tree node of type %s", typ)
	}
	kv, err := d.resolve(kids, 0)
	if err != nil {
		return errf("page tree kids: %v", err)
	}
	arr, ok := kv.([]object)
	if !ok {
		return errf("page tree kids is not an array")
	}
	for _, k := range arr {
		if err := d.walk(k, depth+1, seen, n); err != nil {
			return err
		}
	}
	return nil
}

// startXRef reads the offset after the last "startxref".
func (d *doc) startXRef() (int, error) {
	tail := d.b[max(0, len(d.b)-4096):]
	i := bytes.LastIndex(tail, []byte("startxref"))
	if i < 0 {
		return 0, errf("no startxref")
	}
	l := &lexer{b: tail, pos: i + len("startxref"), lim: len(tail), m: d.m}
	o, err := l.object(0)
	if err != nil {
		return 0, errf("startxref: %v", err)
	}
	off, ok := o.(int64)
	if !ok || off < 0 || off >= int64(len(d.b)) {
		return 0, errf("startxref offset out of the file")
	}
	return int(off), nil
}

// loadXRefChain reads the cross-reference section at off and those it
// points to (/XRefStm, /Prev); the newest definition of an object wins.
func (d *doc) loadXRefChain(off int) error {
	visited := map[int]bool{}
	queue := []int{off}
	for len(queue) > 0 {
		d.m.charge(1)
		// Offsets into the same white space name the same section:
		// it is read once.
		off = d.lead(queue[0])
		queue = queue[1:]
		if visited[off] {
			continue
		}
		if len(visited) >= maxXRefs {
			return errf("too many cross-reference sections")
		}
		visited[off] = true
		trailer, err := d.loadXRef(off)
		if err != nil {
			return err
		}
		if d.trailer == nil {
			d.trailer = trailer
		}
		// A hybrid file's /XRefStm is read before its /Prev: it belongs
		// to the same update.
		if x, ok := trailer["XRefStm"].(int64); ok && x >= 0 && x < int64(len(d.b)) {
			queue = append([]int{int(x)}, queue...)
		}
		if p, ok := trailer["Prev"].(int64); ok {
			if p < 0 || p >= int64(len(d.b)) {
				return errf("/Prev offset out of the file")
			}
			queue = append(queue, int(p))
		}
	}
	return nil
}

func (d *doc) setEntry(num int, e xrefEntry) error {
	if num < 0 || num > maxObjects {
		return errf("object number %d out of range", num)
	}
	if _, ok := d.xref[num]; !ok {
		d.xref[num] = e
	}
	return nil
}

// lead returns off after at most maxLead bytes of white space.
func (d *doc) lead(off int) int {
	p := off
	for p < len(d.b) && p-off < maxLead && isSpace(d.b[p]) {
		p++
	}
	d.m.charge(p - off)
	return p
}

// loadXRef reads the cross-reference section at off (after d.lead).
func (d *doc) loadXRef(off int) (dict, error) {
	if bytes.HasPrefix(d.b[off:], []byte("xref")) {
		l := &lexer{b: d.b, pos: off + 4, lim: len(d.b), m: d.m}
		return d.loadXRefTable(l)
	}
	// A cross-reference stream: "N G obj << … /Type /XRef … >> stream".
	h := d.ix.headerAt(d.b, off)
	if h < 0 {
		return nil, errf("no cross-reference at offset %d", off)
	}
	o, err := d.parseHeader(h)
	if err != nil {
		return nil, errf("cross-reference at %d: %v", off, err)
	}
	s, ok := o.(*stream)
	if !ok || s.dict["Type"] != name("XRef") {
		return nil, errf("no cross-reference at offset %d", off)
	}
	return s.dict, d.loadXRefStream(s)
}

func (d *doc) loadXRefTable(l *lexer) (dict, error) {
	for {
		l.skipSpace()
		if bytes.HasPrefix(l.rest(), []byte("trailer")) {
			l.lim = d.ix.limitAfter(l.pos, len(d.b))
			l.pos += len("trailer")
			o, err := l.object(0)
			if err != nil {
				return nil, errf("trailer: %v", err)
			}
			t, ok := o.(dict)
			if !ok {
				return nil, errf("trailer is not a dictionary")
			}
			return t, nil
		}
		first, ok1 := l.integer()
		count, ok2 := l.integer()
		if !ok1 || !ok2 || first < 0 || count < 0 || first+count > maxObjects {
			return nil, errf("bad cross-reference subsection")
		}
		for i := 0; i < count; i++ {
			off, okO := l.integer()
			_, okG := l.integer()
			l.skipSpace()
			d.m.charge(1)
			if !okO || !okG || l.pos >= len(d.b) {
				return nil, errf("bad cross-reference entry")
			}
			kind := d.b[l.pos]
			l.pos++
			switch kind {
			case 'n':
				if off <= 0 || off >= len(d.b) {
					return nil, errf("cross-reference entry out of the file")
				}
				if err := d.setEntry(first+i, xrefEntry{kind: 1, offset: off}); err != nil {
					return nil, err
				}
			case 'f':
				if err := d.setEntry(first+i, xrefEntry{kind: 0}); err != nil {
					return nil, err
				}
			default:
				return nil, errf("bad cross-reference entry type %q", kind)
			}
		}
	}
}

func (d *doc) loadXRefStream(s *stream) error {
	data, err := d.decode(s)
	if err != nil {
		return err
	}
	wArr, ok := s.dict["W"].([]object)
	if !ok || len(wArr) != 3 {
		return errf("cross-reference stream without /W")
	}
	var w [3]int
	rowLen := 0
	for i, o := range wArr {
		v, ok := o.(int64)
		if !ok || v < 0 || v > 8 {
			return errf("bad /W")
		}
		w[i] = int(v)
		rowLen += w[i]
	}
	if rowLen == 0 {
		return errf("bad /W")
	}
	var index []int
	if ix, ok := s.dict["Index"].([]object); ok {
		if len(ix)%2 != 0 {
			return errf("bad /Index")
		}
		for _, o := range ix {
			v, ok := o.(int64)
			if !ok || v < 0 || v > maxObjects {
				return errf("bad /Index")
			}
			index = append(index, int(v))
		}
	} else {
		size, ok := s.dict["Size"].(int64)
		if !ok || size < 0 || size > maxObjects {
			return errf("cross-reference stream without /Size")
		}
		index = []int{0, int(size)}
	}
	pos := 0
	for i := 0; i < len(index); i += 2 {
		first, count := index[i], index[i+1]
		for j := 0; j < count; j++ {
			if pos+rowLen > len(data) {
				return errf("cross-reference stream too short")
			}
			row := data[pos : pos+rowLen]
			pos += rowLen
			d.m.charge(rowLen)
			f := [3]int{1, 0, 0} // type 1 when the first field is absent
			k := 0
			for fi := 0; fi < 3; fi++ {
				if w[fi] == 0 {
					continue // absent field: its default
				}
				v := 0
				for _, c := range row[k : k+w[fi]] {
					v = v<<8 | int(c)
					if v > 1<<40 {
						return errf("cross-reference field too large")
					}
				}
				f[fi] = v
				k += w[fi]
			}
			var e xrefEntry
			switch f[0] {
			case 0:
				e = xrefEntry{kind: 0}
			case 1:
				if f[1] <= 0 || f[1] >= len(d.b) {
					return errf("cross-reference entry out of the file")
				}
				e = xrefEntry{kind: 1, offset: f[1]}
			case 2:
				e = xrefEntry{kind: 2, stm: f[1], idx: f[2]}
			default:
				continue // reserved types are null references
			}
			if err := d.setEntry(first+j, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// resolve follows references (at most a few levels) to a direct object.
func (d *doc) resolve(o object, depth int) (object, error) {
	r, ok := o.(ref)
	if !ok {
		return o, nil
	}
	if depth > 8 {
		return nil, errf("reference chain too long")
	}
	d.m.charge(1)
	v, err := d.object(r.num)
	if err != nil {
		return nil, err
	}
	return d.resolve(v, depth+1)
}

func (d *doc) resolveDict(o object) (dict, error) {
	v, err := d.resolve(o, 0)
	if err != nil {
		return nil, err
	}
	switch t := v.(type) {
	case dict:
		return t, nil
	case *stream:
		return t.dict, nil
	}
	return nil, errf("expected a dictionary")
}

// object loads indirect object num.
func (d *doc) object(num int) (object, error) {
	e, ok := d.xref[num]
	if !ok || e.kind == 0 {
		return nil, nil // a missing object is null (PDF 32000 §7.3.10)
	}
	if slices.Contains(d.loading, num) {
		return nil, errf("object %d refers to itself", num)
	}
	d.loading = append(d.loading, num)
	defer func() { d.loading = d.loading[:len(d.loading)-1] }()
	if e.kind == 2 {
		return d.compressed(num, e)
	}
	h := d.ix.headerAt(d.b, e.offset)
	if h < 0 {
		return nil, errf("object %d: no object header at its offset", num)
	}
	if n := int(d.ix.headers[h].num); n != num {
		return nil, errf("object %d: found object %d at its offset", num, n)
	}
	o, err := d.parseHeader(h)
	if err != nil {
		return nil, &objectError{num, err}
	}
	return o, nil
}

// objectError is an object that cannot be read, formatted only when
// shown (a damaged file may have many).
type objectError struct {
	num int
	err error
}

func (e *objectError) Error() string {
	return "pdf: object " + strconv.Itoa(e.num) + ": " + e.err.Error()
}
func (e *objectError) Unwrap() error { return e.err }

// parseHeader reads the object of header h, once: its text ends at the
// next object header or "trailer" at the latest.
func (d *doc) parseHeader(h int) (object, error) {
	if p := d.parsed[h]; p != nil {
		return p.o, p.err
	}
	d.m.charge(objectCost)
	start := int(d.ix.headers[h].start)
	l := &lexer{b: d.b, pos: start, lim: d.ix.limitAfter(start, len(d.b)), m: d.m, doc: d}
	_, o, err := l.indirect()
	d.parsed[h] = &parsed{o, err}
	return o, err
}

func (d *doc) compressed(num int, e xrefEntry) (object, error) {
	os, err := d.objStm(e.stm)
	if err != nil {
		return nil, err
	}
	off, ok := os.offsets[num]
	if !ok {
		return nil, errf("object %d not in object stream %d", num, e.stm)
	}
	if p, ok := os.parsed[off]; ok {
		return p.o, p.err
	}
	d.m.charge(objectCost)
	// An object ends where the next one starts.
	lim := len(os.data)
	if i := sort.SearchInts(os.ends, off+1); i < len(os.ends) {
		lim = os.ends[i]
	}
	l := &lexer{b: os.data, pos: off, lim: lim, m: d.m}
	o, err := l.object(0)
	os.parsed[off] = parsed{o, err}
	return o, err
}

// objStm reads object stream num, once (its failure too).
func (d *doc) objStm(num int) (*objStm, error) {
	if os := d.objStms[num]; os != nil {
		return os, nil
	}
	if err := d.stmErrs[num]; err != nil {
		return nil, err
	}
	os, err := d.readObjStm(num)
	if err != nil {
		d.stmErrs[num] = err
		return nil, err
	}
	d.objStms[num] = os
	return os, nil
}

func (d *doc) readObjStm(num int) (*objStm, error) {
	if e := d.xref[num]; e.kind != 1 {
		return nil, errf("object stream %d is not in the file", num)
	}
	o, err := d.object(num)
	if err != nil {
		return nil, err
	}
	s, ok := o.(*stream)
	if !ok || s.dict["Type"] != name("ObjStm") {
		return nil, errf("object %d is not an object stream", num)
	}
	n, ok1 := s.dict["N"].(int64)
	first, ok2 := s.dict["First"].(int64)
	if !ok1 || !ok2 || n < 0 || n > maxObjects || first < 0 {
		return nil, errf("object stream %d: bad /N or /First", num)
	}
	data, err := d.decode(s)
	if err != nil {
		return nil, err
	}
	if int(first) > len(data) {
		return nil, errf("object stream %d: /First beyond its data", num)
	}
	os := &objStm{offsets: make(map[int]int, min(int(n), 1024)), data: data, parsed: map[int]parsed{}}
	l := &lexer{b: data[:first], lim: int(first), m: d.m}
	for i := 0; i < int(n); i++ {
		on, ok1 := l.integer()
		rel, ok2 := l.integer()
		if !ok1 || !ok2 || rel < 0 || int(first)+rel > len(data) {
			return nil, errf("object stream %d: bad header", num)
		}
		os.offsets[on] = int(first) + rel
		os.ends = append(os.ends, int(first)+rel)
	}
	slices.Sort(os.ends)
	d.m.charge(len(os.ends))
	return os, nil
}

// decode returns a stream's decoded data: no filter, or FlateDecode with
// an optional PNG or TIFF predictor (what writers use for
// cross-reference and object streams).
func (d *doc) decode(s *stream) ([]byte, error) {
	filters, err := filterList(s.dict["Filter"])
	if err != nil {
		return nil, err
	}
	data := s.raw
	parms, _ := s.dict["DecodeParms"].(dict)
	if arr, ok := s.dict["DecodeParms"].([]object); ok && len(arr) > 0 {
		parms, _ = arr[0].(dict)
	}
	for _, f := range filters {
		switch f {
		case "FlateDecode", "Fl":
			data, err = d.inflate(data)
			if err != nil {
				return nil, err
			}
			d.m.charge(len(data))
			data, err = unpredict(data, parms)
			if err != nil {
				return nil, err
			}
		default:
			return nil, errf("unsupported filter %s", f)
		}
	}
	return data, nil
}

func filterList(o object) ([]name, error) {
	switch f := o.(type) {
	case nil:
		return nil, nil
	case name:
		return []name{f}, nil
	case []object:
		if len(f) > 1 {
			return nil, errf("chained filters")
		}
		var out []name
		for _, x := range f {
			n, ok := x.(name)
			if !ok {
				return nil, errf("bad /Filter")
			}
			out = append(out, n)
		}
		return out, nil
	}
	return nil, errf("bad /Filter")
}

// inflate decompresses b, at most maxDecoded bytes and what is left of
// the document's allowance; every byte out is a step.
func (d *doc) inflate(b []byte) ([]byte, error) {
	d.m.charge(len(b))
	zr, err := zlib.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, errf("flate: %v", err)
	}
	defer zr.Close()
	budget := int(min(maxDecoded, max(0, d.m.decodeLimit-d.m.decoded)))
	var out []byte
	buf := make([]byte, 32<<10)
	for {
		n, rerr := zr.Read(buf[:min(len(buf), budget+1-len(out))])
		out = append(out, buf[:n]...)
		d.m.decoded += int64(n)
		d.m.charge(n)
		if len(out) > budget {
			return nil, errf("stream decodes to more than %d bytes", budget)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	// A truncated deflate stream (no checksum) is common and harmless
	// when the data came out.
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, errf("flate: %v", err)
	}
	if err != nil && len(out) == 0 {
		return nil, errf("flate: %v", err)
	}
	return out, nil
}

// unpredict undoes a PNG (10–15) or TIFF (2) predictor of 8-bit samples.
func unpredict(b []byte, parms dict) ([]byte, error) {
	if parms == nil || len(b) == 0 {
		return b, nil // (and no row buffer for nothing)
	}
	pred, _ := parms["Predictor"].(int64)
	if pred <= 1 {
		return b, nil
	}
	cols := int64(1)
	if c, ok := parms["Columns"].(int64); ok {
		cols = c
	}
	colors := int64(1)
	if c, ok := parms["Colors"].(int64); ok {
		colors = c
	}
	if bpc, ok := parms["BitsPerComponent"].(int64); ok && bpc != 8 {
		return nil, errf("predictor with %d bits per component", bpc)
	}
	if cols < 1 || colors < 1 || cols*colors > 1<<20 {
		return nil, errf("bad predictor parameters")
	}
	bpp := int(colors)
	rowLen := int(cols * colors)
	if pred == 2 {
		if len(b)%rowLen != 0 {
			return nil, errf("TIFF predictor: partial row")
		}
		for r := 0; r < len(b); r += rowLen {
			for i := bpp; i < rowLen; i++ {
				b[r+i] += b[r+i-bpp]
			}
		}
		return b, nil
	}
	if pred < 10 || pred > 15 {
		return nil, errf("unsupported predictor %d", pred)
	}
	stride := rowLen + 1
	if len(b)%stride != 0 {
		return nil, errf("PNG predictor: partial row")
	}
	out := make([]byte, 0, len(b)/stride*rowLen)
	prev := make([]byte, rowLen)
	for r := 0; r < len(b); r += stride {
		ft := b[r]
		row := b[r+1 : r+stride]
		cur := make([]byte, rowLen)
		for i := 0; i < rowLen; i++ {
			var left, upLeft byte
			if i >= bpp {
				left, upLeft = cur[i-bpp], prev[i-bpp]
			}
			up := prev[i]
			switch ft {
			case 0:
				cur[i] = row[i]
			case 1:
				cur[i] = row[i] + left
			case 2:
				cur[i] = row[i] + up
			case 3:
				cur[i] = row[i] + byte((int(left)+int(up))/2) // #nosec G115 -- the mean of two bytes is a byte
			case 4:
				cur[i] = row[i] + paeth(left, up, upLeft)
			default:
				return nil, errf("bad PNG filter type %d", ft)
			}
		}
		out = append(out, cur...)
		prev = cur
	}
	return out, nil
}

func paeth(a, b, c byte) byte {
	p := int(a) + int(b) - int(c)
	pa, pb, pc := abs(p-int(a)), abs(p-int(b)), abs(p-int(c))
	switch {
	case pa <= pb && pa <= pc:
		return a
	case pb <= pc:
		return b
	}
	return c
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// reconstruct rebuilds the cross-reference data from the object headers
// of the index (the last definition of a number wins, as in an
// incremental update) and the object streams among them, then takes as
// trailer the last "trailer" dictionary with a /Root, else the last
// cross-reference stream's dictionary with one, else the catalog with the
// highest number. Every object is parsed once (parseHeader), every
// trailer up to the next marker.
func (d *doc) reconstruct() error {
	b := d.b
	d.xref = make(map[int]xrefEntry, len(d.ix.headers))
	for _, h := range d.ix.headers {
		d.m.charge(objectCost)
		if len(d.xref) >= maxObjects {
			return errf("too many objects")
		}
		d.xref[int(h.num)] = xrefEntry{kind: 1, offset: int(h.start)}
	}
	nums := make([]int, 0, len(d.xref))
	for num := range d.xref {
		nums = append(nums, num)
	}
	slices.Sort(nums)
	d.m.charge(len(nums))
	var xrefDict dict
	xrefAt := -1
	catalog := -1 // the highest-numbered catalog
	var compressed []int
	for _, num := range nums {
		o, err := d.object(num)
		if err != nil {
			continue
		}
		if dd, ok := o.(dict); ok && dd["Type"] == name("Catalog") {
			catalog = num
		}
		s, ok := o.(*stream)
		if !ok {
			continue
		}
		switch s.dict["Type"] {
		case name("ObjStm"):
			if os, err := d.objStm(num); err == nil {
				for on := range os.offsets {
					d.m.charge(1)
					if _, exists := d.xref[on]; !exists {
						if len(d.xref) >= maxObjects {
							return errf("too many objects")
						}
						d.xref[on] = xrefEntry{kind: 2, stm: num}
						compressed = append(compressed, on)
					}
				}
			}
		case name("XRef"):
			if s.dict["Root"] != nil && d.xref[num].offset > xrefAt {
				xrefDict, xrefAt = s.dict, d.xref[num].offset
			}
		}
	}
	for k := len(d.ix.trailers) - 1; k >= 0; k-- {
		at := int(d.ix.trailers[k])
		l := &lexer{b: b, pos: at + len("trailer"), lim: d.ix.limitAfter(at, len(b)), m: d.m}
		if o, err := l.object(0); err == nil {
			if t, ok := o.(dict); ok && t["Root"] != nil {
				d.trailer = t
				return nil
			}
		}
	}
	if xrefDict != nil {
		d.trailer = xrefDict
		return nil
	}
	for _, num := range compressed {
		if o, err := d.object(num); err == nil && num > catalog {
			if dd, ok := o.(dict); ok && dd["Type"] == name("Catalog") {
				catalog = num
			}
		}
	}
	if catalog < 0 {
		return errf("no catalog")
	}
	d.trailer = dict{"Root": ref{num: catalog}}
	return nil
}

// objHeaderBefore checks that "obj" at at is preceded by "N G " at the
// start of a line or after whitespace, and returns where N starts.
func objHeaderBefore(b []byte, at int) (start, num int, ok bool) {
	if at+3 < len(b) && !isSpace(b[at+3]) && !isDelim(b[at+3]) {
		return 0, 0, false
	}
	i := at - 1
	// Each scan back stops after a few bytes: an object header is
	// short, and "obj" may occur anywhere.
	skipBack := func() {
		for stop := i - 8; i >= 0 && i > stop && isSpace(b[i]); {
			i--
		}
	}
	digitsBack := func() (int, int, bool) {
		end := i + 1
		for i >= 0 && i >= end-11 && b[i] >= '0' && b[i] <= '9' {
			i--
		}
		if i+1 == end || end-(i+1) > 10 {
			return 0, 0, false
		}
		v, err := strconv.Atoi(string(b[i+1 : end]))
		return v, i + 1, err == nil
	}
	if i < 0 || !isSpace(b[i]) {
		return 0, 0, false
	}
	skipBack()
	if _, _, ok := digitsBack(); !ok {
		return 0, 0, false
	}
	if i < 0 || !isSpace(b[i]) {
		return 0, 0, false
	}
	skipBack()
	n, s, ok := digitsBack()
	if !ok || (i >= 0 && !isSpace(b[i]) && !isDelim(b[i])) {
		return 0, 0, false
	}
	return s, n, true
}
