package badger

import (
	"bytes"
	"context"
	"crypto/sha1" // #nosec G505 -- Odoo 19's hashed token (PROTOCOL §4.7) is SHA-1; an identifier, not a secret
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
)

// What keeps the ledger's cost flat as it grows (issue 21; ledger format
// 4): nothing per account lives in memory, so two things that used to be
// built by walking every account are kept in the ledger instead, written in
// the same atomic write (Badger txn or journal record) as the change they
// follow, so that a crash can never separate them:
//
//	'h' sha1(token)[20] token             → empty (the hashed-token index: Odoo 19's credit links)
//	'g' service 0x00 slot[2]              → the service's aggregate figures, one share (aggFig)
//
// The hashed-token index is written when an account is created (with the
// token index 'i'); TokenByHash reads it. Every service has one
// aggregate key per stripe ("slot": the stripe's index in this process):
// a write adds what it changed — account counts by state, accounts below
// their alert threshold, available and held credit, open holds and the
// credit flows — to the share of the stripe it holds, under that stripe's
// mutex, so no two writers ever touch one share and no write of one
// account waits for another's. A service's figures are the sum of its
// shares (at most nStripes keys, whatever the number of accounts). The
// stripe of an account depends on a seed drawn at each Open, so a share
// is not the figures of any set of accounts: shares may go negative, only
// their sum means anything. Ledgers of format 3 get both, built by one
// walk, when opened (migrateFlat).
const (
	pTokenHash = 'h'
	pAggregate = 'g'
)

func tokenHashPrefix(h [sha1.Size]byte) []byte {
	k := make([]byte, 0, 1+sha1.Size+64)
	k = append(k, pTokenHash)
	return append(k, h[:]...)
}

func tokenHashKey(tok storage.AccountToken) []byte {
	return append(tokenHashPrefix(sha1.Sum([]byte(tok))), tok...) // #nosec G401 -- see import
}

func aggKey(svc storage.ServiceName, slot int) []byte {
	k := make([]byte, 0, 4+len(svc))
	k = append(k, pAggregate)
	k = append(k, svc...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint16(k, uint16(slot))
}

// parseAggKey splits an aggregate key.
func parseAggKey(k []byte) (storage.ServiceName, int, bool) {
	if len(k) < 5 || k[0] != pAggregate || k[len(k)-3] != 0 {
		return "", 0, false
	}
	svc := storage.ServiceName(k[1 : len(k)-3])
	return svc, int(binary.BigEndian.Uint16(k[len(k)-2:])), storage.ValidServiceName(string(svc))
}

// aggFig is one share of a service's figures (or, summed, the figures).
type aggFig struct {
	registered, unregistered, banned int64
	below                            int64 // registered, alert enabled, Available < Threshold
	available, held                  storage.Credits
	holds                            int64 // open holds
	authorized, captured, released   storage.Credits
	expired, recharged               storage.Credits
}

func (f *aggFig) add(g *aggFig) {
	f.registered += g.registered
	f.unregistered += g.unregistered
	f.banned += g.banned
	f.below += g.below
	f.available += g.available
	f.held += g.held
	f.holds += g.holds
	f.authorized += g.authorized
	f.captured += g.captured
	f.released += g.released
	f.expired += g.expired
	f.recharged += g.recharged
}

// values and setValues are the figures in the order of the record.
func (f *aggFig) values() [12]int64 {
	return [12]int64{f.registered, f.unregistered, f.banned, f.below,
		int64(f.available), int64(f.held), f.holds,
		int64(f.authorized), int64(f.captured), int64(f.released),
		int64(f.expired), int64(f.recharged)}
}

func (f *aggFig) setValues(v [12]int64) {
	f.registered, f.unregistered, f.banned, f.below = v[0], v[1], v[2], v[3]
	f.available, f.held, f.holds = storage.Credits(v[4]), storage.Credits(v[5]), v[6]
	f.authorized, f.captured, f.released = storage.Credits(v[7]), storage.Credits(v[8]), storage.Credits(v[9])
	f.expired, f.recharged = storage.Credits(v[10]), storage.Credits(v[11])
}

func (f *aggFig) zero() bool { return *f == aggFig{} }

// encodeAgg: formatV1, then the twelve figures as varints.
func encodeAgg(f *aggFig) []byte {
	b := make([]byte, 1, 1+12*binary.MaxVarintLen64)
	b[0] = formatV1
	for _, v := range f.values() {
		b = binary.AppendVarint(b, v)
	}
	return b
}

func decodeAgg(b []byte) (aggFig, error) {
	var f aggFig
	var v [12]int64
	d := newDecoder(b)
	for i := range v {
		v[i] = d.int()
	}
	f.setValues(v)
	return f, d.done()
}

// count adds n accounts of state s.
func (f *aggFig) count(s storage.AccountState, n int64) {
	switch s {
	case storage.Registered:
		f.registered += n
	case storage.Unregistered:
		f.unregistered += n
	case storage.Banned:
		f.banned += n
	}
}

// stats turns summed figures into storage.ServiceStats.
func (f *aggFig) stats() storage.ServiceStats {
	return storage.ServiceStats{
		Accounts: map[storage.AccountState]int{
			storage.Registered: int(f.registered), storage.Unregistered: int(f.unregistered), storage.Banned: int(f.banned),
		},
		BelowThreshold: int(f.below),
		Available:      f.available, Held: f.held, Holds: int(f.holds),
		Authorized: f.authorized, Captured: f.captured, Released: f.released,
		Expired: f.expired, Recharged: f.recharged,
	}
}

// acctFigs is what an account record adds to its service's figures.
type acctFigs struct {
	exists    bool
	state     storage.AccountState
	below     bool
	available storage.Credits
	held      storage.Credits
}

func figsOf(a *storage.Account) acctFigs {
	return acctFigs{exists: true, state: a.State,
		below:     a.State == storage.Registered && a.Alerts.Enabled && a.Available < a.Alerts.Threshold,
		available: a.Available, held: a.Held}
}

// apply adds c (sign +1) or takes it away (sign -1).
func (f *aggFig) apply(c acctFigs, sign int64) {
	if !c.exists {
		return
	}
	f.count(c.state, sign)
	if c.below {
		f.below += sign
	}
	f.available += storage.Credits(sign) * c.available
	f.held += storage.Credits(sign) * c.held
}

// entry adds the flows of one entry.
func (f *aggFig) entry(e *storage.Entry) {
	switch e.Kind {
	case storage.EntryHold:
		f.authorized += e.DHeld
	case storage.EntryCapture:
		f.captured += e.DCaptured
	case storage.EntryRelease:
		f.released += e.DAvailable
	case storage.EntryExpiry:
		f.expired += e.DAvailable
	case storage.EntryRecharge:
		f.recharged += e.DRecharged
	}
}

// aggregates is the ledger's cache of its shares: slots[i] holds the
// shares of stripe i as last committed, guarded by that stripe's mutex
// (at most nStripes × services figures).
type aggregates struct {
	once  sync.Once
	index map[*stripe]int
	slots [nStripes]map[storage.ServiceName]aggFig
}

func (l *Ledger) slotOf(st *stripe) int {
	l.agg.once.Do(func() {
		l.agg.index = make(map[*stripe]int, nStripes)
		for i := range l.stripes {
			l.agg.index[&l.stripes[i]] = i
		}
	})
	return l.agg.index[st]
}

// aggDelta is what one write changes in one service's figures.
type aggDelta struct {
	svc storage.ServiceName
	d   aggFig
	new aggFig // the share once written (flushAgg)
}

func (w *wtxn) delta(svc storage.ServiceName) *aggFig {
	for i := range w.aggs {
		if w.aggs[i].svc == svc {
			return &w.aggs[i].d
		}
	}
	if w.aggs == nil {
		w.aggs = w.aggBuf[:0]
	}
	w.aggs = append(w.aggs, aggDelta{svc: svc})
	return &w.aggs[len(w.aggs)-1].d
}

// aggAccount records the change of an account record put in w: from the
// version this write already put, else from the record as read (a.figs),
// to a. It leaves a.figs at a's figures.
func (w *wtxn) aggAccount(a *acct) {
	prev := a.figs
	for i := range w.accts {
		if w.accts[i].Service == a.Service && w.accts[i].Token == a.Token {
			prev = w.accts[i].figs
		}
	}
	now := figsOf(&a.Account)
	d := w.delta(a.Service)
	d.apply(prev, -1)
	d.apply(now, +1)
	a.figs = now
}

// aggHold records a hold opened (+1) or ended (-1).
func (w *wtxn) aggHold(svc storage.ServiceName, n int64) { w.delta(svc).holds += n }

// aggEntry records the flows of an entry written.
func (w *wtxn) aggEntry(e *storage.Entry) { w.delta(e.Service).entry(e) }

// flushAgg adds w's deltas to the shares of its stripe, in w. The caller
// holds the stripe's mutex, from before the change was read until the
// shares are kept (keepAgg) or the write is abandoned.
func (w *wtxn) flushAgg() error {
	if len(w.aggs) == 0 {
		return nil
	}
	if w.st == nil {
		return errors.New("aggregate figures changed outside a stripe; change refused")
	}
	slot := w.l.slotOf(w.st)
	for i := range w.aggs {
		a := &w.aggs[i]
		if a.d.zero() {
			continue
		}
		cur, ok := w.l.agg.slots[slot][a.svc]
		if !ok {
			key := aggKey(a.svc, slot)
			dec := func(b []byte) (err error) {
				cur, err = decodeAgg(b)
				return err
			}
			if _, err := w.get(key, dec); err != nil {
				return err
			}
		}
		cur.add(&a.d)
		a.new = cur
		if err := w.set(aggKey(a.svc, slot), encodeAgg(&cur)); err != nil {
			return err
		}
	}
	return nil
}

// keepAgg caches the shares w wrote, once committed, still under the
// stripe's mutex.
func (w *wtxn) keepAgg() {
	if len(w.aggs) == 0 || w.st == nil {
		return
	}
	slot := w.l.slotOf(w.st)
	m := w.l.agg.slots[slot]
	if m == nil {
		m = make(map[storage.ServiceName]aggFig, 1)
		w.l.agg.slots[slot] = m
	}
	for i := range w.aggs {
		if !w.aggs[i].d.zero() {
			m[w.aggs[i].svc] = w.aggs[i].new
		}
	}
}

// readAggregates sums the shares of every service in txn.
func readAggregates(txn *badger.Txn) (map[storage.ServiceName]*aggFig, error) {
	out := map[storage.ServiceName]*aggFig{}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pAggregate}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		svc, _, ok := parseAggKey(item.Key())
		if !ok {
			return nil, errCorrupt
		}
		var f aggFig
		if err := item.Value(func(b []byte) (err error) {
			f, err = decodeAgg(b)
			return err
		}); err != nil {
			return nil, err
		}
		s := out[svc]
		if s == nil {
			s = &aggFig{}
			out[svc] = s
		}
		s.add(&f)
	}
	return out, nil
}

// TokenByHash returns the token of the account whose token's SHA-1 is h
// (Odoo 19's hashed links, PROTOCOL §4.7), from the hashed-token index.
// NotFound if no account has it.
func (l *Ledger) TokenByHash(ctx context.Context, h [sha1.Size]byte) (storage.AccountToken, error) {
	const op = "token by hash"
	if err := l.enter(op, ctx); err != nil {
		return "", err
	}
	defer l.leave()
	var tok storage.AccountToken
	err := l.view(op, func(txn *badger.Txn) error {
		prefix := tokenHashPrefix(h)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			t := storage.AccountToken(it.Item().Key()[len(prefix):])
			if storage.ValidAccountToken(t) {
				tok = t
				return nil
			}
		}
		return storage.E(op, storage.NotFound, "no account with that hashed token")
	})
	return tok, err
}

// fullFigures walks every account, open hold and entry of txn: the figures
// the aggregates must equal (Verify, tests, the migration).
func fullFigures(ctx context.Context, txn *badger.Txn) (map[storage.ServiceName]*aggFig, error) {
	out := map[storage.ServiceName]*aggFig{}
	fig := func(svc storage.ServiceName) *aggFig {
		f := out[svc]
		if f == nil {
			f = &aggFig{}
			out[svc] = f
		}
		return f
	}
	n := 0
	tick := func() error {
		if n++; n%1024 == 0 {
			return ctx.Err()
		}
		return nil
	}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pAccount}, PrefetchValues: true, PrefetchSize: 100})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if err := tick(); err != nil {
			return nil, err
		}
		item := it.Item()
		svc, tok, ok := parseAccountKey(item.Key())
		if !ok {
			return nil, errCorrupt
		}
		if err := item.Value(func(b []byte) error {
			a, err := decodeAccount(b, svc, tok)
			if err == nil {
				fig(svc).apply(figsOf(&a), +1)
			}
			return err
		}); err != nil {
			return nil, err
		}
	}
	xt := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pExpiry}, PrefetchValues: false})
	defer xt.Close()
	for xt.Rewind(); xt.Valid(); xt.Next() {
		if err := tick(); err != nil {
			return nil, err
		}
		_, id, ok := parseExpiryKey(xt.Item().Key())
		if !ok {
			return nil, errCorrupt
		}
		t, found, err := getTxn(txn, id)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, errCorrupt
		}
		fig(t.Service).holds++
	}
	et := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pEntry}, PrefetchValues: true, PrefetchSize: 100})
	defer et.Close()
	ak := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pAccount}, PrefetchValues: false})
	defer ak.Close()
	ak.Rewind()
	var cur []byte // the account of the entries walked
	exists := false
	for et.Rewind(); et.Valid(); et.Next() {
		if err := tick(); err != nil {
			return nil, err
		}
		item := et.Item()
		acctPart, svc, tok, seq, ok := parseEntryKey(item.Key())
		if !ok {
			return nil, errCorrupt
		}
		if !bytes.Equal(acctPart, cur) {
			// Entries of an account that does not exist are no account's
			// figures (Verify reports them as orphans). Entries and
			// accounts are in the same (service, token) order: a walk of
			// the account keys beside this one tells.
			cur = append(cur[:0], acctPart...)
			want := accountKey(svc, tok)
			for ak.Valid() && bytes.Compare(ak.Item().Key(), want) < 0 {
				ak.Next()
			}
			exists = ak.Valid() && bytes.Equal(ak.Item().Key(), want)
		}
		if !exists {
			continue
		}
		if err := item.Value(func(b []byte) error {
			e, err := decodeEntry(b, svc, tok, seq)
			if err == nil {
				fig(svc).entry(&e)
			}
			return err
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// migrateFlat is the step from format 3 to 4: it writes the hashed-token
// key of every account and replaces every aggregate share by the figures
// of a full walk (in slot 0). Idempotent: run again after a crash, it
// writes the same keys and the same figures. It runs at Open after the
// journal's replay (the walk must see the journaled writes), before the
// ledger serves.
func (l *Ledger) migrateFlat() error {
	if err := l.drain(); err != nil {
		return err
	}
	txn := l.db.NewTransaction(false)
	defer txn.Discard()
	figs, err := fullFigures(context.Background(), txn)
	if err != nil {
		return fmt.Errorf("walking the ledger: %w", err)
	}
	// Batches of keys, each one durable write.
	const batch = 1000
	var keys [][]byte
	var dels [][]byte
	flush := func() error {
		if len(keys) == 0 && len(dels) == 0 {
			return nil
		}
		err := l.write("migrate", nil, func(tx *wtxn, _ time.Time) (error, error) {
			for _, k := range dels {
				if err := tx.del(k); err != nil {
					return nil, err
				}
			}
			for _, k := range keys {
				if err := tx.set(k, nil); err != nil {
					return nil, err
				}
			}
			return nil, nil
		})
		keys, dels = keys[:0], dels[:0]
		return err
	}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pTokenIdx}, PrefetchValues: false})
	defer it.Close()
	var last storage.AccountToken
	accounts := 0
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		i := 1
		for i < len(k) && k[i] != 0 {
			i++
		}
		tok := storage.AccountToken(k[1:i])
		if i == len(k) || tok == last {
			continue
		}
		last = tok
		accounts++
		keys = append(keys, tokenHashKey(tok))
		if len(keys) >= batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	at := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pAggregate}, PrefetchValues: false})
	for at.Rewind(); at.Valid(); at.Next() {
		dels = append(dels, at.Item().KeyCopy(nil))
	}
	at.Close()
	if err := flush(); err != nil {
		return err
	}
	err = l.write("migrate", nil, func(tx *wtxn, _ time.Time) (error, error) {
		for svc, f := range figs {
			if err := tx.set(aggKey(svc, 0), encodeAgg(f)); err != nil {
				return nil, err
			}
		}
		return nil, nil
	})
	if err != nil {
		return err
	}
	// The shares cached by earlier writes (none at Open) are gone.
	for i := range l.agg.slots {
		l.stripes[i].mu.Lock()
		l.agg.slots[i] = nil
		l.stripes[i].mu.Unlock()
	}
	l.log.Info("hashed-token index and aggregate figures built", "tokens", accounts, "services", len(figs))
	return nil
}

// finishUpgrade runs the migration steps that need the journal replayed
// (migration.afterReplay), if checkFormat left one: their cost is logged
// like the others'.
func (l *Ledger) finishUpgrade() error {
	const op = "open"
	if l.pendingFormat == 0 {
		return nil
	}
	for cur := l.pendingFormat; cur < FormatVersion; cur++ {
		if err := l.migrate(op, cur); err != nil {
			return err
		}
	}
	l.pendingFormat = 0
	// The migration's writes went to the journal: checkpoint them, so that
	// Badger holds the migrated ledger (and its format marker) at once.
	if err := l.drain(); err != nil {
		return storage.Wrap(op, storage.Internal, err)
	}
	return nil
}
