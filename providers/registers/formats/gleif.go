package formats

import (
	"context"
	"strings"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/registers"
)

// readGLEIF reads the GLEIF LEI-CDF golden copy in CSV ("LEI2" concatenated
// file, zipped as GLEIF distributes it, or the unzipped CSV): one row per
// LEI, comma-separated, header LEI, Entity.LegalName, …,
// Entity.LegalAddress.FirstAddressLine, …, Entity.EntityStatus,
// Entity.EntityCreationDate, Registration.*. Layout: GLEIF, "Golden Copy
// and Delta Files — CSV format" (gleif.org/en/lei-data/gleif-golden-copy/
// download-the-golden-copy) over the LEI-CDF 3.1 schema
// (gleif.org/en/about-lei/common-data-file-format/current-versions/
// level-1-data-lei-cdf-3-1-format). Active is Entity.EntityStatus ACTIVE;
// the address is the legal address, the head office's when the legal one
// is empty; CompanyReg is the registration authority's entity id. LEIs
// whose Registration.RegistrationStatus is DUPLICATE or ANNULLED are
// skipped.
func readGLEIF(ctx context.Context, path string, sink registers.Sink, opt Options) (Stats, error) {
	return readSingleCSV(ctx, path, sink, opt, []string{"LEI", "Entity.LegalName", "Entity.LegalAddress.Country", "Entity.EntityStatus"},
		func(t *table) (registers.Record, bool, string) {
			// An LEI issued twice or in error names no entity of its own.
			if st := t.get("Registration.RegistrationStatus"); st == "DUPLICATE" || st == "ANNULLED" {
				return registers.Record{}, true, ""
			}
			rec, bad := gleifRecord(t)
			return rec, false, bad
		})
}

func gleifRecord(t *table) (registers.Record, string) {
	lei := strings.ToUpper(t.get("LEI"))
	if !validLEI(lei) {
		return registers.Record{}, "LEI " + quote(lei) + " is not 20 letters and digits"
	}
	name := t.get("Entity.LegalName")
	if name == "" {
		return registers.Record{}, "no Entity.LegalName"
	}
	addr := "Entity.LegalAddress."
	if t.get(addr+"FirstAddressLine") == "" && t.get(addr+"City") == "" {
		addr = "Entity.HeadquartersAddress."
	}
	street := joinNonEmpty(" ", t.get(addr+"FirstAddressLine"), t.get(addr+"AddressNumber"))
	street2 := joinNonEmpty(", ", t.get(addr+"AdditionalAddressLine.1"), t.get(addr+"AdditionalAddressLine.2"),
		t.get(addr+"AdditionalAddressLine.3"))
	country := strings.ToUpper(t.get(addr + "Country"))
	if country == "" {
		country = strings.ToUpper(t.get("Entity.LegalAddress.Country"))
	}
	// Region is ISO 3166-2 ("US-NY"); Odoo's state code is the part after
	// the country.
	state := t.get(addr + "Region")
	if c, s, ok := strings.Cut(state, "-"); ok && strings.EqualFold(c, country) {
		state = s
	}
	return registers.Record{
		Company: providers.Company{
			Name: name, LegalName: name,
			CompanyReg: t.get("Entity.RegistrationAuthority.RegistrationAuthorityEntityID"),
			Street:     street, Street2: street2, Zip: t.get(addr + "PostalCode"), City: t.get(addr + "City"),
			StateCode: state, Country: country,
			Founded: yearISO(t.get("Entity.EntityCreationDate")),
		},
		Source: "gleif", Key: lei, LEI: lei,
		Active:  strings.EqualFold(t.get("Entity.EntityStatus"), "ACTIVE"),
		Licence: LicenceGLEIF,
	}, ""
}

// validLEI: ISO 17442, 20 characters A–Z 0–9 (the check digits are the
// register's business; a row with a wrong one is still the register's).
func validLEI(s string) bool {
	if len(s) != 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}
