// Package formats reads the bulk files the open company registers publish
// (GLEIF golden copy, SIRENE stock, Companies House basic company data,
// KBO/BCE open data), streaming, into registers.Record values.
//
// Every reader holds at most a few rows in memory whatever the file size:
// zips are read in place (archive/zip over the file's ReaderAt), CSV row by
// row, and the multi-file registers (SIRENE, KBO) are merge-joined on their
// identifier in the order the register sorts its files, a file found out
// of that order being sorted on disk first (sort.go). A malformed row is
// told to Options.Bad and skipped; a record longer than maxRecordBytes stops
// the file with an error naming its line.
//
// Each register's layout, its source and the mapping onto Record are in
// the doc comment of its reader (gleif.go, sirene.go, companieshouse.go,
// kbo.go); activity codes map to Odoo's industries in nace.go.
//
// It imports providers and providers/registers only.
package formats

import (
	"context"
	"fmt"

	"github.com/iapd/iapd/providers/registers"
)

// Formats are the names ReadFile takes, in the order the CLI lists them.
var Formats = []string{"gleif", "sirene", "companies-house", "kbo"}

// Options tune one ReadFile.
type Options struct {
	// Progress, if set, is called now and then with the bytes of the
	// file read so far and its size (0 when unknown). SIRENE and KBO
	// read their files twice (an order check, then the join), so their
	// size is counted twice.
	Progress func(done, total int64)
	// Bad, if set, is told each row that could not be read (the row is
	// skipped); line counts from 1 and names the line in the file (or in
	// the zip member named in file).
	Bad func(file string, line int64, err error)
	// Join names the other files of the same register read together with
	// path. Only sirene uses it: the StockUniteLegale file whose legal
	// names a StockEtablissement path is joined with. When empty, a file
	// named StockUniteLegale*.zip or StockUniteLegale*.csv beside path is
	// used.
	Join []string
	// TempDir is where a SIRENE or KBO file found out of its register's
	// order is sorted (about the file's uncompressed size, removed at the
	// end); "" is os.TempDir().
	TempDir string
}

// Stats count what one ReadFile did.
type Stats struct {
	Records int64 // given to the sink
	Bad     int64 // skipped rows
	// Skipped counts well-formed rows deliberately not given to the sink:
	// rows of another entity than a company (KBO establishments, SIRENE
	// secondary establishments) and rows the register marks as not for
	// publication (SIRENE statutDiffusion other than "O").
	Skipped int64
	// Sorted counts the files joined from a sorted copy because they
	// were not in the register's order.
	Sorted int
}

// Licence texts, as each register's licence asks its reusers to attribute.
const (
	// LicenceGLEIF: the golden copy is published under CC0 1.0; GLEIF
	// asks (without obliging) to name the source.
	LicenceGLEIF = "Source: GLEIF LEI golden copy (gleif.org), CC0 1.0"
	// LicenceSIRENE: Licence Ouverte / Open Licence 2.0 (Etalab) obliges
	// naming the source and the date of its last update.
	LicenceSIRENE = "Source: INSEE, base SIRENE des entreprises et de leurs établissements, Licence Ouverte 2.0 (Etalab)"
	// LicenceCompaniesHouse: Open Government Licence v3.0 obliges the
	// attribution statement.
	LicenceCompaniesHouse = "Contains public sector information licensed under the Open Government Licence v3.0 (Companies House)"
	// LicenceKBO: the FPS Economy's free reuse licence for KBO Open Data
	// obliges naming the source and the extract date.
	LicenceKBO = "Source: Crossroads Bank for Enterprises (KBO/BCE Open Data), FPS Economy, S.M.E.s, Self-employed and Energy"
)

// ReadFile streams the register file path, of the given format, into sink
// in constant memory. It returns the first error of the file itself (not
// found, not the register's layout, a record over the size limit), of the
// sink, or ctx's; Stats count what was done until then.
func ReadFile(ctx context.Context, format, path string, sink registers.Sink, opt Options) (Stats, error) {
	var read func(ctx context.Context, path string, sink registers.Sink, opt Options) (Stats, error)
	switch format {
	case "gleif":
		read = readGLEIF
	case "sirene":
		read = readSIRENE
	case "companies-house":
		read = readCompaniesHouse
	case "kbo":
		read = readKBO
	default:
		return Stats{}, fmt.Errorf("format %q: unknown (known: gleif, sirene, companies-house, kbo)", format)
	}
	st, err := read(ctx, path, sink, opt)
	if err != nil {
		return st, fmt.Errorf("%s %s: %w", format, path, err)
	}
	return st, nil
}
