package company

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/iapd/iapd/providers"
)

// The answer shapes: one providers.Company mapped onto what each Odoo
// route reads (PROTOCOL §8–§11). Each has exactly the keys its clients
// read; where old clients index a key directly, it is always present
// (null or false rather than absent).

// falseStr is a string Odoo-style: "" is sent as false (D&B answers).
type falseStr string

func (s falseStr) MarshalJSON() ([]byte, error) {
	if s == "" {
		return []byte("false"), nil
	}
	return json.Marshal(string(s))
}

// nullStr is a string sent as null when empty (Clearbit-shaped answers).
type nullStr string

func (s nullStr) MarshalJSON() ([]byte, error) {
	if s == "" {
		return []byte("null"), nil
	}
	return json.Marshal(string(s))
}

// nullInt is a number sent as null when zero.
type nullInt int

func (n nullInt) MarshalJSON() ([]byte, error) {
	if n == 0 {
		return []byte("null"), nil
	}
	return strconv.AppendInt(nil, int64(n), 10), nil
}

// website is the company's website, else https://<domain>.
func website(c *providers.Company) string {
	if c.Website != "" {
		return c.Website
	}
	if c.Domain != "" {
		return "https://" + c.Domain
	}
	return ""
}

// partnerGID is the company id as Odoo's partner_gid (an int4 field), or
// nil when the id is not such a number.
func partnerGID(id string) *int64 {
	n, err := strconv.ParseInt(id, 10, 32)
	if err != nil || n <= 0 {
		return nil
	}
	return &n
}

// --- old API (PROTOCOL §8.1: 16.0, 17.0 until Mar 2025) ---

// oldSuggestion is one suggestion of /iap/partner_autocomplete/search.
type oldSuggestion struct {
	Name       string `json:"name"`
	LegalName  string `json:"legal_name,omitempty"`
	Domain     string `json:"domain,omitempty"`
	Logo       string `json:"logo,omitempty"`
	PartnerGID *int64 `json:"partner_gid,omitempty"`
	VAT        string `json:"vat,omitempty"`
}

func toOldSuggestion(c *providers.Company) oldSuggestion {
	return oldSuggestion{Name: c.Name, LegalName: c.LegalName, Domain: c.Domain, Logo: c.Logo, PartnerGID: partnerGID(c.ID), VAT: c.VAT}
}

// oldCompany is the company_data of enrich and the answer of search_vat:
// res.partner field names plus the location codes the client converts.
type oldCompany struct {
	Name        string `json:"name"`
	Domain      string `json:"domain,omitempty"`
	PartnerGID  *int64 `json:"partner_gid,omitempty"`
	VAT         string `json:"vat,omitempty"`
	Street      string `json:"street,omitempty"`
	Street2     string `json:"street2,omitempty"`
	City        string `json:"city,omitempty"`
	Zip         string `json:"zip,omitempty"`
	StateCode   string `json:"state_code,omitempty"`
	StateName   string `json:"state_name,omitempty"`
	CountryCode string `json:"country_code,omitempty"`
	Phone       string `json:"phone,omitempty"`
	Email       string `json:"email,omitempty"`
	Website     string `json:"website,omitempty"`
	Logo        string `json:"logo,omitempty"`
}

func toOldCompany(c *providers.Company) oldCompany {
	return oldCompany{
		Name: c.Name, Domain: c.Domain, PartnerGID: partnerGID(c.ID), VAT: c.VAT, Street: c.Street,
		Street2: c.Street2, City: c.City, Zip: c.Zip, StateCode: c.StateCode, StateName: c.State,
		CountryCode: c.Country, Phone: c.Phone, Email: c.Email, Website: website(c), Logo: c.Logo,
	}
}

// --- D&B API (PROTOCOL §8.2 and §10.2) ---

// dnbCompany is a company of the D&B autocomplete answers (the keys a
// real 18.0/19.0 read, fixtures odoo18/odoo19 014–021); IndustryCode
// only for 19.0+ (which sends db_version and maps it to industry_id).
type dnbCompany struct {
	Name              string      `json:"name"`
	DUNS              falseStr    `json:"duns"`
	VAT               falseStr    `json:"vat"`
	Street            falseStr    `json:"street"`
	Street2           falseStr    `json:"street2"`
	City              falseStr    `json:"city"`
	Zip               falseStr    `json:"zip"`
	CountryCode       falseStr    `json:"country_code"`
	CountryName       falseStr    `json:"country_name"`
	StateCode         falseStr    `json:"state_code"`
	StateName         falseStr    `json:"state_name"`
	Phone             falseStr    `json:"phone"`
	Email             falseStr    `json:"email"`
	Website           falseStr    `json:"website"`
	Domain            falseStr    `json:"domain"`
	PreferredLanguage falseStr    `json:"preferred_language"`
	UNSPSCCodes       [][2]string `json:"unspsc_codes"`
	IndustryCode      *falseStr   `json:"industry_code,omitempty"`
}

func toDnB(c *providers.Company, v19 bool) dnbCompany {
	d := dnbCompany{
		Name: c.Name, DUNS: falseStr(c.ID), VAT: falseStr(c.VAT), Street: falseStr(c.Street),
		Street2: falseStr(c.Street2), City: falseStr(c.City), Zip: falseStr(c.Zip),
		CountryCode: falseStr(c.Country), StateCode: falseStr(c.StateCode), StateName: falseStr(c.State),
		Phone: falseStr(c.Phone), Email: falseStr(c.Email), Website: falseStr(website(c)),
		Domain: falseStr(c.Domain), UNSPSCCodes: [][2]string{},
	}
	if v19 {
		code := falseStr(naceSection(c.IndustryID))
		d.IndustryCode = &code
	}
	return d
}

// dnbLead is one item of /api/dnb/1/search_by_criteria: a flat D&B
// company (19.0 indexes duns and country_code directly, takes email[0]
// and phone or phone_numbers[0]) with its people_data.
type dnbLead struct {
	Name              string      `json:"name"`
	DUNS              falseStr    `json:"duns"`
	VAT               falseStr    `json:"vat"`
	Street            falseStr    `json:"street"`
	Street2           falseStr    `json:"street2"`
	City              falseStr    `json:"city"`
	Zip               falseStr    `json:"zip"`
	CountryCode       falseStr    `json:"country_code"`
	CountryName       falseStr    `json:"country_name"`
	StateCode         falseStr    `json:"state_code"`
	StateName         falseStr    `json:"state_name"`
	Phone             falseStr    `json:"phone"`
	PhoneNumbers      []string    `json:"phone_numbers"`
	Email             []string    `json:"email"`
	Website           falseStr    `json:"website"`
	Domain            falseStr    `json:"domain"`
	PreferredLanguage falseStr    `json:"preferred_language"`
	UNSPSCCodes       [][2]string `json:"unspsc_codes"`
	IndustryCode      falseStr    `json:"industry_code"`
	People            []person    `json:"people_data"`
}

func toDnBLead(c *providers.Company, people []person) dnbLead {
	d := toDnB(c, true)
	return dnbLead{
		Name: d.Name, DUNS: d.DUNS, VAT: d.VAT, Street: d.Street, Street2: d.Street2, City: d.City, Zip: d.Zip,
		CountryCode: d.CountryCode, CountryName: d.CountryName, StateCode: d.StateCode, StateName: d.StateName,
		Phone: d.Phone, PhoneNumbers: list(c.Phone), Email: list(c.Email), Website: d.Website, Domain: d.Domain,
		PreferredLanguage: d.PreferredLanguage, UNSPSCCodes: d.UNSPSCCodes, IndustryCode: *d.IndustryCode, People: people,
	}
}

// --- Clearbit-shaped answers (PROTOCOL §9, §10.2 v1/v2, §11) ---

// clearbitCompany is the company of lead enrichment, of lead mining v1/v2
// (company_data) and of website reveal (reveal_data). The lead helper of
// 16.0–18.0 indexes country_code, domain, clearbit_id, name, legal_name,
// phone, phone_numbers, location, city, postal_code and state_code
// directly; the chatter template (iap_mail.enrich_company) reads the rest.
type clearbitCompany struct {
	Name                   string   `json:"name"`
	LegalName              nullStr  `json:"legal_name"`
	Domain                 nullStr  `json:"domain"`
	ClearbitID             string   `json:"clearbit_id"`
	CountryCode            nullStr  `json:"country_code"`
	StateCode              nullStr  `json:"state_code"`
	StateName              nullStr  `json:"state_name"`
	Phone                  nullStr  `json:"phone"`
	PhoneNumbers           []string `json:"phone_numbers"`
	Location               nullStr  `json:"location"`
	StreetName             nullStr  `json:"street_name"`
	City                   nullStr  `json:"city"`
	PostalCode             nullStr  `json:"postal_code"`
	Email                  []string `json:"email"`
	Logo                   nullStr  `json:"logo"`
	Description            nullStr  `json:"description"`
	CompanyType            nullStr  `json:"company_type"`
	Employees              nullInt  `json:"employees"`
	EstimatedAnnualRevenue nullStr  `json:"estimated_annual_revenue"`
	FoundedYear            nullInt  `json:"founded_year"`
	SectorPrimary          nullStr  `json:"sector_primary"`
	Industry               nullStr  `json:"industry"`
	IndustryGroup          nullStr  `json:"industry_group"`
	SubIndustry            nullStr  `json:"sub_industry"`
	Tech                   []string `json:"tech"`
	Timezone               nullStr  `json:"timezone"`
	Twitter                nullStr  `json:"twitter"`
	TwitterBio             nullStr  `json:"twitter_bio"`
	TwitterFollowers       nullInt  `json:"twitter_followers"`
	Facebook               nullStr  `json:"facebook"`
	LinkedIn               nullStr  `json:"linkedin"`
	Crunchbase             nullStr  `json:"crunchbase"`
}

func toClearbit(c *providers.Company) clearbitCompany {
	id := c.ID
	if id == "" {
		id = c.Domain // the lead's reveal_id must not be empty
	}
	return clearbitCompany{
		Name: c.Name, LegalName: nullStr(c.LegalName), Domain: nullStr(c.Domain), ClearbitID: id,
		CountryCode: nullStr(c.Country), StateCode: nullStr(c.StateCode), StateName: nullStr(c.State),
		Phone: nullStr(c.Phone), PhoneNumbers: list(c.Phone), Location: nullStr(c.Street),
		StreetName: nullStr(c.Street), City: nullStr(c.City), PostalCode: nullStr(c.Zip), Email: list(c.Email),
		Logo: nullStr(c.Logo), Description: nullStr(c.Description), Employees: nullInt(c.Employees),
		FoundedYear: nullInt(c.Founded), Industry: nullStr(c.Industry), Tech: []string{},
		Twitter: nullStr(c.Socials["twitter"]), Facebook: nullStr(c.Socials["facebook"]),
		LinkedIn: nullStr(c.Socials["linkedin"]), Crunchbase: nullStr(c.Socials["crunchbase"]),
	}
}

// person is one item of people_data. Every key is always present: the
// chatter template indexes people['phone'] (and the others) directly, and
// a missing key rolls the whole request back on 18.0 (PROTOCOL §10.2).
type person struct {
	FullName nullStr `json:"full_name"`
	Email    nullStr `json:"email"`
	Title    nullStr `json:"title"`
	Phone    nullStr `json:"phone"`
}

func toPeople(cs []providers.Contact) []person {
	out := make([]person, 0, len(cs))
	for _, c := range cs {
		out = append(out, person{FullName: nullStr(c.Name), Email: nullStr(c.Email), Title: nullStr(c.Title), Phone: nullStr(c.Phone)})
	}
	return out
}

// list is s as a one-item list, or an empty list.
func list(s string) []string {
	if s == "" {
		return []string{}
	}
	return []string{s}
}

// naceSection maps a company's industry id to the NACE section Odoo 19's
// industry_code names (base.res_partner_industry_<A–U>): a single letter
// is taken as is; the lead-mining industry codes Odoo ships
// (crm.iap.lead.industry, PROTOCOL §10.1) map to the section of their
// activity. Unknown: "".
func naceSection(id string) string {
	id = strings.TrimSpace(id)
	if len(id) == 1 && id[0] >= 'A' && id[0] <= 'U' {
		return id
	}
	return naceOfIndustry[id]
}

var naceOfIndustry = map[string]string{
	"30": "G", "155": "G", // Consumer Discretionary
	"33": "G",             // Consumer Staples
	"69": "K", "157": "K", // Banks & Insurance
	"86":  "J",             // Media
	"114": "L",             // Real Estate
	"136": "H",             // Transportation
	"138": "D",             // Energy & Utilities
	"148": "C",             // Materials
	"149": "J",             // Telecommunication Services
	"150": "I", "151": "I", // Consumer Services
	"152": "G",             // Retailing
	"153": "C", "154": "C", // Food, Beverage & Tobacco
	"158": "K", "159": "K", // Diversified Financials
	"160": "Q", // Health Care Equipment & Services
	"161": "C", // Pharmaceuticals, Biotechnology
	"162": "C", // Capital Goods
	"163": "N", // Commercial & Professional Services
	"165": "J", // Software & Services
	"166": "C", // Technology Hardware
	"167": "F", // Construction Materials
	"168": "D", // Independent Power & Renewables
	"238": "C", // Automobiles & Components
	"239": "C", // Consumer Durables & Apparel
}
