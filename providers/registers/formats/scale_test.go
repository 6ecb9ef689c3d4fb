package formats

import (
	"context"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/iapd/iapd/providers/registers"
)

// heapSink drops records; sample, given as Options.Progress (called every
// few thousand rows, sorting included), keeps the peak live heap.
type heapSink struct {
	n     int64
	calls int
	peak  uint64
}

func (h *heapSink) Put(registers.Record) error { h.n++; return nil }

func (h *heapSink) sample(int64, int64) {
	if h.calls++; h.calls%4 == 0 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		h.peak = max(h.peak, ms.HeapAlloc)
	}
}

// TestBoundedHeap reads 200 000 synthetic companies of each register, in
// its published layout, and checks the heap stays far below the file's
// size: nothing grows with the number of rows.
func TestBoundedHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("writes ~250 MB of synthetic register files")
	}
	if raceEnabled {
		t.Skip("measured without -race: the detector's shadow memory and slowness distort it")
	}
	const rows = 200000
	const bound = 16 << 20 // heap growth allowed, whatever the file size (measured: 3 MiB)
	for _, name := range append(slices.Clone(Formats), "kbo-unsorted") {
		t.Run(name, func(t *testing.T) {
			path := synthFile(t, name, rows)
			format, wantSorted := name, 0
			if name == "kbo-unsorted" {
				// activity.csv descending: sorted in runs of 1 MiB, so
				// the heap is bounded by the run, not by the file.
				format, wantSorted = "kbo", 1
				defer func(b int) { sortBudget = b }(sortBudget)
				sortBudget = 1 << 20
			}
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			sink := &heapSink{peak: before.HeapAlloc}
			st, err := ReadFile(context.Background(), format, path, sink, Options{Progress: sink.sample})
			if err != nil {
				t.Fatal(err)
			}
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			sink.peak = max(sink.peak, after.HeapAlloc)
			if st.Records != rows || st.Bad != 0 || st.Sorted != wantSorted {
				t.Fatalf("stats %+v, want %d records", st, rows)
			}
			growth := int64(sink.peak) - int64(before.HeapAlloc)
			uncompressed := uncompressedSize(t, path)
			if format == "sirene" {
				uncompressed += uncompressedSize(t, sireneSibling(path, true))
			}
			t.Logf("%s: %d rows, %d MiB of CSV, heap growth at most %d KiB", name, rows, uncompressed>>20, max(growth, 0)>>10)
			if uncompressed < 2*bound {
				t.Fatalf("synthetic file of %d bytes too small to tell", uncompressed)
			}
			if growth > bound {
				t.Errorf("heap grew by %d MiB reading %d rows", growth>>20, rows)
			}
		})
	}
}

// uncompressedSize is the CSV bytes behind path (a zip's members summed;
// path's own).
func uncompressedSize(t testing.TB, path string) int64 {
	t.Helper()
	src, err := openSource(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.zr == nil {
		return src.size
	}
	var n int64
	for _, f := range src.zr.File {
		n += int64(f.UncompressedSize64)
	}
	return n
}

// BenchmarkReadFile measures records/s per format on 100 000 synthetic
// companies in the published layouts (zipped where the register zips).
func BenchmarkReadFile(b *testing.B) {
	const rows = 100000
	for _, format := range Formats {
		b.Run(format, func(b *testing.B) {
			path := synthFile(b, format, rows)
			n := uncompressedSize(b, path)
			if format == "sirene" {
				n += uncompressedSize(b, sireneSibling(path, true))
			}
			b.SetBytes(n) // MB/s of CSV
			b.ResetTimer()
			start := time.Now()
			var total int64
			for b.Loop() {
				st, err := ReadFile(context.Background(), format, path, &heapSink{}, Options{})
				if err != nil || st.Records != rows {
					b.Fatalf("%v %+v", err, st)
				}
				total += st.Records
			}
			b.ReportMetric(float64(total)/time.Since(start).Seconds(), "records/s")
		})
	}
}
