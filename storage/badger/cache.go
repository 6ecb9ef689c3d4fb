package badger

import (
	"slices"
	"sync"

	"github.com/iapd/iapd/storage"
)

// Two in-process caches spare the hot path Badger reads. A Badger Get
// consults every memtable and every level of the LSM tree (it stops early
// only for a key written by the very last commit), and an account record,
// rewritten by every operation, has a version in most tables: reading one
// cost more CPU than the rest of an authorize. Both caches hold only
// records that are committed and that no write can change behind their
// back, so an answer from a cache is one the ledger could have read.

// stripeWays is how many account records one stripe caches (1024 stripes:
// the last 4096 accounts written, a few hundred kilobytes).
const stripeWays = 4

// stripe serialises the writes of the accounts hashed to it (see the
// package comment) and caches their records.
//
// Every write of an account record runs under its stripe (Ledger.stripe),
// so while a caller holds mu, the cached record of an account of the
// stripe is the last one committed: a write reads it from the cache
// (wtxn.account) and, once its Badger txn has committed, puts what it
// wrote back (commit, still under mu). A txn that fails to commit leaves
// the cache alone: Badger applied nothing (a conflict, a txn too big), or
// the ledger refuses all further work (any other failure). A record read
// from the cache is not in the txn's read set for Badger's conflict
// detection; it needs none, since only a holder of mu writes it.
type stripe struct {
	mu    sync.Mutex
	ways  [stripeWays]cachedAccount // guarded by mu
	clock uint32                    // guarded by mu: last use stamps
}

type cachedAccount struct {
	a    acct // a.Service == "": a free way
	used uint32
}

// lookup returns the cached record of (svc, tok). The caller holds mu.
func (s *stripe) lookup(svc storage.ServiceName, tok storage.AccountToken) (acct, bool) {
	for i := range s.ways {
		w := &s.ways[i]
		if w.a.Token == tok && w.a.Service == svc && svc != "" {
			s.clock++
			w.used = s.clock
			a := w.a
			a.Alerts.Recipients = slices.Clone(a.Alerts.Recipients) // the caller's own
			return a, true
		}
	}
	return acct{}, false
}

// store caches a committed record, replacing the least recently used way.
// The caller holds mu.
func (s *stripe) store(a *acct) {
	victim := &s.ways[0]
	for i := range s.ways {
		w := &s.ways[i]
		if w.a.Token == a.Token && w.a.Service == a.Service {
			victim = w
			break
		}
		if w.used < victim.used {
			victim = w
		}
	}
	s.clock++
	victim.a = *a
	victim.a.Alerts.Recipients = slices.Clone(a.Alerts.Recipients)
	victim.used = s.clock
}

// serviceCache answers ServiceByKey, the first read of every authorize,
// capture and cancel, from memory. It holds services read (and found
// durable) while no service write was in progress; every service write
// empties it as it starts and as it ends, and while one is in progress the
// cache answers nothing, so that ServiceByKey reads Badger and sees what
// the write did as soon as the write did it. Only found keys are cached
// (a flood of wrong keys cannot grow it), at most maxCachedKeys.
type serviceCache struct {
	mu      sync.RWMutex
	gen     uint64 // changes with every service write start and end
	writers int    // service writes in progress
	byKey   map[[32]byte]storage.Service
}

const maxCachedKeys = 1024

// get returns the cached service for keyHash, or the generation to pass to
// put after reading it from Badger.
func (c *serviceCache) get(keyHash [32]byte) (s storage.Service, ok bool, gen uint64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.writers == 0 {
		s, ok = c.byKey[keyHash]
	}
	return s, ok, c.gen
}

// put caches s, read from Badger and durable, unless a service write
// started since get returned gen.
func (c *serviceCache) put(gen uint64, keyHash [32]byte, s storage.Service) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen || c.writers != 0 || len(c.byKey) >= maxCachedKeys {
		return
	}
	if c.byKey == nil {
		c.byKey = make(map[[32]byte]storage.Service)
	}
	c.byKey[keyHash] = s
}

// writing marks a service write in progress until the returned function is
// called.
func (c *serviceCache) writing() (done func()) {
	c.invalidate(+1)
	return func() { c.invalidate(-1) }
}

func (c *serviceCache) invalidate(writers int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.writers += writers
	clear(c.byKey)
}

// txnCache holds the last committed record of recent transactions (holds),
// direct-mapped by id, which is random: a hold is captured or cancelled
// moments after it was authorized, and Capture and Cancel read it twice
// (once to learn its account, once under the account's stripe).
//
// Every write of a transaction record runs under the stripe of its account
// and stores what it wrote here once its Badger txn has committed, before
// the stripe is released (commit); so under the stripe, a cached record is
// the last one committed. Without the stripe (lookupTxn), only the
// immutable fields of a cached record may be relied on.
type txnCache struct {
	shards [txnShards]txnShard
}

const (
	txnShards = 64
	txnSlots  = 64 // per shard: 4096 transactions in all
)

type txnShard struct {
	mu    sync.Mutex
	slots [txnSlots]cachedTxn
}

type cachedTxn struct {
	id  [txnIDBytes]byte
	set bool
	t   storage.Transaction
}

// slot places id by its last two bytes, random in every id (the first
// ones are newTxnID's time prefix).
func (c *txnCache) slot(id [txnIDBytes]byte) (*txnShard, int) {
	return &c.shards[id[txnIDBytes-1]%txnShards], int(id[txnIDBytes-2] % txnSlots)
}

// lookup returns the cached record of id.
func (c *txnCache) lookup(id [txnIDBytes]byte) (storage.Transaction, bool) {
	sh, i := c.slot(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if s := &sh.slots[i]; s.set && s.id == id {
		return s.t, true
	}
	return storage.Transaction{}, false
}

// store caches a committed record.
func (c *txnCache) store(id [txnIDBytes]byte, t *storage.Transaction) {
	sh, i := c.slot(id)
	sh.mu.Lock()
	sh.slots[i] = cachedTxn{id: id, set: true, t: *t}
	sh.mu.Unlock()
}
