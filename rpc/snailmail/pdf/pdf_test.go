package pdf

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/iapd/iapd/rpc/rpctest"
)

// TestFixturePDFs counts the pages of the PDFs real Odoo databases sent
// (PROTOCOL §7 fixtures: one page each, per the fixtures READMEs).
func TestFixturePDFs(t *testing.T) {
	n := 0
	for _, v := range rpctest.Versions {
		for _, req := range rpctest.Load(t, v, func(r *rpctest.Request) bool { return strings.Contains(r.Name, "snailmail") }) {
			docs, _ := req.Params(t)["documents"].([]any)
			for _, d := range docs {
				b64, _ := d.(map[string]any)["pdf_bin"].(string)
				pdf, err := base64.StdEncoding.DecodeString(b64)
				if err != nil {
					t.Fatalf("%s/%s: %v", v, req.Name, err)
				}
				got, err := PageCount(pdf)
				if err != nil || got != 1 {
					t.Errorf("%s/%s: PageCount = %d, %v; want 1", v, req.Name, got, err)
				}
				n++
			}
		}
	}
	if n < 7 {
		t.Fatalf("only %d fixture PDFs found", n)
	}
}

// TestTestdata: documents written by another PDF library (pdfcpu 0.11:
// a merge of fixture PDFs), one with a cross-reference stream and object
// streams, one classic.
func TestTestdata(t *testing.T) {
	for file, want := range map[string]int{"testdata/pages3_objstm.pdf": 3, "testdata/pages6_classic.pdf": 6} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte("/Type/ObjStm")) && strings.Contains(file, "objstm") {
			t.Fatalf("%s has no object stream", file)
		}
		if got, err := PageCount(b); err != nil || got != want {
			t.Errorf("%s: %d, %v; want %d", file, got, err, want)
		}
	}
}

// builder writes synthetic PDFs: objects, then a classic table or a
// cross-reference stream.
type builder struct {
	buf     bytes.Buffer
	offsets map[int]int
}

func newBuilder() *builder {
	b := &builder{offsets: map[int]int{}}
	b.buf.WriteString("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
	return b
}

func (b *builder) obj(num int, body string) {
	b.offsets[num] = b.buf.Len()
	fmt.Fprintf(&b.buf, "%d 0 obj\n%s\nendobj\n", num, body)
}

func (b *builder) streamObj(num int, dictRest string, data []byte) {
	b.offsets[num] = b.buf.Len()
	fmt.Fprintf(&b.buf, "%d 0 obj\n<< /Length %d %s >>\nstream\n", num, len(data), dictRest)
	b.buf.Write(data)
	b.buf.WriteString("\nendstream\nendobj\n")
}

func (b *builder) classicXRef(size int, trailerRest string) int {
	at := b.buf.Len()
	fmt.Fprintf(&b.buf, "xref\n0 %d\n0000000000 65535 f \n", size)
	for i := 1; i < size; i++ {
		if off, ok := b.offsets[i]; ok {
			fmt.Fprintf(&b.buf, "%010d 00000 n \n", off)
		} else {
			b.buf.WriteString("0000000000 65535 f \n")
		}
	}
	fmt.Fprintf(&b.buf, "trailer\n<< /Size %d %s >>\nstartxref\n%d\n%%%%EOF\n", size, trailerRest, at)
	return at
}

func deflate(b []byte) []byte {
	var out bytes.Buffer
	w := zlib.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

// pageTree returns the bodies of a Pages node 2 with n page leaves 10…
func pageObjects(n int, count int) map[int]string {
	m := map[int]string{1: "<< /Type /Catalog /Pages 2 0 R >>"}
	kids := make([]string, n)
	for i := range n {
		kids[i] = fmt.Sprintf("%d 0 R", 10+i)
		m[10+i] = "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595.28 841.89] >>"
	}
	m[2] = fmt.Sprintf("<< /Type /Pages /Kids [%s] /Count %d >>", strings.Join(kids, " "), count)
	return m
}

func classicPDF(n, count int) []byte {
	b := newBuilder()
	objs := pageObjects(n, count)
	for num := range 10 + n {
		if body, ok := objs[num]; ok {
			b.obj(num, body)
		}
	}
	b.classicXRef(10+n, "/Root 1 0 R")
	return b.buf.Bytes()
}

// xrefStreamPDF puts the pages in an object stream and writes a
// cross-reference stream with a PNG Up predictor, as Acrobat and most
// modern writers do.
func xrefStreamPDF(n int) []byte {
	b := newBuilder()
	objs := pageObjects(n, n)
	b.obj(1, objs[1])
	b.obj(2, objs[2])
	// Object stream 5 holds the pages.
	var head, body bytes.Buffer
	for i := range n {
		fmt.Fprintf(&head, "%d %d ", 10+i, body.Len())
		body.WriteString(objs[10+i])
		body.WriteByte(' ')
	}
	data := append(head.Bytes(), body.Bytes()...)
	b.streamObj(5, fmt.Sprintf("/Type /ObjStm /N %d /First %d /Filter /FlateDecode", n, head.Len()), deflate(data))
	size := 10 + n + 1
	xrefNum := size - 1
	xrefAt := b.buf.Len()
	b.offsets[xrefNum] = xrefAt
	// Rows: type(1) offset(3) gen/index(1), PNG Up filtered.
	var rows []byte
	prev := make([]byte, 5)
	for i := range size {
		var row []byte
		switch {
		case i == 1 || i == 2 || i == 5:
			off := b.offsets[i]
			row = []byte{1, byte(off >> 16), byte(off >> 8), byte(off), 0}
		case i >= 10 && i < 10+n:
			row = []byte{2, 0, 0, 5, byte(i - 10)}
		case i == xrefNum:
			row = []byte{1, byte(xrefAt >> 16), byte(xrefAt >> 8), byte(xrefAt), 0}
		default:
			row = []byte{0, 0, 0, 0, 0}
		}
		rows = append(rows, 2) // PNG Up
		for k := range row {
			rows = append(rows, row[k]-prev[k])
		}
		prev = row
	}
	z := deflate(rows)
	fmt.Fprintf(&b.buf, "%d 0 obj\n<< /Type /XRef /Size %d /W [1 3 1] /Root 1 0 R /Filter /FlateDecode /DecodeParms << /Predictor 12 /Columns 5 >> /Length %d >>\nstream\n", xrefNum, size, len(z))
	b.buf.Write(z)
	fmt.Fprintf(&b.buf, "\nendstream\nendobj\nstartxref\n%d\n%%%%EOF\n", xrefAt)
	return b.buf.Bytes()
}

func TestSynthetic(t *testing.T) {
	for _, tc := range []struct {
		name string
		pdf  []byte
		want int
	}{
		{"classic 1", classicPDF(1, 1), 1},
		{"classic 7", classicPDF(7, 7), 7},
		{"count lies low", classicPDF(5, 1), 5}, // leaves are what a printer prints
		{"xref stream + object stream 1", xrefStreamPDF(1), 1},
		{"xref stream + object stream 12", xrefStreamPDF(12), 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := PageCount(tc.pdf); err != nil || got != tc.want {
				t.Fatalf("PageCount = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

// TestIncrementalUpdate: an update appended to the file adds a page; the
// newest definitions win and /Prev is followed for the rest.
func TestIncrementalUpdate(t *testing.T) {
	base := classicPDF(2, 2)
	firstXRef := bytes.LastIndex(base, []byte("xref\n0 "))
	var b bytes.Buffer
	b.Write(base)
	off2 := b.Len()
	b.WriteString("2 0 obj\n<< /Type /Pages /Kids [10 0 R 11 0 R 12 0 R] /Count 3 >>\nendobj\n")
	off12 := b.Len()
	b.WriteString("12 0 obj\n<< /Type /Page /Parent 2 0 R >>\nendobj\n")
	at := b.Len()
	fmt.Fprintf(&b, "xref\n0 1\n0000000000 65535 f \n2 1\n%010d 00000 n \n12 1\n%010d 00000 n \ntrailer\n<< /Size 13 /Root 1 0 R /Prev %d >>\nstartxref\n%d\n%%%%EOF\n", off2, off12, firstXRef, at)
	if got, err := PageCount(b.Bytes()); err != nil || got != 3 {
		t.Fatalf("PageCount = %d, %v; want 3", got, err)
	}
}

// TestDamagedXRef: wrong offsets and a missing startxref are repaired by
// scanning the objects.
func TestDamagedXRef(t *testing.T) {
	good := classicPDF(4, 4)
	shifted := append([]byte("%PDF-1.4\n% junk inserted by a mail gateway\n"), good[len("%PDF-1.7\n"):]...)
	if got, err := PageCount(shifted); err != nil || got != 4 {
		t.Errorf("shifted offsets: %d, %v; want 4", got, err)
	}
	noStart := good[:bytes.LastIndex(good, []byte("startxref"))]
	if got, err := PageCount(noStart); err != nil || got != 4 {
		t.Errorf("no startxref: %d, %v; want 4", got, err)
	}
	xs := xrefStreamPDF(3)
	cut := xs[:bytes.LastIndex(xs, []byte("startxref"))]
	if got, err := PageCount(cut); err != nil || got != 3 {
		t.Errorf("xref stream without startxref: %d, %v; want 3", got, err)
	}
}

func TestUnreadable(t *testing.T) {
	cyclic := newBuilder()
	cyclic.obj(1, "<< /Type /Catalog /Pages 2 0 R >>")
	cyclic.obj(2, "<< /Type /Pages /Kids [3 0 R] /Count 1 >>")
	cyclic.obj(3, "<< /Type /Pages /Kids [2 0 R] /Count 1 >>")
	cyclic.classicXRef(4, "/Root 1 0 R")

	noPages := newBuilder()
	noPages.obj(1, "<< /Type /Catalog /Pages 2 0 R >>")
	noPages.obj(2, "<< /Type /Pages /Kids [] /Count 0 >>")
	noPages.classicXRef(3, "/Root 1 0 R")

	enc := newBuilder()
	for num, body := range pageObjects(1, 1) {
		enc.obj(num, body)
	}
	enc.obj(3, "<< /Filter /Standard /V 2 /R 3 /O <00> /U <00> /P -4 >>")
	enc.classicXRef(11, "/Root 1 0 R /Encrypt 3 0 R")

	bomb := newBuilder()
	bomb.obj(1, "<< /Type /Catalog /Pages 2 0 R >>")
	bomb.streamObj(4, "/Type /ObjStm /N 1 /First 4 /Filter /FlateDecode", deflate(make([]byte, maxDecoded+1<<20)))
	bomb.obj(2, "<< /Type /Pages /Kids [10 0 R] >>")
	bb := bomb.buf.Bytes()
	bb = append(bb, []byte(fmt.Sprintf("xref\n0 1\n0000000000 65535 f \ntrailer\n<< /Root 1 0 R /Size 11 >>\nstartxref\n%d\n%%%%EOF\n", len(bb)))...)

	deep := newBuilder()
	deep.obj(1, "<< /Type /Catalog /Pages 2 0 R >>")
	deep.obj(2, "<< /Type /Pages /Kids "+strings.Repeat("[", 200)+strings.Repeat("]", 200)+" >>")
	deep.classicXRef(3, "/Root 1 0 R")

	for _, tc := range []struct {
		name string
		pdf  []byte
	}{
		{"empty", nil},
		{"not a PDF", []byte("hello, world")},
		{"HTML", []byte("<html><body>%PDF-1.4 inside</body></html>")},
		{"header only", []byte("%PDF-1.4\n%%EOF\n")},
		{"truncated", classicPDF(3, 3)[:200]},
		{"cycle", cyclic.buf.Bytes()},
		{"no pages", noPages.buf.Bytes()},
		{"encrypted", enc.buf.Bytes()},
		{"decompression bomb", bb},
		{"nested too deep", deep.buf.Bytes()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := PageCount(tc.pdf)
			if err == nil {
				t.Fatalf("PageCount = %d, want an error", n)
			}
			t.Log(err)
			var pe *Error
			if !errors.As(err, &pe) && !errors.Is(err, ErrEncrypted) {
				t.Fatalf("error %T %v, want *Error or ErrEncrypted", err, err)
			}
			if tc.name == "encrypted" && !errors.Is(err, ErrEncrypted) {
				t.Fatalf("encrypted: %v", err)
			}
		})
	}
}

func TestTooManyPages(t *testing.T) {
	if n, err := PageCount(classicPDF(MaxPages+1, 1)); err == nil {
		t.Fatalf("PageCount = %d for %d leaves, want an error", n, MaxPages+1)
	}
}

// FuzzPageCount: no input makes the reader fail other than with an
// error, report an impossible count, or take more than linearSteps steps
// per byte of input and of what it decodes (a per-input check in steps,
// not in time: it holds on a busy machine and fails on a quadratic
// regression). Seeded with the real documents and the hostile shapes.
func FuzzPageCount(f *testing.F) {
	f.Add(classicPDF(2, 2))
	f.Add(xrefStreamPDF(3))
	for _, file := range []string{"testdata/pages3_objstm.pdf", "testdata/pages6_classic.pdf"} {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	for _, b := range hostileSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, st, err := Count(context.Background(), b, unlimited)
		if err == nil && (n < 1 || n > MaxPages) {
			t.Fatalf("PageCount = %d without error", n)
		}
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) && !errors.Is(err, ErrEncrypted) {
				t.Fatalf("error %T %v", err, err)
			}
		}
		if lim := linearSteps*(int64(len(b))+st.Decoded) + linearBase; st.Steps > lim {
			t.Fatalf("%d steps for %d bytes (+%d decoded): more than %d", st.Steps, len(b), st.Decoded, lim)
		}
		if lim := int64(decodedPerByte*len(b) + decodedBase); st.Decoded > lim {
			t.Fatalf("decoded %d bytes from %d", st.Decoded, len(b))
		}
	})
}

func BenchmarkPageCount(b *testing.B) {
	for _, file := range []string{"testdata/pages3_objstm.pdf", "testdata/pages6_classic.pdf"} {
		data, err := os.ReadFile(file)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(file[len("testdata/"):], func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := PageCount(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestInflateBounds: a stream may not decode to more than maxDecoded
// bytes, nor a document to more than maxTotal.
func TestInflateBounds(t *testing.T) {
	newD := func(decoded int64) *doc {
		m := &meter{ctx: context.Background(), limit: 1 << 40, next: checkEvery, decoded: decoded, decodeLimit: maxTotal}
		return &doc{m: m}
	}
	d := newD(0)
	if _, err := d.inflate(deflate(make([]byte, maxDecoded+1))); err == nil || !strings.Contains(err.Error(), "decodes to more than") {
		t.Fatalf("one stream over the bound: %v", err)
	}
	d = newD(maxTotal - 100)
	if _, err := d.inflate(deflate(make([]byte, 101))); err == nil {
		t.Fatal("the document's budget was exceeded")
	}
	d = newD(0)
	if out, err := d.inflate(deflate([]byte("12345"))); err != nil || string(out) != "12345" || d.m.decoded != 5 {
		t.Fatalf("%q %v %d", out, err, d.m.decoded)
	}
}

// BenchmarkFixturePageCount counts the pages of the PDFs real Odoo
// databases sent (1.4–9 KB, one page).
func BenchmarkFixturePageCount(b *testing.B) {
	var pdfs [][]byte
	for _, v := range rpctest.Versions {
		for _, req := range rpctest.Load(b, v, func(r *rpctest.Request) bool { return strings.Contains(r.Name, "snailmail") }) {
			docs, _ := req.Params(b)["documents"].([]any)
			b64, _ := docs[0].(map[string]any)["pdf_bin"].(string)
			p, err := base64.StdEncoding.DecodeString(b64)
			if err != nil {
				b.Fatal(err)
			}
			pdfs = append(pdfs, p)
		}
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := PageCount(pdfs[i%len(pdfs)]); err != nil {
			b.Fatal(err)
		}
	}
}
