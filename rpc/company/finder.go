package company

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/iapd/iapd/providers"
)

// finder asks the service's provider instances, in their configured
// order: the first that has the capability and finds something answers.
//
// A provider that fails Invalid (the query can never succeed there: a
// malformed VAT number) counts as a miss; one that fails Unavailable is
// skipped, the next asked; one that fails Indeterminate ends the search
// with that error (its answer may exist: the caller keeps the hold). When
// nothing is found and every capable provider failed Unavailable, the
// search fails Unavailable; if at least one answered, it is a miss.
type finder struct {
	ps  []providers.Provider
	log *slog.Logger
}

// newFinder checks that every instance offers at least one company
// capability and that together they offer each of need (names of the
// capabilities, for the error).
func newFinder(ps []providers.Provider, log *slog.Logger, need ...string) (*finder, error) {
	have := map[string]bool{}
	for _, p := range ps {
		caps := capabilities(p)
		if len(caps) == 0 {
			return nil, fmt.Errorf("provider %s (%s) has no company-data capability", p.Name(), p.Type())
		}
		for _, c := range caps {
			have[c] = true
		}
	}
	for _, n := range need {
		if !have[n] {
			return nil, fmt.Errorf("no provider of this service offers %s", n)
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &finder{ps: ps, log: log}, nil
}

// capabilities lists the company capabilities p implements.
func capabilities(p providers.Provider) []string {
	var out []string
	if _, ok := p.(providers.CompanyByName); ok {
		out = append(out, "CompanyByName")
	}
	if _, ok := p.(providers.CompanyByVAT); ok {
		out = append(out, "CompanyByVAT")
	}
	if _, ok := p.(providers.CompanyByDomain); ok {
		out = append(out, "CompanyByDomain")
	}
	if _, ok := p.(providers.CompanyByID); ok {
		out = append(out, "CompanyByID")
	}
	if _, ok := p.(providers.CompanyByIP); ok {
		out = append(out, "CompanyByIP")
	}
	if _, ok := p.(providers.CompanySearch); ok {
		out = append(out, "CompanySearch")
	}
	return out
}

// find runs call on every provider of capability P until one finds.
func find[P any, R any](f *finder, what string, call func(P) (R, bool, error)) (R, error) {
	var zero R
	var unavailable error
	answered := false
	for _, p := range f.ps {
		c, ok := p.(P)
		if !ok {
			continue
		}
		r, found, err := call(c)
		if err == nil {
			if found {
				return r, nil
			}
			answered = true
			continue
		}
		switch providers.KindOf(err) {
		case providers.Invalid:
			answered = true
			f.log.Debug("provider refused the query", "provider", p.Name(), "lookup", what, "err", err)
		case providers.Unavailable:
			f.log.Warn("provider unavailable, asking the next", "provider", p.Name(), "lookup", what, "err", err)
			if unavailable == nil {
				unavailable = err
			}
		default:
			f.log.Error("provider answer indeterminate", "provider", p.Name(), "lookup", what, "err", err)
			return zero, asProviderError(p, err)
		}
	}
	if !answered && unavailable != nil {
		return zero, unavailable
	}
	return zero, nil
}

// asProviderError makes sure err is a *providers.Error.
func asProviderError(p providers.Provider, err error) error {
	var pe *providers.Error
	if errors.As(err, &pe) {
		return err
	}
	return &providers.Error{Provider: p.Name(), Kind: providers.Indeterminate, Err: err}
}

func (f *finder) byName(ctx context.Context, q providers.NameQuery) ([]providers.Company, error) {
	return find(f, "name", func(p providers.CompanyByName) ([]providers.Company, bool, error) {
		cs, err := p.CompaniesByName(ctx, q)
		return cs, len(cs) > 0, err
	})
}

func (f *finder) byVAT(ctx context.Context, vat string) (*providers.Company, error) {
	return find(f, "vat", func(p providers.CompanyByVAT) (*providers.Company, bool, error) {
		c, err := p.CompanyByVAT(ctx, vat)
		return c, c != nil && (c.Valid == nil || *c.Valid), err
	})
}

func (f *finder) byDomain(ctx context.Context, domain string) (*providers.Company, error) {
	return find(f, "domain", func(p providers.CompanyByDomain) (*providers.Company, bool, error) {
		c, err := p.CompanyByDomain(ctx, domain)
		return c, c != nil, err
	})
}

func (f *finder) byID(ctx context.Context, id string) (*providers.Company, error) {
	return find(f, "id", func(p providers.CompanyByID) (*providers.Company, bool, error) {
		c, err := p.CompanyByID(ctx, id)
		return c, c != nil, err
	})
}

func (f *finder) byIP(ctx context.Context, ip netip.Addr) (*providers.Company, error) {
	return find(f, "ip", func(p providers.CompanyByIP) (*providers.Company, bool, error) {
		c, err := p.CompanyByIP(ctx, ip)
		return c, c != nil, err
	})
}

func (f *finder) search(ctx context.Context, c providers.Criteria) ([]providers.Company, error) {
	return find(f, "search", func(p providers.CompanySearch) ([]providers.Company, bool, error) {
		cs, err := p.SearchCompanies(ctx, c)
		return cs, len(cs) > 0, err
	})
}
