// Package online runs imports of company register files inside a
// serving iapd: one import at a time, in the background, into the index
// the registers provider answers from (Badger serves lookups during the
// writes). The admin API starts it and reads its Status; cmd/iapd wires
// it. It imports the standard library, providers/registers and
// providers/registers/formats.
package online

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/iapd/iapd/providers/registers"
	"github.com/iapd/iapd/providers/registers/formats"
)

// MaxBadRows bounds the bad rows a Status names one by one (file:line:
// reason); the rest are counted in Bad.
const MaxBadRows = 100

// ErrRunning is Start's error while an import runs.
var ErrRunning = errors.New("an import of company registers is already running")

// ErrInvalid wraps Start's errors for a request that cannot be imported
// (unknown format, no file, a path that is not an absolute regular file).
var ErrInvalid = errors.New("invalid import")

// Target is where records go: the serving index (registers.Registers).
type Target interface {
	// BeginImport starts an import session of source; an error when one
	// is already in progress.
	BeginImport(source string) (*registers.Import, error)
}

// ReadFunc reads one register file into sink (formats.ReadFile).
type ReadFunc func(ctx context.Context, format, path string, sink registers.Sink, opt formats.Options) (formats.Stats, error)

// Status is the state of the running or last import.
type Status struct {
	State      string // "running", "done", "failed" (Error says why), "aborted" (iapd stopped)
	Format     string
	Files      []string
	File       string // the file being read (running)
	BytesDone  int64  // of File
	BytesTotal int64  // of File, 0 when unknown
	Started    time.Time
	Finished   time.Time // zero while running
	Records    int64     // records read so far, all files
	Bad        int64     // bad rows skipped
	BadRows    []string  // the first MaxBadRows, "file:line: reason"
	Stats      registers.ImportStats
	Error      string
}

// Importer runs the online imports of one index. Safe for concurrent use.
type Importer struct {
	ctx    context.Context
	target Target
	read   ReadFunc
	now    func() time.Time
	log    *slog.Logger

	wg      sync.WaitGroup
	mu      sync.Mutex
	running bool
	st      Status
	ran     bool
}

// New returns an Importer writing into target; ctx is the server's: its
// cancellation aborts a running import (nothing struck off). read nil is
// formats.ReadFile, now nil time.Now; log (nil discards) gets one line
// per import ended.
func New(ctx context.Context, target Target, read ReadFunc, now func() time.Time, log *slog.Logger) *Importer {
	if read == nil {
		read = formats.ReadFile
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Importer{ctx: ctx, target: target, read: read, now: now, log: log}
}

// Start checks the request and starts importing files (absolute paths
// on this machine) of format in the background, as one import of the
// format's source: records are updated as they are read, and the
// companies of the source that none of the files holds are struck off
// once all are read. ErrRunning while an import runs; ErrInvalid
// (wrapped) for an unknown format or a file that is not an absolute
// path to a readable regular file.
func (im *Importer) Start(format string, files []string) error {
	if !slices.Contains(formats.Formats, format) {
		return fmt.Errorf("%w: format %q: want one of %s", ErrInvalid, format, strings.Join(formats.Formats, ", "))
	}
	if len(files) == 0 {
		return fmt.Errorf("%w: no file given", ErrInvalid)
	}
	for _, f := range files {
		if !filepath.IsAbs(f) {
			return fmt.Errorf("%w: %q is not an absolute path (files are read on the server)", ErrInvalid, f)
		}
		fi, err := os.Stat(f)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInvalid, f, errors.Unwrap(err))
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%w: %s: not a regular file", ErrInvalid, f)
		}
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.running {
		return ErrRunning
	}
	if err := im.ctx.Err(); err != nil {
		return fmt.Errorf("iapd is stopping: %w", err)
	}
	session, err := im.target.BeginImport(format)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRunning, err)
	}
	im.running, im.ran = true, true
	im.st = Status{State: "running", Format: format, Files: slices.Clone(files), Started: im.now()}
	im.wg.Add(1)
	go im.run(session, format, slices.Clone(files))
	return nil
}

func (im *Importer) run(session *registers.Import, format string, files []string) {
	defer im.wg.Done()
	sink := &countingSink{Sink: session, im: im}
	var err error
	for _, f := range files {
		im.update(func(s *Status) { s.File, s.BytesDone, s.BytesTotal = f, 0, 0 })
		_, err = im.read(im.ctx, format, f, sink, formats.Options{
			Progress: func(done, total int64) {
				im.update(func(s *Status) { s.BytesDone, s.BytesTotal = done, total })
			},
			Bad: func(file string, line int64, e error) {
				im.update(func(s *Status) {
					s.Bad++
					if len(s.BadRows) < MaxBadRows {
						s.BadRows = append(s.BadRows, fmt.Sprintf("%s:%d: %v", file, line, e))
					}
				})
			},
		})
		if err == nil {
			err = im.ctx.Err()
		}
		if err != nil {
			err = fmt.Errorf("%s: %w", f, err)
			break
		}
	}
	state := "done"
	var stats registers.ImportStats
	switch {
	case err != nil:
		session.Abort()
		stats = session.Stats()
		state = "failed"
		if im.ctx.Err() != nil {
			state = "aborted"
		}
		err = fmt.Errorf("%w (import aborted: nothing struck off; records read so far may already be updated)", err)
	default:
		stats, err = session.Commit()
		if err != nil {
			state = "failed"
			err = fmt.Errorf("committing: %w", err)
		}
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	lvl := slog.LevelInfo
	if err != nil {
		lvl = slog.LevelError
	}
	im.log.Log(context.Background(), lvl, "company register import ended", "state", state, "format", format,
		"records", im.st.Records, "bad_rows", im.st.Bad, "new", stats.New, "changed", stats.Changed,
		"unchanged", stats.Unchanged, "struck_off", stats.StruckOff, "duration", im.now().Sub(im.st.Started).Round(time.Millisecond), "err", err)
	im.st.State, im.st.Stats, im.st.Finished, im.st.File = state, stats, im.now(), ""
	if err != nil {
		im.st.Error = err.Error()
	}
	im.running = false
}

func (im *Importer) update(f func(*Status)) {
	im.mu.Lock()
	f(&im.st)
	im.mu.Unlock()
}

// Status returns the running or last import's status; false when no
// import ran since iapd started.
func (im *Importer) Status() (Status, bool) {
	im.mu.Lock()
	defer im.mu.Unlock()
	s := im.st
	s.Files = slices.Clone(s.Files)
	s.BadRows = slices.Clone(s.BadRows)
	return s, im.ran
}

// Wait returns once no import runs: cmd/iapd calls it, after cancelling
// the server's context, before it closes the index.
func (im *Importer) Wait() { im.wg.Wait() }

// countingSink counts the records given to the import in the Status.
type countingSink struct {
	registers.Sink
	im *Importer
}

func (c *countingSink) Put(r registers.Record) error {
	if err := c.Sink.Put(r); err != nil {
		return err
	}
	c.im.update(func(s *Status) { s.Records++ })
	return nil
}
