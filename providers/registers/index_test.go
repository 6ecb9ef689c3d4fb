package registers

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/providertest"
)

func rec(source, key, name, country string) Record {
	return Record{Source: source, Key: key, Active: true, Licence: "test licence",
		Company: providers.Company{Name: name, Country: country}}
}

// importAll imports recs as one session of source into the index of dir.
func importAll(t testing.TB, x *Index, source string, recs ...Record) ImportStats {
	t.Helper()
	im, err := x.BeginImport(source)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := im.Put(r); err != nil {
			im.Abort()
			t.Fatal(err)
		}
	}
	st, err := im.Commit()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func openTemp(t testing.TB) (*Index, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "registers")
	x, err := Open(dir, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = x.Close() })
	return x, dir
}

func names(cs []providers.Company) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name + "/" + c.Country
	}
	return out
}

var ctx = context.Background()

// Re-importing a newer file updates in place: new, changed, unchanged and
// struck-off records are counted, and a struck-off company stays findable
// but is never mined and ranks after active ones.
func TestReimportUpdatesInPlace(t *testing.T) {
	x, _ := openTemp(t)
	a, b, c := rec("kbo", "0477472701", "Alpha Widgets", "BE"), rec("kbo", "0403170701", "Beta Bakery", "BE"), rec("kbo", "0200000000", "Gamma Logistics", "BE")
	a.VAT, b.VAT, c.VAT = "BE0477472701", "BE0403170701", "BE0200000000"
	if st := importAll(t, x, "kbo", a, b, c); st != (ImportStats{New: 3}) {
		t.Fatalf("first import: %+v", st)
	}
	if st := importAll(t, x, "kbo", a, b, c); st != (ImportStats{Unchanged: 3}) {
		t.Fatalf("same file again: %+v", st)
	}
	b2 := b
	b2.Name, b2.City = "Beta Boulangerie", "Namur"
	d := rec("kbo", "0300000000", "Delta Media", "BE")
	st := importAll(t, x, "kbo", a, b2, d) // c is gone from the register
	if st != (ImportStats{New: 1, Changed: 1, Unchanged: 1, StruckOff: 1}) {
		t.Fatalf("newer file: %+v; want 1 new, 1 changed, 1 unchanged, 1 struck off", st)
	}
	// The changed record answers with its new content, under its new name
	// only.
	got, err := x.ByVAT(ctx, "BE 0403.170.701")
	if err != nil || got == nil || got.Name != "Beta Boulangerie" || got.City != "Namur" || got.ID != "kbo:0403170701" {
		t.Fatalf("ByVAT after the change: %+v, %v", got, err)
	}
	if cs, _ := x.ByName(ctx, "bakery", "", 10); len(cs) != 0 {
		t.Errorf("the old name still found: %v", names(cs))
	}
	if cs, _ := x.ByName(ctx, "boulang", "", 10); len(cs) != 1 {
		t.Errorf("the new name: %v", names(cs))
	}
	// Struck off: still there, not mined.
	gone, err := x.ByKey(ctx, "kbo", "0200000000")
	if err != nil || gone == nil {
		t.Fatalf("struck-off company lost: %v", err)
	}
	mined, err := x.Search(ctx, providers.Criteria{Countries: []string{"BE"}, Limit: 100})
	if err != nil || len(mined) != 3 {
		t.Fatalf("mining: %v, %v; want the 3 active", names(mined), err)
	}
	for _, m := range mined {
		if m.Name == "Gamma Logistics" {
			t.Errorf("a struck-off company was mined")
		}
	}
	// Striking off again is not counted again; coming back is a change.
	if st := importAll(t, x, "kbo", a, b2, d); st.StruckOff != 0 || st.Unchanged != 3 {
		t.Errorf("same newer file: %+v", st)
	}
	if st := importAll(t, x, "kbo", a, b2, c, d); st.Changed != 1 || st.Unchanged != 3 {
		t.Errorf("a company back in the register: %+v; want 1 changed", st)
	}
	// Another source is left alone by a kbo import.
	importAll(t, x, "gleif", rec("gleif", "5493001KJTIIGC8Y1R12", "Alpha Widgets", "BE"))
	if st := importAll(t, x, "kbo", a); st.StruckOff != 3 {
		t.Errorf("kbo import of one company: %+v", st)
	}
	if c, _ := x.ByKey(ctx, "gleif", "5493001KJTIIGC8Y1R12"); c == nil {
		t.Errorf("a kbo import struck off a gleif record")
	}
	if cs, _ := x.Search(ctx, providers.Criteria{Countries: []string{"BE"}, Limit: 100}); len(cs) != 2 {
		t.Errorf("mining after the kbo import: %v", names(cs))
	}
}

// The same key twice in one file: the later record wins, counted once.
func TestDuplicateKeyInOneImport(t *testing.T) {
	x, _ := openTemp(t)
	a1, a2 := rec("sirene", "1", "First Name", "FR"), rec("sirene", "1", "Second Name", "FR")
	if st := importAll(t, x, "sirene", a1, a2); st.New != 1 || st.Changed != 0 {
		t.Errorf("stats %+v", st)
	}
	c, _ := x.ByKey(ctx, "sirene", "1")
	if c == nil || c.Name != "Second Name" {
		t.Fatalf("%+v", c)
	}
	if cs, _ := x.ByName(ctx, "first", "", 10); len(cs) != 0 {
		t.Errorf("the overwritten name is still indexed: %v", names(cs))
	}
}

// An aborted import strikes nothing off, and the next import goes on.
func TestAbortStrikesNothingOff(t *testing.T) {
	x, _ := openTemp(t)
	importAll(t, x, "gleif", rec("gleif", "A", "Alpha", "DE"), rec("gleif", "B", "Beta", "DE"))
	im, err := x.BeginImport("gleif")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.BeginImport("kbo"); err == nil {
		t.Errorf("a second import at once was accepted")
	}
	if err := im.Put(rec("gleif", "A", "Alpha", "DE")); err != nil {
		t.Fatal(err)
	}
	im.Abort()
	if cs, _ := x.Search(ctx, providers.Criteria{Countries: []string{"DE"}}); len(cs) != 2 {
		t.Errorf("after an abort: %v", names(cs))
	}
	if st := importAll(t, x, "gleif", rec("gleif", "A", "Alpha", "DE")); st.StruckOff != 1 {
		t.Errorf("the next import: %+v", st)
	}
}

func TestPutRefuses(t *testing.T) {
	x, _ := openTemp(t)
	im, err := x.BeginImport("kbo")
	if err != nil {
		t.Fatal(err)
	}
	defer im.Abort()
	for _, r := range []Record{rec("gleif", "X", "n", "BE"), rec("kbo", "", "n", "BE"),
		{Source: "kbo", Key: "big", Company: providers.Company{Description: strings.Repeat("x", maxRecordBytes)}}} {
		if err := im.Put(r); err == nil {
			t.Errorf("Put(%s/%q) accepted", r.Source, r.Key)
		}
	}
	if _, err := x.BeginImport("a:b"); err == nil {
		t.Errorf("a source with a colon was accepted")
	}
}

// An index no import was committed into does not count as data: a failed
// first import leaves iapd on its default (the sandbox sample).
func TestHasDataNeedsACommittedImport(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "registers")
	x, err := Open(dir, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	im, err := x.BeginImport("kbo")
	if err != nil {
		t.Fatal(err)
	}
	_ = im.Put(rec("kbo", "1", "A", "BE"))
	im.Abort()
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	if HasData(dir) {
		t.Fatal("HasData after an aborted first import")
	}
	x, err = Open(dir, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	importAll(t, x, "kbo", rec("kbo", "1", "A", "BE"))
	x.Close()
	b, err := os.ReadFile(filepath.Join(dir, ImportsFile))
	if !HasData(dir) || err != nil || !strings.Contains(string(b), " kbo 1 0 0 0\n") {
		t.Fatalf("after a committed import: HasData %v, %s: %q, %v", HasData(dir), ImportsFile, b, err)
	}
}

// Name search ranks as people type.
func TestNameRanking(t *testing.T) {
	x, _ := openTemp(t)
	inactive := rec("sirene", "6", "Société Générale Ancienne", "FR")
	inactive.Active = false
	importAll(t, x, "sirene",
		rec("sirene", "1", "Société Générale", "FR"),
		rec("sirene", "2", "Générale de Santé SA", "FR"),
		rec("sirene", "3", "SA Holding Gérard", "FR"),
		rec("sirene", "4", "Safran SA", "FR"),
		rec("sirene", "5", "Sablières Réunies SARL", "FR"),
		inactive,
	)
	importAll(t, x, "companies-house", rec("companies-house", "01", "Generale Services Ltd", "GB"))
	for _, c := range []struct {
		q, country string
		want       []string
	}{
		// accents and case folded; every word a prefix
		{"SOCIETE gen", "FR", []string{"Société Générale/FR", "Société Générale Ancienne/FR"}},
		// the caller's country first; the exact name before longer ones; inactive last
		{"generale", "GB", []string{"Generale Services Ltd/GB", "Générale de Santé SA/FR", "Société Générale/FR", "Société Générale Ancienne/FR"}},
		{"generale", "FR", []string{"Générale de Santé SA/FR", "Société Générale/FR", "Société Générale Ancienne/FR", "Generale Services Ltd/GB"}},
		// a legal form weighs nothing: "sa" finds names starting with "sa"
		// first, and companies matched only through their legal form last
		{"sa", "FR", []string{"Safran SA/FR", "Sablières Réunies SARL/FR", "Générale de Santé SA/FR", "SA Holding Gérard/FR"}},
		{"safran", "", []string{"Safran SA/FR"}},
		{"s.a. holding", "FR", []string{"SA Holding Gérard/FR"}},
		{"gerard", "FR", []string{"SA Holding Gérard/FR"}},
		{"nothing like it", "FR", []string{}},
	} {
		cs, err := x.ByName(ctx, c.q, c.country, 10)
		if err != nil {
			t.Fatal(err)
		}
		if got := names(cs); !reflect.DeepEqual(got, c.want) {
			t.Errorf("ByName(%q, %q) = %q\n want %q", c.q, c.country, got, c.want)
		}
	}
	if cs, _ := x.ByName(ctx, "generale", "", 2); len(cs) != 2 {
		t.Errorf("limit 2: %d", len(cs))
	}
}

func TestExactLookups(t *testing.T) {
	x, _ := openTemp(t)
	g := rec("gleif", "969500T3MBS4SQAMHJ45", "Société Générale", "FR")
	g.LEI, g.CompanyReg = "969500t3mbs4sqamhj45", "552 120 222"
	s := rec("sirene", "55212022200013", "Société Générale", "FR")
	s.VAT, s.CompanyReg, s.Domain = "FR27552120222", "552120222", "https://www.societegenerale.example/"
	s.Active = false
	s2 := rec("sirene", "55212022200021", "Société Générale Agence", "FR")
	s2.VAT = "FR27552120222"
	importAll(t, x, "gleif", g)
	importAll(t, x, "sirene", s, s2)
	check := func(what string, c *providers.Company, err error, wantID string) {
		t.Helper()
		if err != nil || (c == nil) != (wantID == "") || (c != nil && c.ID != wantID) {
			t.Errorf("%s: %+v, %v; want %q", what, c, err, wantID)
		}
	}
	c, err := x.ByVAT(ctx, "fr 27 552120222")
	check("VAT (the active establishment before the closed one)", c, err, "sirene:55212022200021")
	c, err = x.ByLEI(ctx, "969500T3MBS4SQAMHJ45")
	check("LEI", c, err, "gleif:969500T3MBS4SQAMHJ45")
	c, err = x.ByID(ctx, "969500t3mbs4sqamhj45")
	check("ID as a LEI", c, err, "gleif:969500T3MBS4SQAMHJ45")
	c, err = x.ByID(ctx, "552120222")
	check("ID as a registry number (the active record first)", c, err, "gleif:969500T3MBS4SQAMHJ45")
	c, err = x.ByID(ctx, "sirene:55212022200013")
	check("ID as answered", c, err, "sirene:55212022200013")
	c, err = x.ByID(ctx, "55212022200013")
	check("ID as a bare key", c, err, "sirene:55212022200013")
	c, err = x.ByDomain(ctx, "jane@mail.societegenerale.example")
	check("domain of a sub-domain's e-mail", c, err, "sirene:55212022200013")
	for _, miss := range []string{"", "X", "FR00000000000"} {
		c, err = x.ByVAT(ctx, miss)
		check("VAT "+miss, c, err, "")
	}
	c, err = x.ByDomain(ctx, "not a domain")
	check("bad domain", c, err, "")
	c, err = x.ByID(ctx, "nosuch:1")
	check("unknown id", c, err, "")
}

func TestMiningFilters(t *testing.T) {
	x, _ := openTemp(t)
	mk := func(key, country, state, industry string, employees int, domain string) Record {
		r := rec("sirene", key, "Company "+key, country)
		r.StateCode, r.IndustryID, r.Employees, r.Domain = state, industry, employees, domain
		r.Contacts = []providers.Contact{{Name: "A"}, {Name: "B"}}
		return r
	}
	importAll(t, x, "sirene",
		mk("1", "FR", "IDF", "62", 50, "one.example"),
		mk("2", "FR", "IDF", "62", 500, "two.example"),
		mk("3", "FR", "ARA", "62", 50, "three.example"),
		mk("4", "FR", "IDF", "47", 50, "four.example"),
		mk("5", "BE", "", "62", 50, "five.example"),
		mk("6", "FR", "IDF", "62", 0, "six.example"),
	)
	ids := func(cs []providers.Company) string {
		var s []string
		for _, c := range cs {
			s = append(s, c.ID[len("sirene:"):])
		}
		return strings.Join(s, ",")
	}
	for _, c := range []struct {
		crit providers.Criteria
		want string
	}{
		{providers.Criteria{Countries: []string{"fr"}}, "1,2,3,4,6"},
		{providers.Criteria{Countries: []string{"FR"}, States: []string{"idf"}, Industries: []string{"62"}}, "1,2,6"},
		{providers.Criteria{Countries: []string{"FR"}, MinSize: 10, MaxSize: 100}, "1,3,4"},
		{providers.Criteria{Industries: []string{"62"}, MaxSize: 100}, "5,1,3"},
		{providers.Criteria{Countries: []string{"FR"}, Exclude: []string{"one.example", "www.two.example"}, Limit: 2}, "3,4"},
	} {
		cs, err := x.Search(ctx, c.crit)
		if err != nil || ids(cs) != c.want {
			t.Errorf("Search(%+v) = %s, %v; want %s", c.crit, ids(cs), err, c.want)
		}
		for _, co := range cs {
			if len(co.Contacts) != 0 {
				t.Errorf("no contacts asked, got %d", len(co.Contacts))
			}
		}
	}
	cs, _ := x.Search(ctx, providers.Criteria{Countries: []string{"BE"}, ContactsPerCompany: 1})
	if len(cs) != 1 || len(cs[0].Contacts) != 1 {
		t.Errorf("one contact per company: %+v", cs)
	}
}

func conformanceDir(t *testing.T) string {
	t.Helper()
	x, dir := openTemp(t)
	k := rec("kbo", "0477472701", "Stub Company", "BE")
	k.VAT, k.Domain, k.CompanyReg = "BE0477472701", "stub-company.example", "0477.472.701"
	importAll(t, x, "kbo", k, rec("kbo", "0403170701", "Other Company", "BE"), rec("kbo", "1", "Elsewhere", "NL"))
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, IPRangesFile), []byte("cidr,source,key\n# the stub's office\n192.0.2.128/25,kbo,0477472701\n192.0.2.0/24,kbo,0403170701\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestConformance(t *testing.T) {
	dir := conformanceDir(t)
	providertest.TestCompanyProvider(t, providertest.CompanyHarness{
		New: func(t *testing.T) providers.Provider {
			p, err := providers.Builtin.New(providers.Config{Name: "registers", Type: Type},
				providers.Deps{DataDir: filepath.Join(filepath.Dir(dir), "providers", "registers")})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = p.Close() })
			return p
		},
		Known:   providers.Company{ID: "kbo:0477472701", Name: "Stub Company", VAT: "BE0477472701", Domain: "stub-company.example", Country: "BE"},
		KnownIP: netip.MustParseAddr("192.0.2.130"),
	})
}

// Two read-only openers share the index (iapd serves while an operator
// looks); a writer is refused while one is open.
func TestOpenShared(t *testing.T) {
	dir := conformanceDir(t)
	a, err := Open(dir, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if b, err := Open(dir, true, nil); err != nil {
		t.Errorf("second reader: %v", err)
	} else {
		b.Close()
	}
	if w, err := Open(dir, false, nil); err == nil {
		w.Close()
		t.Errorf("a writer opened the index while a reader had it")
	}
	if _, err := Open(filepath.Join(dir, "none"), true, nil); err == nil || !strings.Contains(err.Error(), ErrNoIndex.Error()) {
		t.Errorf("absent index: %v", err)
	}
	if HasData(filepath.Join(dir, "none")) || !HasData(dir) {
		t.Errorf("HasData wrong")
	}
}

// Lookups run concurrently (iapd serves many Odoo databases at once);
// a caller gone is Unavailable, nothing done.
func TestConcurrentLookups(t *testing.T) {
	dir := conformanceDir(t)
	r, err := (&Config{Dir: dir}).New("regs", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				cs, err := r.CompaniesByName(ctx, providers.NameQuery{Name: "stub", Country: "BE"})
				if err != nil || len(cs) != 1 {
					errs <- fmt.Sprintf("goroutine %d, search %d: %d, %v", g, i, len(cs), err)
					return
				}
				if c, err := r.CompanyByIP(ctx, netip.MustParseAddr("192.0.2.7")); err != nil || c == nil || c.ID != "kbo:0403170701" {
					errs <- fmt.Sprintf("reveal: %+v, %v", c, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.CompaniesByName(gone, providers.NameQuery{Name: "stub"}); providers.KindOf(err) != providers.Unavailable || !strings.HasPrefix(err.Error(), "regs:") {
		t.Errorf("cancelled search: %v; want regs: unavailable", err)
	}
	if _, err := r.SearchCompanies(gone, providers.Criteria{}); providers.KindOf(err) != providers.Unavailable {
		t.Errorf("cancelled mining: %v", err)
	}
}

func TestReadIPRanges(t *testing.T) {
	for _, c := range []struct{ in, err string }{
		{"cidr,source,key\n10.0.0.0/8,kbo,1\n", ""},
		{"10.0.0.0/8,kbo,1\n\n# c\n2001:db8::/32,gleif,X\n", ""},
		{"10.0.0.0/8,kbo,1\n10.0.0.0/33,kbo,2\n", "f.csv:2:"},
		{"10.0.0.0/8,kbo\n", "f.csv:1: want cidr,source,key"},
		{"10.0.0.0/8,,1\n", "f.csv:1: source and key"},
		{"10.0.0.0/8,kbo,1\n10.1.0.0/8,kbo,2\n", "f.csv:2: range 10.0.0.0/8 given twice"},
	} {
		tab := &ipTable{m: map[netip.Prefix]ipTarget{}}
		err := ReadIPRanges("f.csv", strings.NewReader(c.in), func(p netip.Prefix, s, k string) error { return tab.add(p, s, k) })
		if (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%q: %v; want %q", c.in, err, c.err)
		}
	}
}

func TestRecordRoundTrip(t *testing.T) {
	r := Record{Source: "gleif", Key: "K", LEI: "L", Active: true, Licence: "CC0",
		Company: providers.Company{Name: "N", LegalName: "LN", Domain: "d.example", VAT: "V", CompanyReg: "R",
			Street: "S", Street2: "S2", Zip: "Z", City: "C", State: "St", StateCode: "SC", Country: "FR",
			Phone: "P", Email: "E", Website: "W", Industry: "I", IndustryID: "II", Employees: 42, Founded: 1901,
			Description: "D", Logo: "Lo", Socials: map[string]string{"twitter": "t", "linkedin": "l"},
			Contacts: []providers.Contact{{Name: "a", Email: "b", Phone: "c", Title: "d", Role: "e", Seniority: "f", Country: "g"}}}}
	got, err := decodeRecord(encodeRecord(&r))
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if _, err := decodeRecord(encodeRecord(&r)[:20]); err == nil {
		t.Errorf("a truncated record decoded")
	}
}

func FuzzDecodeRecord(f *testing.F) {
	r := rec("kbo", "1", "A", "BE")
	r.Contacts = []providers.Contact{{Name: "x"}}
	f.Add(encodeRecord(&r))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err == nil {
			// what decodes re-encodes to a record that decodes the same
			again, err := decodeRecord(encodeRecord(&r))
			if err != nil || !reflect.DeepEqual(again, r) {
				t.Errorf("decoded %+v, re-encoded it decodes as %+v, %v", r, again, err)
			}
		}
		decodeNameSummary(b)
		decodeMiningSummary(b)
	})
}

func FuzzReadIPRanges(f *testing.F) {
	f.Add("cidr,source,key\n10.0.0.0/8,kbo,1\n::/0,a,b\n")
	f.Fuzz(func(t *testing.T, s string) {
		err := ReadIPRanges("f.csv", strings.NewReader(s), func(netip.Prefix, string, string) error { return nil })
		if err != nil && !strings.HasPrefix(err.Error(), "f.csv:") {
			t.Errorf("error does not name the file: %v", err)
		}
	})
}
