package sms

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

// BenchmarkSend500 is one Odoo batch (sms.session.batch.size = 500
// numbers, two bodies) through the router, codec, dedupe claims, hold,
// a provider that accepts at once, capture and records.
func BenchmarkSend500(b *testing.B) {
	b.Run("memory", func(b *testing.B) { benchSend500(b, openLedger(b, true)) })
	b.Run("disk", func(b *testing.B) {
		benchSend500(b, openLedgerWith(b, true, badger.Options{Dir: b.TempDir()}))
	})
}

func benchSend500(b *testing.B, l *badger.Ledger) {
	e := newEnvOn(b, l, Settings{}, &fakeSender{name: "fake"})
	if _, err := e.ledger.Recharge(b.Context(), storage.RechargeRequest{Service: storage.SMS, Account: tokA, Amount: storage.MaxCredits / 2, Kind: storage.EntryRecharge}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var groups []map[string]any
		for g := 0; g < 2; g++ {
			var numbers []map[string]string
			for n := 0; n < 250; n++ {
				numbers = append(numbers, map[string]string{"uuid": fmt.Sprintf("%016x%08x%08x", i, g, n), "number": fmt.Sprintf("+3247%07d", n)})
			}
			groups = append(groups, map[string]any{"content": fmt.Sprintf("Body %d", g), "numbers": numbers})
		}
		env := e.call("/api/sms/3/send", map[string]any{"account_token": tokA, "dbuuid": "db", "messages": groups})
		if _, ok := env["result"]; !ok {
			b.Fatalf("%v", env)
		}
	}
}

// FuzzSegments: every text is at least one segment, never more than one
// per character, and GSM-7 only for texts of the GSM alphabet.
func FuzzSegments(f *testing.F) {
	for _, s := range []string{"", "hello", "€€€", "😀ł", string([]byte{0xff, 0xfe})} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, enc := Segments(s)
		if n < 1 || n > utf8.RuneCountInString(s)+1 {
			t.Fatalf("%q: %d segments", s, n)
		}
		if enc == GSM7 {
			for _, r := range s {
				if gsmCost[r] == 0 {
					t.Fatalf("%q: GSM-7 with %q", s, r)
				}
			}
		}
	})
}

// FuzzNormalizeNumber: what it accepts is E.164, and stays so.
func FuzzNormalizeNumber(f *testing.F) {
	for _, s := range []string{"+32470123456", "0032 470", "+1 (415) 555-0100", "++1", "0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := normalizeNumber(s)
		if !ok {
			return
		}
		if again, ok2 := normalizeNumber(n); !ok2 || again != n || n[0] != '+' || len(n) < 9 || len(n) > 16 {
			t.Fatalf("%q → %q not stable E.164", s, n)
		}
	})
}

// BenchmarkSendOneDisk is Odoo's most frequent send, one number through
// /api/sms/3/send, 8 at once (Odoo's workers), on an on-disk ledger
// through the router, codec, claim, hold, a provider that accepts at
// once, capture and records. It reports each request's p50 and p99.
func BenchmarkSendOneDisk(b *testing.B) {
	e := newEnvOn(b, openLedgerWith(b, true, badger.Options{Dir: b.TempDir()}), Settings{}, &fakeSender{name: "fake"})
	if _, err := e.ledger.Recharge(b.Context(), storage.RechargeRequest{Service: storage.SMS, Account: tokA, Amount: storage.MaxCredits / 2, Kind: storage.EntryRecharge}); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, b.N)
	next := make(chan int)
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t0 := time.Now()
				env := e.call("/api/sms/3/send", map[string]any{"account_token": tokA, "dbuuid": "db",
					"messages": []map[string]any{{"content": "hi", "numbers": []map[string]string{{"uuid": fmt.Sprintf("%032x", i), "number": "+32470000001"}}}}})
				lat[i] = time.Since(t0)
				if r, ok := env["result"]; !ok || !strings.Contains(string(r), `"success"`) {
					b.Errorf("%v", env)
				}
			}
		}()
	}
	for i := 0; i < b.N; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
