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
