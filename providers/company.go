package providers

import (
	"context"
	"net/netip"
)

// Company is what company-data providers know of a company; the services
// map it onto each Odoo route's answer shape. Empty fields are unknown.
type Company struct {
	ID          string // a stable id: DUNS for D&B-shaped answers, the directory's own id otherwise
	Name        string
	LegalName   string
	Domain      string // "example.com"
	VAT         string // with its country prefix: "BE0477472701"
	CompanyReg  string // national registry number
	Street      string
	Street2     string
	Zip         string
	City        string
	State       string // name
	StateCode   string
	Country     string // ISO 3166-1 alpha-2
	Phone       string
	Email       string
	Website     string
	Industry    string // a label ("Software")
	IndustryID  string // the provider's industry code, for mining criteria
	Employees   int    // 0: unknown
	Founded     int    // year, 0: unknown
	Description string
	Logo        string // URL
	Socials     map[string]string
	Contacts    []Contact
	// Valid is set by VAT checkers (VIES): the VAT number is registered.
	Valid *bool
}

// Contact is a person of a company (lead mining and reveal).
type Contact struct {
	Name      string
	Email     string
	Phone     string // may be empty: services still answer the key (PROTOCOL §10.2)
	Title     string
	Role      string
	Seniority string
	Country   string
}

// NameQuery searches companies by name.
type NameQuery struct {
	Name    string
	Country string // ISO alpha-2 hint, may be empty
	Limit   int
}

// Criteria select companies for lead mining (PROTOCOL §10).
type Criteria struct {
	Countries  []string // ISO alpha-2
	States     []string // codes
	Industries []string // IndustryID values
	MinSize    int      // employees, 0: any
	MaxSize    int      // 0: any
	Exclude    []string // domains to leave out (already known)
	Limit      int
	// Contacts per company wanted (0: none) and filters on them.
	ContactsPerCompany int
	Roles              []string
	Seniorities        []string
}

// The company-data capabilities; an instance implements those its source
// supports. A miss is (nil or empty, nil), not an error.
type (
	// CompanyByName answers autocomplete by name.
	CompanyByName interface {
		Provider
		CompaniesByName(ctx context.Context, q NameQuery) ([]Company, error)
	}
	// CompanyByVAT answers a VAT lookup (and VAT validity).
	CompanyByVAT interface {
		Provider
		CompanyByVAT(ctx context.Context, vat string) (*Company, error)
	}
	// CompanyByDomain answers enrichment by domain or e-mail domain.
	CompanyByDomain interface {
		Provider
		CompanyByDomain(ctx context.Context, domain string) (*Company, error)
	}
	// CompanyByID answers enrichment by the provider's id (DUNS).
	CompanyByID interface {
		Provider
		CompanyByID(ctx context.Context, id string) (*Company, error)
	}
	// CompanyByIP answers website visitor reveal.
	CompanyByIP interface {
		Provider
		CompanyByIP(ctx context.Context, ip netip.Addr) (*Company, error)
	}
	// CompanySearch answers lead mining.
	CompanySearch interface {
		Provider
		SearchCompanies(ctx context.Context, c Criteria) ([]Company, error)
	}
)
