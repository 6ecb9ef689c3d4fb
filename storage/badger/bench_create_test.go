package badger

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/iapd/iapd/storage"
)

// BenchmarkAccountCreate creates new accounts (first sight, trial credit)
// from 32 callers: the rate an anonymous /iap/1/balance flood reaches.
func BenchmarkAccountCreate(b *testing.B) {
	l := openTemp(b, b.TempDir(), nil, nil)
	ctx := context.Background()
	if _, err := l.EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true, TrialCredits: storage.Scale}); err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tok := storage.AccountToken(fmt.Sprintf("%032x", n.Add(1)))
			if _, err := l.Account(ctx, "sms", tok, storage.FirstSight{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRechargeRef credits accounts with a ref (an idempotent
// recharge, as a payment provider's callback makes) from 16 callers, each
// on accounts of its own, every ref new.
func BenchmarkRechargeRef(b *testing.B) {
	l := openTemp(b, b.TempDir(), nil, nil)
	ctx := context.Background()
	if _, err := l.EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true}); err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: storage.AccountToken(fmt.Sprintf("acct%04d", i%1000)),
				Amount: storage.Scale, Kind: storage.EntryRecharge, Ref: fmt.Sprintf("pay-%d", i)}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
