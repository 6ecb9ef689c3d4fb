// Package directory is the "directory" company-data provider: a local
// company directory the operator loads from CSV or JSONL files (name,
// legal name, domain, VAT, a DUNS-like id, address, phone, e-mail,
// industry, size, IP ranges, contacts), indexed in memory. It answers
// partner autocomplete by name, VAT, domain and id, lead enrichment by
// domain, website visitor reveal by IP and lead mining by country, state,
// industry and size — every company capability of package providers.
//
// Files are validated when the instance is built: any error (unknown
// column or key, bad CIDR, duplicate id, VAT, domain or IP range) fails
// the start, naming the file and line. With no files, the embedded sample
// (a handful of clearly fictitious companies on .example domains and
// documentation IP ranges) is served, so that every Odoo flow can be
// tried in the sandbox.
//
// It imports the standard library and providers only.
package directory

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"unicode"

	"github.com/iapd/iapd/providers"
)

// Type is the adapter type name in the configuration.
const Type = "directory"

//go:embed sample.jsonl
var sample []byte

// SampleFile is the name the embedded sample goes by in errors.
const SampleFile = "sample.jsonl"

// Config is the instance's settings; it is the factory.
type Config struct {
	// Files are CSV (.csv) or JSONL (.jsonl, .ndjson) files, loaded in
	// order.
	Files []string `yaml:"files"`
	// Sample adds the embedded sample directory. Default: true when no
	// file is given, false otherwise.
	Sample *bool `yaml:"sample"`
	// MaxResults bounds the companies a name search answers (default 10,
	// at most 100).
	MaxResults int `yaml:"max_results"`
}

// Validate reports the first problem of the settings.
func (c *Config) Validate() error {
	for i, f := range c.Files {
		if strings.TrimSpace(f) == "" {
			return fmt.Errorf("files[%d]: empty path", i)
		}
	}
	if len(c.Files) == 0 && c.Sample != nil && !*c.Sample {
		return errors.New("no files and sample: false: the directory would be empty")
	}
	if c.MaxResults < 0 || c.MaxResults > 100 {
		return fmt.Errorf("max_results %d: want 1 to 100 (0: the default 10)", c.MaxResults)
	}
	return nil
}

// useSample reports whether the embedded sample is loaded.
func (c *Config) useSample() bool {
	if c.Sample != nil {
		return *c.Sample
	}
	return len(c.Files) == 0
}

// New builds the instance named name: the files read, validated and
// indexed.
func (c *Config) New(name string, log *slog.Logger) (*Directory, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	d := &Directory{cfg: *c, name: name, log: log}
	x, err := d.load()
	if err != nil {
		return nil, err
	}
	d.cur.Store(x)
	return d, nil
}

// load reads and indexes the configured files.
func (d *Directory) load() (*index, error) {
	c := &d.cfg
	var all []entry
	if c.useSample() {
		es, err := parseFile(SampleFile, bytes.NewReader(sample))
		if err != nil {
			return nil, fmt.Errorf("embedded sample: %w", err)
		}
		all = append(all, es...)
	}
	for _, f := range c.Files {
		fh, err := os.Open(f) // #nosec G304 -- a file the operator configured
		if err != nil {
			return nil, err
		}
		es, err := parseFile(f, fh)
		_ = fh.Close()
		if err != nil {
			return nil, err
		}
		all = append(all, es...)
	}
	x, err := build(d.name, all)
	if err != nil {
		return nil, err
	}
	x.max = c.MaxResults
	if x.max == 0 {
		x.max = 10
	}
	if d.log != nil {
		d.log.Info("company directory loaded", "companies", len(x.companies), "ip_ranges", len(x.ips), "sample", c.useSample(), "files", len(c.Files))
	}
	return x, nil
}

// Reload reads the configured files again (cmd/iapd calls it on SIGHUP).
// A file that does not load leaves the directory as it was and is the
// error, naming the file and line.
func (d *Directory) Reload() error {
	x, err := d.load()
	if err != nil {
		return err
	}
	d.cur.Store(x)
	return nil
}

func init() {
	providers.Register(Type, func(cfg providers.Config, deps providers.Deps) (providers.Provider, error) {
		var c Config
		if err := cfg.Decode(&c); err != nil {
			return nil, err
		}
		return c.New(cfg.Name, deps.Logger)
	})
}

// Directory is a loaded, indexed company directory, safe for concurrent
// use. Reload reads its files again and swaps the index in one step: a
// query sees the old directory or the new one, never a mix.
type Directory struct {
	cfg  Config
	name string
	log  *slog.Logger
	cur  atomic.Pointer[index]
}

// index is one load of the directory: read-only once built.
type index struct {
	name      string
	max       int
	companies []providers.Company
	byID      map[string]int
	byVAT     map[string]int
	byDomain  map[string]int
	tokens    []token    // sorted by text, then company
	words     [][]string // per company: the words of its name and legal name
	folded    []string   // per company: the words of its name, joined by spaces
	ips       map[netip.Prefix]int
	lengths4  []int // distinct prefix lengths, longest first
	lengths6  []int
}

// token is one word of a company's name or legal name.
type token struct {
	text string
	idx  int
}

// build indexes the entries; a duplicate id, VAT, domain or IP range is
// an error naming both places.
func build(name string, es []entry) (*index, error) {
	d := &index{
		name: name, byID: map[string]int{}, byVAT: map[string]int{}, byDomain: map[string]int{},
		ips: map[netip.Prefix]int{},
	}
	l4, l6 := map[int]bool{}, map[int]bool{}
	for i, e := range es {
		dup := func(what, v string, j int) error {
			return fmt.Errorf("%s: %s %q already used at %s", e.where, what, v, es[j].where)
		}
		if j, ok := d.byID[e.c.ID]; ok {
			return nil, dup("id", e.c.ID, j)
		}
		d.byID[e.c.ID] = i
		if e.c.VAT != "" {
			if j, ok := d.byVAT[e.c.VAT]; ok {
				return nil, dup("vat", e.c.VAT, j)
			}
			d.byVAT[e.c.VAT] = i
		}
		if e.c.Domain != "" {
			if j, ok := d.byDomain[e.c.Domain]; ok {
				return nil, dup("domain", e.c.Domain, j)
			}
			d.byDomain[e.c.Domain] = i
		}
		for _, p := range e.ranges {
			if j, ok := d.ips[p]; ok {
				return nil, dup("ip range", p.String(), j)
			}
			d.ips[p] = i
			if p.Addr().Is4() {
				l4[p.Bits()] = true
			} else {
				l6[p.Bits()] = true
			}
		}
		ws := unique(append(words(e.c.Name), words(e.c.LegalName)...))
		d.words = append(d.words, ws)
		d.folded = append(d.folded, strings.Join(words(e.c.Name), " "))
		for _, w := range ws {
			d.tokens = append(d.tokens, token{text: w, idx: i})
		}
		d.companies = append(d.companies, e.c)
	}
	sort.Slice(d.tokens, func(a, b int) bool {
		if d.tokens[a].text != d.tokens[b].text {
			return d.tokens[a].text < d.tokens[b].text
		}
		return d.tokens[a].idx < d.tokens[b].idx
	})
	d.lengths4, d.lengths6 = descending(l4), descending(l6)
	return d, nil
}

func descending(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(out)))
	return out
}

func unique(ss []string) []string {
	slices.Sort(ss)
	return slices.Compact(ss)
}

// Name implements providers.Provider.
func (d *Directory) Name() string { return d.name }

// Type implements providers.Provider.
func (d *Directory) Type() string { return Type }

// Close implements providers.Provider; there is nothing to release.
func (d *Directory) Close() error { return nil }

// Sandbox implements providers.Sandboxed: the embedded sample's companies
// are fictitious, so an instance that serves it answers nothing real.
func (d *Directory) Sandbox() bool { return d.cfg.useSample() }

// Len returns the number of companies.
func (d *Directory) Len() int { return len(d.cur.Load().companies) }

// The company capabilities, answered by the current index (below).

func (d *Directory) CompaniesByName(ctx context.Context, q providers.NameQuery) ([]providers.Company, error) {
	return d.cur.Load().CompaniesByName(ctx, q)
}

func (d *Directory) CompanyByVAT(ctx context.Context, vat string) (*providers.Company, error) {
	return d.cur.Load().CompanyByVAT(ctx, vat)
}

func (d *Directory) CompanyByDomain(ctx context.Context, domain string) (*providers.Company, error) {
	return d.cur.Load().CompanyByDomain(ctx, domain)
}

func (d *Directory) CompanyByID(ctx context.Context, id string) (*providers.Company, error) {
	return d.cur.Load().CompanyByID(ctx, id)
}

func (d *Directory) CompanyByIP(ctx context.Context, ip netip.Addr) (*providers.Company, error) {
	return d.cur.Load().CompanyByIP(ctx, ip)
}

func (d *Directory) SearchCompanies(ctx context.Context, c providers.Criteria) ([]providers.Company, error) {
	return d.cur.Load().SearchCompanies(ctx, c)
}

// company returns a copy of company i that shares no memory with the
// index.
func (d *index) company(i int) *providers.Company {
	c := d.companies[i]
	c.Contacts = slices.Clone(c.Contacts)
	if c.Socials != nil {
		s := make(map[string]string, len(c.Socials))
		for k, v := range c.Socials {
			s[k] = v
		}
		c.Socials = s
	}
	return &c
}

// CompaniesByName answers a name search: the companies having, for every
// word of the query, a word of their name or legal name that starts with
// it (ignoring case and accents). Companies of q.Country come first, then
// exact names, then names that start with the query, then by name; at
// most q.Limit (default the instance's max_results). Never an error.
func (d *index) CompaniesByName(ctx context.Context, q providers.NameQuery) ([]providers.Company, error) {
	if err := ctx.Err(); err != nil {
		return nil, &providers.Error{Provider: d.name, Kind: providers.Unavailable, Msg: "cancelled", Err: err}
	}
	qw := words(q.Name)
	if len(qw) == 0 {
		return nil, nil
	}
	limit := q.Limit
	if limit <= 0 || limit > d.max {
		limit = d.max
	}
	// Candidates: the companies with a word starting with the query word
	// that starts the fewest words.
	lo, hi := 0, len(d.tokens)
	for _, w := range qw {
		l := sort.Search(len(d.tokens), func(i int) bool { return d.tokens[i].text >= w })
		h := l + sort.Search(len(d.tokens)-l, func(i int) bool { return !strings.HasPrefix(d.tokens[l+i].text, w) })
		if h-l < hi-lo {
			lo, hi = l, h
		}
	}
	folded := strings.Join(qw, " ")
	country := strings.ToUpper(q.Country)
	// The best limit candidates, kept sorted: other country last, then exact
	// names, names starting with the query, the rest; then by name.
	type cand struct {
		idx, other, rank int
	}
	less := func(a, b cand) bool {
		if a.other != b.other {
			return a.other < b.other
		}
		if a.rank != b.rank {
			return a.rank < b.rank
		}
		if na, nb := d.companies[a.idx].Name, d.companies[b.idx].Name; na != nb {
			return na < nb
		}
		return a.idx < b.idx
	}
	var best []cand
	seen := map[int]bool{}
	for i := lo; i < hi; i++ {
		idx := d.tokens[i].idx
		if seen[idx] || !d.matchesAll(idx, qw) {
			continue
		}
		seen[idx] = true
		c := cand{idx: idx, other: 1, rank: 2}
		if country != "" && d.companies[idx].Country == country {
			c.other = 0
		}
		switch name := d.folded[idx]; {
		case name == folded:
			c.rank = 0
		case strings.HasPrefix(name, folded):
			c.rank = 1
		}
		if len(best) == limit && !less(c, best[limit-1]) {
			continue
		}
		at := sort.Search(len(best), func(j int) bool { return less(c, best[j]) })
		if len(best) < limit {
			best = append(best, cand{})
		}
		copy(best[at+1:], best[at:len(best)-1])
		best[at] = c
	}
	cands := make([]int, len(best))
	for i, c := range best {
		cands[i] = c.idx
	}
	out := make([]providers.Company, 0, len(cands))
	for _, idx := range cands {
		out = append(out, *d.company(idx))
	}
	return out, nil
}

// matchesAll reports whether every query word starts a word of company idx.
func (d *index) matchesAll(idx int, qw []string) bool {
	for _, q := range qw {
		ok := false
		for _, w := range d.words[idx] {
			if strings.HasPrefix(w, q) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// CompanyByVAT returns the company with this VAT number (normalised as
// NormalizeVAT does), or nil.
func (d *index) CompanyByVAT(ctx context.Context, vat string) (*providers.Company, error) {
	if i, ok := d.byVAT[NormalizeVAT(vat)]; ok {
		return d.company(i), nil
	}
	return nil, nil
}

// CompanyByDomain returns the company of a domain, an e-mail address or
// a URL; a sub-domain finds its parent ("mail.widgets.example" finds
// widgets.example). Nil when none; an unusable domain is a miss too.
func (d *index) CompanyByDomain(ctx context.Context, domain string) (*providers.Company, error) {
	dom, err := NormalizeDomain(domain)
	if err != nil {
		return nil, nil
	}
	for {
		if i, ok := d.byDomain[dom]; ok {
			return d.company(i), nil
		}
		_, rest, ok := strings.Cut(dom, ".")
		if !ok || !strings.Contains(rest, ".") {
			return nil, nil
		}
		dom = rest
	}
}

// CompanyByID returns the company with this id, or nil.
func (d *index) CompanyByID(ctx context.Context, id string) (*providers.Company, error) {
	if i, ok := d.byID[strings.TrimSpace(id)]; ok {
		return d.company(i), nil
	}
	return nil, nil
}

// CompanyByIP returns the company whose most specific IP range holds ip,
// or nil.
func (d *index) CompanyByIP(ctx context.Context, ip netip.Addr) (*providers.Company, error) {
	ip = ip.Unmap()
	lengths := d.lengths6
	if ip.Is4() {
		lengths = d.lengths4
	}
	for _, bits := range lengths {
		p, err := ip.Prefix(bits)
		if err != nil {
			continue
		}
		if i, ok := d.ips[p]; ok {
			return d.company(i), nil
		}
	}
	return nil, nil
}

// SearchCompanies answers lead mining: the companies, in file order,
// whose country is one of c.Countries (any when empty), whose state code
// is one of c.States (any when empty), whose industry id is one of
// c.Industries (any when empty), whose number of employees is within
// [c.MinSize, c.MaxSize] (a bound of 0 is none; a company of unknown size
// matches no size bound) and whose domain is not in c.Exclude; at most
// c.Limit (default 10), each with the contacts providers.SelectContacts
// chooses.
func (d *index) SearchCompanies(ctx context.Context, c providers.Criteria) ([]providers.Company, error) {
	if err := ctx.Err(); err != nil {
		return nil, &providers.Error{Provider: d.name, Kind: providers.Unavailable, Msg: "cancelled", Err: err}
	}
	set := func(ss []string, upper bool) map[string]bool {
		if len(ss) == 0 {
			return nil
		}
		m := make(map[string]bool, len(ss))
		for _, s := range ss {
			if upper {
				s = strings.ToUpper(s)
			}
			m[strings.TrimSpace(s)] = true
		}
		return m
	}
	countries, states, industries := set(c.Countries, true), set(c.States, true), set(c.Industries, false)
	exclude := map[string]bool{}
	for _, e := range c.Exclude {
		if dom, err := NormalizeDomain(e); err == nil {
			exclude[dom] = true
		}
	}
	limit := c.Limit
	if limit <= 0 {
		limit = 10
	}
	var out []providers.Company
	for i := range d.companies {
		co := &d.companies[i]
		switch {
		case countries != nil && !countries[co.Country],
			states != nil && !states[co.StateCode],
			industries != nil && !industries[co.IndustryID],
			c.MinSize > 0 && (co.Employees == 0 || co.Employees < c.MinSize),
			c.MaxSize > 0 && (co.Employees == 0 || co.Employees > c.MaxSize),
			co.Domain != "" && exclude[co.Domain]:
			continue
		}
		found := d.company(i)
		found.Contacts = providers.SelectContacts(co.Contacts, c.ContactsPerCompany, c.Roles, c.Seniorities)
		out = append(out, *found)
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

// words splits s into lower-case words without accents.
func words(s string) []string {
	return strings.FieldsFunc(fold(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

// fold lowers s and strips the accents of the Latin letters that carry
// them most often.
func fold(s string) string {
	return accents.Replace(strings.ToLower(s))
}

var accents = strings.NewReplacer(
	"à", "a", "á", "a", "â", "a", "ã", "a", "ä", "a", "å", "a", "æ", "ae",
	"ç", "c", "è", "e", "é", "e", "ê", "e", "ë", "e",
	"ì", "i", "í", "i", "î", "i", "ï", "i", "ñ", "n",
	"ò", "o", "ó", "o", "ô", "o", "õ", "o", "ö", "o", "ø", "o", "œ", "oe",
	"ù", "u", "ú", "u", "û", "u", "ü", "u", "ý", "y", "ÿ", "y", "ß", "ss",
)

// Compile-time interface guards.
var (
	_ providers.CompanyByName   = (*Directory)(nil)
	_ providers.CompanyByVAT    = (*Directory)(nil)
	_ providers.CompanyByDomain = (*Directory)(nil)
	_ providers.CompanyByID     = (*Directory)(nil)
	_ providers.CompanyByIP     = (*Directory)(nil)
	_ providers.CompanySearch   = (*Directory)(nil)
	_ providers.Sandboxed       = (*Directory)(nil)
)
