package limit

import (
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func TestTableBurstAndRefill(t *testing.T) {
	tb := NewTable(64, Rate{Burst: 3, Per: 3 * time.Minute}) // one a minute
	for i := range 3 {
		if !tb.Allow("a", t0) {
			t.Fatalf("take %d of the burst refused", i+1)
		}
	}
	if tb.Allow("a", t0) {
		t.Fatal("4th take within the burst allowed")
	}
	if w := tb.Wait("a", t0); w != time.Minute {
		t.Fatalf("Wait = %v, want 1m", w)
	}
	if tb.Allow("a", t0.Add(59*time.Second)) {
		t.Fatal("allowed before a token refilled")
	}
	if !tb.Allow("a", t0.Add(61*time.Second)) {
		t.Fatal("refused after a token refilled")
	}
	// Refill stops at the burst.
	later := t0.Add(time.Hour)
	for i := range 3 {
		if !tb.Allow("a", later) {
			t.Fatalf("take %d after an hour refused", i+1)
		}
	}
	if tb.Allow("a", later) {
		t.Fatal("the bucket refilled above its burst")
	}
}

func TestTableAllowN(t *testing.T) {
	tb := NewTable(8, Rate{Burst: 10, Per: time.Hour})
	if !tb.AllowN("k", t0, 7) || tb.AllowN("k", t0, 4) || !tb.AllowN("k", t0, 3) || tb.Allow("k", t0) {
		t.Fatal("AllowN must take all or nothing")
	}
	if !tb.AllowN("k", t0, 0) {
		t.Fatal("AllowN(0) refused")
	}
}

// TestTableFairness: a key drained to nothing leaves every other key its
// full burst, even when the table is small and full of keys.
func TestTableFairness(t *testing.T) {
	tb := NewTable(16, Rate{Burst: 2, Per: time.Hour})
	for tb.Allow("attacker", t0) {
	}
	for i := range 1000 {
		k := fmt.Sprint("customer-", i)
		if !tb.Allow(k, t0) {
			t.Fatalf("%s refused after the attacker drained its own bucket", k)
		}
	}
}

// TestTableBoundedMemory: a million distinct keys leave the table its
// size, and a key in active use keeps its state against a flood of keys
// that each used a token once (the flood takes the fuller slots).
func TestTableBoundedMemory(t *testing.T) {
	tb := NewTable(4096, Rate{Burst: 5, Per: time.Hour})
	n := tb.Slots()
	for i := range 1_000_000 {
		tb.Allow(fmt.Sprint("k", i), t0)
	}
	if tb.Slots() != n || len(tb.slots) != n || cap(tb.slots) != n {
		t.Fatalf("table grew: %d slots, want %d", len(tb.slots), n)
	}
	// Wait reads the bucket without taking: a drained key that lost its
	// slot would show 0 (a fresh bucket). With 1e6 keys through 4096
	// slots it may have been evicted (fail open); the table's contract
	// is only that it never refuses a fresh key.
	for i := range 100 {
		if !tb.Allow(fmt.Sprint("fresh-", i), t0) {
			t.Fatalf("fresh key %d refused in a flooded table", i)
		}
	}
}

// TestTableEvictsFullestFirst: a drained key keeps its slot against
// newcomers that have another candidate slot (holding a fuller bucket).
func TestTableEvictsFullestFirst(t *testing.T) {
	tb := NewTable(8, Rate{Burst: 3, Per: time.Hour})
	for tb.Allow("drained", t0) {
	}
	home := tb.home("drained")
	n := 0
	for i := 0; n < 200; i++ {
		k := fmt.Sprint("new", i)
		if a, b := tb.candidates(k); a == home && b == home {
			continue // its only slot is the drained key's: it must take it
		}
		tb.Allow(k, t0)
		n++
	}
	if tb.Allow("drained", t0) {
		t.Fatal("the drained key was evicted in favour of fuller buckets")
	}
}

// candidates returns the two slot indexes of key.
func (t *Table) candidates(key string) (uint64, uint64) {
	h := maphash.String(t.seed, key)
	return h & t.mask, (h>>32 ^ h*0x9e3779b97f4a7c15) & t.mask
}

// home returns the slot index key owns (-1: none).
func (t *Table) home(key string) uint64 {
	fp := maphash.String(t.seed, key) | 1
	for i := range t.slots {
		if t.slots[i].fp == fp {
			return uint64(i)
		}
	}
	return ^uint64(0)
}

func TestTableConcurrent(t *testing.T) {
	tb := NewTable(1024, Rate{Burst: 100, Per: time.Hour})
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if tb.Allow("shared", t0) {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
				tb.Allow(fmt.Sprint("own", g), t0)
			}
		}()
	}
	wg.Wait()
	if allowed != 100 {
		t.Fatalf("400 concurrent takes from a bucket of 100: %d allowed", allowed)
	}
}

func TestBucket(t *testing.T) {
	b := NewBucket(Rate{Burst: 2, Per: 2 * time.Second})
	for i, want := range []bool{true, true, false} {
		if b.Allow(t0) != want {
			t.Fatalf("take %d at once: %v, want %v (burst of 2)", i+1, !want, want)
		}
	}
	if !b.Allow(t0.Add(time.Second)) || b.Allow(t0.Add(time.Second)) {
		t.Fatal("refill of one a second not kept")
	}
	z := NewBucket(Rate{})
	if z.Allow(t0) {
		t.Fatal("the zero rate allowed")
	}
}

type countRefusals map[string]int

func (c countRefusals) Refused(r string) { c[r]++ }

func TestReporter(t *testing.T) {
	var buf bytes.Buffer
	c := countRefusals{}
	r := NewReporter(c, slog.New(slog.NewTextHandler(&buf, nil)), time.Minute)
	now := t0
	r.now = func() time.Time { return now }
	for range 100 {
		r.Refuse("alert_recipient", "alert e-mail refused", "to", "a***@example.com")
	}
	r.Refuse("account_address", "account creation refused")
	now = now.Add(2 * time.Minute)
	r.Refuse("alert_recipient", "alert e-mail refused")
	if c["alert_recipient"] != 101 || c["account_address"] != 1 {
		t.Fatalf("counted %v", c)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d log lines, want 3 (one per reason per minute):\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[2], "refused_since_last_line=99") || !strings.Contains(lines[0], "level=WARN") {
		t.Fatalf("log lines:\n%s", buf.String())
	}
	var nilR *Reporter
	nilR.Refuse("x", "y") // no panic
}

func TestClientContext(t *testing.T) {
	ctx := WithClient(context.Background(), "\x0a\x00\x00\x01")
	if Client(ctx) != "\x0a\x00\x00\x01" || Client(context.Background()) != "" {
		t.Fatal("client key not carried")
	}
}

// TestAlertGate: the account bound holds across the services of a
// token, the recipient bound across accounts; each refusal is counted;
// the buckets refill.
func TestAlertGate(t *testing.T) {
	cfg := Config{AlertEmailsPerAccount: Rate{Burst: 6, Per: 24 * time.Hour}, AlertEmailsPerRecipient: Rate{Burst: 3, Per: 24 * time.Hour}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c := countRefusals{}
	g := NewAlertGate(cfg, NewReporter(c, nil, 0))
	// Four services of one token, 2 recipients each.
	sent := 0
	for _, svc := range []string{"sms", "snailmail", "reveal", "partner_autocomplete"} {
		for _, to := range []string{"c@x.com", "d@x.com"} {
			if g.AllowEmail(svc, "tok1", to, t0) {
				sent++
			}
		}
	}
	if sent != 6 || c[ReasonAlertAccount] != 2 {
		t.Fatalf("4 services × 2: %d sent (want 6), %v", sent, c)
	}
	// One recipient, many accounts: 3 a day, case and spaces ignored.
	sent = 0
	for i := range 10 {
		if g.AllowEmail("sms", fmt.Sprint("t", i), []string{"victim@x.com", " Victim@X.com"}[i%2], t0) {
			sent++
		}
	}
	if sent != 3 || c[ReasonAlertRecipient] != 7 {
		t.Fatalf("one recipient, 10 accounts: %d sent, %v", sent, c)
	}
	// A day later both have room again.
	if !g.AllowEmail("sms", "tok1", "victim@x.com", t0.Add(25*time.Hour)) {
		t.Fatal("no alert a day later")
	}
}

func TestConfigRates(t *testing.T) {
	var c Config
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.AccountsPerAddress != DefaultAccountsPerAddress || c.AlertRecipients != 10 {
		t.Fatalf("defaults: %+v", c)
	}
	for in, want := range map[string]Rate{"1000/1h": {1000, time.Hour}, " 20 / 24h ": {20, 24 * time.Hour}} {
		if r, err := ParseRate(in); err != nil || r != want {
			t.Errorf("ParseRate(%q) = %v, %v", in, r, err)
		}
	}
	for _, in := range []string{"0/1h", "10", "10/0s", "-1/1h", "x/1h", "10/-1h", "10/1x"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) accepted", in)
		}
	}
	if err := (&Config{AlertRecipients: 51}).Validate(); err == nil {
		t.Error("alert_recipients 51 accepted")
	}
}

func TestKeyString(t *testing.T) {
	for key, want := range map[string]string{"": "", "\xcb\x00\x71\x07": "203.0.113.7",
		"\x20\x01\x0d\xb8\x00\x01\x00\x02": "2001:db8:1:2::/64"} {
		if got := KeyString(key); got != want {
			t.Errorf("KeyString(%q) = %q, want %q", key, got, want)
		}
	}
}
