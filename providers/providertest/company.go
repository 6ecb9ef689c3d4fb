package providertest

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/iapd/iapd/providers"
)

// CompanyHarness describes a company-data provider under test (any of
// CompanyByName, CompanyByVAT, CompanyByDomain, CompanyByID, CompanyByIP,
// CompanySearch; the suite checks those the instance implements).
type CompanyHarness struct {
	// New returns a fresh instance whose source knows Known. It registers
	// the instance's Close with t.Cleanup.
	New func(t *testing.T) providers.Provider
	// Known is a company the source holds: found by its Name (a name
	// search), VAT, Domain, ID, and by a search on its Country.
	Known providers.Company
	// KnownIP is an address of Known, for CompanyByIP.
	KnownIP netip.Addr
	// Down returns an instance whose source cannot be reached: every
	// lookup must fail Unavailable. Nil for a local source.
	Down func(t *testing.T) providers.Provider
	// Hung returns an instance whose source receives the query and does
	// not answer within the instance's timeout: Indeterminate. Nil for a
	// local source.
	Hung func(t *testing.T) providers.Provider
}

// TestCompanyProvider runs the company-data conformance suite: what the
// services (rpc/company) rely on — a miss is (nil or empty, nil), never an
// error; a found company matches what was asked; results are the
// caller's to change; failures are classified.
func TestCompanyProvider(t *testing.T, h CompanyHarness) {
	t.Helper()
	if h.New == nil {
		t.Fatal("providertest: CompanyHarness needs New")
	}
	p := h.New(t)
	if p.Name() == "" || p.Type() == "" {
		t.Errorf("Name() = %q, Type() = %q; want both set", p.Name(), p.Type())
	}
	k := h.Known
	checked := false
	if f, ok := p.(providers.CompanyByName); ok {
		checked = true
		t.Run("ByName", func(t *testing.T) {
			cs, err := f.CompaniesByName(companyCtx(t), providers.NameQuery{Name: k.Name, Limit: 5})
			if err != nil || !companyIn(cs, k) {
				t.Fatalf("CompaniesByName(%q) = %d companies, %v; want %s among them", k.Name, len(cs), err, k.Name)
			}
			if len(cs) > 5 {
				t.Errorf("Limit 5, got %d", len(cs))
			}
			cs, err = f.CompaniesByName(companyCtx(t), providers.NameQuery{Name: "zzqx no such company zzqx", Limit: 5})
			if err != nil || len(cs) != 0 {
				t.Errorf("a name nobody has: %d companies, %v; want none, no error", len(cs), err)
			}
		})
	}
	if f, ok := p.(providers.CompanyByVAT); ok && k.VAT != "" {
		checked = true
		t.Run("ByVAT", func(t *testing.T) {
			c, err := f.CompanyByVAT(companyCtx(t), k.VAT)
			if err != nil || c == nil || !strings.EqualFold(c.VAT, k.VAT) {
				t.Fatalf("CompanyByVAT(%q) = %+v, %v", k.VAT, c, err)
			}
			if c.Valid != nil && !*c.Valid {
				t.Errorf("a company answered with Valid false: a miss is nil")
			}
			for _, odd := range []string{"!!", "X"} {
				c, err := f.CompanyByVAT(companyCtx(t), odd)
				if c != nil || (err != nil && providers.KindOf(err) != providers.Invalid) {
					t.Errorf("CompanyByVAT(%q) = %+v, %v; want a miss or Invalid", odd, c, err)
				}
			}
		})
	}
	if f, ok := p.(providers.CompanyByDomain); ok && k.Domain != "" {
		checked = true
		t.Run("ByDomain", func(t *testing.T) {
			c, err := f.CompanyByDomain(companyCtx(t), k.Domain)
			if err != nil || c == nil || c.Domain != k.Domain {
				t.Fatalf("CompanyByDomain(%q) = %+v, %v", k.Domain, c, err)
			}
			c.Name = "changed by the caller"
			c.Contacts = append(c.Contacts[:0], providers.Contact{Name: "intruder"})
			again, err := f.CompanyByDomain(companyCtx(t), k.Domain)
			if err != nil || again == nil || again.Name != k.Name || (len(again.Contacts) > 0 && again.Contacts[0].Name == "intruder") {
				t.Errorf("a caller's change reached the source: %+v", again)
			}
			if c, err := f.CompanyByDomain(companyCtx(t), "no-such-company.invalid"); c != nil || err != nil {
				t.Errorf("unknown domain: %+v, %v; want nil, nil", c, err)
			}
		})
	}
	if f, ok := p.(providers.CompanyByID); ok && k.ID != "" {
		checked = true
		t.Run("ByID", func(t *testing.T) {
			c, err := f.CompanyByID(companyCtx(t), k.ID)
			if err != nil || c == nil || c.ID != k.ID {
				t.Fatalf("CompanyByID(%q) = %+v, %v", k.ID, c, err)
			}
			if c, err := f.CompanyByID(companyCtx(t), "000000000000"); c != nil || err != nil {
				t.Errorf("unknown id: %+v, %v; want nil, nil", c, err)
			}
		})
	}
	if f, ok := p.(providers.CompanyByIP); ok && h.KnownIP.IsValid() {
		checked = true
		t.Run("ByIP", func(t *testing.T) {
			c, err := f.CompanyByIP(companyCtx(t), h.KnownIP)
			if err != nil || c == nil || c.ID != k.ID {
				t.Fatalf("CompanyByIP(%s) = %+v, %v; want %s", h.KnownIP, c, err, k.Name)
			}
			if c, err := f.CompanyByIP(companyCtx(t), netip.MustParseAddr("0.0.0.1")); c != nil || err != nil {
				t.Errorf("unknown address: %+v, %v; want nil, nil", c, err)
			}
		})
	}
	if f, ok := p.(providers.CompanySearch); ok {
		checked = true
		t.Run("Search", func(t *testing.T) {
			cs, err := f.SearchCompanies(companyCtx(t), providers.Criteria{Countries: []string{k.Country}, Limit: 200})
			if err != nil || !companyIn(cs, k) {
				t.Fatalf("search in %s: %d companies, %v; want %s among them", k.Country, len(cs), err, k.Name)
			}
			for _, c := range cs {
				if c.Country != k.Country {
					t.Errorf("search in %s answered %s of %s", k.Country, c.Name, c.Country)
				}
				if len(c.Contacts) != 0 {
					t.Errorf("no contacts asked, %s came with %d", c.Name, len(c.Contacts))
				}
			}
			cs, err = f.SearchCompanies(companyCtx(t), providers.Criteria{Countries: []string{k.Country}, Limit: 1, ContactsPerCompany: 1})
			if err != nil || len(cs) != 1 || len(cs[0].Contacts) > 1 {
				t.Errorf("Limit 1, 1 contact: %+v, %v", cs, err)
			}
			if cs, err := f.SearchCompanies(companyCtx(t), providers.Criteria{Countries: []string{"ZZ"}, Limit: 5}); err != nil || len(cs) != 0 {
				t.Errorf("a country nobody is in: %d companies, %v; want none, no error", len(cs), err)
			}
		})
	}
	if !checked {
		t.Fatal("the instance implements no company capability the harness can check")
	}
	for _, c := range []struct {
		name string
		mk   func(t *testing.T) providers.Provider
		want providers.Kind
	}{{"Down", h.Down, providers.Unavailable}, {"Hung", h.Hung, providers.Indeterminate}} {
		if c.mk == nil {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			for what, err := range companyLookups(t, c.mk(t), h) {
				if err == nil || providers.KindOf(err) != c.want {
					t.Errorf("%s: %v; want %s", what, err, c.want)
				}
			}
		})
	}
}

// companyLookups runs every lookup p implements for Known and returns the errors.
func companyLookups(t *testing.T, p providers.Provider, h CompanyHarness) map[string]error {
	out := map[string]error{}
	if f, ok := p.(providers.CompanyByName); ok {
		_, out["CompaniesByName"] = f.CompaniesByName(companyCtx(t), providers.NameQuery{Name: h.Known.Name})
	}
	if f, ok := p.(providers.CompanyByVAT); ok {
		_, out["CompanyByVAT"] = f.CompanyByVAT(companyCtx(t), h.Known.VAT)
	}
	if f, ok := p.(providers.CompanyByDomain); ok {
		_, out["CompanyByDomain"] = f.CompanyByDomain(companyCtx(t), h.Known.Domain)
	}
	if f, ok := p.(providers.CompanyByID); ok {
		_, out["CompanyByID"] = f.CompanyByID(companyCtx(t), h.Known.ID)
	}
	if f, ok := p.(providers.CompanyByIP); ok {
		_, out["CompanyByIP"] = f.CompanyByIP(companyCtx(t), h.KnownIP)
	}
	if f, ok := p.(providers.CompanySearch); ok {
		_, out["SearchCompanies"] = f.SearchCompanies(companyCtx(t), providers.Criteria{Countries: []string{h.Known.Country}})
	}
	return out
}

func companyIn(cs []providers.Company, k providers.Company) bool {
	for _, c := range cs {
		if (k.ID != "" && c.ID == k.ID) || (k.ID == "" && c.Name == k.Name) {
			return true
		}
	}
	return false
}

func companyCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
