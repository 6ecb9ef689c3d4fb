package badger

import (
	"bytes"
	"crypto/sha1" // #nosec G505 -- see flat.go
	"encoding/binary"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// The checks of flat.go's tables.
const (
	CheckTokenHash = "token-hash" // an account and the hashed-token index disagree
	CheckAggregate = "aggregate"  // the aggregate figures of a service ≠ a walk of its accounts, holds and entries
)

// flatPass checks that the hashed-token index holds exactly the tokens of
// the accounts, each under its own SHA-1, and that each service's
// aggregate figures equal those of a full walk. The index check walks
// both tables once, in key order, without a read per key: it compares the
// count and a 128-bit sum of the hashes of the distinct tokens of the
// token index with those of the hashed-token keys (a missing, extra or
// changed key changes both or the sum; two changes cancelling each other
// would need a 2⁻¹²⁸ coincidence).
func (v *verifier) flatPass() error {
	type tally struct {
		n      int
		lo, hi uint64
	}
	add := func(t *tally, h [sha1.Size]byte) {
		t.n++
		t.lo += binary.BigEndian.Uint64(h[:8])
		t.hi += binary.BigEndian.Uint64(h[8:16])
	}
	var accounts, index tally
	var last []byte
	if err := v.each(pTokenIdx, false, func(item *badger.Item) error {
		k := item.Key()
		i := bytes.IndexByte(k, 0)
		if i < 2 || bytes.Equal(k[1:i], last) {
			return nil // a malformed key is the token index pass's
		}
		last = append(last[:0], k[1:i]...)
		add(&accounts, sha1.Sum(last)) // #nosec G401 -- see import
		return nil
	}); err != nil {
		return err
	}
	if err := v.each(pTokenHash, false, func(item *badger.Item) error {
		k := item.Key()
		if len(k) < 2+sha1.Size {
			v.errorf(CheckTokenHash, "", "", "", "a malformed hashed-token key")
			return nil
		}
		h := sha1.Sum(k[1+sha1.Size:]) // #nosec G401 -- see import
		if !bytes.Equal(h[:], k[1:1+sha1.Size]) {
			v.errorf(CheckTokenHash, "", "", "", "a hashed-token key whose hash is not its token's")
			return nil
		}
		add(&index, h)
		return nil
	}); err != nil {
		return err
	}
	if accounts != index {
		v.errorf(CheckTokenHash, "", "", "", "the accounts have %d distinct tokens, the hashed-token index %d keys (or other tokens): an account's hashed link would not resolve, or a hashed link would name no account",
			accounts.n, index.n)
	}

	agg, err := readAggregates(v.txn)
	if err != nil {
		v.errorf(CheckAggregate, "", "", "", "the aggregate figures do not decode: %v", err)
		return nil
	}
	full, err := fullFigures(v.ctx, v.txn)
	if err != nil {
		if v.ctx.Err() != nil {
			return err
		}
		return nil // a record that does not decode: reported by its pass
	}
	for svc, f := range full {
		if a := agg[svc]; a == nil && !f.zero() || a != nil && *a != *f {
			v.errorf(CheckAggregate, svc, "", "", "aggregate figures %s, a walk finds %s", figString(agg[svc]), figString(f))
		}
	}
	for svc, a := range agg {
		if _, ok := full[svc]; !ok && !a.zero() {
			v.errorf(CheckAggregate, svc, "", "", "aggregate figures %s of a service without accounts", figString(a))
		}
	}
	return nil
}

func figString(f *aggFig) string {
	if f == nil {
		return "absent"
	}
	return fmt.Sprintf("{accounts %d/%d/%d below %d available %s held %s holds %d authorized %s captured %s released %s expired %s recharged %s}",
		f.registered, f.unregistered, f.banned, f.below, f.available, f.held, f.holds,
		f.authorized, f.captured, f.released, f.expired, f.recharged)
}
