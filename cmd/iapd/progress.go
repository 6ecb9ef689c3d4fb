package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progressEvery is how often a progress line is rewritten at most.
const progressEvery = 250 * time.Millisecond

// progress shows how far a long operation (backup, restore, verify, export)
// has got: one line on a terminal, rewritten in place at most every
// interval, with the count (of total, as a percentage, when known), the
// rate and the time elapsed, and erased by Done so that the summary the
// command prints is all that stays. Its methods are safe for concurrent
// use; on a nil *progress they do nothing.
//
// Off a terminal (cron, systemd, a pipe) commands make none (newProgress
// returns nil): cron mails whatever a job prints and a log keeps every
// line, where the final summary, with its counts, and the exit status are
// what is wanted; periodic lines would be noise in every nightly mail.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	now   func() time.Time
	every time.Duration

	label string // "restore: loading"
	unit  string // "bytes" (shown as MB) or a noun for counts ("records")
	total int64  // 0: unknown
	n     int64
	start time.Time
	shown time.Time // last time a line was written; zero: none yet
	width int       // of the line on screen
}

// newProgress returns a progress writing to w when w is a terminal, nil
// otherwise.
func newProgress(w io.Writer, now func() time.Time) *progress {
	f, ok := w.(*os.File)
	if !ok || !isTerminal(f) {
		return nil
	}
	return &progress{w: w, now: now, every: progressEvery}
}

// writesToTerminal reports whether w is a terminal: a command writing its
// output there shows no progress line in the middle of it.
func writesToTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isTerminal(f)
}

// Phase starts counting a new step: label names it, total is the count
// expected in unit (0: unknown). The step's clock starts now; its first
// line comes after one interval, so a quick step shows nothing.
func (p *progress) Phase(label, unit string, total int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.label, p.unit, p.total, p.n = label, unit, total, 0
	p.start = p.now()
	p.shown = p.start
}

// Add counts n more and rewrites the line if an interval has passed since
// it was last written.
func (p *progress) Add(n int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n += n
	p.maybeShow()
}

// Set sets the count to n (a callback that reports a running total), as
// Add does.
func (p *progress) Set(n int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n = n
	p.maybeShow()
}

func (p *progress) maybeShow() {
	t := p.now()
	if t.Sub(p.shown) < p.every {
		return
	}
	p.shown = t
	line := p.line(t.Sub(p.start))
	pad := ""
	if len(line) < p.width {
		pad = strings.Repeat(" ", p.width-len(line))
	}
	p.width = len(line)
	fmt.Fprintf(p.w, "\r%s%s", line, pad)
}

// line renders the current state, e.g. "restore: loading 45% (81.2 of
// 180.3 MB), 12.3 MB/s, 6s".
func (p *progress) line(elapsed time.Duration) string {
	var b strings.Builder
	b.WriteString(p.label)
	secs := elapsed.Seconds()
	switch {
	case p.unit == "" && p.n == 0:
		// only the time: an operation that reports nothing until done
	case p.unit == "bytes":
		if p.total > 0 {
			fmt.Fprintf(&b, " %d%% (%.1f of %.1f MB)", percent(p.n, p.total), megabytes(p.n), megabytes(p.total))
		} else {
			fmt.Fprintf(&b, " %.1f MB", megabytes(p.n))
		}
		if secs > 0 {
			fmt.Fprintf(&b, ", %.1f MB/s", megabytes(p.n)/secs)
		}
	default:
		if p.total > 0 {
			fmt.Fprintf(&b, " %d%% (%d of %d %s)", percent(p.n, p.total), p.n, p.total, p.unit)
		} else {
			fmt.Fprintf(&b, " %d %s", p.n, p.unit)
		}
		if secs > 0 {
			fmt.Fprintf(&b, ", %.0f/s", float64(p.n)/secs)
		}
	}
	fmt.Fprintf(&b, ", %s", elapsed.Truncate(time.Second))
	return b.String()
}

func percent(n, total int64) int64 {
	if n >= total {
		return 100
	}
	return n * 100 / total
}

func megabytes(n int64) float64 { return float64(n) / 1e6 }

// Done erases the line, if one was written, for what the command prints
// next.
func (p *progress) Done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.width > 0 {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.width))
		p.width = 0
	}
}

// Ticking rewrites the line every interval until ctx is done or the
// returned stop is called, for a step that reports nothing while it runs
// (the online verify: the walk is in iapd).
func (p *progress) Ticking(ctx context.Context) (stop func()) {
	if p == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(p.every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				p.Add(0)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// countingReader counts the bytes read through it into a progress.
type countingReader struct {
	r io.Reader
	p *progress
}

func (c countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.Add(int64(n))
	return n, err
}

// countingWriter counts the bytes written through it into a progress.
type countingWriter struct {
	w io.Writer
	p *progress
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.p.Add(int64(n))
	return n, err
}
