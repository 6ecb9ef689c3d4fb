package journal

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// startTemp starts a journal in a new directory.
func startTemp(t *testing.T) (*Journal, string) {
	t.Helper()
	dir := t.TempDir()
	j, err := Start(dir, 0, discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return j, dir
}

// Appended records are read back by Walk, in order, with their writes;
// Start continues above the last seq; Close(true) deletes every file.
func TestAppendWaitWalk(t *testing.T) {
	j, dir := startTemp(t)
	var last uint64
	for i := range 100 {
		seq, err := j.Append([]Write{{Key: []byte("k" + strconv.Itoa(i)), Value: []byte("v")}, {Key: []byte("d"), Del: true}})
		if err != nil {
			t.Fatal(err)
		}
		last = seq
	}
	if err := j.Wait(last); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(false); err != nil {
		t.Fatal(err)
	}
	var got []uint64
	scan, err := Walk(dir, func(_ Pos, seq uint64, ws []Write) error {
		if len(ws) != 2 || string(ws[0].Key) != "k"+strconv.Itoa(len(got)) || string(ws[0].Value) != "v" || !ws[1].Del {
			return fmt.Errorf("record %d: %+v", seq, ws)
		}
		got = append(got, seq)
		return nil
	})
	if err != nil || len(scan.Damages) != 0 || len(got) != 100 || got[0] != 1 || got[99] != 100 || scan.Top != 100 {
		t.Fatalf("walk: %d records, damages %+v, %v", len(got), scan.Damages, err)
	}

	for _, f := range scan.Files {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	j, err = Start(dir, scan.Top, discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := j.Append([]Write{{Key: []byte("x"), Value: []byte("y")}})
	if err != nil || seq != 101 {
		t.Fatalf("append after restart: seq %d, %v", seq, err)
	}
	if err := j.Close(true); err != nil {
		t.Fatal(err)
	}
	if files, _ := List(dir); len(files) != 0 {
		t.Fatalf("Close(true) left %v", files)
	}
}

// Files rotate at fileSize; Covered deletes the closed files whose
// records are all at or below the marker, never the active one.
func TestRotateAndCovered(t *testing.T) {
	old := fileSize
	fileSize = 4 << 10
	defer func() { fileSize = old }()
	j, dir := startTemp(t)
	value := []byte(strings.Repeat("v", 500))
	var last uint64
	for range 40 {
		seq, err := j.Append([]Write{{Key: []byte("k"), Value: value}})
		if err != nil {
			t.Fatal(err)
		}
		if err := j.Wait(seq); err != nil { // one round per record: rotations between them
			t.Fatal(err)
		}
		last = seq
	}
	files, _ := List(dir)
	if len(files) < 3 {
		t.Fatalf("%d files after 20 KB in 4 KB files", len(files))
	}
	j.Covered(last)
	left, _ := List(dir)
	if len(left) != 1 {
		t.Fatalf("after Covered(%d): %v", last, left)
	}
	if err := j.Close(false); err != nil {
		t.Fatal(err)
	}
}

// The durability wait honours its context (issue 13): a record that is
// not yet durable when ctx ends is answered ErrNotYetDurable (wrapping
// ctx's error), never a failure; a durable one is answered nil whatever
// ctx.
func TestWaitHonoursContext(t *testing.T) {
	j, _ := startTemp(t)
	defer j.Close(false)
	seq, err := j.Append([]Write{{Key: []byte("k"), Value: []byte("v")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Wait(seq); err != nil {
		t.Fatal(err)
	}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if err := j.WaitCtx(done, seq); err != nil {
		t.Fatalf("a durable record: %v", err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	err = j.WaitCtx(short, seq+1) // never written
	if !errors.Is(err, ErrNotYetDurable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a record not durable at the deadline: %v", err)
	}
}

// A failed write fails its waiters and every later call: nothing is
// durable after it.
func TestFailureIsSticky(t *testing.T) {
	j, _ := startTemp(t)
	// The writer owns j.f; closing it here makes its next write fail.
	j.f.Close()
	seq, err := j.Append([]Write{{Key: []byte("k"), Value: []byte("v")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Wait(seq); err == nil {
		t.Fatal("Wait after a failed write: nil")
	}
	if !j.Failed() {
		t.Fatal("Failed() false after a failed write")
	}
	if _, err := j.Append(nil); err == nil {
		t.Fatal("Append after a failure: nil")
	}
	_ = j.Close(false)
}

// records encodes records first..last, one write each, and returns each
// record's offset.
func records(first, last uint64) (b []byte, offs []int) {
	for seq := first; seq <= last; seq++ {
		offs = append(offs, len(b))
		b = AppendRecord(b, seq, []Write{{Key: []byte("key-" + strconv.FormatUint(seq, 10)), Value: []byte("value")}})
	}
	return b, offs
}

func writeFile(t *testing.T, dir string, first uint64, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, FileName(first)), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Classify tells a torn tail (what a crash leaves: nothing valid after
// it, in the newest file) from corruption (valid records after a bad one,
// or damage in a file that is not the newest), names the corruption's
// file and offset, and sets apart damage the caller's marker covers.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name        string
		build       func(t *testing.T, dir string) (badOff int)
		mark        uint64
		torn, cover int
		corruptIn   uint64 // the first seq of the file named; 0: no corruption
	}{
		{"clean", func(t *testing.T, dir string) int {
			b, _ := records(1, 10)
			writeFile(t, dir, 1, b)
			return -1
		}, 0, 0, 0, 0},
		{"torn tail", func(t *testing.T, dir string) int {
			b, _ := records(1, 10)
			writeFile(t, dir, 1, b[:len(b)-4])
			return -1
		}, 0, 1, 0, 0},
		{"zeros after the last record", func(t *testing.T, dir string) int {
			b, _ := records(1, 10)
			writeFile(t, dir, 1, append(b, make([]byte, 4096)...))
			return -1
		}, 0, 1, 0, 0},
		{"bit flip with valid records after", func(t *testing.T, dir string) int {
			b, offs := records(1, 10)
			b[offs[4]+10] ^= 0x40
			writeFile(t, dir, 1, b)
			return offs[4]
		}, 0, 0, 0, 1},
		{"bit flip the marker covers", func(t *testing.T, dir string) int {
			b, offs := records(1, 10)
			b[offs[4]+10] ^= 0x40
			writeFile(t, dir, 1, b)
			return -1
		}, 7, 0, 1, 0},
		{"torn end of an older file", func(t *testing.T, dir string) int {
			b, offs := records(1, 5)
			writeFile(t, dir, 1, b[:len(b)-3])
			b2, _ := records(6, 8)
			writeFile(t, dir, 6, b2)
			return offs[4]
		}, 0, 0, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bad := tc.build(t, dir)
			scan, err := Walk(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			v := scan.Classify(tc.mark)
			if len(v.Torn) != tc.torn || len(v.Covered) != tc.cover || (v.Corrupt != nil) != (tc.corruptIn != 0) {
				t.Fatalf("torn %d, covered %d, corrupt %+v; want %d, %d, corrupt %v (damages %+v)",
					len(v.Torn), len(v.Covered), v.Corrupt, tc.torn, tc.cover, tc.corruptIn != 0, scan.Damages)
			}
			if v.Corrupt != nil && (filepath.Base(v.Corrupt.Path) != FileName(tc.corruptIn) || v.Corrupt.At.Off != int64(bad) || v.Corrupt.Why == "") {
				t.Fatalf("corruption named %s at %d (%s); want %s at %d", v.Corrupt.Path, v.Corrupt.At.Off, v.Corrupt.Why, FileName(tc.corruptIn), bad)
			}
		})
	}
}

// MoveAside moves every file into one new folder with the description;
// the directory then holds no journal file, and a second move in the same
// second gets a folder of its own.
func TestMoveAside(t *testing.T) {
	dir := t.TempDir()
	b, _ := records(1, 3)
	writeFile(t, dir, 1, b)
	writeFile(t, dir, 4, b[:5])
	files, err := List(dir)
	if err != nil || len(files) != 2 {
		t.Fatalf("%v %v", files, err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	aside, err := MoveAside(dir, files, []byte(`{"file":"x"}`), at)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(aside) != AsideDir+"20260102T030405Z" {
		t.Errorf("folder %s", aside)
	}
	if left, _ := List(dir); len(left) != 0 {
		t.Errorf("left in the directory: %v", left)
	}
	moved, _ := List(aside)
	js, err := os.ReadFile(filepath.Join(aside, DamageFile))
	if len(moved) != 2 || err != nil || !json.Valid(js) {
		t.Fatalf("moved %v, %s: %q %v", moved, DamageFile, js, err)
	}
	writeFile(t, dir, 9, b)
	files, _ = List(dir)
	if again, err := MoveAside(dir, files, []byte(`{}`), at); err != nil || again == aside {
		t.Fatalf("second move: %s, %v", again, err)
	}
}

// The crash test: a child process appends records from 8 goroutines and
// prints each seq once Wait returned (acknowledged); it is killed with
// SIGKILL. Walk then finds every acknowledged record with its writes, and
// no damage but a torn tail. Small files make the child rotate often, so
// that kills also land in rotations.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("the crash test starts child processes")
	}
	for cycle := range 6 {
		dir := t.TempDir()
		acked := runCrashChild(t, dir, time.Duration(150+cycle*70)*time.Millisecond)
		if len(acked) == 0 {
			t.Fatalf("cycle %d: the child acknowledged nothing", cycle)
		}
		seen := map[uint64]bool{}
		scan, err := Walk(dir, func(_ Pos, seq uint64, ws []Write) error {
			if len(ws) != 1 || string(ws[0].Key) != "crash-"+strconv.FormatUint(seq, 10) || len(ws[0].Value) != 300 {
				return fmt.Errorf("record %d holds %+v", seq, ws)
			}
			seen[seq] = true
			return nil
		})
		if err != nil {
			t.Fatalf("cycle %d: %v", cycle, err)
		}
		if v := scan.Classify(0); v.Corrupt != nil || len(v.Covered) != 0 {
			t.Fatalf("cycle %d: a crash left corruption: %+v", cycle, scan.Damages)
		}
		for _, seq := range acked {
			if !seen[seq] {
				t.Fatalf("cycle %d: acknowledged record %d lost (%d acknowledged, %d read, %d files)", cycle, seq, len(acked), scan.Records, len(scan.Files))
			}
		}
		t.Logf("cycle %d: %d acknowledged, %d read, %d files, %d damages", cycle, len(acked), scan.Records, len(scan.Files), len(scan.Damages))
	}
}

const crashChildEnv = "IAPD_JOURNAL_CRASH_CHILD"

// runCrashChild runs TestCrashChild in dir, kills it d after it started
// and returns the seqs it acknowledged.
func runCrashChild(t *testing.T, dir string, d time.Duration) []uint64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		acked   []uint64
		started = make(chan struct{})
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		var once sync.Once
		for sc.Scan() {
			line := sc.Text()
			if line == "started" {
				once.Do(func() { close(started) })
			} else if s, ok := strings.CutPrefix(line, "ack "); ok {
				if seq, err := strconv.ParseUint(s, 10, 64); err == nil {
					acked = append(acked, seq)
				}
			}
		}
		once.Do(func() { close(started) })
	}()
	select {
	case <-started:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("the crash child did not start")
	}
	time.Sleep(d)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	<-done
	return acked
}

// TestCrashChild is the child of TestCrash: it appends until killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("run by TestCrash")
	}
	fileSize = 64 << 10
	j, err := Start(dir, 0, discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	fmt.Fprintln(w, "started")
	w.Flush()
	value := []byte(strings.Repeat("v", 300))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				// One Append at a time, so that the key can name the seq
				// the record gets.
				mu.Lock()
				seq, err := j.Append([]Write{{Key: []byte("crash-" + strconv.FormatUint(j.LastSeq()+1, 10)), Value: value}})
				mu.Unlock()
				if err != nil {
					return
				}
				if err := j.Wait(seq); err != nil {
					return
				}
				mu.Lock()
				fmt.Fprintf(w, "ack %d\n", seq)
				w.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}
