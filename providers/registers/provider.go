package registers

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/iapd/iapd/providers"
)

// Type is the adapter type name in the configuration.
const Type = "registers"

// IPRangesFile is the reveal mapping read by default, in the registers
// directory, when it exists.
const IPRangesFile = "ip-ranges.csv"

// Config is the instance's settings; it is the factory.
type Config struct {
	// Dir is the registers directory (default <data>/registers), whose
	// index "iapd directory import" fills.
	Dir string `yaml:"dir"`
	// IPRanges are reveal mapping files (CSV "cidr,source,key", see
	// ReadIPRanges). Default: <dir>/ip-ranges.csv when it exists.
	IPRanges []string `yaml:"ip_ranges"`
	// MaxResults bounds the companies a name search answers (default
	// 10, at most 100).
	MaxResults int `yaml:"max_results"`
}

// Validate reports the first problem of the settings.
func (c *Config) Validate() error {
	for i, f := range c.IPRanges {
		if strings.TrimSpace(f) == "" {
			return fmt.Errorf("ip_ranges[%d]: empty path", i)
		}
	}
	if c.MaxResults < 0 || c.MaxResults > 100 {
		return fmt.Errorf("max_results %d: want 1 to 100 (0: the default 10)", c.MaxResults)
	}
	return nil
}

// DefaultDir is the registers directory of a data directory.
func DefaultDir(data string) string { return filepath.Join(data, "registers") }

func init() {
	providers.Register(Type, func(cfg providers.Config, deps providers.Deps) (providers.Provider, error) {
		var c Config
		if err := cfg.Decode(&c); err != nil {
			return nil, err
		}
		if c.Dir == "" {
			if deps.DataDir == "" {
				return nil, errors.New("dir: required (no data directory)")
			}
			// deps.DataDir is <data>/providers/<name>.
			c.Dir = DefaultDir(filepath.Dir(filepath.Dir(deps.DataDir)))
		}
		return c.New(cfg.Name, deps.Logger)
	})
}

// New opens the index of c.Dir read-write (lookups are answered while an
// online import writes; the directory lock keeps offline imports out)
// and reads the reveal mapping.
func (c *Config) New(name string, log *slog.Logger) (*Registers, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	x, err := Open(c.Dir, false, log)
	if err != nil {
		return nil, err
	}
	x.name = name
	r := &Registers{cfg: *c, name: name, x: x, log: log}
	if err := r.Reload(); err != nil {
		_ = x.Close()
		return nil, err
	}
	return r, nil
}

// Registers is the "registers" provider: every company capability,
// answered from the index, and reveal from the operator's IP ranges.
type Registers struct {
	cfg  Config
	name string
	x    *Index
	log  *slog.Logger
	ips  atomic.Pointer[ipTable]
}

// Reload reads the reveal mapping again (cmd/iapd calls it on SIGHUP); a
// file that does not load leaves the mapping as it was and is the error.
// The index itself needs no reload: an online import (BeginImport)
// writes into the open index, and lookups see each batch it commits.
func (r *Registers) Reload() error {
	files := r.cfg.IPRanges
	if len(files) == 0 {
		def := filepath.Join(r.cfg.Dir, IPRangesFile)
		if _, err := os.Stat(def); err == nil {
			files = []string{def}
		}
	}
	t := &ipTable{m: map[netip.Prefix]ipTarget{}}
	for _, f := range files {
		fh, err := os.Open(f) // #nosec G304 -- a file the operator configured
		if err != nil {
			return err
		}
		err = ReadIPRanges(f, fh, func(p netip.Prefix, source, key string) error { return t.add(p, source, key) })
		_ = fh.Close()
		if err != nil {
			return err
		}
	}
	t.finish()
	r.ips.Store(t)
	r.log.Info("company registers opened", "dir", r.cfg.Dir, "ip_ranges", len(t.m), "countries", len(*r.x.countries.Load()))
	return nil
}

// BeginImport starts an import session of source into the serving index
// (Index.BeginImport): one at a time.
func (r *Registers) BeginImport(source string) (*Import, error) { return r.x.BeginImport(source) }

// Name implements providers.Provider.
func (r *Registers) Name() string { return r.name }

// Type implements providers.Provider.
func (r *Registers) Type() string { return Type }

// Close implements providers.Provider: the index is closed.
func (r *Registers) Close() error { return r.x.Close() }

func (r *Registers) max(limit int) int {
	m := r.cfg.MaxResults
	if m == 0 {
		m = 10
	}
	if limit <= 0 || limit > m {
		return m
	}
	return limit
}

// CompaniesByName implements providers.CompanyByName (Index.ByName).
func (r *Registers) CompaniesByName(ctx context.Context, q providers.NameQuery) ([]providers.Company, error) {
	return r.x.ByName(ctx, q.Name, q.Country, r.max(q.Limit))
}

// CompanyByVAT implements providers.CompanyByVAT.
func (r *Registers) CompanyByVAT(ctx context.Context, vat string) (*providers.Company, error) {
	return r.x.ByVAT(ctx, vat)
}

// CompanyByDomain implements providers.CompanyByDomain.
func (r *Registers) CompanyByDomain(ctx context.Context, domain string) (*providers.Company, error) {
	return r.x.ByDomain(ctx, domain)
}

// CompanyByID implements providers.CompanyByID: "source:key" as the
// answers carry it, a LEI, or a registry number.
func (r *Registers) CompanyByID(ctx context.Context, id string) (*providers.Company, error) {
	return r.x.ByID(ctx, id)
}

// SearchCompanies implements providers.CompanySearch (Index.Search).
func (r *Registers) SearchCompanies(ctx context.Context, c providers.Criteria) ([]providers.Company, error) {
	return r.x.Search(ctx, c)
}

// CompanyByIP implements providers.CompanyByIP: the company of the most
// specific range of the reveal mapping holding ip, or nil.
func (r *Registers) CompanyByIP(ctx context.Context, ip netip.Addr) (*providers.Company, error) {
	t, ok := r.ips.Load().lookup(ip)
	if !ok {
		return nil, nil
	}
	return r.x.ByKey(ctx, t.source, t.key)
}

// ipTarget is the company a range maps to.
type ipTarget struct{ source, key string }

// ipTable is one load of the reveal mapping: read-only once finished.
type ipTable struct {
	m                  map[netip.Prefix]ipTarget
	lengths4, lengths6 []int // distinct prefix lengths, longest first
}

func (t *ipTable) add(p netip.Prefix, source, key string) error {
	if _, dup := t.m[p]; dup {
		return fmt.Errorf("range %s given twice", p)
	}
	t.m[p] = ipTarget{source: source, key: key}
	return nil
}

func (t *ipTable) finish() {
	l4, l6 := map[int]bool{}, map[int]bool{}
	for p := range t.m {
		if p.Addr().Is4() {
			l4[p.Bits()] = true
		} else {
			l6[p.Bits()] = true
		}
	}
	desc := func(m map[int]bool) []int {
		out := make([]int, 0, len(m))
		for n := range m {
			out = append(out, n)
		}
		sort.Sort(sort.Reverse(sort.IntSlice(out)))
		return out
	}
	t.lengths4, t.lengths6 = desc(l4), desc(l6)
}

func (t *ipTable) lookup(ip netip.Addr) (ipTarget, bool) {
	ip = ip.Unmap()
	lengths := t.lengths6
	if ip.Is4() {
		lengths = t.lengths4
	}
	for _, bits := range lengths {
		p, err := ip.Prefix(bits)
		if err != nil {
			continue
		}
		if v, ok := t.m[p]; ok {
			return v, true
		}
	}
	return ipTarget{}, false
}

// ReadIPRanges reads a reveal mapping: CSV lines "cidr,source,key" (an
// IPv4 or IPv6 prefix in CIDR notation, a register name as imported, the
// company's key in it: LEI, SIRET, company number, enterprise number); a
// first line "cidr,source,key", empty lines and lines starting with #
// are skipped. Each error names file and line; add's error stops it.
func ReadIPRanges(file string, r io.Reader, add func(p netip.Prefix, source, key string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' || (line == 1 && strings.EqualFold(strings.ReplaceAll(s, " ", ""), "cidr,source,key")) {
			continue
		}
		f := strings.Split(s, ",")
		if len(f) != 3 {
			return fmt.Errorf("%s:%d: want cidr,source,key, got %d fields", file, line, len(f))
		}
		p, err := netip.ParsePrefix(strings.TrimSpace(f[0]))
		if err != nil {
			return fmt.Errorf("%s:%d: %w", file, line, err)
		}
		source, key := strings.TrimSpace(f[1]), strings.TrimSpace(f[2])
		if source == "" || key == "" {
			return fmt.Errorf("%s:%d: source and key are required", file, line)
		}
		if err := add(p.Masked(), source, key); err != nil {
			return fmt.Errorf("%s:%d: %w", file, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s:%d: %w", file, line+1, err)
	}
	return nil
}

// Compile-time interface guards.
var (
	_ providers.CompanyByName   = (*Registers)(nil)
	_ providers.CompanyByVAT    = (*Registers)(nil)
	_ providers.CompanyByDomain = (*Registers)(nil)
	_ providers.CompanyByID     = (*Registers)(nil)
	_ providers.CompanyByIP     = (*Registers)(nil)
	_ providers.CompanySearch   = (*Registers)(nil)
)
