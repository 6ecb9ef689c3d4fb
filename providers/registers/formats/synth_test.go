package formats

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// synthWriter writes n rows in the layout of a testdata file: its header
// line verbatim, then rows whose columns fill sets by (trimmed) name.
func synthWriter(t testing.TB, out, layout string, n int, fill func(i int, set func(col, v string))) {
	t.Helper()
	in, err := os.Open(layout)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	hdrLine, err := bufio.NewReader(in).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := csv.NewReader(strings.NewReader(hdrLine)).Read()
	if err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, h := range hdr {
		col[strings.TrimSpace(h)] = i
	}
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<16)
	bw.WriteString(hdrLine)
	w := csv.NewWriter(bw)
	rec := make([]string, len(hdr))
	set := func(c, v string) {
		i, ok := col[c]
		if !ok {
			t.Fatalf("%s has no column %s", layout, c)
		}
		rec[i] = v
	}
	for i := 0; i < n; i++ {
		clear(rec)
		fill(i, set)
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

var synthNames = []string{"Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta", "Eta", "Theta"}

// synthFile writes n synthetic companies of format in its published
// layout (zipped where the register zips) and returns the path to import.
func synthFile(t testing.TB, format string, n int) string {
	t.Helper()
	dir := t.TempDir()
	name := func(i int) string { return fmt.Sprintf("%s %s %d", synthNames[i%8], synthNames[(i/8)%8], i) }
	switch format {
	case "companies-house":
		out := filepath.Join(dir, "BasicCompanyDataAsOneFile-2026-12-01.csv")
		synthWriter(t, out, "testdata/companies-house/BasicCompanyDataAsOneFile-2026-12-01.csv", n, func(i int, set func(c, v string)) {
			num := fmt.Sprintf("%08d", i)
			set("CompanyName", strings.ToUpper(name(i))+" LTD")
			set("CompanyNumber", num)
			set("RegAddress.AddressLine1", fmt.Sprintf("%d High Street", i%200+1))
			set("RegAddress.PostTown", "LONDON")
			set("RegAddress.Country", "ENGLAND")
			set("RegAddress.PostCode", "EC1A 1BB")
			set("CompanyCategory", "Private Limited Company")
			set("CompanyStatus", "Active")
			set("CountryOfOrigin", "United Kingdom")
			set("IncorporationDate", fmt.Sprintf("01/01/%d", 1950+i%75))
			set("SICCode.SicText_1", "62012 - Business and domestic software development")
			set("URI", "http://business.data.gov.uk/id/company/"+num)
		})
		return out
	case "gleif":
		csvPath := filepath.Join(dir, "20261201-0800-gleif-goldencopy-lei2-golden-copy.csv")
		synthWriter(t, csvPath, "testdata/gleif/20261201-0800-gleif-goldencopy-lei2-golden-copy.csv", n, func(i int, set func(c, v string)) {
			set("LEI", fmt.Sprintf("5493%014dXX", i))
			set("Entity.LegalName", name(i)+" GmbH")
			set("Entity.LegalAddress.FirstAddressLine", "Hauptstraße")
			set("Entity.LegalAddress.AddressNumber", fmt.Sprint(i%300+1))
			set("Entity.LegalAddress.City", "Berlin")
			set("Entity.LegalAddress.Region", "DE-BE")
			set("Entity.LegalAddress.Country", "DE")
			set("Entity.LegalAddress.PostalCode", "10115")
			set("Entity.EntityStatus", "ACTIVE")
			set("Entity.EntityCreationDate", "2001-01-01T00:00:00Z")
			set("Registration.RegistrationStatus", "ISSUED")
		})
		out := csvPath + ".zip"
		zipFiles(t, out, map[string]string{filepath.Base(csvPath): csvPath})
		os.Remove(csvPath)
		return out
	case "sirene":
		ul := filepath.Join(dir, "StockUniteLegale_utf8.csv")
		synthWriter(t, ul, "testdata/sirene/StockUniteLegale_utf8.csv", n, func(i int, set func(c, v string)) {
			set("siren", fmt.Sprintf("%09d", i))
			set("statutDiffusionUniteLegale", "O")
			set("dateCreationUniteLegale", "2001-05-10")
			set("trancheEffectifsUniteLegale", "12")
			set("etatAdministratifUniteLegale", "A")
			set("denominationUniteLegale", strings.ToUpper(name(i)))
			set("activitePrincipaleUniteLegale", "62.01Z")
			set("nomenclatureActivitePrincipaleUniteLegale", "NAFRev2")
			set("nicSiegeUniteLegale", "00012")
		})
		et := filepath.Join(dir, "StockEtablissement_utf8.csv")
		synthWriter(t, et, "testdata/sirene/StockEtablissement_utf8.csv", 2*n, func(i int, set func(c, v string)) {
			siren, nic := fmt.Sprintf("%09d", i/2), "00012"
			if i%2 == 1 {
				nic = "00020"
			}
			set("siren", siren)
			set("nic", nic)
			set("siret", siren+nic)
			set("statutDiffusionEtablissement", "O")
			set("etablissementSiege", fmt.Sprint(i%2 == 0))
			set("numeroVoieEtablissement", fmt.Sprint(i%90+1))
			set("typeVoieEtablissement", "RUE")
			set("libelleVoieEtablissement", "DE LA PAIX")
			set("codePostalEtablissement", "75002")
			set("libelleCommuneEtablissement", "PARIS")
			set("etatAdministratifEtablissement", "A")
		})
		for _, p := range []string{ul, et} {
			zipFiles(t, strings.TrimSuffix(p, ".csv")+".zip", map[string]string{filepath.Base(p): p})
			os.Remove(p)
		}
		return filepath.Join(dir, "StockEtablissement_utf8.zip")
	case "kbo", "kbo-unsorted":
		src := filepath.Join(dir, "csv")
		if err := os.Mkdir(src, 0o700); err != nil {
			t.Fatal(err)
		}
		num := func(i int) string {
			d := fmt.Sprintf("%010d", 200000000+i)
			return d[:4] + "." + d[4:7] + "." + d[7:]
		}
		files := map[string]func(i int, set func(c, v string)){
			"enterprise.csv": func(i int, set func(c, v string)) {
				set("EnterpriseNumber", num(i))
				set("Status", "AC")
				set("JuridicalSituation", "000")
				set("TypeOfEnterprise", "2")
				set("JuridicalForm", "014")
				set("StartDate", "01-01-2001")
			},
			"denomination.csv": func(i int, set func(c, v string)) {
				set("EntityNumber", num(i))
				set("Language", "2")
				set("TypeOfDenomination", "001")
				set("Denomination", name(i)+" NV")
			},
			"address.csv": func(i int, set func(c, v string)) {
				set("EntityNumber", num(i))
				set("TypeOfAddress", "REGO")
				set("Zipcode", "2000")
				set("MunicipalityNL", "Antwerpen")
				set("MunicipalityFR", "Anvers")
				set("StreetNL", "Meir")
				set("StreetFR", "Meir")
				set("HouseNumber", fmt.Sprint(i%100+1))
			},
			"activity.csv": func(i int, set func(c, v string)) {
				if format == "kbo-unsorted" {
					i = n - 1 - i // descending: joined from a sorted copy
				}
				set("EntityNumber", num(i))
				set("ActivityGroup", "001")
				set("NaceVersion", "2008")
				set("NaceCode", "62010")
				set("Classification", "MAIN")
			},
			"contact.csv": func(i int, set func(c, v string)) {
				set("EntityNumber", num(i))
				set("EntityContact", "ENT")
				set("ContactType", "EMAIL")
				set("Value", fmt.Sprintf("info@c%d.example", i))
			},
		}
		for f, fill := range files {
			synthWriter(t, filepath.Join(src, f), filepath.Join("testdata/kbo", f), n, fill)
		}
		out := zipDir(t, filepath.Join(dir, "KboOpenData_0140_2026_12_Full.zip"), src)
		os.RemoveAll(src)
		return out
	}
	t.Fatalf("no synthetic %s", format)
	return ""
}
