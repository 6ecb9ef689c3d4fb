package badger

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// Transaction ids sort by the time they were drawn (their Badger keys
// arrive in key order) and stay distinct within one millisecond, where
// the cache still spreads them over its shards and slots.
func TestTxnIDTimeOrdered(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 2, 40, 0, 0, time.UTC)
	var prev [txnIDBytes]byte
	for i := range 1000 {
		id := newTxnID(t0.Add(time.Duration(i) * time.Millisecond))
		if i > 0 && bytes.Compare(prev[:], id[:]) >= 0 {
			t.Fatalf("id %d (%x) does not sort after %x", i, id, prev)
		}
		prev = id
	}
	id := newTxnID(t0)
	if got := int64(binary.BigEndian.Uint64(id[:8]) >> 16); got != t0.UnixMilli() {
		t.Fatalf("time prefix %d, want %d", got, t0.UnixMilli())
	}
	// A clock before 1970 gives a zero prefix, not a wrapped one.
	if id := newTxnID(time.Unix(-5, 0)); !bytes.Equal(id[:txnTimeBytes], make([]byte, txnTimeBytes)) {
		t.Fatalf("pre-epoch prefix %x", id[:txnTimeBytes])
	}

	var c txnCache
	seen := map[[txnIDBytes]byte]bool{}
	shards := map[*txnShard]bool{}
	slots := map[int]bool{}
	for range 4096 {
		id := newTxnID(t0) // one millisecond
		if seen[id] {
			t.Fatalf("id %x drawn twice", id)
		}
		seen[id] = true
		sh, i := c.slot(id)
		shards[sh], slots[i] = true, true
	}
	// 4096 draws over 64 shards and 64 slots: all are hit but with a chance
	// of about 64·(63/64)^4096 < 10⁻²⁵.
	if len(shards) != txnShards || len(slots) != txnSlots {
		t.Fatalf("4096 ids of one millisecond fall in %d shards and %d slots, want %d and %d", len(shards), len(slots), txnShards, txnSlots)
	}
}
