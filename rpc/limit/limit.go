// Package limit holds the abuse limits' building blocks: keyed token
// buckets in tables of fixed size (memory never grows with the number of
// keys an attacker makes up), a single bucket for global bounds, the
// client address of a request, and the refusal reporter (a metric and a
// rate-limited warning per refusal).
//
// It imports fasthttp (for the client address) and the standard library
// only; rpc's handlers, the portal, the alert dispatcher and cmd/iapd use it.
package limit

import (
	"hash/maphash"
	"sync"
	"time"
)

// Rate is a token bucket's shape: Burst events at once, refilled
// continuously at Burst per Per. The zero Rate allows nothing.
type Rate struct {
	Burst int
	Per   time.Duration
}

// perNano is the refill in tokens per nanosecond.
func (r Rate) perNano() float64 {
	if r.Per <= 0 {
		return 0
	}
	return float64(r.Burst) / float64(r.Per)
}

// Table is a set of token buckets keyed by strings, in a fixed number of
// slots. A key hashes (with a random seed) to two candidate slots and
// owns at most one of them, recognised by a 64-bit fingerprint, so two
// keys never share a bucket. A key not in the table takes an empty slot
// or one whose bucket is full (forgetting it loses nothing); when both
// candidates are in use, it takes the one with more tokens, whose key
// then starts afresh when it comes back. So with more busy keys than
// slots the table errs on allowing, never on refusing an innocent key:
// pair it with a global Bucket. Safe for concurrent use.
type Table struct {
	mu    sync.Mutex
	seed  maphash.Seed
	rate  float64 // tokens per nanosecond
	burst float64
	mask  uint64
	slots []slot
}

type slot struct {
	fp     uint64 // fingerprint of the owning key; 0: free
	tokens float64
	last   int64 // unix nanos of the last refill
}

// NewTable returns a table of at least n slots (rounded up to a power of
// two, at least 2) with buckets of rate r. Its memory is 24 bytes a slot.
func NewTable(n int, r Rate) *Table {
	size := 2
	for size < n {
		size <<= 1
	}
	return &Table{seed: maphash.MakeSeed(), rate: r.perNano(), burst: float64(r.Burst),
		mask: uint64(size - 1), slots: make([]slot, size)}
}

// Slots returns the number of slots (fixed at construction).
func (t *Table) Slots() int { return len(t.slots) }

// refill brings s up to now and returns its tokens. t.mu is held.
func (t *Table) refill(s *slot, now int64) float64 {
	if d := now - s.last; d > 0 {
		s.tokens = min(t.burst, s.tokens+float64(d)*t.rate)
		s.last = now
	}
	return s.tokens
}

// find returns the slot of key, claiming one if key has none. t.mu is
// held.
func (t *Table) find(key string, now int64) *slot {
	h := maphash.String(t.seed, key)
	fp := h | 1
	a := &t.slots[h&t.mask]
	b := &t.slots[(h>>32^h*0x9e3779b97f4a7c15)&t.mask]
	if a.fp == fp {
		return a
	}
	if b.fp == fp {
		return b
	}
	victim := a
	switch {
	case a.fp == 0:
	case b.fp == 0:
		victim = b
	default:
		ta, tb := t.refill(a, now), t.refill(b, now)
		if tb > ta {
			victim = b
		}
	}
	*victim = slot{fp: fp, tokens: t.burst, last: now}
	return victim
}

// Allow takes one token from key's bucket and reports whether there was
// one.
func (t *Table) Allow(key string, now time.Time) bool { return t.AllowN(key, now, 1) }

// AllowN takes n tokens from key's bucket if it holds n, and reports
// whether it did (nothing is taken otherwise). n <= 0 is always allowed.
func (t *Table) AllowN(key string, now time.Time, n int) bool {
	if n <= 0 {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	ns := now.UnixNano()
	s := t.find(key, ns)
	if t.refill(s, ns) < float64(n) {
		return false
	}
	s.tokens -= float64(n)
	return true
}

// Wait returns how long until key's bucket holds one token (0: it holds
// one now). It takes nothing; a key not in the table holds a full bucket.
func (t *Table) Wait(key string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	ns := now.UnixNano()
	s := t.find(key, ns)
	tok := t.refill(s, ns)
	if tok >= 1 {
		return 0
	}
	if t.rate <= 0 {
		return time.Duration(1<<63 - 1)
	}
	return time.Duration((1 - tok) / t.rate)
}

// Take removes one token from key's bucket, down to 0 at most (a failure
// to count, whether or not one was left).
func (t *Table) Take(key string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ns := now.UnixNano()
	s := t.find(key, ns)
	t.refill(s, ns)
	s.tokens = max(0, s.tokens-1)
}

// Bucket is a single token bucket: a global bound. Safe for concurrent
// use.
type Bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   int64
}

// NewBucket returns a full bucket of rate r.
func NewBucket(r Rate) *Bucket {
	return &Bucket{rate: r.perNano(), burst: float64(r.Burst), tokens: float64(r.Burst)}
}

// Allow takes one token and reports whether there was one.
func (b *Bucket) Allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refillLocked(now.UnixNano())
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Spent reports whether key holds a slot whose bucket has less than one
// token: it was taken from within the refill time. Unlike the other
// methods it claims no slot for an unknown key (false).
func (t *Table) Spent(key string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := maphash.String(t.seed, key)
	fp := h | 1
	for _, i := range [2]uint64{h & t.mask, (h>>32 ^ h*0x9e3779b97f4a7c15) & t.mask} {
		if s := &t.slots[i]; s.fp == fp {
			return t.refill(s, now.UnixNano()) < 1
		}
	}
	return false
}

// Tokens returns the tokens the bucket holds now.
func (b *Bucket) Tokens(now time.Time) float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refillLocked(now.UnixNano())
	return b.tokens
}

// Take removes one token, down to 0 at most.
func (b *Bucket) Take(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refillLocked(now.UnixNano())
	b.tokens = max(0, b.tokens-1)
}

func (b *Bucket) refillLocked(ns int64) {
	if b.last == 0 {
		b.last = ns
	}
	if d := ns - b.last; d > 0 {
		b.tokens = min(b.burst, b.tokens+float64(d)*b.rate)
		b.last = ns
	}
}
