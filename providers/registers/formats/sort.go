package formats

import (
	"bufio"
	"container/heap"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The multi-file registers (SIRENE, KBO) are joined on their identifier by
// a merge join, which needs every file in identifier order. The registers
// write them so; ordered checks it with a first pass over the file (one
// row in memory) and, for a file found out of order, makes a sorted copy
// by an external merge sort in a temporary directory (sortBudget bytes of
// rows in memory, runs on disk, merged), so that an unsorted file costs
// disk and time, never memory. The copy keeps each row's line in the
// original file (column lineCol) for Bad and for errors.

// sortBudget bounds the bytes of rows held in memory by one sort run (a
// variable only so that the tests can force many runs).
var sortBudget = 32 << 20

// maxFanIn bounds the runs merged at once (open files and their buffers);
// more runs are merged in rounds. A variable only for the tests.
var maxFanIn = 128

// lineCol is the first column of a sorted copy: the row's original line.
const lineCol = "iapd:line"

// keyFunc returns the join key of a row's key column; ok false leaves the
// row out of the join (skip true: a row of another kind of entity, only
// counted; false: malformed, told to Bad).
type keyFunc func(v string) (key string, ok, skip bool)

// orderedTable opens member of src in key order: the member itself when
// it is sorted, else its sorted copy in tmp (created on first use).
// check lists the columns the caller needs besides keyCol.
func orderedTable(e *emitter, src *source, want func(string) bool, keyCol string, key keyFunc, tmp *tempDir, check ...string) (*table, io.Closer, error) {
	open := func() (*table, io.Closer, error) {
		rc, name, err := src.open(want)
		if err != nil {
			return nil, nil, err
		}
		t, err := newTable(name, rc, ',', e.badFor(name))
		if err == nil {
			err = t.require(append([]string{keyCol}, check...)...)
		}
		if err != nil {
			rc.Close()
			return nil, nil, err
		}
		return t, rc, nil
	}
	t, rc, err := open()
	if err != nil {
		return nil, nil, err
	}
	sorted, err := isSorted(e, t, keyCol, key)
	rc.Close()
	if err != nil {
		return nil, nil, err
	}
	if t, rc, err = open(); err != nil || sorted {
		return t, rc, err
	}
	defer rc.Close()
	path, err := tmp.sortCopy(e, t, keyCol, key)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: sorting by %s: %w", t.file, keyCol, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	st, err := newTable(t.file, f, ',', e.badFor(t.file))
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	e.st.Sorted++
	return st, f, nil
}

// isSorted reads t to its end and reports whether the valid keys never go
// down. Malformed rows are ignored here: the pass that uses the rows tells
// them to Bad.
func isSorted(e *emitter, t *table, keyCol string, key keyFunc) (bool, error) {
	t.bad = func(int64, error) {}
	last := ""
	for {
		ok, err := t.next()
		if err != nil || !ok {
			return true, err
		}
		if err := e.tick(); err != nil {
			return false, err
		}
		k, ok, _ := key(t.get(keyCol))
		if !ok {
			continue
		}
		if k < last {
			return false, nil
		}
		last = k
	}
}

// tempDir is the directory of one ReadFile's sorted copies, created on
// first use and removed by Close.
type tempDir struct {
	parent string
	dir    string
}

func (d *tempDir) path(name string) (string, error) {
	if d.dir == "" {
		dir, err := os.MkdirTemp(d.parent, "iapd-register-sort-")
		if err != nil {
			return "", err
		}
		d.dir = dir
	}
	return filepath.Join(d.dir, name), nil
}

func (d *tempDir) Close() error {
	if d.dir == "" {
		return nil
	}
	return os.RemoveAll(d.dir)
}

// sortRow is one row of a run: its key, its original line, its fields.
type sortRow struct {
	key    string
	line   int64
	fields []string
}

// sortCopy writes the rows of t with a valid key, sorted by key (ties in
// file order), to a CSV in d whose header is lineCol then t's header.
func (d *tempDir) sortCopy(e *emitter, t *table, keyCol string, key keyFunc) (string, error) {
	base := strings.NewReplacer("!", "-", "/", "-").Replace(filepath.Base(t.file))
	var runs []string
	var rows []sortRow
	size := 0
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		slices.SortStableFunc(rows, func(a, b sortRow) int { return strings.Compare(a.key, b.key) })
		p, err := d.path(fmt.Sprintf("%s.run%d", base, len(runs)))
		if err != nil {
			return err
		}
		if err := writeRows(p, nil, func(w *csv.Writer) error {
			for _, r := range rows {
				if err := w.Write(append([]string{r.key, strconv.FormatInt(r.line, 10)}, r.fields...)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
		runs = append(runs, p)
		rows, size = rows[:0], 0
		return nil
	}
	for {
		ok, err := t.next()
		if err != nil {
			return "", err
		}
		if !ok {
			break
		}
		if err := e.tick(); err != nil {
			return "", err
		}
		k, ok, skip := key(t.get(keyCol))
		if !ok {
			if skip {
				e.st.Skipped++
			} else {
				t.bad(t.line, errRow(keyCol+" "+quote(t.get(keyCol))+" is not valid"))
			}
			continue
		}
		r := sortRow{key: k, line: t.line, fields: slices.Clone(t.rec)}
		for _, f := range r.fields {
			size += len(f) + 16
		}
		rows = append(rows, r)
		if size += 64; size >= sortBudget {
			if err := flush(); err != nil {
				return "", err
			}
		}
	}
	if err := flush(); err != nil {
		return "", err
	}
	rows = nil
	for round := 0; len(runs) > maxFanIn; round++ {
		var next []string
		for i := 0; i < len(runs); i += maxFanIn {
			p, err := d.path(fmt.Sprintf("%s.merge%d.%d", base, round, i))
			if err != nil {
				return "", err
			}
			if err := mergeRuns(p, nil, runs[i:min(i+maxFanIn, len(runs))]); err != nil {
				return "", err
			}
			next = append(next, p)
		}
		runs = next
	}
	out, err := d.path(base + ".sorted")
	if err != nil {
		return "", err
	}
	return out, mergeRuns(out, append([]string{lineCol}, t.hdr...), runs)
}

// writeRows writes a CSV file: hdr (if any), then what rows writes.
func writeRows(path string, hdr []string, rows func(*csv.Writer) error) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<16)
	w := csv.NewWriter(bw)
	if hdr != nil {
		err = w.Write(hdr)
	}
	if err == nil {
		err = rows(w)
	}
	if w.Flush(); err == nil {
		err = w.Error()
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// run is one sorted run being merged.
type run struct {
	r   *csv.Reader
	f   *os.File
	rec []string // key, line, fields…
	idx int
}

type runHeap []*run

func (h runHeap) Len() int { return len(h) }
func (h runHeap) Less(i, j int) bool {
	if c := strings.Compare(h[i].rec[0], h[j].rec[0]); c != 0 {
		return c < 0
	}
	return h[i].idx < h[j].idx // runs are in file order: ties keep it
}
func (h runHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)   { *h = append(*h, x.(*run)) }
func (h *runHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// mergeRuns merges the sorted runs into out, removing each run once read:
// with a header hdr, the final copy (rows: line, then the original
// fields); without, one bigger run (rows as in the runs).
func mergeRuns(out string, hdr []string, runs []string) error {
	var h runHeap
	defer func() {
		for _, r := range h {
			r.f.Close()
		}
	}()
	for i, p := range runs {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		r := &run{r: csv.NewReader(bufio.NewReaderSize(f, 1<<16)), f: f, idx: i}
		r.r.FieldsPerRecord = -1
		if r.rec, err = r.r.Read(); err != nil {
			f.Close()
			if errors.Is(err, io.EOF) {
				continue
			}
			return err
		}
		h = append(h, r)
	}
	heap.Init(&h)
	return writeRows(out, hdr, func(w *csv.Writer) error {
		for h.Len() > 0 {
			r := h[0]
			rec := r.rec
			if hdr != nil {
				rec = rec[1:]
			}
			if err := w.Write(rec); err != nil {
				return err
			}
			rec, err := r.r.Read()
			switch {
			case errors.Is(err, io.EOF):
				heap.Pop(&h)
				r.f.Close()
				os.Remove(r.f.Name())
			case err != nil:
				return err
			default:
				r.rec = rec
				heap.Fix(&h, 0)
			}
		}
		return nil
	})
}
