package registers

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/directory"
)

// The index is a Badger database of its own under <dir>/index (the
// ledger's is the data directory itself). Keys, id being an 8-byte
// big-endian number the index gives each (source, key):
//
//	'r' id                          → the record (codec.go)
//	'k' source 0 key                → id
//	'n' country word 0 id           → name summary (a distinctive word of the name or legal name)
//	'l' country word 0 id           → name summary (a legal-form word)
//	'v' VAT 0 id, 'd' domain 0 id, 'e' LEI 0 id, 'g' registry id 0 id → nothing
//	'c' country id                  → mining summary
//	'm' "seq"                       → the next id
//
// country is two bytes ("--" when unknown). Name and mining lookups read
// the summaries only (the keys' values, kept in the LSM tree), then the
// records of the few companies they answer.
const (
	pRecord  = 'r'
	pKey     = 'k'
	pName    = 'n'
	pLegal   = 'l'
	pVAT     = 'v'
	pDomain  = 'd'
	pLEI     = 'e'
	pReg     = 'g'
	pCountry = 'c'
)

var seqKey = []byte("mseq")

// The bounds that keep every lookup and the import's memory small
// whatever the number of companies.
const (
	// maxNameScan bounds the name-index entries one name search reads.
	maxNameScan = 8000
	// maxWords bounds the words of one company the name index holds.
	maxWords = 16
	// batchRecords is how many records one import transaction holds.
	batchRecords = 1000
	// maxRecordBytes bounds one record's encoding.
	maxRecordBytes = 64 << 10
)

// ErrNoIndex is Open's error for a directory that holds no index.
var ErrNoIndex = errors.New("no company register index")

// Index is the on-disk company index. Lookups are safe for concurrent
// use; one import at a time writes to it.
type Index struct {
	name      string // the provider instance, in errors
	db        *badger.DB
	dir       string
	readOnly  bool
	importing atomic.Bool
	countries atomic.Pointer[[]string] // the countries present, sorted
	sources   atomic.Pointer[[]string] // the sources imported, sorted
	seqMu     sync.Mutex
	seq       uint64 // the next id
}

// IndexDir is where the index of a registers directory lives.
func IndexDir(dir string) string { return filepath.Join(dir, "index") }

// ImportsFile is the log of committed imports in a registers directory:
// one line each, "time source new changed unchanged struck-off".
const ImportsFile = "IMPORTS"

// HasData reports whether dir (<data>/registers) holds an index into
// which an import was committed, which is what makes cmd/iapd answer
// company lookups from it by default.
func HasData(dir string) bool {
	st, err := os.Stat(filepath.Join(IndexDir(dir), "MANIFEST"))
	if err != nil || !st.Mode().IsRegular() {
		return false
	}
	st, err = os.Stat(filepath.Join(dir, ImportsFile))
	return err == nil && st.Size() > 0
}

// Open opens (with create, makes) the index of dir. readOnly opens it
// for lookups only, sharing it with other read-only openers; an absent
// index is then ErrNoIndex. A directory another process writes to is an
// error from Badger ("Cannot acquire directory lock").
func Open(dir string, readOnly bool, log *slog.Logger) (*Index, error) {
	idir := IndexDir(dir)
	if readOnly && !HasData(dir) {
		return nil, fmt.Errorf("%s: %w", idir, ErrNoIndex)
	}
	if !readOnly {
		if err := os.MkdirAll(idir, 0o750); err != nil {
			return nil, err
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bo := badger.DefaultOptions(idir).
		WithReadOnly(readOnly).
		WithLogger(badgerLogger{log}).
		WithMetricsEnabled(false).
		WithDetectConflicts(false). // one writer: the import
		WithSyncWrites(false).      // Commit syncs
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithBaseTableSize(2 << 20).
		WithNumLevelZeroTables(4).
		WithNumLevelZeroTablesStall(8).
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithIndexCacheSize(16 << 20). // table indexes and bloom filters: bounded, not one per table in memory
		WithNumCompactors(2).
		WithValueThreshold(1 << 20). // every value in the LSM tree
		WithValueLogFileSize(16 << 20)
	// Tables of one size at every level: a compaction's table builders,
	// the import's largest memory, do not grow with the index.
	bo.TableSizeMultiplier = 1
	db, err := badger.Open(bo)
	if err != nil {
		return nil, err
	}
	x := &Index{name: Type, db: db, dir: dir, readOnly: readOnly}
	err = db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(seqKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			x.seq = 1
			return nil
		}
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error {
			if len(v) != 8 {
				return errCorrupt
			}
			x.seq = binary.BigEndian.Uint64(v)
			return nil
		})
	})
	if err == nil {
		err = x.refreshCountries()
	}
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return x, nil
}

// Close closes the index; an import in progress must be committed or
// aborted first.
func (x *Index) Close() error { return x.db.Close() }

// Size returns the bytes the index takes on disk.
func (x *Index) Size() int64 {
	lsm, vlog := x.db.Size()
	return lsm + vlog
}

// refreshCountries lists the countries of the mining keys and the
// sources of the key entries, one seek each.
func (x *Index) refreshCountries() error {
	var countries, sources []string
	err := x.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false})
		defer it.Close()
		seek := []byte{pCountry}
		for it.Seek(seek); it.ValidForPrefix([]byte{pCountry}); it.Seek(seek) {
			k := it.Item().Key()
			if len(k) < 3 {
				return errCorrupt
			}
			countries = append(countries, string(k[1:3]))
			seek = []byte{pCountry, k[1], k[2], 0xff}
		}
		seek = []byte{pKey}
		for it.Seek(seek); it.ValidForPrefix([]byte{pKey}); it.Seek(seek) {
			k := it.Item().Key()
			src, _, ok := strings.Cut(string(k[1:]), "\x00")
			if !ok {
				return errCorrupt
			}
			sources = append(sources, src)
			seek = cat([]byte{pKey}, []byte(src), []byte{1})
		}
		return nil
	})
	if err != nil {
		return err
	}
	x.countries.Store(&countries)
	x.sources.Store(&sources)
	return nil
}

// countryOf is the two bytes of a company's country in the keys.
func countryOf(c string) string {
	if len(c) != 2 {
		return "--"
	}
	return strings.ToUpper(c)
}

func idBytes(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

func cat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, n)
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// indexEntry is one key the record of id puts in the index besides
// itself, and its value.
type indexEntry struct{ key, val []byte }

// entries lists the index keys of record r stored under id.
func entries(r *Record, id uint64) []indexEntry {
	idb := idBytes(id)
	cc := []byte(countryOf(r.Country))
	var out []indexEntry
	exact := func(p byte, v string) {
		if v != "" {
			out = append(out, indexEntry{key: cat([]byte{p}, []byte(v), []byte{0}, idb)})
		}
	}
	exact(pVAT, r.VAT)
	exact(pDomain, r.Domain)
	exact(pLEI, strings.ToUpper(r.LEI))
	exact(pReg, normalizeReg(r.CompanyReg))

	nameWords := words(r.Name)
	var all []string
	seen := map[string]bool{}
	for _, w := range append(nameWords, words(r.LegalName)...) {
		if !seen[w] && len(all) < maxWords {
			seen[w] = true
			all = append(all, w)
		}
	}
	core, _ := split(nameWords)
	sum := nameSummary(r.Active, strings.Join(core, " "), all)
	for _, w := range all {
		p := byte(pName)
		if legalForms[w] {
			p = pLegal
		}
		out = append(out, indexEntry{key: cat([]byte{p}, cc, []byte(w), []byte{0}, idb), val: sum})
	}
	out = append(out, indexEntry{key: cat([]byte{pCountry}, cc, idb), val: miningSummary(r)})
	return out
}

// normalizeReg is a registry id as the index keeps it: upper case,
// without spaces, dots and dashes.
func normalizeReg(s string) string { return directory.NormalizeVAT(s) }

// nameSummary is the value of a name key: whether the company is active,
// the distinctive words of its name, and every word of its names.
func nameSummary(active bool, core string, all []string) []byte {
	b := []byte{0}
	if active {
		b[0] = 1
	}
	b = appendString(b, core)
	return appendString(b, strings.Join(all, " "))
}

// nameSum is a decoded name summary; core and all are views of the
// value (valid while Badger's item is).
type nameSum struct {
	active bool
	core   []byte // distinctive words of the name, joined by spaces
	all    []byte // every word of the names, joined by spaces
}

func decodeNameSummary(v []byte) (nameSum, bool) {
	d := decoder{b: v}
	s := nameSum{active: d.byte()&1 != 0}
	s.core = d.view()
	s.all = d.view()
	return s, !d.bad
}

// miningSummary is the value of a country key: what lead mining filters
// on.
func miningSummary(r *Record) []byte {
	b := []byte{0}
	if r.Active {
		b[0] = 1
	}
	b = appendString(b, strings.ToUpper(r.StateCode))
	b = appendString(b, r.IndustryID)
	b = binary.AppendUvarint(b, uint64(max(r.Employees, 0)))
	return appendString(b, r.Domain)
}

type miningSum struct {
	active          bool
	state, industry string
	employees       int
	domain          string
}

func decodeMiningSummary(v []byte) (miningSum, bool) {
	d := decoder{b: v}
	s := miningSum{active: d.byte()&1 != 0}
	s.state = d.string()
	s.industry = d.string()
	s.employees = int(d.uvarint())
	s.domain = d.string()
	return s, !d.bad
}

// company is the answer for the record stored under a key: ID set from
// its source and key.
func company(r Record) providers.Company {
	c := r.Company
	c.ID = r.Source + ":" + r.Key
	return c
}

// get reads the record of id.
func get(txn *badger.Txn, id []byte) (Record, error) {
	it, err := txn.Get(cat([]byte{pRecord}, id))
	if err != nil {
		return Record{}, err
	}
	var r Record
	err = it.Value(func(v []byte) error {
		var err error
		r, err = decodeRecord(v)
		return err
	})
	return r, err
}

// exact returns the best record under an exact key (p value 0 id…):
// an active one before an inactive one, the first imported among equals.
func (x *Index) exact(ctx context.Context, p byte, value string) (*providers.Company, error) {
	if value == "" {
		return nil, nil
	}
	var found *providers.Company
	err := x.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false})
		defer it.Close()
		prefix := cat([]byte{p}, []byte(value), []byte{0})
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			k := it.Item().Key()
			if len(k) != len(prefix)+8 {
				continue
			}
			r, err := get(txn, k[len(prefix):])
			if err != nil {
				return err
			}
			c := company(r)
			if r.Active {
				found = &c
				return nil
			}
			if found == nil {
				found = &c
			}
		}
		return nil
	})
	if err != nil {
		return nil, x.fail(ctx, err)
	}
	return found, nil
}

// fail classifies a lookup failure: the caller gone, or the index
// unreadable (Unavailable either way: a lookup changes nothing).
func (x *Index) fail(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return &providers.Error{Provider: x.name, Kind: providers.Unavailable, Msg: "cancelled", Err: ctx.Err()}
	}
	return &providers.Error{Provider: x.name, Kind: providers.Unavailable, Msg: "reading the company index", Err: err}
}

// ByVAT returns the company with this VAT number, or nil.
func (x *Index) ByVAT(ctx context.Context, vat string) (*providers.Company, error) {
	v := directory.NormalizeVAT(vat)
	if len(v) < 4 {
		return nil, nil
	}
	return x.exact(ctx, pVAT, v)
}

// ByLEI returns the company with this LEI, or nil.
func (x *Index) ByLEI(ctx context.Context, lei string) (*providers.Company, error) {
	return x.exact(ctx, pLEI, strings.ToUpper(strings.TrimSpace(lei)))
}

// ByRegistryID returns the company with this national registry number
// (SIREN, company number, enterprise number), or nil.
func (x *Index) ByRegistryID(ctx context.Context, reg string) (*providers.Company, error) {
	return x.exact(ctx, pReg, normalizeReg(reg))
}

// ByDomain returns the company of a domain, an e-mail address or a URL;
// a sub-domain finds its parent. Nil when none or when domain is not
// one.
func (x *Index) ByDomain(ctx context.Context, domain string) (*providers.Company, error) {
	dom, err := directory.NormalizeDomain(domain)
	if err != nil {
		return nil, nil
	}
	for {
		c, err := x.exact(ctx, pDomain, dom)
		if c != nil || err != nil {
			return c, err
		}
		_, rest, ok := strings.Cut(dom, ".")
		if !ok || !strings.Contains(rest, ".") {
			return nil, nil
		}
		dom = rest
	}
}

// ByKey returns the record a source keeps under key, or nil.
func (x *Index) ByKey(ctx context.Context, source, key string) (*providers.Company, error) {
	var found *providers.Company
	err := x.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(cat([]byte{pKey}, []byte(source), []byte{0}, []byte(key)))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		id, err := it.ValueCopy(nil)
		if err != nil {
			return err
		}
		r, err := get(txn, id)
		if err != nil {
			return err
		}
		c := company(r)
		found = &c
		return nil
	})
	if err != nil {
		return nil, x.fail(ctx, err)
	}
	return found, nil
}

// ByID answers an id as the index gives them ("source:key"), a bare
// LEI, a registry number, or a bare key of any source (sources in name
// order).
func (x *Index) ByID(ctx context.Context, id string) (*providers.Company, error) {
	id = strings.TrimSpace(id)
	if id == "" {
		return nil, nil
	}
	if src, key, ok := strings.Cut(id, ":"); ok {
		return x.ByKey(ctx, src, key)
	}
	if c, err := x.ByLEI(ctx, id); c != nil || err != nil {
		return c, err
	}
	if c, err := x.ByRegistryID(ctx, id); c != nil || err != nil {
		return c, err
	}
	for _, src := range *x.sources.Load() {
		if c, err := x.ByKey(ctx, src, id); c != nil || err != nil {
			return c, err
		}
	}
	return nil, nil
}

// Name search.

// NameQuery ranks as people type (see ByName).
type cand struct {
	id     uint64
	other  int // 1: not the caller's country
	idle   int // 1: inactive
	rank   int // 0 exact name, 1 name starts with the query, 2 words match, 3 only through legal-form words
	length int
	core   string
}

func (a cand) less(b cand) bool {
	switch {
	case a.other != b.other:
		return a.other < b.other
	case a.idle != b.idle:
		return a.idle < b.idle
	case a.rank != b.rank:
		return a.rank < b.rank
	case a.length != b.length:
		return a.length < b.length
	case a.core != b.core:
		return a.core < b.core
	}
	return a.id < b.id
}

// ByName answers a name search: the companies having, for every word of
// the query, a word of their name or legal name that starts with it
// (case, accents and dots ignored). Ranked: the caller's country first,
// active before inactive, then the name (legal-form words left out)
// equal to the query, starting with it, matching it word by word, and
// last the companies the query matches only through legal-form words
// (SA, GmbH, Ltd…); then shorter names first. At most limit; each search
// reads at most maxNameScan index entries, the caller's country first,
// so that a one-letter query costs what a long one does.
func (x *Index) ByName(ctx context.Context, name, country string, limit int) ([]providers.Company, error) {
	if ctx.Err() != nil {
		return nil, x.fail(ctx, ctx.Err())
	}
	qw := words(name)
	if len(qw) == 0 || limit <= 0 {
		return nil, nil
	}
	core, _ := split(qw)
	// The driving word: the longest distinctive one, read from the name
	// words; a query of legal-form words only ("sa") reads them as the
	// start of a name ("Safran"), then as legal forms.
	passes := []byte{pName}
	if len(core) == 0 {
		core = qw
		passes = append(passes, pLegal)
	}
	driver := core[0]
	for _, w := range core {
		if len(w) > len(driver) {
			driver = w
		}
	}
	qcore := strings.Join(core, " ")
	q := newNameQuery(qw, qcore)
	country = strings.ToUpper(country)
	order := []string{}
	if len(country) == 2 {
		order = append(order, country)
	}
	for _, cc := range *x.countries.Load() {
		if cc != country {
			order = append(order, cc)
		}
	}
	var best []cand
	seen := map[uint64]bool{}
	scanned := 0
	err := x.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false})
		defer it.Close()
		for i := range len(passes) * len(order) {
			p, ci := passes[i/len(order)], i%len(order)
			cc := order[ci]
			if ci > 0 && len(best) == limit && best[limit-1].other == 0 {
				continue // no other country can rank before a full list of the caller's
			}
			prefix := cat([]byte{p}, []byte(cc), []byte(driver))
			for it.Seek(prefix); it.ValidForPrefix(prefix) && scanned < maxNameScan; it.Next() {
				scanned++
				if scanned%1024 == 0 && ctx.Err() != nil {
					return ctx.Err()
				}
				item := it.Item()
				k := item.Key()
				if len(k) < 9 {
					continue
				}
				id := binary.BigEndian.Uint64(k[len(k)-8:])
				if seen[id] {
					continue
				}
				var c cand
				var match bool
				if err := item.Value(func(v []byte) error {
					s, ok := decodeNameSummary(v)
					if !ok {
						return nil
					}
					c.rank, match = q.match(s)
					if match {
						c.core = string(s.core) // the one copy, of a match
						c.idle = 1
						if s.active {
							c.idle = 0
						}
					}
					return nil
				}); err != nil {
					return err
				}
				if !match {
					continue
				}
				seen[id] = true
				c.id, c.length, c.other = id, len(c.core), 1
				if country == "" || ci == 0 && cc == country {
					c.other = 0
				}
				if len(best) == limit && !c.less(best[limit-1]) {
					continue
				}
				at := len(best)
				for at > 0 && c.less(best[at-1]) {
					at--
				}
				if len(best) < limit {
					best = append(best, cand{})
				}
				copy(best[at+1:], best[at:len(best)-1])
				best[at] = c
			}
			if scanned >= maxNameScan {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, x.fail(ctx, err)
	}
	return x.records(ctx, best)
}

// nameQuery is a name search's words, ready for matching summaries
// without allocating.
type nameQuery struct {
	words  [][]byte // folded query words
	spaced [][]byte // each with a space before: a word start inside a summary
	legal  []bool   // the word is a legal form
	core   []byte   // the distinctive query words joined by spaces
}

func newNameQuery(qw []string, qcore string) nameQuery {
	q := nameQuery{core: []byte(qcore)}
	for _, w := range qw {
		q.words = append(q.words, []byte(w))
		q.spaced = append(q.spaced, []byte(" "+w))
		q.legal = append(q.legal, legalForms[w])
	}
	return q
}

// match reports whether every query word starts a word of the company's
// names, and how well the company matches (cand.rank).
func (q nameQuery) match(s nameSum) (int, bool) {
	onlyLegal := false
	for i, w := range q.words {
		if startsWord(s.core, w, q.spaced[i]) {
			continue
		}
		if !startsWord(s.all, w, q.spaced[i]) {
			return 0, false
		}
		// a word of the legal name, not of the name, or a legal form
		onlyLegal = onlyLegal || q.legal[i]
	}
	switch {
	case onlyLegal:
		return 3, true
	case bytes.Equal(s.core, q.core):
		return 0, true
	case bytes.HasPrefix(s.core, q.core):
		return 1, true
	}
	return 2, true
}

// startsWord reports whether w starts a word of the space-separated
// words of s (spaced is " "+w).
func startsWord(s, w, spaced []byte) bool {
	return bytes.HasPrefix(s, w) || bytes.Contains(s, spaced)
}

// records reads the companies of the candidates, in order.
func (x *Index) records(ctx context.Context, cs []cand) ([]providers.Company, error) {
	if len(cs) == 0 {
		return nil, nil
	}
	out := make([]providers.Company, 0, len(cs))
	err := x.db.View(func(txn *badger.Txn) error {
		for _, c := range cs {
			r, err := get(txn, idBytes(c.id))
			if err != nil {
				return err
			}
			out = append(out, company(r))
		}
		return nil
	})
	if err != nil {
		return nil, x.fail(ctx, err)
	}
	return out, nil
}

// Search answers lead mining: active companies, in import order country
// by country, whose country is one of c.Countries (any when empty),
// state code one of c.States, industry id one of c.Industries (any when
// empty), employees within [c.MinSize, c.MaxSize] (a bound of 0 is none;
// an unknown size matches no bound) and domain not in c.Exclude; at most
// c.Limit (default 10). Contacts are chosen by providers.SelectContacts.
func (x *Index) Search(ctx context.Context, c providers.Criteria) ([]providers.Company, error) {
	if ctx.Err() != nil {
		return nil, x.fail(ctx, ctx.Err())
	}
	set := func(ss []string, upper bool) map[string]bool {
		if len(ss) == 0 {
			return nil
		}
		m := make(map[string]bool, len(ss))
		for _, s := range ss {
			s = strings.TrimSpace(s)
			if upper {
				s = strings.ToUpper(s)
			}
			m[s] = true
		}
		return m
	}
	states, industries := set(c.States, true), set(c.Industries, false)
	exclude := map[string]bool{}
	for _, e := range c.Exclude {
		if dom, err := directory.NormalizeDomain(e); err == nil {
			exclude[dom] = true
		}
	}
	limit := c.Limit
	if limit <= 0 {
		limit = 10
	}
	countries := *x.countries.Load()
	if len(c.Countries) > 0 {
		countries = nil
		for _, cc := range c.Countries {
			if cc = strings.ToUpper(strings.TrimSpace(cc)); len(cc) == 2 {
				countries = append(countries, cc)
			}
		}
	}
	var ids []cand
	err := x.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false})
		defer it.Close()
		n := 0
		for _, cc := range countries {
			prefix := cat([]byte{pCountry}, []byte(cc))
			for it.Seek(prefix); it.ValidForPrefix(prefix) && len(ids) < limit; it.Next() {
				if n++; n%1024 == 0 && ctx.Err() != nil {
					return ctx.Err()
				}
				item := it.Item()
				k := item.Key()
				if len(k) != 11 {
					continue
				}
				var s miningSum
				var ok bool
				if err := item.Value(func(v []byte) error { s, ok = decodeMiningSummary(v); return nil }); err != nil {
					return err
				}
				switch {
				case !ok || !s.active,
					states != nil && !states[s.state],
					industries != nil && !industries[s.industry],
					c.MinSize > 0 && (s.employees == 0 || s.employees < c.MinSize),
					c.MaxSize > 0 && (s.employees == 0 || s.employees > c.MaxSize),
					s.domain != "" && exclude[s.domain]:
					continue
				}
				ids = append(ids, cand{id: binary.BigEndian.Uint64(k[3:])})
			}
		}
		return nil
	})
	if err != nil {
		return nil, x.fail(ctx, err)
	}
	out, err := x.records(ctx, ids)
	for i := range out {
		out[i].Contacts = providers.SelectContacts(out[i].Contacts, c.ContactsPerCompany, c.Roles, c.Seniorities)
	}
	return out, err
}

// badgerLogger sends Badger's warnings and errors to the logger.
type badgerLogger struct{ log *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.log.Error(strings.TrimSpace(fmt.Sprintf(f, a...)), "engine", "badger")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.log.Warn(strings.TrimSpace(fmt.Sprintf(f, a...)), "engine", "badger")
}
func (b badgerLogger) Infof(string, ...any)  {}
func (b badgerLogger) Debugf(string, ...any) {}
