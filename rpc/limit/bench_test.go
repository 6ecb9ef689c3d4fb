package limit

import (
	"strconv"
	"testing"
	"time"
)

// BenchmarkTableAllow: one Allow on a 16384-slot table, keys drawn from
// a set four times its size (evictions included), from parallel callers.
func BenchmarkTableAllow(b *testing.B) {
	tb := NewTable(16384, Rate{Burst: 1000, Per: time.Hour})
	keys := make([]string, 65536)
	for i := range keys {
		keys[i] = "198.51.100." + strconv.Itoa(i)
	}
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			tb.Allow(keys[i&(len(keys)-1)], now)
			i += 7919
		}
	})
}
