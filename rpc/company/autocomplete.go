package company

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/storage"
)

// Autocomplete serves partner autocomplete (PROTOCOL §8), billed on the
// partner_autocomplete service: the old API /iap/partner_autocomplete/*
// (16.0, 17.0 until Mar 2025, 18.0 initial builds) and the D&B API
// /api/dnb/1/* (17.0/18.0 from Mar 2025, 19.0).
//
// Searches (suggestions by name or VAT) are free unless search_price is
// configured, and are then charged when they find something; an
// enrichment is charged enrich_price when it finds the company. Credit
// problems: InsufficientCreditError for searches (the client then shows
// no suggestions), in-band "credit_error": true for enrichments. An
// unregistered, banned or "+disabled" account is refused with an
// AccessError, never charged.
type Autocomplete struct {
	bill       *biller
	find       *finder
	searchCost storage.Credits
	enrichCost storage.Credits
	maxResults int
}

// Timeouts of the partner autocomplete routes (PROTOCOL §13): 15 s, 5 s
// for the automatic enrichment of a new company.
const (
	autocompleteTimeout = 15 * time.Second
	autoEnrichTimeout   = 5 * time.Second
)

// CommonArgs are the params every partner autocomplete call carries
// (§8: db_uuid, account_token, country_code, zip; 19.0 adds db_version
// and db_lang).
type CommonArgs struct {
	AccountToken string `json:"account_token"`
	DBUUID       str    `json:"db_uuid"`
	CountryCode  str    `json:"country_code"`
	Zip          str    `json:"zip"`
	DBVersion    str    `json:"db_version"`
	DBLang       str    `json:"db_lang"`
}

// SearchArgs are the params of the old API's search.
type SearchArgs struct {
	CommonArgs
	Query str `json:"query"`
}

// Search answers suggestions by name: a list of companies, [] when none.
func (a *Autocomplete) Search(r *http.Request, args *SearchArgs, reply *Reply) error {
	const op = "partner_autocomplete/search"
	cs, err := a.searchByName(r, op, &args.CommonArgs, string(args.Query), string(args.CountryCode))
	if err != nil {
		return err
	}
	out := make([]oldSuggestion, 0, len(cs))
	for i := range cs {
		out = append(out, toOldSuggestion(&cs[i]))
	}
	reply.V = out
	return nil
}

// SearchVATArgs are the params of the old API's search_vat.
type SearchVATArgs struct {
	CommonArgs
	VAT str `json:"vat"`
}

// SearchVAT answers the company of a VAT number, or false (the client
// then asks VIES itself).
func (a *Autocomplete) SearchVAT(r *http.Request, args *SearchVATArgs, reply *Reply) error {
	const op = "partner_autocomplete/search_vat"
	c, err := a.searchByVAT(r, op, &args.CommonArgs, string(args.VAT), string(args.CountryCode))
	if err != nil {
		return err
	}
	if c == nil {
		reply.V = false
		return nil
	}
	reply.V = toOldCompany(c)
	return nil
}

// EnrichArgs are the params of the old API's enrich.
type EnrichArgs struct {
	CommonArgs
	Domain     str `json:"domain"`
	PartnerGID str `json:"partner_gid"`
	VAT        str `json:"vat"`
}

// oldEnrichReply is the old API's enrich answer (§8.1).
type oldEnrichReply struct {
	CompanyData *oldCompany `json:"company_data,omitempty"`
	CreditError bool        `json:"credit_error"`
}

// Enrich answers {"company_data": …, "credit_error": false}, the company
// found by partner_gid, domain or VAT (company_data absent when none),
// or {"credit_error": true} without credit.
func (a *Autocomplete) Enrich(r *http.Request, args *EnrichArgs, reply *Reply) error {
	const op = "partner_autocomplete/enrich"
	c, creditErr, err := a.enrich(r, op, &args.CommonArgs, autocompleteTimeout, func(f *finder, ctx context.Context) (*providers.Company, error) {
		if id := string(args.PartnerGID); id != "" && id != "0" {
			if c, err := f.byID(ctx, id); c != nil || err != nil {
				return c, err
			}
		}
		if args.Domain != "" {
			if c, err := f.byDomain(ctx, string(args.Domain)); c != nil || err != nil {
				return c, err
			}
		}
		if args.VAT != "" {
			return f.byVAT(ctx, qualifyVAT(string(args.VAT), string(args.CountryCode)))
		}
		return nil, nil
	})
	if err != nil {
		return err
	}
	out := oldEnrichReply{CreditError: creditErr}
	if c != nil {
		oc := toOldCompany(c)
		out.CompanyData = &oc
	}
	reply.V = out
	return nil
}

// UpdateArgs are the params of the old API's update (the hourly sync of
// the VAT numbers users typed).
type UpdateArgs struct {
	CommonArgs
	PartnerGID str `json:"partner_gid"`
	VAT        str `json:"vat"`
}

// Update acknowledges the sync; iapd's directory is the operator's, not
// crowd-sourced, so nothing is stored. The client ignores the answer.
func (a *Autocomplete) Update(r *http.Request, args *UpdateArgs, reply *Reply) error {
	reply.V = true
	return nil
}

// DnBSearchArgs are the params of search_by_name and search_by_vat.
type DnBSearchArgs struct {
	CommonArgs
	Query            str `json:"query"`
	QueryCountryCode str `json:"query_country_code"`
}

// dnbSearchReply is {"data": [company, …]}; Error set (truthy) when the
// provider could not answer: the client then shows no suggestions (and
// for a VAT asks VIES itself). Never a bare credit_error: 18.0 and 19.0
// iterate data unless error is set (PROTOCOL §8.2, fixture nc 018).
type dnbSearchReply struct {
	Data  []dnbCompany `json:"data"`
	Error string       `json:"error,omitempty"`
}

// SearchByName answers D&B suggestions by name.
func (a *Autocomplete) SearchByName(r *http.Request, args *DnBSearchArgs, reply *Reply) error {
	const op = "dnb/search_by_name"
	cs, err := a.searchByName(r, op, &args.CommonArgs, string(args.Query), string(args.QueryCountryCode))
	return a.dnbSearchAnswer(cs, err, args.DBVersion != "", reply)
}

// SearchByVAT answers D&B suggestions by VAT (or GST) number.
func (a *Autocomplete) SearchByVAT(r *http.Request, args *DnBSearchArgs, reply *Reply) error {
	const op = "dnb/search_by_vat"
	c, err := a.searchByVAT(r, op, &args.CommonArgs, string(args.Query), string(args.QueryCountryCode))
	var cs []providers.Company
	if c != nil {
		cs = []providers.Company{*c}
	}
	return a.dnbSearchAnswer(cs, err, args.DBVersion != "", reply)
}

func (a *Autocomplete) dnbSearchAnswer(cs []providers.Company, err error, v19 bool, reply *Reply) error {
	out := dnbSearchReply{Data: make([]dnbCompany, 0, len(cs))}
	if err != nil {
		if storage.KindOf(err) != storage.Unavailable {
			return err // refusals and credit: the error envelope (the client shows no suggestions)
		}
		out.Error = "The company data provider is temporarily unavailable."
		reply.V = out
		return nil
	}
	for i := range cs {
		out.Data = append(out.Data, toDnB(&cs[i], v19))
	}
	reply.V = out
	return nil
}

// DnBEnrichArgs are the params of enrich_by_duns, enrich_by_gst and
// enrich_by_domain.
type DnBEnrichArgs struct {
	CommonArgs
	DUNS   str `json:"duns"`
	GST    str `json:"gst"`
	Domain str `json:"domain"`
}

// dnbEnrichReply is {"data": company}, {"credit_error": true} or
// {"error": …} (the client: "Unable to enrich company (no credit was
// consumed)").
type dnbEnrichReply struct {
	Data        *dnbCompany `json:"data,omitempty"`
	CreditError bool        `json:"credit_error,omitempty"`
	Error       string      `json:"error,omitempty"`
}

// EnrichByDUNS enriches a suggestion by its DUNS number.
func (a *Autocomplete) EnrichByDUNS(r *http.Request, args *DnBEnrichArgs, reply *Reply) error {
	return a.dnbEnrich(r, "dnb/enrich_by_duns", args, autocompleteTimeout, reply, func(f *finder, ctx context.Context) (*providers.Company, error) {
		return f.byID(ctx, string(args.DUNS))
	})
}

// EnrichByGST enriches a suggestion found by Indian GSTIN.
func (a *Autocomplete) EnrichByGST(r *http.Request, args *DnBEnrichArgs, reply *Reply) error {
	return a.dnbEnrich(r, "dnb/enrich_by_gst", args, autocompleteTimeout, reply, func(f *finder, ctx context.Context) (*providers.Company, error) {
		return f.byVAT(ctx, string(args.GST))
	})
}

// EnrichByDomain enriches a newly created company by its domain.
func (a *Autocomplete) EnrichByDomain(r *http.Request, args *DnBEnrichArgs, reply *Reply) error {
	return a.dnbEnrich(r, "dnb/enrich_by_domain", args, autoEnrichTimeout, reply, func(f *finder, ctx context.Context) (*providers.Company, error) {
		return f.byDomain(ctx, string(args.Domain))
	})
}

func (a *Autocomplete) dnbEnrich(r *http.Request, op string, args *DnBEnrichArgs, timeout time.Duration, reply *Reply, look lookup) error {
	c, creditErr, err := a.enrich(r, op, &args.CommonArgs, timeout, look)
	switch {
	case err != nil && storage.KindOf(err) == storage.Unavailable:
		reply.V = dnbEnrichReply{Error: "The company data provider is temporarily unavailable."}
		return nil
	case err != nil:
		return err
	case creditErr:
		reply.V = dnbEnrichReply{CreditError: true}
	case c == nil:
		reply.V = dnbEnrichReply{Error: "No company data found."}
	default:
		d := toDnB(c, args.DBVersion != "")
		reply.V = dnbEnrichReply{Data: &d}
	}
	return nil
}

// searchByName runs a billed name search.
func (a *Autocomplete) searchByName(r *http.Request, op string, args *CommonArgs, query, country string) ([]providers.Company, error) {
	query = strings.TrimSpace(query)
	if len(query) > 256 {
		return nil, storage.E(op, storage.Invalid, "Invalid param query: at most 256 bytes.")
	}
	var out []providers.Company
	err := a.billedSearch(r, op, args, func(ctx context.Context) (bool, error) {
		if query == "" {
			return false, nil
		}
		cs, err := a.find.byName(ctx, providers.NameQuery{Name: query, Country: strings.ToUpper(country), Limit: a.maxResults})
		if len(cs) > a.maxResults {
			cs = cs[:a.maxResults]
		}
		out = cs
		return len(cs) > 0, err
	})
	return out, err
}

// searchByVAT runs a billed VAT lookup.
func (a *Autocomplete) searchByVAT(r *http.Request, op string, args *CommonArgs, vat, country string) (*providers.Company, error) {
	vat = qualifyVAT(vat, country)
	var out *providers.Company
	err := a.billedSearch(r, op, args, func(ctx context.Context) (bool, error) {
		if vat == "" {
			return false, nil
		}
		c, err := a.find.byVAT(ctx, vat)
		out = c
		return c != nil, err
	})
	return out, err
}

// billedSearch admits the account, holds search_price, runs look and
// settles: captured when it found something, released otherwise, kept
// when the provider's answer was indeterminate.
func (a *Autocomplete) billedSearch(r *http.Request, op string, args *CommonArgs, look func(context.Context) (bool, error)) error {
	acct, err := a.bill.admit(r.Context(), op, args.AccountToken, string(args.DBUUID))
	if err != nil {
		return err
	}
	h, err := a.bill.hold(r.Context(), op, acct, a.searchCost, a.searchCost)
	if err != nil {
		return err
	}
	ctx, cancel := budget(r.Context(), autocompleteTimeout)
	found, err := look(ctx)
	cancel()
	if err != nil {
		return a.bill.fail(r.Context(), op, h, err)
	}
	cost := storage.Credits(0)
	if found {
		cost = a.searchCost
	}
	return a.bill.settle(r.Context(), op, h, cost)
}

// lookup finds the company of an enrichment.
type lookup func(f *finder, ctx context.Context) (*providers.Company, error)

// enrich admits the account, holds enrich_price (creditErr when the
// account cannot pay it), looks the company up and settles.
func (a *Autocomplete) enrich(r *http.Request, op string, args *CommonArgs, timeout time.Duration, look lookup) (c *providers.Company, creditErr bool, err error) {
	acct, err := a.bill.admit(r.Context(), op, args.AccountToken, string(args.DBUUID))
	if err != nil {
		return nil, false, err
	}
	h, err := a.bill.hold(r.Context(), op, acct, a.enrichCost, a.enrichCost)
	if storage.Is(err, storage.InsufficientCredit) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	ctx, cancel := budget(r.Context(), timeout)
	c, err = look(a.find, ctx)
	cancel()
	if err != nil {
		return nil, false, a.bill.fail(r.Context(), op, h, err)
	}
	cost := storage.Credits(0)
	if c != nil {
		cost = a.enrichCost
	}
	if err := a.bill.settle(r.Context(), op, h, cost); err != nil {
		return nil, false, err
	}
	return c, false, nil
}

var vatPrefix = regexp.MustCompile(`^[A-Za-z]{2}`)

// qualifyVAT puts the country prefix in front of a VAT number typed
// without one ("0123456749" with BE → "BE0123456749"); a number that has
// one (or an Indian GSTIN, which starts with digits and is used as is
// when no country is known) is returned trimmed.
func qualifyVAT(vat, country string) string {
	vat = strings.TrimSpace(vat)
	if vat == "" || vatPrefix.MatchString(vat) || len(country) != 2 {
		return vat
	}
	cc := strings.ToUpper(country)
	if cc == "IN" { // a GSTIN carries its state code, not a country prefix
		return vat
	}
	if cc == "GR" {
		cc = "EL"
	}
	return cc + vat
}
