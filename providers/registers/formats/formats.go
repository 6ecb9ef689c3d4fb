// Package formats reads the bulk files the open company registers publish
// (GLEIF golden copy, SIRENE stock, Companies House basic company data,
// KBO/BCE open data), streaming, into registers.Record values.
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
	// file read so far and its size (0 when unknown).
	Progress func(done, total int64)
	// Bad, if set, is told each row that could not be read (the row is
	// skipped); line counts from 1 and names the line in the file (or in
	// the zip member named in file).
	Bad func(file string, line int64, err error)
}

// Stats count what one ReadFile did.
type Stats struct {
	Records int64 // given to the sink
	Bad     int64 // skipped rows
}

// ReadFile streams the register file path, of the given format, into sink
// in constant memory.
func ReadFile(ctx context.Context, format, path string, sink registers.Sink, opt Options) (Stats, error) {
	return Stats{}, fmt.Errorf("format %q: not implemented yet", format)
}
