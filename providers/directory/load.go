package directory

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/iapd/iapd/providers"
)

// The file formats (README "Company directory"): one company per JSONL
// line, or per CSV row under a header row naming the columns. Field names
// are the same in both; a CSV file may leave columns out, and holds
// ip_ranges as a list separated by spaces, commas or semicolons and
// contacts as a JSON array in one cell.

// record is one company as a file holds it.
type record struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	LegalName   string          `json:"legal_name"`
	Domain      string          `json:"domain"`
	VAT         string          `json:"vat"`
	CompanyReg  string          `json:"company_reg"`
	Street      string          `json:"street"`
	Street2     string          `json:"street2"`
	Zip         string          `json:"zip"`
	City        string          `json:"city"`
	State       string          `json:"state"`
	StateCode   string          `json:"state_code"`
	Country     string          `json:"country"`
	Phone       string          `json:"phone"`
	Email       string          `json:"email"`
	Website     string          `json:"website"`
	Industry    string          `json:"industry"`
	IndustryID  string          `json:"industry_id"`
	Employees   int             `json:"employees"`
	Founded     int             `json:"founded"`
	Description string          `json:"description"`
	Logo        string          `json:"logo"`
	Twitter     string          `json:"twitter"`
	Facebook    string          `json:"facebook"`
	LinkedIn    string          `json:"linkedin"`
	Crunchbase  string          `json:"crunchbase"`
	IPRanges    []string        `json:"ip_ranges"`
	Contacts    []contactRecord `json:"contacts"`
}

// contactRecord is one person of a company.
type contactRecord struct {
	Name      string `json:"name"`
	Email     string `json:"email"`
	Phone     string `json:"phone"`
	Title     string `json:"title"`
	Role      string `json:"role"`
	Seniority string `json:"seniority"`
	Country   string `json:"country"`
}

// csvColumns are the columns a CSV header may name.
var csvColumns = []string{
	"id", "name", "legal_name", "domain", "vat", "company_reg", "street", "street2", "zip", "city",
	"state", "state_code", "country", "phone", "email", "website", "industry", "industry_id",
	"employees", "founded", "description", "logo", "twitter", "facebook", "linkedin", "crunchbase",
	"ip_ranges", "contacts",
}

// maxLine bounds one JSONL line or CSV record, in bytes.
const maxLine = 1 << 20

// entry is a loaded company and where it came from (for error messages).
type entry struct {
	c      providers.Company
	ranges []netip.Prefix
	where  string // "file:line"
}

// parseFile reads one file: JSONL for names ending in .jsonl or .ndjson,
// CSV for .csv. Every error names the file and line.
func parseFile(name string, r io.Reader) ([]entry, error) {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".jsonl", ".ndjson":
		return parseJSONL(name, r)
	case ".csv":
		return parseCSV(name, r)
	}
	return nil, fmt.Errorf("%s: unknown format (want a .csv, .jsonl or .ndjson file)", name)
}

func parseJSONL(name string, r io.Reader) ([]entry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var out []entry
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 || b[0] == '#' {
			continue
		}
		where := fmt.Sprintf("%s:%d", name, line)
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		var rec record
		if err := dec.Decode(&rec); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if dec.More() {
			return nil, fmt.Errorf("%s: more than one JSON object on the line", where)
		}
		e, err := rec.validate(where)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, line+1, err)
	}
	return out, nil
}

func parseCSV(name string, r io.Reader) ([]entry, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 0
	cr.Comment = '#'
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	known := map[string]bool{}
	for _, c := range csvColumns {
		known[c] = true
	}
	cols := make([]string, len(header))
	seen := map[string]bool{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		if !known[h] {
			return nil, fmt.Errorf("%s:1: unknown column %q (known: %s)", name, h, strings.Join(csvColumns, ", "))
		}
		if seen[h] {
			return nil, fmt.Errorf("%s:1: column %q appears twice", name, h)
		}
		seen[h] = true
		cols[i] = h
	}
	var out []entry
	for {
		row, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err) // csv.ParseError carries the line
		}
		line, _ := cr.FieldPos(0)
		where := fmt.Sprintf("%s:%d", name, line)
		var rec record
		for i, v := range row {
			if err := rec.setCSV(cols[i], strings.TrimSpace(v)); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", where, cols[i], err)
			}
		}
		e, err := rec.validate(where)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// setCSV sets the field of column col from a CSV cell.
func (r *record) setCSV(col, v string) error {
	str := map[string]*string{
		"id": &r.ID, "name": &r.Name, "legal_name": &r.LegalName, "domain": &r.Domain, "vat": &r.VAT,
		"company_reg": &r.CompanyReg, "street": &r.Street, "street2": &r.Street2, "zip": &r.Zip,
		"city": &r.City, "state": &r.State, "state_code": &r.StateCode, "country": &r.Country,
		"phone": &r.Phone, "email": &r.Email, "website": &r.Website, "industry": &r.Industry,
		"industry_id": &r.IndustryID, "description": &r.Description, "logo": &r.Logo,
		"twitter": &r.Twitter, "facebook": &r.Facebook, "linkedin": &r.LinkedIn, "crunchbase": &r.Crunchbase,
	}
	if p, ok := str[col]; ok {
		*p = v
		return nil
	}
	switch col {
	case "employees", "founded":
		if v == "" {
			return nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		if col == "employees" {
			r.Employees = n
		} else {
			r.Founded = n
		}
	case "ip_ranges":
		r.IPRanges = strings.FieldsFunc(v, func(c rune) bool { return c == ' ' || c == ',' || c == ';' || c == '\t' })
	case "contacts":
		if v == "" {
			return nil
		}
		dec := json.NewDecoder(strings.NewReader(v))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r.Contacts); err != nil {
			return fmt.Errorf("want a JSON array of contacts: %w", err)
		}
	}
	return nil
}

var (
	idPattern      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	countryPattern = regexp.MustCompile(`^[A-Z]{2}$`)
	vatPattern     = regexp.MustCompile(`^([A-Z]{2}[A-Z0-9]{2,18}|[0-9]{2}[A-Z0-9]{13})$`) // VAT with its country prefix, or an Indian GSTIN
	labelPattern   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// validate checks a record and turns it into an entry.
func (r *record) validate(where string) (entry, error) {
	bad := func(field, format string, args ...any) (entry, error) {
		return entry{}, fmt.Errorf("%s: %s: %s", where, field, fmt.Sprintf(format, args...))
	}
	if !idPattern.MatchString(r.ID) {
		return bad("id", "%q: want 1 to 64 letters, digits, '.', '_' or '-' (a DUNS-like number)", r.ID)
	}
	if strings.TrimSpace(r.Name) == "" || len(r.Name) > 256 {
		return bad("name", "required, at most 256 bytes")
	}
	country := strings.ToUpper(strings.TrimSpace(r.Country))
	if !countryPattern.MatchString(country) {
		return bad("country", "%q: want an ISO 3166-1 alpha-2 code", r.Country)
	}
	domain, err := NormalizeDomain(r.Domain)
	if r.Domain != "" && err != nil {
		return bad("domain", "%v", err)
	}
	vat := NormalizeVAT(r.VAT)
	if vat != "" && !vatPattern.MatchString(vat) {
		return bad("vat", "%q: want a country prefix and the number (BE0123456749), or a 15-character GSTIN", r.VAT)
	}
	if r.Email != "" && !strings.Contains(r.Email, "@") {
		return bad("email", "%q is not an e-mail address", r.Email)
	}
	if r.Employees < 0 || r.Founded < 0 || r.Founded > 9999 {
		return bad("employees", "employees and founded must be positive (founded: a year)")
	}
	e := entry{where: where, c: providers.Company{
		ID: r.ID, Name: strings.TrimSpace(r.Name), LegalName: r.LegalName, Domain: domain, VAT: vat,
		CompanyReg: r.CompanyReg, Street: r.Street, Street2: r.Street2, Zip: r.Zip, City: r.City,
		State: r.State, StateCode: strings.ToUpper(r.StateCode), Country: country, Phone: r.Phone,
		Email: r.Email, Website: r.Website, Industry: r.Industry, IndustryID: r.IndustryID,
		Employees: r.Employees, Founded: r.Founded, Description: r.Description, Logo: r.Logo,
	}}
	for k, v := range map[string]string{"twitter": r.Twitter, "facebook": r.Facebook, "linkedin": r.LinkedIn, "crunchbase": r.Crunchbase} {
		if v != "" {
			if e.c.Socials == nil {
				e.c.Socials = map[string]string{}
			}
			e.c.Socials[k] = v
		}
	}
	for _, s := range r.IPRanges {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return bad("ip_ranges", "%q is not a CIDR range: %v", s, err)
		}
		if p.Masked() != p {
			return bad("ip_ranges", "%q has host bits set (write %s)", s, p.Masked())
		}
		if p.Addr().Is4In6() { // ::ffff:a.b.c.d/n is the IPv4 range a.b.c.d/(n-96)
			if p.Bits() < 96 {
				return bad("ip_ranges", "%q mixes IPv4-mapped and other IPv6 addresses", s)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		e.ranges = append(e.ranges, p)
	}
	for i, c := range r.Contacts {
		if strings.TrimSpace(c.Name) == "" {
			return bad(fmt.Sprintf("contacts[%d].name", i), "required")
		}
		if c.Email != "" && !strings.Contains(c.Email, "@") {
			return bad(fmt.Sprintf("contacts[%d].email", i), "%q is not an e-mail address", c.Email)
		}
		e.c.Contacts = append(e.c.Contacts, providers.Contact{
			Name: c.Name, Email: c.Email, Phone: c.Phone, Title: c.Title,
			Role: c.Role, Seniority: strings.ToLower(c.Seniority), Country: strings.ToUpper(c.Country),
		})
	}
	return e, nil
}

// NormalizeVAT returns a VAT number as the directory indexes it: upper
// case, without spaces, dots, dashes and slashes ("be 0123.456.749" →
// "BE0123456749").
func NormalizeVAT(s string) string {
	var b strings.Builder
	for _, c := range strings.ToUpper(s) {
		switch c {
		case ' ', '.', '-', '/', '\t':
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// NormalizeDomain returns a domain as the directory indexes it: lower
// case, without scheme, path, port, "www." and trailing dot; an error if
// what is left is not a host name of two labels or more.
func NormalizeDomain(s string) (string, error) {
	d := strings.ToLower(strings.TrimSpace(s))
	if i := strings.Index(d, "://"); i >= 0 {
		d = d[i+3:]
	}
	if i := strings.LastIndexByte(d, '@'); i >= 0 { // an e-mail address: its domain
		d = d[i+1:]
	}
	if i := strings.IndexAny(d, "/?#"); i >= 0 {
		d = d[:i]
	}
	if i := strings.LastIndexByte(d, ':'); i >= 0 {
		d = d[:i]
	}
	d = strings.TrimSuffix(strings.TrimPrefix(d, "www."), ".")
	labels := strings.Split(d, ".")
	if len(d) > 253 || len(labels) < 2 {
		return "", fmt.Errorf("%q is not a domain name", s)
	}
	for _, l := range labels {
		if !labelPattern.MatchString(l) {
			return "", fmt.Errorf("%q is not a domain name", s)
		}
	}
	return d, nil
}
