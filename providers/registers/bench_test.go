package registers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/iapd/iapd/providers"
)

// The benchmarks build an index of REGISTERS_BENCH_N synthetic companies
// (default 100000) in REGISTERS_BENCH_DIR (default a temporary
// directory), once per run:
//
//	REGISTERS_BENCH_N=1000000 go test -run '^$' -bench . -benchtime 2000x ./providers/registers/
//
// REGISTERS_BENCH_REUSE=1 searches the index an earlier run left in
// REGISTERS_BENCH_DIR instead of building one. BenchmarkImport reports the import rate, the index's bytes per company
// and the Go heap while importing; BenchmarkNameSearch the p50 and p99
// of name searches as people type (a prefix of a company's name, with or
// without its country) and the Go heap while searching.

// synth generates company i of a register: names of one to three words
// drawn from a vocabulary of some 50 000 made-up words (a few common,
// most rare, as in real registers), often a legal form, a country among
// five, a VAT number, a domain for one in four.
type synth struct{ vocab []string }

var legalSuffixes = []string{"", "", "SA", "SAS", "SARL", "Ltd", "Limited", "GmbH", "BV", "NV", "SRL", "Inc", "LLC", "AG"}
var benchCountries = []string{"FR", "FR", "FR", "GB", "GB", "BE", "DE", "NL"}

func newSynth() *synth {
	syl := []string{"ba", "be", "bo", "ca", "co", "da", "de", "di", "fa", "fe", "ga", "go", "la", "le", "li", "lo", "ma", "me",
		"mi", "mo", "na", "ne", "no", "pa", "pe", "pi", "ra", "re", "ri", "ro", "sa", "se", "si", "so", "ta", "te", "ti", "to",
		"va", "ve", "vi", "za", "tech", "log", "sol", "med", "fin", "ber", "ton", "ville"}
	r := rand.New(rand.NewPCG(1, 2))
	seen := map[string]bool{}
	var vocab []string
	for len(vocab) < 50000 {
		n := 2 + r.IntN(3)
		w := ""
		for range n {
			w += syl[r.IntN(len(syl))]
		}
		if !seen[w] {
			seen[w] = true
			vocab = append(vocab, w)
		}
	}
	return &synth{vocab: vocab}
}

func (s *synth) word(r *rand.Rand) string {
	// Zipf-like: the first words of the vocabulary are far more common.
	i := int(float64(len(s.vocab)) * r.Float64() * r.Float64() * r.Float64())
	return s.vocab[i]
}

func (s *synth) record(i int) Record {
	r := rand.New(rand.NewPCG(uint64(i), 7))
	name := s.word(r)
	for range r.IntN(3) {
		name += " " + s.word(r)
	}
	if f := legalSuffixes[r.IntN(len(legalSuffixes))]; f != "" {
		name += " " + f
	}
	cc := benchCountries[r.IntN(len(benchCountries))]
	rec := Record{Source: "bench", Key: strconv.Itoa(100000000 + i), Active: r.IntN(10) != 0, Licence: "synthetic",
		Company: providers.Company{Name: name, LegalName: name, Country: cc, VAT: fmt.Sprintf("%s%011d", cc, i),
			CompanyReg: strconv.Itoa(100000000 + i), Street: strconv.Itoa(1+r.IntN(200)) + " rue " + s.word(r),
			Zip: strconv.Itoa(10000 + r.IntN(89999)), City: s.word(r), IndustryID: strconv.Itoa(10 + r.IntN(80)),
			Employees: r.IntN(500), Founded: 1900 + r.IntN(125)}}
	if r.IntN(4) == 0 {
		rec.Domain = fmt.Sprintf("c%d.example", i)
	}
	return rec
}

type benchIndex struct {
	x        *Index
	n        int
	s        *synth
	rate     float64 // records/s
	cpuRate  float64 // records per CPU second of the process (the machine is shared)
	perCo    float64 // bytes on disk per company
	peakHeap uint64
}

// TestMain removes the benchmarks' temporary index.
func TestMain(m *testing.M) {
	code := m.Run()
	if benchTmp != "" {
		if benchIdx != nil {
			_ = benchIdx.x.Close()
		}
		_ = os.RemoveAll(benchTmp)
	}
	os.Exit(code)
}

var (
	benchTmp  string
	benchMu   sync.Mutex
	benchIdx  *benchIndex
	benchSize = func() int {
		if n, err := strconv.Atoi(os.Getenv("REGISTERS_BENCH_N")); err == nil && n > 0 {
			return n
		}
		return 100000
	}()
)

// buildBench imports benchSize synthetic companies once per process.
func buildBench(b *testing.B) *benchIndex {
	benchMu.Lock()
	defer benchMu.Unlock()
	if benchIdx != nil {
		return benchIdx
	}
	dir := os.Getenv("REGISTERS_BENCH_DIR")
	if dir == "" {
		d, err := os.MkdirTemp("", "registers-bench-")
		if err != nil {
			b.Fatal(err)
		}
		dir, benchTmp = d, d // TestMain removes it
	}
	s := newSynth()
	if os.Getenv("REGISTERS_BENCH_REUSE") != "" {
		// the index an earlier run left in REGISTERS_BENCH_DIR (holding at
		// least REGISTERS_BENCH_N companies): searched, not rebuilt
		x, err := Open(filepath.Join(dir, "registers"), true, nil)
		if err != nil {
			b.Fatal(err)
		}
		benchIdx = &benchIndex{x: x, n: benchSize, s: s, perCo: float64(dirSize(filepath.Join(dir, "registers"))) / float64(benchSize)}
		return benchIdx
	}
	x, err := Open(filepath.Join(dir, "registers"), false, nil)
	if err != nil {
		b.Fatal(err)
	}
	im, err := x.BeginImport("bench")
	if err != nil {
		b.Fatal(err)
	}
	var peak uint64
	cpu0 := cpuTime()
	start := time.Now()
	for i := range benchSize {
		if err := im.Put(s.record(i)); err != nil {
			b.Fatal(err)
		}
		if i%10000 == 0 {
			peak = max(peak, liveHeap())
			if i > 0 && i%100000 == 0 {
				fmt.Fprintf(os.Stderr, "imported %d in %s\n", i, time.Since(start).Truncate(time.Second))
			}
		}
	}
	if _, err := im.Commit(); err != nil {
		b.Fatal(err)
	}
	secs := time.Since(start).Seconds()
	cpuSecs := (cpuTime() - cpu0).Seconds()
	// Compactions settle before the size is read: reopen (Close flushes).
	if err := x.Close(); err != nil {
		b.Fatal(err)
	}
	if x, err = Open(filepath.Join(dir, "registers"), true, nil); err != nil {
		b.Fatal(err)
	}
	benchIdx = &benchIndex{x: x, n: benchSize, s: s, rate: float64(benchSize) / secs, cpuRate: float64(benchSize) / cpuSecs,
		perCo: float64(dirSize(filepath.Join(dir, "registers"))) / float64(benchSize), peakHeap: peak}
	fmt.Fprintf(os.Stderr, "index of %d companies: %.0f records/s (%.0f per CPU second), %.0f bytes/company, live heap at most %.1f MB\n",
		benchSize, benchIdx.rate, benchIdx.cpuRate, benchIdx.perCo, float64(peak)/1e6)
	return benchIdx
}

// liveHeap is the Go heap live at the last garbage collection (what a
// memory limit bounds; garbage not yet collected is not counted).
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// cpuTime is the user and system time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func BenchmarkImport(b *testing.B) {
	bi := buildBench(b)
	for b.Loop() {
	}
	b.ReportMetric(bi.rate, "records/s")
	b.ReportMetric(bi.cpuRate, "records/cpu-s")
	b.ReportMetric(bi.perCo, "bytes/company")
	b.ReportMetric(float64(bi.peakHeap)/1e6, "import-live-heap-MB")
	b.ReportMetric(float64(bi.n), "companies")
}

func BenchmarkNameSearch(b *testing.B) {
	bi := buildBench(b)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	var lat []time.Duration
	found := 0
	for b.Loop() {
		rec := bi.s.record(r.IntN(bi.n))
		ws := words(rec.Name)
		q := ws[0][:min(len(ws[0]), 3+r.IntN(4))]
		if len(ws) > 1 && r.IntN(2) == 0 {
			q = ws[0] + " " + ws[1][:min(len(ws[1]), 2)]
		}
		country := ""
		if r.IntN(4) != 0 {
			country = rec.Country
		}
		t := time.Now()
		cs, err := bi.x.ByName(ctx, q, country, 10)
		lat = append(lat, time.Since(t))
		if err != nil {
			b.Fatal(err)
		}
		if len(cs) > 0 {
			found++
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(liveHeap())/1e6, "live-heap-MB")
	b.ReportMetric(float64(found)/float64(len(lat)), "found")
	b.ReportMetric(float64(bi.n), "companies")
}

func BenchmarkExact(b *testing.B) {
	bi := buildBench(b)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(5, 6))
	for b.Loop() {
		rec := bi.s.record(r.IntN(bi.n))
		if c, err := bi.x.ByVAT(ctx, rec.VAT); err != nil || c == nil {
			b.Fatalf("%s: %v", rec.VAT, err)
		}
	}
}

func BenchmarkSearch(b *testing.B) {
	bi := buildBench(b)
	ctx := context.Background()
	for b.Loop() {
		cs, err := bi.x.Search(ctx, providers.Criteria{Countries: []string{"BE"}, Industries: []string{"42"}, MinSize: 100, MaxSize: 200, Limit: 50})
		if err != nil || len(cs) == 0 {
			b.Fatalf("%d, %v", len(cs), err)
		}
	}
}
