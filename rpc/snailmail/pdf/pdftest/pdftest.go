// Package pdftest builds hostile PDF documents for the tests and
// benchmarks of package pdf and for iapd's abuse suite (issue 13): each
// shape made the first page counter read to the end of the file once per
// object, in time quadratic in the document's size. It imports only the
// standard library.
package pdftest

import (
	"bytes"
	"fmt"
	"strings"
)

// Shapes are the names Hostile accepts, in a stable order.
var Shapes = []string{"nested_strings", "no_endstream", "many_headers", "deep_arrays", "deep_dicts", "huge_numbers", "broken_xref", "whitespace_xref", "far_endstream", "wide_arrays", "wide_dicts"}

// Hostile returns a document of the named shape (one of Shapes) of about
// size bytes (never less than a few hundred). It panics on an unknown
// shape.
//
//   - nested_strings: "k 0 obj" headers each opening literal strings
//     "((((…" that are never closed;
//   - no_endstream: "k 0 obj << /Length 999999999 >> stream" headers
//     whose streams have no endstream;
//   - many_headers: nothing but "k 0 obj" headers;
//   - deep_arrays, deep_dicts: one object nesting "[" or "<< /K" without
//     end, repeated under many headers;
//   - huge_numbers: headers each followed by a number of thousands of
//     digits;
//   - broken_xref: nested strings whose cross-reference table and page
//     tree name every object, so that resolving the pages touches each;
//   - whitespace_xref: one header after a long run of white space, and a
//     cross-reference table whose entries point at every offset of it;
//   - far_endstream: a valid page tree whose pages (at most 9 000) are
//     streams with a wrong /Length, the only "endstream" at the end of
//     the file;
//   - wide_arrays, wide_dicts: one object, an array of "1 1 1 …" or a
//     dictionary of distinct keys "/k0 1 /k1 1 …" filling the file (each
//     element costs the reader memory, not just time).
func Hostile(shape string, size int) []byte {
	var b bytes.Buffer
	b.WriteString("%PDF-1.7\n")
	switch shape {
	case "nested_strings":
		for k := 1; b.Len() < size; k++ {
			fmt.Fprintf(&b, "%d 0 obj\n%s\n", k, strings.Repeat("(", 32))
		}
	case "no_endstream":
		for k := 1; b.Len() < size; k++ {
			fmt.Fprintf(&b, "%d 0 obj\n<< /Length 999999999 >>\nstream\nxxxxxxxx\n", k)
		}
	case "many_headers":
		for k := 1; b.Len() < size; k++ {
			fmt.Fprintf(&b, "%d 0 obj\n", k)
		}
	case "deep_arrays":
		for k := 1; b.Len() < size; k++ {
			fmt.Fprintf(&b, "%d 0 obj\n%s\n", k, strings.Repeat("[", 200))
		}
	case "deep_dicts":
		for k := 1; b.Len() < size; k++ {
			fmt.Fprintf(&b, "%d 0 obj\n%s\n", k, strings.Repeat("<< /K ", 100))
		}
	case "huge_numbers":
		for k := 1; b.Len() < size; k++ {
			fmt.Fprintf(&b, "%d 0 obj\n%s\n", k, strings.Repeat("9", 4000))
		}
	case "broken_xref":
		// Objects 3… are unterminated strings; the page tree names them
		// all, the table points at each.
		var offs []int
		for b.Len() < size*3/4 {
			offs = append(offs, b.Len())
			fmt.Fprintf(&b, "%d 0 obj\n%s\n", 3+len(offs)-1, strings.Repeat("(", 32))
		}
		pageTree(&b, offs)
	case "whitespace_xref":
		// Every entry of the table points into the white space before
		// one unterminated string.
		start := b.Len()
		n := max(size/2-100, 16)
		b.WriteString(strings.Repeat(" ", n))
		b.WriteString("3 0 obj\n(((((\n")
		offs := make([]int, n/24)
		for i := range offs {
			offs[i] = start + i*(n/len(offs))
		}
		pageTree(&b, offs)
	case "far_endstream":
		unit := max(64, size/9000)
		pad := strings.Repeat("x", unit-60)
		var offs []int
		for b.Len() < size*3/4 && len(offs) < 9000 {
			offs = append(offs, b.Len())
			fmt.Fprintf(&b, "%d 0 obj\n<< /Type /Page /Length 1 >>\nstream\n%s\n", 3+len(offs)-1, pad)
		}
		b.WriteString("endstream\nendobj\n")
		pageTree(&b, offs)
	case "wide_arrays":
		b.WriteString("1 0 obj\n[")
		for b.Len() < size {
			b.WriteString("1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 ")
		}
	case "wide_dicts":
		b.WriteString("1 0 obj\n<<")
		for i := 0; b.Len() < size; i++ {
			fmt.Fprintf(&b, "/k%x 1 ", i)
		}
	default:
		panic("pdftest: unknown shape " + shape)
	}
	return b.Bytes()
}

// pageTree appends the catalog (object 1), a page tree (object 2) whose
// kids are objects 3… at offs, the cross-reference table giving those
// offsets, and the trailer.
func pageTree(b *bytes.Buffer, offs []int) {
	root := b.Len()
	b.WriteString("1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n")
	pages := b.Len()
	b.WriteString("2 0 obj\n<< /Type /Pages /Kids [")
	for i := range offs {
		fmt.Fprintf(b, "%d 0 R ", 3+i)
	}
	b.WriteString("] >>\nendobj\n")
	at := b.Len()
	fmt.Fprintf(b, "xref\n0 %d\n0000000000 65535 f \n%010d 00000 n \n%010d 00000 n \n", 3+len(offs), root, pages)
	for _, o := range offs {
		fmt.Fprintf(b, "%010d 00000 n \n", o)
	}
	fmt.Fprintf(b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", 3+len(offs), at)
}
