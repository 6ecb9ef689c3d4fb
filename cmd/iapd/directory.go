package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/iapd/iapd/providers/registers"
	"github.com/iapd/iapd/providers/registers/formats"
)

// registerReader reads one register file into a sink: formats.ReadFile
// (tests give their own).
type registerReader func(ctx context.Context, format, path string, sink registers.Sink, opt formats.Options) (formats.Stats, error)

// maxBadShown bounds the bad rows an import names one by one; the rest
// are counted.
const maxBadShown = 100

// importMemoryLimit is the Go memory limit of an import (unless
// GOMEMLIMIT is set): what is live stays under 100 MB (Badger's memtable
// and table builder) whatever the file's size; the limit keeps garbage
// from piling up over it.
const importMemoryLimit = 256 << 20

// plainProgressEvery is how often an import off a terminal (cron,
// systemd) writes a progress line.
const plainProgressEvery = 30 * time.Second

// runDirectory is "iapd directory import": register files read into the
// company index as one import of the format's source. With -data, into
// the index of a stopped iapd's data directory (<data>/registers);
// without, through the admin API of the running iapd (runDirectoryOnline),
// which reads the files itself. Bad rows are named (file:line) and
// skipped; a file that cannot be read aborts the import, striking
// nothing off.
func runDirectory(ctx context.Context, args []string, s stdio, read registerReader) error {
	if len(args) == 0 {
		return errors.New("directory: want import (iapd help directory)")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "-h", "-help", "--help", "help":
		writeCommandUsage(s.stdout, "directory")
		return nil
	case "import":
	default:
		return fmt.Errorf("directory: unknown sub-command %q (want import)", sub)
	}
	fs := newFlagSet("directory import", s.stderr, "iapd directory import -format "+strings.Join(formats.Formats, "|")+" [-data DIR | -ops ADDR] FILE…")
	format := fs.String("format", "", "the register's bulk `format`: "+strings.Join(formats.Formats, ", "))
	data := fs.String("data", DefaultData, "data `directory` of a stopped iapd, imported offline (its registers/ folder); without -data, the running iapd imports through its admin API")
	cf := addClientFlags(fs, s.getenv)
	files, err := parseArgs(fs, args, -1)
	if err != nil {
		return err
	}
	if !slices.Contains(formats.Formats, *format) {
		fs.Usage()
		return fmt.Errorf("directory import: -format %q: want one of %s", *format, strings.Join(formats.Formats, ", "))
	}
	if len(files) == 0 {
		fs.Usage()
		return errors.New("directory import: no FILE given")
	}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("directory import: %w", err)
		}
	}
	offline := false
	fs.Visit(func(f *flag.Flag) { offline = offline || f.Name == "data" })
	if !offline {
		return runDirectoryOnline(ctx, *format, files, cf, s)
	}
	if err := dataDirInUse(*data); err != nil { // datadir.go: names the pid
		return fmt.Errorf("directory import: %w (import online: leave -data out)", err)
	}
	if s.getenv("GOMEMLIMIT") == "" {
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(importMemoryLimit))
	}
	log := slog.New(slog.NewTextHandler(s.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir := registers.DefaultDir(*data)
	x, err := registers.Open(dir, false, log)
	if err != nil {
		if inUse := explainOpenError(*data, err); inUse != err {
			return fmt.Errorf("directory import: %w", inUse)
		}
		return fmt.Errorf("directory import: opening %s: %w", dir, err)
	}
	defer x.Close()
	im, err := x.BeginImport(*format)
	if err != nil {
		return fmt.Errorf("directory import: %w", err)
	}
	start := time.Now()
	sink := &countingSink{Sink: im}
	var total formats.Stats
	for _, f := range files {
		rep := newImportProgress(s.stderr, *format+": "+f, sink, time.Now)
		st, err := read(ctx, *format, f, sink, formats.Options{
			Progress: rep.bytes,
			Bad:      rep.bad,
		})
		rep.done()
		total.Records += st.Records
		total.Bad += st.Bad
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			im.Abort()
			return fmt.Errorf("directory import: %s: %w (import aborted: nothing struck off; the records of the files read so far may already be updated)", f, err)
		}
		fmt.Fprintf(s.stdout, "%s: %d records read, %d bad rows skipped\n", f, st.Records, st.Bad)
	}
	stats, err := im.Commit()
	if err != nil {
		return fmt.Errorf("directory import: committing: %w", err)
	}
	secs := time.Since(start).Seconds()
	fmt.Fprintf(s.stdout, "%s: %d records from %d files in %.1fs (%.0f records/s), %d bad rows skipped\n",
		*format, total.Records, len(files), secs, float64(sink.n())/max(secs, 0.001), total.Bad)
	fmt.Fprintf(s.stdout, "index %s: %d new, %d changed, %d unchanged, %d struck off; %.1f MB on disk\n",
		dir, stats.New, stats.Changed, stats.Unchanged, stats.StruckOff, float64(x.Size())/1e6)
	return nil
}

// countingSink counts the records given to the import.
type countingSink struct {
	registers.Sink
	mu    sync.Mutex
	count int64
}

func (c *countingSink) Put(r registers.Record) error {
	c.mu.Lock()
	c.count++
	c.mu.Unlock()
	return c.Sink.Put(r)
}

func (c *countingSink) n() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count
}

// importProgress reports one file's import: on a terminal a line
// rewritten in place (percentage of the file, records/s, ETA), off one a
// plain line every plainProgressEvery; and the bad rows, the first
// maxBadShown by file and line.
type importProgress struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	label string
	sink  *countingSink
	now   func() time.Time
	start time.Time
	shown time.Time
	from  int64 // records before this file
	width int
	nbad  int64
}

func newImportProgress(w io.Writer, label string, sink *countingSink, now func() time.Time) *importProgress {
	t := now()
	return &importProgress{w: w, tty: writesToTerminal(w), label: label, sink: sink, now: now, start: t, shown: t, from: sink.n()}
}

func (p *importProgress) bytes(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.now()
	every := plainProgressEvery
	if p.tty {
		every = progressEvery
	}
	if t.Sub(p.shown) < every {
		return
	}
	p.shown = t
	line := p.line(done, total, t.Sub(p.start))
	if !p.tty {
		fmt.Fprintln(p.w, line)
		return
	}
	pad := ""
	if len(line) < p.width {
		pad = strings.Repeat(" ", p.width-len(line))
	}
	p.width = len(line)
	fmt.Fprintf(p.w, "\r%s%s", line, pad)
}

// line renders e.g. "gleif: golden.csv 45% (81.2 of 180.3 MB), 1234567
// records, 52311 records/s, ETA 1m20s".
func (p *importProgress) line(done, total int64, elapsed time.Duration) string {
	n := p.sink.n() - p.from
	var b strings.Builder
	b.WriteString(p.label)
	if total > 0 {
		fmt.Fprintf(&b, " %d%% (%.1f of %.1f MB)", percent(done, total), megabytes(done), megabytes(total))
	} else {
		fmt.Fprintf(&b, " %.1f MB", megabytes(done))
	}
	secs := elapsed.Seconds()
	fmt.Fprintf(&b, ", %d records", n)
	if secs > 0 {
		fmt.Fprintf(&b, ", %.0f records/s", float64(n)/secs)
	}
	if total > 0 && done > 0 && done < total {
		eta := time.Duration(float64(elapsed) * float64(total-done) / float64(done))
		fmt.Fprintf(&b, ", ETA %s", eta.Truncate(time.Second))
	}
	return b.String()
}

func (p *importProgress) bad(file string, line int64, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.erase()
	p.nbad++
	switch {
	case p.nbad <= maxBadShown:
		fmt.Fprintf(p.w, "%s:%d: skipped: %v\n", file, line, err)
	case p.nbad == maxBadShown+1:
		fmt.Fprintf(p.w, "%s: more bad rows skipped; the count follows at the end\n", file)
	}
}

func (p *importProgress) erase() {
	if p.width > 0 {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.width))
		p.width = 0
	}
}

func (p *importProgress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.erase()
}
