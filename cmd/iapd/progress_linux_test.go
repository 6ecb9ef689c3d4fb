package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

// openPTY returns the terminal side of a new pseudo-terminal and a
// function returning what was written to it so far (read from the master
// side until the test ends).
func openPTY(tb testing.TB) (term *os.File, written func() string) {
	tb.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		tb.Fatalf("opening a pseudo-terminal: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		tb.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		tb.Fatal(err)
	}
	term, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	var (
		wg  sync.WaitGroup
		buf syncBuffer
	)
	wg.Add(1)
	go func() { defer wg.Done(); _, _ = io.Copy(&buf, master) }()
	tb.Cleanup(func() { term.Close(); master.Close(); wg.Wait() })
	return term, buf.String
}

// bigBackup builds a ledger of accounts×perAccount recharge entries
// through the ledger (32 callers) and returns a backup file of it.
func bigBackup(tb testing.TB, accounts, perAccount int) string {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	l, err := badger.Open(badger.Options{Dir: filepath.Join(dir, "src")})
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	if _, err := l.EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true}); err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := w; a < accounts; a += 32 {
				tok := storage.AccountToken(fmt.Sprintf("%032x", a))
				for i := 0; i < perAccount; i++ {
					if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: tok, Amount: storage.Scale, Kind: storage.EntryRecharge}); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		tb.Fatal(err)
	}
	file := filepath.Join(dir, "big.iapdbak")
	f, err := os.Create(file)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := l.Backup(ctx, f); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return file
}

// restoreInto runs iapd restore of file into a new directory, stderr as
// given, and fails unless it restored want entries.
func restoreInto(tb testing.TB, file string, stderr io.Writer, want int) {
	tb.Helper()
	var out strings.Builder
	dir := filepath.Join(tb.TempDir(), "data")
	if err := run(context.Background(), []string{"restore", "-data", dir, file}, func(string) string { return "" }, strings.NewReader(""), &out, stderr); err != nil {
		tb.Fatalf("restore: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), fmt.Sprintf("%d entries,", want)) {
		tb.Fatalf("restore did not restore %d entries:\n%s", want, out.String())
	}
}

// BenchmarkRestoreProgress restores a 180 000-entry ledger with stderr on
// a pseudo-terminal (progress lines shown) and on /dev/null (none), the
// two alternating (which goes first too) so that a shared machine's drift
// falls on both: terminal/off is the cost of showing progress.
func BenchmarkRestoreProgress(b *testing.B) {
	const accounts, per = 3000, 60
	file := bigBackup(b, accounts, per)
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()
	term, written := openPTY(b)
	var off, on time.Duration
	timed := func(stderr *os.File) time.Duration {
		start := time.Now()
		restoreInto(b, file, stderr, accounts*per)
		return time.Since(start)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			off += timed(devnull)
			on += timed(term)
		} else {
			on += timed(term)
			off += timed(devnull)
		}
	}
	b.ReportMetric(off.Seconds()/float64(b.N), "off-s/op")
	b.ReportMetric(on.Seconds()/float64(b.N), "terminal-s/op")
	b.ReportMetric(on.Seconds()/off.Seconds(), "terminal/off")
	b.Logf("progress lines written to the terminal: %d (last: %q)", strings.Count(written(), "\r")/2, lastProgressLine(written()))
}

// lastProgressLine returns the last progress line in a terminal's output.
func lastProgressLine(s string) string {
	lines := strings.FieldsFunc(s, func(r rune) bool { return r == '\r' || r == '\n' })
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return l
		}
	}
	return ""
}
