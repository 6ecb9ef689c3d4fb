package formats

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// The fuzz targets feed arbitrary bytes as register files: a reader may
// refuse a file or skip rows, never panic, and every record it gives has
// its source, key and name.

func fuzzRead(t *testing.T, format, path string) {
	var sink sliceSink
	st, _ := ReadFile(context.Background(), format, path, &sink, Options{Bad: func(string, int64, error) {}})
	if int(st.Records) != len(sink) {
		t.Fatalf("stats %+v for %d records", st, len(sink))
	}
	for _, r := range sink {
		if r.Source != format || r.Key == "" || r.Name == "" || r.Licence == "" {
			t.Fatalf("incomplete record %+v", r)
		}
	}
}

func seed(f *testing.F, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

func writeTemp(t *testing.T, dir, name string, b []byte) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func FuzzGLEIF(f *testing.F) {
	// The columns the reader uses (the full 288-column file makes every
	// input 20 KB and the fuzzer's minimising slow).
	f.Add([]byte(`"LEI","Entity.LegalName","Entity.LegalAddress.FirstAddressLine","Entity.LegalAddress.AddressNumber",` +
		`"Entity.LegalAddress.City","Entity.LegalAddress.Region","Entity.LegalAddress.Country","Entity.LegalAddress.PostalCode",` +
		`"Entity.HeadquartersAddress.FirstAddressLine","Entity.HeadquartersAddress.City","Entity.HeadquartersAddress.Country",` +
		`"Entity.RegistrationAuthority.RegistrationAuthorityEntityID","Entity.EntityStatus","Entity.EntityCreationDate"` + "\n" +
		`"5493001KJTIIGC8Y1R12","Exemple SA","Rue de la Loi","16","Bruxelles","BE-BRU","BE","1000","","","","0477472701","ACTIVE","2002-03-14T00:00:00Z"` + "\n" +
		`"529900W18LQJJN6SJ336","Beispiel GmbH","","","","","DE","","Haupt-` + "\n" + `straße","München","DE","HRB 1","INACTIVE",""` + "\n" +
		`"BAD","x"` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzRead(t, "gleif", writeTemp(t, t.TempDir(), "gleif.csv", b))
	})
}

func FuzzCompaniesHouse(f *testing.F) {
	f.Add(seed(f, "testdata/companies-house/BasicCompanyDataAsOneFile-2026-12-01.csv"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzRead(t, "companies-house", writeTemp(t, t.TempDir(), "BasicCompanyData.csv", b))
	})
}

func FuzzSIRENE(f *testing.F) {
	f.Add(seed(f, "testdata/sirene/StockUniteLegale_utf8.csv"), seed(f, "testdata/sirene/StockEtablissement_utf8.csv"))
	f.Fuzz(func(t *testing.T, ul, et []byte) {
		dir := t.TempDir()
		writeTemp(t, dir, "StockUniteLegale_utf8.csv", ul)
		fuzzRead(t, "sirene", writeTemp(t, dir, "StockEtablissement_utf8.csv", et))
	})
}

func FuzzKBO(f *testing.F) {
	f.Add(seed(f, "testdata/kbo/enterprise.csv"), seed(f, "testdata/kbo/denomination.csv"), seed(f, "testdata/kbo/activity.csv"))
	f.Fuzz(func(t *testing.T, ent, den, act []byte) {
		dir := t.TempDir()
		members := map[string]string{
			"enterprise.csv":   writeTemp(t, dir, "enterprise.csv", ent),
			"denomination.csv": writeTemp(t, dir, "denomination.csv", den),
			"activity.csv":     writeTemp(t, dir, "activity.csv", act),
			"address.csv":      "testdata/kbo/address.csv",
			"contact.csv":      "testdata/kbo/contact.csv",
		}
		fuzzRead(t, "kbo", zipFiles(t, filepath.Join(dir, "kbo.zip"), members))
	})
}
