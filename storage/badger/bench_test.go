package badger

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
)

// benchLedger opens an on-disk ledger with a service and reports the mean
// group-sync batch when the benchmark ends.
func benchLedger(b *testing.B) *Ledger {
	var rounds, callers atomic.Int64
	l := openTemp(b, b.TempDir(), nil, func(o *Options) {
		o.OnSync = func(batch int, d time.Duration) {
			rounds.Add(1)
			callers.Add(int64(batch))
		}
	})
	if _, err := l.EnsureService(context.Background(), storage.Service{Name: "sms", AutoRegister: true}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if r := rounds.Load(); r > 0 {
			b.ReportMetric(float64(callers.Load())/float64(r), "callers/sync")
		}
	})
	return l
}

func authorizeCapture(b *testing.B, l *Ledger, tok storage.AccountToken) {
	if err := tryAuthorizeCapture(l, tok); err != nil {
		b.Fatal(err)
	}
}

// tryAuthorizeCapture is authorizeCapture for goroutines of the
// benchmark's own, which must not call b.Fatal.
func tryAuthorizeCapture(l *Ledger, tok storage.AccountToken) error {
	ctx := context.Background()
	tx, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: tok, Amount: 1, TTL: time.Hour})
	if err != nil {
		return err
	}
	_, err = l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: tx.Token})
	return err
}

// BenchmarkAuthorizeCaptureDistinct: each goroutine works on its own
// account (one op = authorize + capture, two durable writes).
func BenchmarkAuthorizeCaptureDistinct(b *testing.B) {
	l := benchLedger(b)
	ctx := context.Background()
	var next atomic.Int64
	b.SetParallelism(16) // many in-flight callers, as a server has
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		tok := storage.AccountToken(fmt.Sprintf("acct%d", next.Add(1)))
		if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: tok, Amount: storage.MaxCredits, Kind: storage.EntryRecharge}); err != nil {
			b.Error(err)
			return
		}
		for pb.Next() {
			authorizeCapture(b, l, tok)
		}
	})
}

// BenchmarkAuthorizeCaptureHot: every goroutine works on the same account.
func BenchmarkAuthorizeCaptureHot(b *testing.B) {
	l := benchLedger(b)
	ctx := context.Background()
	if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "hot", Amount: storage.MaxCredits, Kind: storage.EntryRecharge}); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			authorizeCapture(b, l, "hot")
		}
	})
}

// BenchmarkAuthorizeCaptureSerial: one caller, so every write pays a whole
// sync round (the latency floor).
func BenchmarkAuthorizeCaptureSerial(b *testing.B) {
	l := benchLedger(b)
	ctx := context.Background()
	if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "one", Amount: storage.MaxCredits, Kind: storage.EntryRecharge}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		authorizeCapture(b, l, "one")
	}
}

// BenchmarkBalance reads an account (LookupAccount) from parallel readers
// on an idle ledger.
func BenchmarkBalance(b *testing.B) {
	l := benchLedger(b)
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: storage.AccountToken(fmt.Sprintf("acct%d", i)), Amount: storage.Scale, Kind: storage.EntryRecharge}); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		tok := storage.AccountToken(fmt.Sprintf("acct%d", next.Add(1)%100))
		for pb.Next() {
			if _, err := l.LookupAccount(ctx, "sms", tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkBalanceUnderWrites reads while 16 writers keep sync rounds
// busy: a read then waits for the round that makes what it saw durable.
func BenchmarkBalanceUnderWrites(b *testing.B) {
	l := benchLedger(b)
	ctx := context.Background()
	if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "r", Amount: storage.Scale, Kind: storage.EntryRecharge}); err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := storage.AccountToken(fmt.Sprintf("w%d", i))
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: tok, Amount: 1, Kind: storage.EntryRecharge}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.LookupAccount(ctx, "sms", "r"); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	close(stop)
	wg.Wait()
}

// BenchmarkAuthorizeCaptureGrown measures authorize+capture on a ledger
// that has already grown (grownPairs pairs over grownAccounts accounts,
// some 35 MB of Badger tables), with 64 callers spread over those
// accounts as iapload's are: the steady state, where Badger's compactions
// have levels to rewrite (docs/performance.md, "Longer runs"), rather than
// the first seconds of an empty ledger the other benchmarks see. The
// ledger is grown once and shared by the sub-benchmark's rounds (it keeps
// growing); -benchtime=5s or more gives the compactions time to show.
func BenchmarkAuthorizeCaptureGrown(b *testing.B) {
	const (
		grownAccounts = 1000
		grownPairs    = 100_000
		callers       = 64
	)
	l := benchLedger(b)
	ctx := context.Background()
	toks := make([]storage.AccountToken, grownAccounts)
	for i := range toks {
		toks[i] = storage.AccountToken(fmt.Sprintf("acct%04d", i))
		if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: toks[i], Amount: storage.MaxCredits, Kind: storage.EntryRecharge}); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for {
				n := next.Add(1)
				if n > grownPairs || b.Failed() {
					return
				}
				if err := tryAuthorizeCapture(l, toks[n%grownAccounts]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	b.Run(fmt.Sprintf("pairs=%d", grownPairs), func(b *testing.B) {
		b.SetParallelism((callers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				authorizeCapture(b, l, toks[next.Add(1)%grownAccounts])
			}
		})
	})
}
