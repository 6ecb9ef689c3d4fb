package badger

import (
	"bytes"
	"crypto/sha1" // #nosec G505 -- see flat.go
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
)

// The checks of flat.go's tables.
const (
	CheckTokenHash = "token-hash" // an account and the hashed-token index disagree
	CheckAggregate = "aggregate"  // the aggregate figures of a service ≠ a walk of its accounts, holds and entries
)

// flatPass checks that every account's token has its hashed-token key and
// every such key an account, and that each service's aggregate figures
// equal those of a full walk.
func (v *verifier) flatPass() error {
	var last []byte
	if err := v.each(pTokenIdx, false, func(item *badger.Item) error {
		k := item.Key()
		i := bytes.IndexByte(k, 0)
		if i < 2 || bytes.Equal(k[1:i], last) {
			return nil // a malformed key is the token index pass's
		}
		last = append(last[:0], k[1:i]...)
		tok := storage.AccountToken(last)
		ok, err := v.exists(tokenHashKey(tok))
		if err != nil {
			return err
		}
		if !ok {
			v.errorf(CheckTokenHash, "", "", "", "an account token has no hashed-token key")
		}
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
		tok := storage.AccountToken(k[1+sha1.Size:])
		if sha1.Sum([]byte(tok)) != [sha1.Size]byte(k[1:1+sha1.Size]) { // #nosec G401 -- see import
			v.errorf(CheckTokenHash, "", "", "", "a hashed-token key whose hash is not its token's")
			return nil
		}
		ok := false
		for svc := range v.services { // a few services: a few reads
			found, err := v.exists(tokenIdxKey(tok, svc))
			if err != nil {
				return err
			}
			if ok = found; ok {
				break
			}
		}
		if !ok {
			v.errorf(CheckTokenHash, "", "", "", "a hashed-token key of a token no account has")
		}
		return nil
	}); err != nil {
		return err
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
