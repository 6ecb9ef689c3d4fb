//go:build unix

package badger

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
)

// BenchmarkAuthorizeCaptureAccounts measures authorize+capture on ledgers
// that hold 0, 100 000 and 1 000 000 other accounts (issue 21: the cost
// must stay flat as the ledger grows; docs/performance.md, "At a million
// accounts"). The extra accounts are created through the ledger as
// /iap/1/balance on new tokens creates them; the load is iapload's: 64
// callers over 1 000 funded accounts of service iapload, under cmd/iapd's
// default Go memory limit (48 MiB). With -count, each round runs the
// sub-benchmarks in turn, so a shared machine's noise falls on all of
// them: compare each to accounts=0 of the same round.
//
// Use a fixed amount of work (-benchtime 100000x): the compactions it
// causes are what differs. Besides ns/op, B/op and allocs/op it reports
// the process's CPU time per op (cpu-ns/op), collections per 1 000 ops
// (gc/kop), bytes written to disk per op (disk-B/op), the bytes of new
// Badger tables per level (L0-MiB-written: flushes; Ln-MiB-written:
// compactions into level n) and the tree after the run.
//
// Environment: IAPD_BENCH_CACHE, where grown ledgers are kept between
// runs (default os.TempDir(); building a million takes a minute or two;
// each round works on a copy); IAPD_BENCH_GROWSVC, the service of the
// extra accounts (default sms); IAPD_BENCH_TAG, added to the cache's
// name (for builds with another key layout); IAPD_BENCH_WARM=n, n pairs
// run before the measured ones (a ledger with history too);
// IAPD_BENCH_LEVELS=1, the levels logged after the run;
// IAPD_BENCH_ENGINELOG=file, Badger's own log appended to file;
// IAPD_BENCH_HEAPPROFILE=file, a heap profile taken after the run, the
// ledger still open (live-heap-MiB is the live heap then).
func BenchmarkAuthorizeCaptureAccounts(b *testing.B) {
	for _, n := range []int{0, 100_000, 1_000_000} {
		b.Run("accounts="+strconv.Itoa(n), func(b *testing.B) {
			if n > 0 && testing.Short() {
				b.Skip("grown ledgers take minutes to build the first time")
			}
			dir := b.TempDir()
			if n > 0 {
				dir = copyDir(b, grownLedger(b, n))
			}
			benchAuthorizeCaptureIn(b, dir)
		})
	}
}

const (
	loadAccounts = 1000
	loadCallers  = 64
	loadService  = "iapload"
	memoryLimit  = 48 << 20 // cmd/iapd's default memory_limit
)

func benchAuthorizeCaptureIn(b *testing.B, dir string) {
	l := openTemp(b, dir, nil, func(o *Options) {
		// IAPD_BENCH_ENGINELOG=file appends Badger's own log (each
		// compaction: levels, tables in and out, time) to file.
		if p := os.Getenv("IAPD_BENCH_ENGINELOG"); p != "" {
			f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { f.Close() })
			o.EngineLogger = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo}))
		}
	})
	ctx := context.Background()
	if _, err := l.EnsureService(ctx, storage.Service{Name: loadService}); err != nil {
		b.Fatal(err)
	}
	toks := make([]storage.AccountToken, loadAccounts)
	for i := range toks {
		toks[i] = storage.AccountToken(fmt.Sprintf("load%04d", i))
		if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: loadService, Account: toks[i], Amount: storage.MaxCredits, Kind: storage.EntryRecharge}); err != nil {
			b.Fatal(err)
		}
	}
	// IAPD_BENCH_WARM=n runs n pairs before the measured ones: the
	// steady state of a ledger that also has history.
	if w, _ := strconv.Atoi(os.Getenv("IAPD_BENCH_WARM")); w > 0 {
		var wg sync.WaitGroup
		var next atomic.Int64
		for range loadCallers {
			wg.Go(func() {
				for i := next.Add(1); i <= int64(w) && !b.Failed(); i = next.Add(1) {
					if err := tryAuthorizeCaptureIn(l, loadService, toks[i%loadAccounts]); err != nil {
						b.Error(err)
					}
				}
			})
		}
		wg.Wait()
	}
	prev := debug.SetMemoryLimit(memoryLimit)
	defer debug.SetMemoryLimit(prev)
	runtime.GC()
	var next atomic.Int64
	written := watchTables(b, l)
	gc0, cpu0, wb0 := gcCycles(), cpuTime(), writeBytes()
	b.SetParallelism((loadCallers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := tryAuthorizeCaptureIn(l, loadService, toks[next.Add(1)%loadAccounts]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	for lv, n := range written() {
		if n > 0 {
			b.ReportMetric(float64(n)/(1<<20), fmt.Sprintf("L%d-MiB-written", lv))
		}
	}
	ops := float64(b.N)
	b.ReportMetric(float64(cpuTime()-cpu0)/ops, "cpu-ns/op")
	b.ReportMetric(float64(gcCycles()-gc0)*1000/ops, "gc/kop")
	if wb := writeBytes(); wb >= 0 && wb0 >= 0 {
		b.ReportMetric(float64(wb-wb0)/ops, "disk-B/op")
	}
	var tables int
	var size int64
	for _, li := range l.db.Levels() {
		tables += li.NumTables
		size += li.Size
	}
	runtime.GC()
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(live)
	b.ReportMetric(float64(live[0].Value.Uint64())/(1<<20), "live-heap-MiB")
	if p := os.Getenv("IAPD_BENCH_HEAPPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	b.ReportMetric(float64(tables), "tables")
	b.ReportMetric(float64(size)/(1<<20), "tree-MiB")
	if os.Getenv("IAPD_BENCH_LEVELS") != "" {
		for _, li := range l.db.Levels() {
			if li.NumTables > 0 {
				b.Logf("L%d: %d tables, %.1f MiB (target %.1f MiB, score %.2f)", li.Level, li.NumTables, float64(li.Size)/(1<<20), float64(li.TargetSize)/(1<<20), li.Score)
			}
		}
	}
}

// grownLedger returns a closed ledger directory holding n sms accounts
// created through the ledger, building it the first time.
func grownLedger(b *testing.B, n int) string {
	root := os.Getenv("IAPD_BENCH_CACHE")
	if root == "" {
		root = os.TempDir()
	}
	svc := storage.ServiceName(os.Getenv("IAPD_BENCH_GROWSVC"))
	if svc == "" {
		svc = "sms"
	}
	dir := filepath.Join(root, fmt.Sprintf("iapd-bench-accounts-f%d%s-%s-%d", FormatVersion, os.Getenv("IAPD_BENCH_TAG"), svc, n))
	if _, err := os.Stat(dir); err == nil {
		return dir
	}
	tmp, err := os.MkdirTemp(root, "iapd-bench-growing-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	l, err := Open(Options{Dir: tmp})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := l.EnsureService(ctx, storage.Service{Name: svc, AutoRegister: true}); err != nil {
		b.Fatal(err)
	}
	var pfx [4]byte
	_, _ = rand.Read(pfx[:])
	prefix := hex.EncodeToString(pfx[:])
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 32 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) || failed.Load() != nil {
					return
				}
				tok := storage.AccountToken(fmt.Sprintf("%s%024d", prefix, i))
				if _, err := l.Account(ctx, svc, tok, storage.FirstSight{DBUUID: fmt.Sprintf("db-%s-%d", prefix, i)}); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		b.Fatal(err)
	}
	b.Logf("grew %d accounts in %v into %s", n, time.Since(start).Round(time.Second), dir)
	return dir
}

func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// cpuTime is the process's user and system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// writeBytes is what the process has written to disk (/proc/self/io's
// write_bytes: WAL, journal, flushed and compacted tables), or -1 where
// there is no such file.
func writeBytes() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// watchTables polls the Badger tree's tables until the returned function is
// called, which returns the bytes of the new tables seen at each level:
// level 0's are the flushed memtables, the others the output of
// compactions into that level. A table made and compacted away between two
// polls (10 ms) is missed.
func watchTables(b *testing.B, l *Ledger) func() []int64 {
	seen := make(map[uint64]bool)
	for _, t := range l.db.Tables() {
		seen[t.ID] = true
	}
	var written []int64
	var ranges map[string]int64
	if os.Getenv("IAPD_BENCH_LEVELS") != "" {
		ranges = make(map[string]int64)
		b.Cleanup(func() {
			for r, n := range ranges {
				fmt.Fprintf(os.Stderr, "new tables %s: %.1f MiB\n", r, float64(n)/(1<<20))
			}
		})
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, t := range l.db.Tables() {
				if seen[t.ID] {
					continue
				}
				seen[t.ID] = true
				for len(written) <= t.Level {
					written = append(written, 0)
				}
				written[t.Level] += int64(t.OnDiskSize)
				if ranges != nil && len(t.Left) > 0 && len(t.Right) > 0 {
					ranges[fmt.Sprintf("L%d %s..%s", t.Level, keyHead(t.Left), keyHead(t.Right))] += int64(t.OnDiskSize)
				}
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	return func() []int64 {
		close(stop)
		<-done
		return written
	}
}

func tryAuthorizeCaptureIn(l *Ledger, svc storage.ServiceName, tok storage.AccountToken) error {
	ctx := context.Background()
	tx, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: svc, Account: tok, Amount: 1, TTL: time.Hour})
	if err != nil {
		return err
	}
	_, err = l.Capture(ctx, storage.CaptureRequest{Service: svc, Transaction: tx.Token})
	return err
}

// keyHead is a key's table byte, and its service for the tables keyed by
// one, for the log of IAPD_BENCH_LEVELS.
func keyHead(k []byte) string {
	switch k[0] {
	case pAccount, pEntry, pAggregate, pRechRef:
		if i := bytes.IndexByte(k, 0); i > 0 {
			return string(k[:i])
		}
	}
	return string(k[:1])
}
