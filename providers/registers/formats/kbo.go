package formats

import (
	"context"
	"fmt"
	"strings"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/registers"
)

// readKBO reads the KBO/BCE Open Data full file as the FPS Economy
// distributes it, KboOpenData_NNNN_YYYY_MM_DD_Full.zip, holding
// comma-separated, quoted CSVs with a header row: enterprise.csv
// (EnterpriseNumber, Status, JuridicalSituation, TypeOfEnterprise,
// JuridicalForm, JuridicalFormCAC, StartDate), denomination.csv
// (EntityNumber, Language, TypeOfDenomination, Denomination), address.csv
// (EntityNumber, TypeOfAddress, CountryNL, CountryFR, Zipcode,
// MunicipalityNL, MunicipalityFR, StreetNL, StreetFR, HouseNumber, Box,
// ExtraAddressInfo, DateStrikingOff), activity.csv (EntityNumber,
// ActivityGroup, NaceVersion, NaceCode, Classification) and contact.csv
// (EntityNumber, EntityContact, ContactType, Value); code.csv,
// establishment.csv, branch.csv and meta.csv are not needed. Layout: FPS
// Economy, "Cookbook KBO Open Data" (economie.fgov.be, KBO Open Data,
// chapter 2 "Description of the files").
//
// The files are joined on the enterprise number by a streaming merge
// join: KBO writes each file sorted by its entity number, so every file is
// read in step, holding one row of each; a file found out of that order
// by the first pass is joined from a sorted copy (sort.go). Rows of
// establishment units (entity numbers 2… to 8…) are skipped. Names and addresses are taken in French for
// Brussels and Wallonia postcodes, in Dutch elsewhere; the name is the
// legal name (type 001), else the commercial name (003); the activity is
// the main NACE-BEL 2008 code (2025 when there is none; 2003 codes are
// NACE Rev. 1.1 and not used).
func readKBO(ctx context.Context, path string, sink registers.Sink, opt Options) (Stats, error) {
	src, err := openSource(path)
	if err != nil {
		return Stats{}, err
	}
	defer src.Close()
	if src.zr == nil {
		return Stats{}, fmt.Errorf("not a zip: KBO Open Data is the KboOpenData_…_Full.zip as distributed")
	}
	e := newEmitter(ctx, sink, opt, src)
	e.passes = 2 // the order check, then the join (or the sort)
	tmp := &tempDir{parent: opt.TempDir}
	defer tmp.Close()
	open := func(member string, keyCol string, cols ...string) (*kboFile, error) {
		t, rc, err := orderedTable(e, src, func(m string) bool { return m == member }, keyCol, kboKey, tmp, cols...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", member, err)
		}
		return &kboFile{t: t, rc: rc, keyCol: keyCol, e: e}, nil
	}
	var files []*kboFile
	defer func() {
		for _, f := range files {
			f.rc.Close()
		}
	}()
	ent, err := open("enterprise.csv", "EnterpriseNumber", "Status", "StartDate")
	if err != nil {
		return e.st, err
	}
	files = append(files, ent)
	var side [4]*kboFile
	for i, m := range []struct {
		name string
		cols []string
	}{
		{"denomination.csv", []string{"TypeOfDenomination", "Language", "Denomination"}},
		{"address.csv", []string{"TypeOfAddress", "Zipcode", "StreetNL", "StreetFR", "HouseNumber"}},
		{"activity.csv", []string{"NaceVersion", "NaceCode", "Classification"}},
		{"contact.csv", []string{"ContactType", "Value"}},
	} {
		if side[i], err = open(m.name, "EntityNumber", m.cols...); err != nil {
			return e.st, err
		}
		files = append(files, side[i])
	}
	for {
		key, ok, err := ent.nextEnterprise()
		if err != nil || !ok {
			e.done()
			return e.st, err
		}
		if err := e.tick(); err != nil {
			return e.st, err
		}
		var k kboEnterprise
		k.number = ent.t.get("EnterpriseNumber")
		k.status = ent.t.get("Status")
		k.start = ent.t.get("StartDate")
		if err := side[0].each(key, k.denomination); err != nil {
			return e.st, err
		}
		if err := side[1].each(key, k.address); err != nil {
			return e.st, err
		}
		if err := side[2].each(key, k.activity); err != nil {
			return e.st, err
		}
		if err := side[3].each(key, k.contact); err != nil {
			return e.st, err
		}
		rec, ok := k.record(key)
		if !ok {
			// No published name: natural persons' enterprises mostly.
			e.st.Skipped++
			continue
		}
		if err := e.put(rec); err != nil {
			return e.st, err
		}
	}
}

// kboFile is one CSV of the zip, read in entity-number order.
type kboFile struct {
	t       *table
	rc      interface{ Close() error }
	keyCol  string
	e       *emitter
	pending bool   // t.rec holds a row not yet consumed
	key     string // its enterprise number (digits)
	last    string // the last enterprise number read, for the order check
	eof     bool
}

// kboKey turns "0201.310.929" into "0201310929"; establishment unit
// numbers ("2.000.000.339") are skipped, anything else malformed.
func kboKey(s string) (key string, ok, skip bool) {
	k := strings.ReplaceAll(s, ".", "")
	if len(k) != 10 || !digits(k) {
		return "", false, false
	}
	if k[0] > '1' {
		return "", false, true
	}
	return k, true, false
}

// advance reads the file's next enterprise row into t.rec, skipping
// establishment rows and telling malformed numbers to Bad; it fails when
// the file goes backwards.
func (f *kboFile) advance() error {
	for {
		ok, err := f.t.next()
		if err != nil {
			return err
		}
		if !ok {
			f.eof, f.pending = true, false
			return nil
		}
		raw := f.t.get(f.keyCol)
		k, ok, skip := kboKey(raw)
		if !ok {
			if skip {
				f.e.st.Skipped++ // an establishment unit's row
			} else {
				f.t.bad(f.t.line, errRow(f.keyCol+" "+quote(raw)+" is not a KBO number"))
			}
			continue
		}
		if k < f.last {
			return fmt.Errorf("%s line %d: %s %s after %s: the file is not sorted by entity number as KBO distributes it",
				f.t.file, f.t.line, f.keyCol, raw, f.last)
		}
		f.last, f.key, f.pending = k, k, true
		return nil
	}
}

// nextEnterprise reads enterprise.csv's next row.
func (f *kboFile) nextEnterprise() (string, bool, error) {
	if err := f.advance(); err != nil {
		return "", false, err
	}
	if f.eof {
		return "", false, nil
	}
	f.pending = false
	return f.key, true, nil
}

// each calls fn with every row of key, skipping (and counting) rows of
// enterprises before key that enterprise.csv does not have.
func (f *kboFile) each(key string, fn func(t *table)) error {
	for {
		if !f.pending {
			if f.eof {
				return nil
			}
			if err := f.advance(); err != nil {
				return err
			}
			if f.eof {
				return nil
			}
		}
		switch {
		case f.key < key:
			f.e.st.Skipped++
		case f.key == key:
			fn(f.t)
		default:
			return nil
		}
		f.pending = false
	}
}

// kboEnterprise gathers one enterprise's rows.
type kboEnterprise struct {
	number, status, start string
	names                 [5][2]string // [language 0–4][0: legal (001), 1: commercial (003)]
	zip                   string
	street, city          [2]string // [0: NL, 1: FR]
	foreign               bool
	nace, naceVersion     string
	phone, email, web     string
}

func (k *kboEnterprise) denomination(t *table) {
	lang := t.get("Language")
	if len(lang) != 1 || lang[0] < '0' || lang[0] > '4' {
		return
	}
	var slot int
	switch t.get("TypeOfDenomination") {
	case "001":
		slot = 0
	case "003":
		slot = 1
	default:
		return
	}
	if n := &k.names[lang[0]-'0'][slot]; *n == "" {
		*n = t.get("Denomination")
	}
}

func (k *kboEnterprise) address(t *table) {
	if t.get("TypeOfAddress") != "REGO" || k.zip != "" || k.street[0] != "" || k.street[1] != "" {
		return
	}
	if t.get("DateStrikingOff") != "" {
		return
	}
	house := t.get("HouseNumber")
	box := t.get("Box")
	for i, sfx := range []string{"NL", "FR"} {
		s := joinNonEmpty(" ", t.get("Street"+sfx), house)
		if box != "" {
			s = joinNonEmpty(map[int]string{0: " bus ", 1: " bte "}[i], s, box)
		}
		k.street[i] = s
		k.city[i] = t.get("Municipality" + sfx)
	}
	k.zip = t.get("Zipcode")
	k.foreign = t.get("CountryNL") != "" || t.get("CountryFR") != ""
}

func (k *kboEnterprise) activity(t *table) {
	if t.get("Classification") != "MAIN" {
		return
	}
	v := t.get("NaceVersion")
	if v != "2008" && v != "2025" || k.naceVersion == "2008" {
		return
	}
	k.nace, k.naceVersion = t.get("NaceCode"), v
}

func (k *kboEnterprise) contact(t *table) {
	v := t.get("Value")
	switch t.get("ContactType") {
	case "TEL":
		if k.phone == "" {
			k.phone = v
		}
	case "EMAIL":
		if k.email == "" {
			k.email = v
		}
	case "WEB":
		if k.web == "" {
			k.web = v
		}
	}
}

// french reports whether a Belgian postcode is in Brussels (1000–1299) or
// Wallonia (1300–1499, 4000–7999), where French names come first.
func french(zip string) bool {
	if len(zip) != 4 || !digits(zip) {
		return false
	}
	return zip >= "1000" && zip < "1500" || zip >= "4000" && zip < "8000"
}

func (k *kboEnterprise) record(key string) (registers.Record, bool) {
	fr := french(k.zip)
	lang := []int{2, 1, 3, 4, 0} // NL, FR, DE, EN, unknown
	if fr {
		lang = []int{1, 2, 3, 4, 0}
	}
	var legal, commercial string
	for _, l := range lang {
		if legal == "" {
			legal = k.names[l][0]
		}
		if commercial == "" {
			commercial = k.names[l][1]
		}
	}
	name := legal
	if name == "" {
		name = commercial
	}
	if name == "" {
		return registers.Record{}, false
	}
	i := 0
	if fr {
		i = 1
	}
	street, city := k.street[i], k.city[i]
	if street == "" {
		street = k.street[1-i]
	}
	if city == "" {
		city = k.city[1-i]
	}
	country := "BE"
	if k.foreign {
		country = "" // KBO names foreign countries only in words
	}
	indID, ind := industry(k.nace)
	return registers.Record{
		Company: providers.Company{
			Name: name, LegalName: legal, VAT: "BE" + key, CompanyReg: k.number,
			Street: street, Zip: k.zip, City: city, Country: country,
			Phone: k.phone, Email: k.email, Website: k.web, Domain: domainOf(k.web),
			Industry: ind, IndustryID: indID, Founded: yearDMY(k.start),
		},
		Source: "kbo", Key: key,
		Active:  k.status == "AC",
		Licence: LicenceKBO,
	}, true
}
