package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestProgressLine(t *testing.T) {
	var buf bytes.Buffer
	clk := &fakeClock{t: time.Date(2025, 6, 1, 2, 0, 0, 0, time.UTC)}
	p := &progress{w: &buf, now: clk.Now, every: progressEvery}

	p.Phase("restore: loading", "bytes", 200e6)
	p.Add(10e6)
	if buf.Len() != 0 {
		t.Fatalf("a line before one interval passed: %q", buf.String())
	}
	clk.Advance(progressEvery)
	p.Add(40e6) // 50 MB in 0.25 s
	if got, want := buf.String(), "\rrestore: loading 25% (50.0 of 200.0 MB), 200.0 MB/s, 0s"; got != want {
		t.Fatalf("first line %q, want %q", got, want)
	}
	// Throttled: counts go on, nothing written until the next interval.
	buf.Reset()
	clk.Advance(progressEvery / 2)
	p.Add(50e6)
	if buf.Len() != 0 {
		t.Fatalf("a line within the interval: %q", buf.String())
	}
	clk.Advance(progressEvery*4 - progressEvery/2 - progressEvery) // 1 s since the start
	p.Add(100e6)
	if got, want := buf.String(), "\rrestore: loading 100% (200.0 of 200.0 MB), 200.0 MB/s, 1s"; got != want {
		t.Fatalf("second line %q, want %q", got, want)
	}

	// A new phase: a count with no total; a shorter line blanks the rest
	// of the longer one.
	buf.Reset()
	p.Phase("verify:", "records walked", 0)
	clk.Advance(2 * time.Second)
	p.Set(30000)
	line := "verify: 30000 records walked, 15000/s, 2s"
	pad := strings.Repeat(" ", len("restore: loading 100% (200.0 of 200.0 MB), 200.0 MB/s, 1s")-len(line))
	if got, want := buf.String(), "\r"+line+pad; got != want {
		t.Fatalf("shorter line %q, want %q", got, want)
	}

	// Done erases the line once.
	buf.Reset()
	p.Done()
	p.Done()
	if got, want := buf.String(), "\r"+strings.Repeat(" ", len(line))+"\r"; got != want {
		t.Fatalf("Done wrote %q, want %q", got, want)
	}

	// Unknown size in bytes; time only.
	buf.Reset()
	p.Phase("backup: received", "bytes", 0)
	clk.Advance(4 * time.Second)
	p.Add(8e6)
	p.Done()
	if got := buf.String(); !strings.HasPrefix(got, "\rbackup: received 8.0 MB, 2.0 MB/s, 4s") {
		t.Fatalf("unknown total: %q", got)
	}
	buf.Reset()
	p.Phase("verify: iapd is walking the ledger", "", 0)
	clk.Advance(90 * time.Second)
	p.Add(0)
	if got := buf.String(); got != "\rverify: iapd is walking the ledger, 1m30s" {
		t.Fatalf("time only: %q", got)
	}
}

// A quick operation writes nothing at all: its first line would come
// after one interval.
func TestProgressQuickOperationSilent(t *testing.T) {
	var buf bytes.Buffer
	clk := &fakeClock{t: time.Unix(0, 0)}
	p := &progress{w: &buf, now: clk.Now, every: progressEvery}
	p.Phase("export:", "bytes", 0)
	for i := 0; i < 1000; i++ {
		p.Add(4096)
	}
	clk.Advance(progressEvery / 2)
	p.Add(1)
	p.Done()
	if buf.Len() != 0 {
		t.Fatalf("a quick operation wrote %q", buf.String())
	}
}

// Off a terminal there is no progress, and a nil progress does nothing.
func TestProgressOffTerminal(t *testing.T) {
	var buf bytes.Buffer
	if p := newProgress(&buf, time.Now); p != nil {
		t.Fatal("a progress on a bytes.Buffer")
	}
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if p := newProgress(f, time.Now); p != nil {
		t.Fatal("a progress on a regular file (a cron log)")
	}
	if writesToTerminal(f) {
		t.Fatal("a regular file taken for a terminal")
	}
	var p *progress
	p.Phase("x", "bytes", 1)
	p.Add(1)
	p.Set(1)
	p.Done()
	p.Ticking(context.Background())()
	n, err := io.Copy(io.Discard, countingReader{strings.NewReader("abc"), p})
	if n != 3 || err != nil {
		t.Fatalf("countingReader with no progress: %d, %v", n, err)
	}
}

// Ticking rewrites the line of a step that reports nothing.
func TestProgressTicking(t *testing.T) {
	var buf syncBuffer
	clk := &fakeClock{t: time.Unix(0, 0)}
	p := &progress{w: &buf, now: clk.Now, every: time.Millisecond}
	p.Phase("verify: iapd is walking the ledger", "", 0)
	clk.Advance(3 * time.Second)
	stop := p.Ticking(context.Background())
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(buf.String(), "walking the ledger, 3s"); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no line from Ticking: %q", buf.String())
		}
	}
	stop()
	p.Done()
	if !strings.HasSuffix(buf.String(), "\r") {
		t.Fatalf("Done did not erase the line: %q", buf.String())
	}
}

// BenchmarkProgressAdd is the cost of one count on a terminal's progress
// (a Read of a backup file or a verify callback), the line written at most
// every interval.
func BenchmarkProgressAdd(b *testing.B) {
	p := &progress{w: io.Discard, now: time.Now, every: progressEvery}
	p.Phase("restore: loading", "bytes", int64(b.N)*4096)
	for i := 0; i < b.N; i++ {
		p.Add(4096)
	}
	p.Done()
}
