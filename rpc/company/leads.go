package company

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/storage"
)

// Leads serves lead enrichment (PROTOCOL §9), lead mining (§10: v1, v2
// and D&B search_by_criteria) and website visitor reveal (§11), all billed
// on the reveal service: enrich_price per lead enriched, company_price per
// company found and contact_price per contact.
//
// Credit problems: InsufficientCreditError for enrichment and mining
// (the clients catch it there), in-band "credit_error": true for reveal.
// Enrichment and mining are all or nothing: when what was found costs
// more than the account can pay, nothing is charged and the error asks
// for the whole cost. Reveal delivers, in order, the companies the credit
// pays for and reports credit_error for the rest.
type Leads struct {
	bill        *biller
	find        *finder
	enrichCost  storage.Credits
	companyCost storage.Credits
	contactCost storage.Credits
}

// leadsTimeout is how long Odoo waits for enrichment, mining and reveal
// (PROTOCOL §13).
const leadsTimeout = 300 * time.Second

// Bounds of one request.
const (
	maxDomains  = 1000 // enrichment: Odoo sends batches of 50
	maxLeads    = 200  // mining: lead_number 1–200
	maxContacts = 5    // mining: contact_number 1–5
	maxIPs      = 1000 // reveal: Odoo sends batches of 25
)

// EnrichmentArgs are the params of /iap/clearbit/1/lead_enrichment_email.
type EnrichmentArgs struct {
	AccountToken string         `json:"account_token"`
	DBUUID       str            `json:"dbuuid"`
	Domains      map[string]str `json:"domains"`
}

// LeadEnrichment answers {key: company or false} for every key sent.
func (l *Leads) LeadEnrichment(r *http.Request, args *EnrichmentArgs, reply *Reply) error {
	const op = "clearbit/lead_enrichment_email"
	if args.Domains == nil {
		return storage.E(op, storage.Invalid, "Missing param domains.")
	}
	if len(args.Domains) > maxDomains {
		return storage.Ef(op, storage.Invalid, "Invalid param domains: at most %d per call.", maxDomains)
	}
	acct, err := l.bill.admit(r.Context(), op, args.AccountToken, string(args.DBUUID))
	if err != nil {
		return err
	}
	out := make(map[string]any, len(args.Domains))
	if len(args.Domains) == 0 {
		reply.V = out
		return nil
	}
	keys := make([]string, 0, len(args.Domains))
	for k := range args.Domains {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h, err := l.bill.hold(r.Context(), op, acct, l.enrichCost*storage.Credits(len(keys)), l.enrichCost)
	if err != nil {
		return err
	}
	ctx, cancel := budget(r.Context(), leadsTimeout)
	defer cancel()
	found := 0
	for _, k := range keys {
		out[k] = false
		d := strings.TrimSpace(string(args.Domains[k]))
		if d == "" {
			continue
		}
		c, err := l.find.byDomain(ctx, d)
		if err != nil {
			return l.bill.fail(r.Context(), op, h, err)
		}
		if c != nil {
			out[k] = toClearbit(c)
			found++
		}
	}
	cost := l.enrichCost * storage.Credits(found)
	if h != nil && cost > h.amount {
		l.bill.release(r.Context(), op, h)
		return l.bill.insufficient(op, cost)
	}
	if err := l.bill.settle(r.Context(), op, h, cost); err != nil {
		return err
	}
	reply.V = out
	return nil
}

// country is one target country of a v2/D&B query.
type country struct {
	Code   str  `json:"code"`
	States strs `json:"states"`
}

// query is the lead mining query (PROTOCOL §10.1); Countries is a list of
// codes in v1, of {code, states} in v2 and D&B (queryCountries reads both).
type query struct {
	LeadNumber        num              `json:"lead_number"`
	SearchType        str              `json:"search_type"`
	Countries         []queryCountryIn `json:"countries"`
	States            strs             `json:"states"`
	CompanySizeMin    num              `json:"company_size_min"`
	CompanySizeMax    num              `json:"company_size_max"`
	IndustryIDs       strs             `json:"industry_ids"`
	ContactNumber     num              `json:"contact_number"`
	ContactFilterType str              `json:"contact_filter_type"`
	PreferredRole     str              `json:"preferred_role"`
	OtherRoles        strs             `json:"other_roles"`
	Seniority         str              `json:"seniority"`
}

// queryCountryIn is a country of a query: "BE" (v1) or {"code": "BE",
// "states": […]} (v2, D&B).
type queryCountryIn struct{ country }

// UnmarshalJSON implements json.Unmarshaler.
func (c *queryCountryIn) UnmarshalJSON(b []byte) error {
	var code str
	if err := code.UnmarshalJSON(b); err == nil {
		c.country = country{Code: code}
		return nil
	}
	return json.Unmarshal(b, &c.country)
}

// MiningArgs are the params of /iap/clearbit/1/lead_mining_request and
// /iap/clearbit/2/lead_mining_request.
type MiningArgs struct {
	AccountToken string `json:"account_token"`
	DBUUID       str    `json:"dbuuid"`
	Data         *query `json:"data"`
}

// MiningDnBArgs are the params of /api/dnb/1/search_by_criteria.
type MiningDnBArgs struct {
	AccountToken string `json:"account_token"`
	DBUUID       str    `json:"db_uuid"`
	Query        *query `json:"query"`
	DBVersion    str    `json:"db_version"`
	DBLang       str    `json:"db_lang"`
	CountryCode  str    `json:"country_code"`
	RevealIDs    strs   `json:"reveal_ids"`
}

// miningItem is one item of a v1/v2 answer.
type miningItem struct {
	CompanyData clearbitCompany `json:"company_data"`
	PeopleData  []person        `json:"people_data"`
}

// MiningV1 answers 16.0's lead mining.
func (l *Leads) MiningV1(r *http.Request, args *MiningArgs, reply *Reply) error {
	return l.miningClearbit(r, "clearbit/1/lead_mining_request", args, true, reply)
}

// MiningV2 answers 17.0 and 18.0's lead mining.
func (l *Leads) MiningV2(r *http.Request, args *MiningArgs, reply *Reply) error {
	return l.miningClearbit(r, "clearbit/2/lead_mining_request", args, false, reply)
}

func (l *Leads) miningClearbit(r *http.Request, op string, args *MiningArgs, v1 bool, reply *Reply) error {
	found, err := l.mine(r, op, args.AccountToken, string(args.DBUUID), args.Data, v1, nil)
	if err != nil {
		return err
	}
	items := make([]miningItem, 0, len(found))
	for i := range found {
		items = append(items, miningItem{CompanyData: toClearbit(&found[i]), PeopleData: toPeople(found[i].Contacts)})
	}
	reply.V = map[string]any{"data": items}
	return nil
}

// MiningDnB answers late 18.0 and 19.0's lead mining: flat D&B items,
// leaving out the companies whose id is in reveal_ids.
func (l *Leads) MiningDnB(r *http.Request, args *MiningDnBArgs, reply *Reply) error {
	const op = "dnb/search_by_criteria"
	found, err := l.mine(r, op, args.AccountToken, string(args.DBUUID), args.Query, false, args.RevealIDs.strings())
	if err != nil {
		return err
	}
	items := make([]dnbLead, 0, len(found))
	for i := range found {
		items = append(items, toDnBLead(&found[i], toPeople(found[i].Contacts)))
	}
	reply.V = map[string]any{"data": items}
	return nil
}

// mine runs a lead mining query: the account admitted, the most it may
// cost held, the companies searched country by country, the cost of what
// was found captured.
func (l *Leads) mine(r *http.Request, op, token, dbuuid string, q *query, v1 bool, known []string) ([]providers.Company, error) {
	if q == nil {
		return nil, storage.E(op, storage.Invalid, "Missing param: the query.")
	}
	n := int(q.LeadNumber)
	if n < 1 || n > maxLeads {
		return nil, storage.Ef(op, storage.Invalid, "Invalid param lead_number: want 1 to %d.", maxLeads)
	}
	people := q.SearchType == "people"
	if !people && q.SearchType != "companies" {
		return nil, storage.E(op, storage.Invalid, "Invalid param search_type: want companies or people.")
	}
	contacts := 0
	var roles, seniorities []string
	if people {
		contacts = int(q.ContactNumber)
		if contacts < 1 || contacts > maxContacts {
			return nil, storage.Ef(op, storage.Invalid, "Invalid param contact_number: want 1 to %d.", maxContacts)
		}
		switch q.ContactFilterType {
		case "role":
			if q.PreferredRole != "" {
				roles = append(roles, string(q.PreferredRole))
			}
			roles = append(roles, q.OtherRoles.strings()...)
		case "seniority":
			if q.Seniority != "" {
				seniorities = []string{string(q.Seniority)}
			}
		}
	}
	acct, err := l.bill.admit(r.Context(), op, token, dbuuid)
	if err != nil {
		return nil, err
	}
	per := l.companyCost + l.contactCost*storage.Credits(contacts)
	h, err := l.bill.hold(r.Context(), op, acct, per*storage.Credits(n), l.companyCost)
	if err != nil {
		return nil, err
	}
	exclude := map[string]bool{}
	for _, id := range known {
		exclude[id] = true
	}
	base := providers.Criteria{
		Industries: q.IndustryIDs.strings(), MinSize: int(q.CompanySizeMin), MaxSize: int(q.CompanySizeMax),
		ContactsPerCompany: contacts, Roles: roles, Seniorities: seniorities,
	}
	// v1 sends a flat list of countries and states; v2 and D&B give each
	// country its states, so each country is one search.
	var searches []providers.Criteria
	if v1 {
		c := base
		for _, qc := range q.Countries {
			if qc.Code != "" {
				c.Countries = append(c.Countries, strings.ToUpper(string(qc.Code)))
			}
		}
		c.States = q.States.strings()
		searches = append(searches, c)
	} else {
		for _, qc := range q.Countries {
			if qc.Code == "" {
				continue
			}
			c := base
			c.Countries = []string{strings.ToUpper(string(qc.Code))}
			c.States = qc.States.strings()
			searches = append(searches, c)
		}
		if len(searches) == 0 {
			searches = append(searches, base)
		}
	}
	ctx, cancel := budget(r.Context(), leadsTimeout)
	defer cancel()
	var found []providers.Company
	seen := map[string]bool{}
	for _, c := range searches {
		if len(found) == n {
			break
		}
		c.Limit = min(n-len(found)+len(exclude), 10000)
		cs, err := l.find.search(ctx, c)
		if err != nil {
			return nil, l.bill.fail(r.Context(), op, h, err)
		}
		for _, co := range cs {
			key := co.ID
			if key == "" {
				key = co.Domain
			}
			if exclude[co.ID] || seen[key] || len(found) == n {
				continue
			}
			seen[key] = true
			if len(co.Contacts) > contacts {
				co.Contacts = co.Contacts[:contacts]
			}
			found = append(found, co)
		}
	}
	var cost storage.Credits
	for _, co := range found {
		cost += l.companyCost + l.contactCost*storage.Credits(len(co.Contacts))
	}
	if h != nil && cost > h.amount {
		l.bill.release(r.Context(), op, h)
		return nil, l.bill.insufficient(op, cost)
	}
	if err := l.bill.settle(r.Context(), op, h, cost); err != nil {
		return nil, err
	}
	return found, nil
}

// rule is a lead generation rule of a reveal request (PROTOCOL §11).
type rule struct {
	RuleID            num  `json:"rule_id"`
	LeadFor           str  `json:"lead_for"`
	Countries         strs `json:"countries"`
	FilterOnSize      bool `json:"filter_on_size"`
	CompanySizeMin    num  `json:"company_size_min"`
	CompanySizeMax    num  `json:"company_size_max"`
	IndustryTags      strs `json:"industry_tags"`
	UserCountry       str  `json:"user_country"`
	ContactFilterType str  `json:"contact_filter_type"`
	PreferredRole     str  `json:"preferred_role"`
	OtherRoles        strs `json:"other_roles"`
	Seniority         str  `json:"seniority"`
	ExtraContacts     num  `json:"extra_contacts"`
}

// matches reports whether company c satisfies the rule's filters.
func (ru *rule) matches(c *providers.Company) bool {
	if cs := ru.Countries.strings(); len(cs) > 0 && !containsFold(cs, c.Country) {
		return false
	}
	if ru.FilterOnSize {
		if c.Employees == 0 || c.Employees < int(ru.CompanySizeMin) || (ru.CompanySizeMax > 0 && c.Employees > int(ru.CompanySizeMax)) {
			return false
		}
	}
	if tags := ru.IndustryTags.strings(); len(tags) > 0 && !containsFold(tags, c.IndustryID) {
		return false
	}
	return true
}

// contacts is how many contacts the rule asks for (1 + extra in people mode).
func (ru *rule) contacts() int {
	if ru.LeadFor != "people" {
		return 0
	}
	return 1 + max(0, min(int(ru.ExtraContacts), maxContacts))
}

func (ru *rule) pick(cs []providers.Contact) []providers.Contact {
	var roles, seniorities []string
	switch ru.ContactFilterType {
	case "role":
		if ru.PreferredRole != "" {
			roles = append(roles, string(ru.PreferredRole))
		}
		roles = append(roles, ru.OtherRoles.strings()...)
	case "seniority":
		if ru.Seniority != "" {
			seniorities = []string{string(ru.Seniority)}
		}
	}
	return providers.SelectContacts(cs, ru.contacts(), roles, seniorities)
}

func containsFold(list []string, v string) bool {
	for _, s := range list {
		if strings.EqualFold(strings.TrimSpace(s), v) {
			return true
		}
	}
	return false
}

// RevealData is the data param of a reveal request.
type RevealData struct {
	IPs   map[string][]num `json:"ips"`
	Rules map[string]*rule `json:"rules"`
}

// RevealArgs are the params of /iap/clearbit/1/reveal (no dbuuid).
type RevealArgs struct {
	AccountToken string      `json:"account_token"`
	Data         *RevealData `json:"data"`
}

// revealItem is one item of reveal_data: a company found, or not_found.
type revealItem struct {
	IP         string           `json:"ip"`
	NotFound   bool             `json:"not_found,omitempty"`
	RuleID     *int             `json:"rule_id,omitempty"`
	ClearbitID string           `json:"clearbit_id,omitempty"`
	Credit     *storage.Credits `json:"credit,omitempty"`
	RevealData *clearbitCompany `json:"reveal_data,omitempty"`
	PeopleData *[]person        `json:"people_data,omitempty"` // always there for a company found (may be [])
}

// revealReply is the reveal answer; reveal_data is never null.
type revealReply struct {
	RevealData  []revealItem `json:"reveal_data"`
	CreditError bool         `json:"credit_error"`
}

// Reveal answers, for each visitor IP, the company of the first rule
// (of those listed for the IP) it matches, with its contacts, charged
// company_price plus contact_price per contact (once per company and
// batch); or not_found (free). IPs
// the credit cannot pay for are left out and credit_error is set: the
// client keeps them for its next run and tells the rule creators.
func (l *Leads) Reveal(r *http.Request, args *RevealArgs, reply *Reply) error {
	const op = "clearbit/reveal"
	if args.Data == nil || args.Data.IPs == nil {
		return storage.E(op, storage.Invalid, "Missing param data.ips.")
	}
	if len(args.Data.IPs) > maxIPs {
		return storage.Ef(op, storage.Invalid, "Invalid param data.ips: at most %d per call.", maxIPs)
	}
	acct, err := l.bill.admit(r.Context(), op, args.AccountToken, "")
	if err != nil {
		return err
	}
	ips := make([]string, 0, len(args.Data.IPs))
	var most storage.Credits
	for ip, ids := range args.Data.IPs {
		ips = append(ips, ip)
		worst := 0
		for _, id := range ids {
			if ru := args.Data.Rules[strconv.Itoa(int(id))]; ru != nil {
				worst = max(worst, ru.contacts())
			}
		}
		most += l.companyCost + l.contactCost*storage.Credits(worst)
	}
	sort.Strings(ips)
	out := revealReply{RevealData: []revealItem{}}
	h, err := l.bill.hold(r.Context(), op, acct, most, l.companyCost)
	if storage.Is(err, storage.InsufficientCredit) {
		out.CreditError = true
		reply.V = out
		return nil
	}
	if err != nil {
		return err
	}
	ctx, cancel := budget(r.Context(), leadsTimeout)
	defer cancel()
	var spent storage.Credits
	revealed := map[string]bool{}
	for _, raw := range ips {
		addr, perr := netip.ParseAddr(strings.TrimSpace(raw))
		var c *providers.Company
		if perr == nil {
			if c, err = l.find.byIP(ctx, addr); err != nil {
				return l.bill.fail(r.Context(), op, h, err)
			}
		}
		var ru *rule
		if c != nil {
			for _, id := range args.Data.IPs[raw] {
				if cand := args.Data.Rules[strconv.Itoa(int(id))]; cand != nil && cand.matches(c) {
					ru = cand
					break
				}
			}
		}
		if ru == nil {
			out.RevealData = append(out.RevealData, revealItem{IP: raw, NotFound: true})
			continue
		}
		cb := toClearbit(c)
		picked := ru.pick(c.Contacts)
		cost := l.companyCost + l.contactCost*storage.Credits(len(picked))
		if revealed[cb.ClearbitID] {
			// The same company behind another visitor IP of this batch: the
			// client makes one lead per company, so it is not charged twice.
			picked, cost = nil, 0
		}
		if h == nil || spent+cost > h.amount {
			if cost > 0 {
				out.CreditError = true
				break
			}
		}
		spent += cost
		revealed[cb.ClearbitID] = true
		ruleID := int(ru.RuleID)
		people := toPeople(picked)
		out.RevealData = append(out.RevealData, revealItem{
			IP: raw, RuleID: &ruleID, ClearbitID: cb.ClearbitID, Credit: &cost, RevealData: &cb, PeopleData: &people,
		})
	}
	if err := l.bill.settle(r.Context(), op, h, spent); err != nil {
		return err
	}
	reply.V = out
	return nil
}
