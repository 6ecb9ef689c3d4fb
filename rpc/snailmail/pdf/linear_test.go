package pdf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/iapd/iapd/rpc/snailmail/pdf/pdftest"
)

// The reader's claim (package doc): at most linearSteps steps per byte
// of the document and of what it decodes, plus linearBase. The budget's
// default (DefaultPerByte) is above it, so that the budget refuses only
// what its cap (DefaultMax) does not allow, never a document for its
// shape. A quadratic reader fails this on the hostile shapes whatever
// the machine's load: it counts steps, not time.
const (
	linearSteps = 24
	linearBase  = 1 << 12
)

// unlimited lets a read run to its end, to measure its steps.
var unlimited = Budget{PerByte: 1 << 30, Base: 1 << 30, Max: 1 << 62}

func checkLinear(t *testing.T, label string, b []byte) Stats {
	t.Helper()
	_, st, _ := Count(context.Background(), b, unlimited)
	if lim := linearSteps*(int64(len(b))+st.Decoded) + linearBase; st.Steps > lim {
		t.Errorf("%s: %d steps for %d bytes (+%d decoded): more than %d", label, st.Steps, len(b), st.Decoded, lim)
	}
	if lim := int64(decodedPerByte*len(b) + decodedBase); st.Decoded > lim {
		t.Errorf("%s: decoded %d bytes from %d, more than %d", label, st.Decoded, len(b), lim)
	}
	return st
}

// hostileSeeds are the shapes that made the first reader quadratic
// (issue 13), at a few sizes.
func hostileSeeds() map[string][]byte {
	m := map[string][]byte{}
	for _, shape := range pdftest.Shapes {
		for _, n := range []int{1 << 10, 16 << 10} {
			m[fmt.Sprintf("%s/%d", shape, n)] = pdftest.Hostile(shape, n)
		}
	}
	return m
}

// TestStepsLinear: every hostile shape, at sizes from 16 KiB to 1 MiB,
// and the real documents take at most linearSteps steps per byte, and
// steps per byte do not grow with the size (a quadratic reader's double
// at each doubling).
func TestStepsLinear(t *testing.T) {
	for _, shape := range pdftest.Shapes {
		var perByte []float64
		for _, n := range []int{16 << 10, 64 << 10, 256 << 10, 1 << 20} {
			b := pdftest.Hostile(shape, n)
			st := checkLinear(t, fmt.Sprintf("%s/%d", shape, n), b)
			perByte = append(perByte, float64(st.Steps)/float64(len(b)))
		}
		t.Logf("%-16s steps per byte at 16K..1M: %.2f", shape, perByte)
		if last, first := perByte[len(perByte)-1], perByte[0]; last > 2*first+1 {
			t.Errorf("%s: steps per byte grew from %.2f to %.2f", shape, first, last)
		}
	}
	for _, file := range []string{"testdata/pages3_objstm.pdf", "testdata/pages6_classic.pdf"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		checkLinear(t, file, b)
	}
	for _, b := range [][]byte{classicPDF(7, 7), xrefStreamPDF(12), classicPDF(MaxPages, MaxPages)} {
		checkLinear(t, "synthetic", b)
	}
}

// TestBudget: a document needing more steps than its budget is refused
// with an *Error wrapping ErrBudget, having taken about the budget; the
// default budget reads every real document.
func TestBudget(t *testing.T) {
	b := pdftest.Hostile("nested_strings", 256<<10)
	budget := Budget{PerByte: 1, Base: 1, Max: 100_000}
	n, st, err := Count(context.Background(), b, budget)
	var pe *Error
	if !errors.Is(err, ErrBudget) || !errors.As(err, &pe) {
		t.Fatalf("Count = %d, %v; want an *Error wrapping ErrBudget", n, err)
	}
	if st.Steps > 100_000+checkEvery+1<<12 {
		t.Errorf("%d steps taken for a budget of 100000", st.Steps)
	}
	if !strings.Contains(err.Error(), "steps") {
		t.Errorf("message %q", err)
	}
	for _, file := range []string{"testdata/pages3_objstm.pdf", "testdata/pages6_classic.pdf"} {
		data, _ := os.ReadFile(file)
		if _, _, err := Count(context.Background(), data, Budget{}); err != nil {
			t.Errorf("%s with the default budget: %v", file, err)
		}
	}
	for _, tc := range []struct {
		b    Budget
		n    int
		want int64
	}{
		{Budget{}, 0, DefaultBase},
		{Budget{}, 1000, DefaultPerByte*1000 + DefaultBase},
		{Budget{}, 1 << 30, DefaultMax},
		{Budget{PerByte: 2, Base: 10, Max: 1000}, 100, 210},
		{Budget{PerByte: 2, Base: 10, Max: 1000}, 1000, 1000},
		{Budget{PerByte: 1 << 62, Base: 10, Max: 1 << 62}, 1 << 20, 1 << 62}, // no overflow
	} {
		if got := tc.b.For(tc.n); got != tc.want {
			t.Errorf("%+v.For(%d) = %d, want %d", tc.b, tc.n, got, tc.want)
		}
	}
}

// doneAfter is a context whose Err turns context.Canceled after its
// n-th call: a cancellation in the middle of a read, without timing.
type doneAfter struct {
	context.Context
	n atomic.Int64
}

func (c *doneAfter) Err() error {
	if c.n.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

// TestContext: a read stops with the context's error when it is done,
// before it starts or in the middle, having done at most checkEvery steps
// more.
func TestContext(t *testing.T) {
	b := pdftest.Hostile("no_endstream", 1<<20)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, st, err := Count(ctx, b, unlimited); !errors.Is(err, context.Canceled) || st.Steps != 0 {
		t.Fatalf("cancelled before: %v after %d steps", err, st.Steps)
	}
	_, full, err := Count(context.Background(), b, unlimited)
	if err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("full read: %v", err)
	}
	c := &doneAfter{Context: context.Background()}
	c.n.Store(4) // the first look and three during the read
	_, st, err := Count(c, b, unlimited)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled during: %v", err)
	}
	if st.Steps > 4*checkEvery+1<<12 || st.Steps >= full.Steps {
		t.Fatalf("cancelled during the read after %d steps (a full read: %d)", st.Steps, full.Steps)
	}
	// The real fixtures are read under a live context.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	if n, _, err := Count(ctx2, classicPDF(3, 3), Budget{}); err != nil || n != 3 {
		t.Fatalf("live context: %d, %v", n, err)
	}
}

// BenchmarkHostile reads each hostile shape at growing sizes: time per
// byte must stay flat from 64 KiB to 4 MiB (reported: wall ns/B, the
// process's CPU ns/B, which a busy machine inflates less, and steps/B).
// The first reader's time per byte doubled at each doubling.
func BenchmarkHostile(b *testing.B) {
	for _, shape := range pdftest.Shapes {
		for _, n := range []int{64 << 10, 256 << 10, 1 << 20, 4 << 20} {
			data := pdftest.Hostile(shape, n)
			b.Run(fmt.Sprintf("%s/%dKiB", shape, n>>10), func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				var st Stats
				cpu := processCPU()
				for b.Loop() {
					_, st, _ = Count(context.Background(), data, Budget{})
				}
				cpu = processCPU() - cpu
				per := float64(b.N) * float64(len(data))
				b.ReportMetric(float64(st.Steps)/float64(len(data)), "steps/B")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/per, "ns/B")
				b.ReportMetric(float64(cpu.Nanoseconds())/per, "cpu-ns/B")
			})
		}
	}
}

// TestXRefSectionOnce: 64 sections whose /XRefStm point at different
// offsets in the white space before one large table read it once, not
// 64 times (each within maxLead of it names the same section).
func TestXRefSectionOnce(t *testing.T) {
	b := newBuilder()
	for num, body := range pageObjects(1, 1) {
		b.obj(num, body)
	}
	b.buf.WriteString(strings.Repeat(" ", 64))
	table := b.buf.Len()
	const n = 20000
	fmt.Fprintf(&b.buf, "xref\n0 %d\n0000000000 65535 f \n", n)
	for i := 1; i < n; i++ {
		if off, ok := b.offsets[i]; ok {
			fmt.Fprintf(&b.buf, "%010d 00000 n \n", off)
		} else {
			b.buf.WriteString("0000000000 65535 f \n")
		}
	}
	fmt.Fprintf(&b.buf, "trailer\n<< /Size %d /Root 1 0 R >>\n", n)
	prev := -1
	for i := 1; i <= 64; i++ {
		at := b.buf.Len()
		fmt.Fprintf(&b.buf, "xref\n0 1\n0000000000 65535 f \ntrailer\n<< /Size 1 /Root 1 0 R /XRefStm %d", table-i)
		if prev >= 0 {
			fmt.Fprintf(&b.buf, " /Prev %d", prev)
		}
		b.buf.WriteString(" >>\n")
		prev = at
	}
	fmt.Fprintf(&b.buf, "startxref\n%d\n%%%%EOF\n", prev)
	doc := b.buf.Bytes()
	if n, err := PageCount(doc); err != nil || n != 1 {
		t.Fatalf("PageCount = %d, %v", n, err)
	}
	st := checkLinear(t, "64 sections", doc)
	if st.Steps > 4*int64(len(doc)) {
		t.Fatalf("%d steps for %d bytes: the table was read more than once", st.Steps, len(doc))
	}
}
