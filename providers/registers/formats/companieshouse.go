package formats

import (
	"context"
	"strings"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/registers"
)

// readCompaniesHouse reads Companies House's "Free Company Data Product",
// BasicCompanyDataAsOneFile-YYYY-MM-DD.zip (one CSV inside) or one of its
// BasicCompanyData-…-part*.zip parts: comma-separated, header CompanyName,
// " CompanyNumber", RegAddress.CareOf, RegAddress.POBox,
// RegAddress.AddressLine1, " RegAddress.AddressLine2", RegAddress.PostTown,
// RegAddress.County, RegAddress.Country, RegAddress.PostCode,
// CompanyCategory, CompanyStatus, CountryOfOrigin, DissolutionDate,
// IncorporationDate, …, SICCode.SicText_1…4, …, URI, PreviousName_*, …
// (some names with a leading space as distributed; trimmed here). Layout:
// Companies House, "Free Company Data Product — data fields"
// (download.companieshouse.gov.uk/en_output.html,
// resources.companieshouse.gov.uk/toolsToHelp/pdf/freeDataProductDataset.pdf).
// Active is a CompanyStatus starting with "Active" (including "Active -
// Proposal to Strike off"); the industry is SicText_1's UK SIC 2007 code;
// Country is GB (the register is the UK's; RegAddress.Country names the
// nation: England, Wales, …).
func readCompaniesHouse(ctx context.Context, path string, sink registers.Sink, opt Options) (Stats, error) {
	return readSingleCSV(ctx, path, sink, opt, []string{"CompanyName", "CompanyNumber", "RegAddress.PostCode", "CompanyStatus", "IncorporationDate"},
		func(t *table) (registers.Record, bool, string) {
			rec, bad := companiesHouseRecord(t)
			return rec, false, bad
		})
}

func companiesHouseRecord(t *table) (registers.Record, string) {
	num := strings.ToUpper(t.get("CompanyNumber"))
	if !validCompanyNumber(num) {
		return registers.Record{}, "CompanyNumber " + quote(num) + " is not 8 letters and digits"
	}
	name := t.get("CompanyName")
	if name == "" {
		return registers.Record{}, "no CompanyName"
	}
	var indID, ind string
	for _, col := range []string{"SICCode.SicText_1", "SICCode.SicText_2", "SICCode.SicText_3", "SICCode.SicText_4"} {
		// "62012 - Business and domestic software development"
		if indID, ind = industry(t.get(col)); indID != "" {
			break
		}
	}
	street := joinNonEmpty(", ", t.get("RegAddress.AddressLine1"), t.get("RegAddress.POBox"))
	return registers.Record{
		Company: providers.Company{
			Name: name, LegalName: name, CompanyReg: num,
			Street: street, Street2: t.get("RegAddress.AddressLine2"),
			Zip: t.get("RegAddress.PostCode"), City: t.get("RegAddress.PostTown"),
			State: t.get("RegAddress.County"), Country: "GB",
			Industry: ind, IndustryID: indID,
			Founded: yearDMY(t.get("IncorporationDate")),
		},
		Source: "companies-house", Key: num,
		Active:  strings.HasPrefix(t.get("CompanyStatus"), "Active"),
		Licence: LicenceCompaniesHouse,
	}, ""
}

// validCompanyNumber: 8 characters, digits or a two-letter prefix (SC,
// NI, OC, FC, …) and six digits, as Companies House allocates them.
func validCompanyNumber(s string) bool {
	if len(s) != 8 {
		return false
	}
	for i := 0; i < 8; i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || i < 2 && c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}
