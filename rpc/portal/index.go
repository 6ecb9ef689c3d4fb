package portal

import (
	"context"
	"crypto/sha1" // #nosec G505 -- Odoo 19's hashed token (PROTOCOL §4.7) is SHA-1; an identifier
	"sync"
	"time"

	"github.com/iapd/iapd/storage"
)

// minRescan bounds how often a hash not found triggers a rebuild of the
// index: unknown hashes cannot make the portal walk the ledger more than
// once per minRescan.
const minRescan = 5 * time.Second

// hashIndex maps Odoo 19's hashed tokens (SHA-1 of the token) to tokens.
// The ledger looks accounts up by token only; the index is rebuilt from
// ledger.Accounts at start and every Config.IndexRefresh, and on a miss:
// the missing request waits for a rebuild that started after it (at most
// one per minRescan, shared by every request waiting), so an account
// Odoo created a moment ago is found. It also learns the tokens the
// portal resolves.
type hashIndex struct {
	ledger storage.Ledger
	every  time.Duration // minRescan; tests shorten it

	mu        sync.RWMutex
	m         map[[sha1.Size]byte]storage.AccountToken
	scanStart time.Time // start of the last complete rebuild (monotonic)

	scan sync.Mutex // one rebuild at a time
}

func hashToken(tok storage.AccountToken) [sha1.Size]byte {
	return sha1.Sum([]byte(tok)) // #nosec G401 -- see import
}

func (x *hashIndex) get(h [sha1.Size]byte) (storage.AccountToken, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	tok, ok := x.m[h]
	return tok, ok
}

func (x *hashIndex) add(tok storage.AccountToken) {
	h := hashToken(tok)
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.m == nil {
		x.m = map[[sha1.Size]byte]storage.AccountToken{}
	}
	x.m[h] = tok
}

// lookup returns the token of h. On a miss it waits for a rebuild that
// starts after the miss (its own, or another request's), no sooner than
// every after the previous one, and no longer than ctx allows.
func (x *hashIndex) lookup(ctx context.Context, h [sha1.Size]byte) (storage.AccountToken, bool) {
	if tok, ok := x.get(h); ok {
		return tok, true
	}
	missed := time.Now()
	x.scan.Lock()
	defer x.scan.Unlock()
	x.mu.RLock()
	last := x.scanStart
	x.mu.RUnlock()
	if last.After(missed) {
		return x.get(h) // a rebuild started after the miss has run
	}
	every := x.every
	if every == 0 {
		every = minRescan
	}
	if wait := time.Until(last.Add(every)); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return "", false
		case <-t.C:
		}
	}
	_ = x.rebuildLocked(ctx) // an error leaves the old index
	return x.get(h)
}

// rebuild walks every account of every service.
func (x *hashIndex) rebuild(ctx context.Context) error {
	x.scan.Lock()
	defer x.scan.Unlock()
	return x.rebuildLocked(ctx)
}

func (x *hashIndex) rebuildLocked(ctx context.Context) error {
	start := time.Now()
	svcs, err := x.ledger.Services(ctx)
	if err != nil {
		return err
	}
	m := make(map[[sha1.Size]byte]storage.AccountToken)
	for _, s := range svcs {
		var after storage.AccountToken
		for {
			page, err := x.ledger.Accounts(ctx, storage.AccountFilter{Service: s.Name, After: after, Limit: 1000})
			if err != nil {
				return err
			}
			for _, a := range page {
				m[hashToken(a.Token)] = a.Token
			}
			if len(page) < 1000 {
				break
			}
			after = page[len(page)-1].Token
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	// Tokens learnt during the walk stay.
	for h, t := range x.m {
		if _, ok := m[h]; !ok {
			m[h] = t
		}
	}
	x.m, x.scanStart = m, start
	return nil
}
