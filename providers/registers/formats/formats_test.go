package formats

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/registers"
)

// The files under testdata/ are small synthetic extracts in exactly the
// layouts the registers publish (header rows as distributed, including
// Companies House's padded names); the tests zip them as distributed.

func TestGLEIFGoldenCopy(t *testing.T) {
	csvPath := "testdata/gleif/20261201-0800-gleif-goldencopy-lei2-golden-copy.csv"
	zipped := zipFiles(t, filepath.Join(t.TempDir(), filepath.Base(csvPath)+".zip"),
		map[string]string{filepath.Base(csvPath): csvPath})
	for _, path := range []string{zipped, csvPath} {
		recs, bad, st, err := read(t, "gleif", path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := badLines(bad), []string{filepath.Base(csvPath) + ":4", filepath.Base(csvPath) + ":5"}; !slices.Equal(got, want) {
			t.Errorf("%s: bad rows %v (%v), want %v", path, got, bad, want)
		}
		if st.Records != 3 || st.Bad != 2 || st.Skipped != 1 || int(st.Records) != len(recs) {
			t.Errorf("%s: stats %+v for %d records", path, st, len(recs))
		}
		m := recs.byKey(t)
		want := registers.Record{
			Company: providers.Company{
				Name: "Exemple Logiciels SA", LegalName: "Exemple Logiciels SA", CompanyReg: "0477472701",
				Street: "Rue de la Loi 16", Street2: "Boîte 3", Zip: "1000", City: "Bruxelles", StateCode: "BRU",
				Country: "BE", Founded: 2002,
			},
			Source: "gleif", Key: "5493001KJTIIGC8Y1R12", LEI: "5493001KJTIIGC8Y1R12", Active: true, Licence: LicenceGLEIF,
		}
		if got := m["5493001KJTIIGC8Y1R12"]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: BE entity\n got %+v\nwant %+v", path, got, want)
		}
		us := m["254900OPPU84GM83MG36"]
		if us.Active || us.Country != "US" || us.StateCode != "DE" || us.Street != "1209 Orange Street" || us.Founded != 1999 {
			t.Errorf("%s: inactive US entity: %+v", path, us)
		}
		// No legal address lines: the head office's, its quoted line break
		// folded.
		de := m["529900W18LQJJN6SJ336"]
		if de.City != "München" || de.Street != "Hauptstraße 5" || de.Street2 != "Gebäude B Eingang Nord" || de.Country != "DE" || de.CompanyReg != "HRB 123456" {
			t.Errorf("%s: head-office address: %+v", path, de)
		}
	}
}

func TestCompaniesHouseBasicCompanyData(t *testing.T) {
	csvPath := "testdata/companies-house/BasicCompanyDataAsOneFile-2026-12-01.csv"
	path := zipFiles(t, filepath.Join(t.TempDir(), "BasicCompanyDataAsOneFile-2026-12-01.zip"),
		map[string]string{filepath.Base(csvPath): csvPath})
	recs, bad, st, err := read(t, "companies-house", path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Base(csvPath)
	if got, want := badLines(bad), []string{base + ":5", base + ":6"}; !slices.Equal(got, want) {
		t.Errorf("bad rows %v (%v), want %v", got, bad, want)
	}
	if st.Records != 4 || st.Bad != 2 {
		t.Errorf("stats %+v", st)
	}
	m := recs.byKey(t)
	want := registers.Record{
		Company: providers.Company{
			Name: "EXAMPLE SOFTWARE LTD", LegalName: "EXAMPLE SOFTWARE LTD", CompanyReg: "09876543",
			Street: "1 Example Street", Street2: "Floor 2", Zip: "EC1A 1BB", City: "LONDON", State: "GREATER LONDON",
			Country: "GB", Industry: "IT/Communication", IndustryID: "J", Founded: 2016,
		},
		Source: "companies-house", Key: "09876543", Active: true, Licence: LicenceCompaniesHouse,
	}
	if got := m["09876543"]; !reflect.DeepEqual(got, want) {
		t.Errorf("active company\n got %+v\nwant %+v", got, want)
	}
	if sc := m["SC123456"]; !sc.Active || sc.IndustryID != "" || sc.Founded != 1998 || sc.City != "EDINBURGH" {
		t.Errorf("proposal to strike off is still active, no SIC: %+v", sc)
	}
	if plc := m["01234567"]; plc.Active || plc.IndustryID != "G" || plc.Industry != "Wholesale/Retail" {
		t.Errorf("company in liquidation: %+v", plc)
	}
	if llp := m["OC301234"]; llp.IndustryID != "M" || llp.Industry != "Scientific" || !llp.Active {
		t.Errorf("LLP: %+v", llp)
	}
}

// siren copies the SIRENE test files (as distributed: zipped, one CSV
// each) into a fresh directory; which names which of them to put there.
func sireneDir(t *testing.T, which ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, w := range which {
		src := "testdata/sirene/" + w + "_utf8.csv"
		zipFiles(t, filepath.Join(dir, w+"_utf8.zip"), map[string]string{w + "_utf8.csv": src})
	}
	return dir
}

func TestSIRENEJoinsLegalUnitsAndHeadOffices(t *testing.T) {
	dir := sireneDir(t, "StockUniteLegale", "StockEtablissement")
	// Either file names the import; the other is found beside it.
	for _, name := range []string{"StockEtablissement_utf8.zip", "StockUniteLegale_utf8.zip"} {
		recs, bad, st, err := read(t, "sirene", filepath.Join(dir, name), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := badLines(bad), []string{"StockUniteLegale_utf8.csv:5"}; !slices.Equal(got, want) {
			t.Errorf("%s: bad rows %v, want %v", name, bad, want)
		}
		// Skipped: the unit not for publication, its head office, the
		// secondary establishment, the establishment without a unit.
		if st.Records != 3 || st.Bad != 1 || st.Skipped != 3 {
			t.Errorf("%s: stats %+v", name, st)
		}
		m := recs.byKey(t)
		want := registers.Record{
			Company: providers.Company{
				Name: "EXEMPLE LOGICIELS, SAS", LegalName: "EXEMPLE LOGICIELS, SAS",
				VAT: "FR49301000001", CompanyReg: "30100000100012",
				Street: "12 bis Avenue DES CHAMPS ELYSEES", Street2: "BATIMENT A", Zip: "75008", City: "PARIS",
				Country: "FR", Industry: "IT/Communication", IndustryID: "J", Employees: 20, Founded: 2001,
			},
			Source: "sirene", Key: "301000001", Active: true, Licence: LicenceSIRENE,
		}
		if got := m["301000001"]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: company\n got %+v\nwant %+v", name, got, want)
		}
		p := m["301000019"]
		if p.Name != "MARIE EXEMPLE" || p.Active || p.Country != "RE" || p.Zip != "97400" || p.Street != "7 Chemin DES FILAOS" ||
			p.Employees != 0 || p.IndustryID != "I" {
			t.Errorf("%s: ceased sole trader in La Réunion: %+v", name, p)
		}
		old := m["301000043"]
		if old.Street != "" || old.IndustryID != "" || old.Active || old.Founded != 1970 || old.CompanyReg != "30100004300017" {
			t.Errorf("%s: purged unit without establishment, NAF rév. 1: %+v", name, old)
		}
		if _, ok := m["301000027"]; ok {
			t.Errorf("%s: a unit not for publication was imported", name)
		}
	}
}

func TestSIRENELegalUnitsAlone(t *testing.T) {
	dir := sireneDir(t, "StockUniteLegale")
	recs, _, st, err := read(t, "sirene", filepath.Join(dir, "StockUniteLegale_utf8.zip"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != 3 {
		t.Fatalf("stats %+v", st)
	}
	if r := recs.byKey(t)["301000001"]; r.Street != "" || r.Country != "FR" || r.Name != "EXEMPLE LOGICIELS, SAS" {
		t.Errorf("without establishments: %+v", r)
	}
}

func TestSIRENEEstablishmentsNeedLegalUnits(t *testing.T) {
	dir := sireneDir(t, "StockEtablissement")
	_, _, st, err := read(t, "sirene", filepath.Join(dir, "StockEtablissement_utf8.zip"), Options{})
	if err == nil || !strings.Contains(err.Error(), "StockUniteLegale") || st.Records != 0 {
		t.Fatalf("err %v, stats %+v", err, st)
	}
	// Options.Join names the other file wherever it is.
	other := sireneDir(t, "StockUniteLegale")
	_, _, st, err = read(t, "sirene", filepath.Join(dir, "StockEtablissement_utf8.zip"),
		Options{Join: []string{filepath.Join(other, "StockUniteLegale_utf8.zip")}})
	if err != nil || st.Records != 3 {
		t.Fatalf("with Join: err %v, stats %+v", err, st)
	}
}

func TestFrenchVAT(t *testing.T) {
	// The example INSEE and the EU's VIES documentation give.
	if got := frenchVAT("404833048"); got != "FR83404833048" {
		t.Errorf("got %s", got)
	}
	if got := frenchVAT("000000001"); got != "FR15000000001" {
		t.Errorf("two digits: got %s", got)
	}
}

func TestKBOOpenData(t *testing.T) {
	path := zipDir(t, filepath.Join(t.TempDir(), "KboOpenData_0140_2026_12_Full.zip"), "testdata/kbo")
	recs, bad, st, err := read(t, "kbo", path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := badLines(bad), []string{"enterprise.csv:5"}; !slices.Equal(got, want) {
		t.Errorf("bad rows %v, want %v", bad, want)
	}
	if st.Records != 3 || st.Bad != 1 || st.Sorted != 0 {
		t.Errorf("stats %+v", st)
	}
	m := recs.byKey(t)
	want := registers.Record{
		Company: providers.Company{
			Name: "Voorbeeld Software", LegalName: "Voorbeeld Software", VAT: "BE0200065765", CompanyReg: "0200.065.765",
			Street: "Meir 10", Zip: "2000", City: "Antwerpen", Country: "BE",
			Phone: "03 123 45 67", Email: "info@voorbeeld.example", Website: "www.voorbeeld.example", Domain: "voorbeeld.example",
			Industry: "IT/Communication", IndustryID: "J", Founded: 1960,
		},
		Source: "kbo", Key: "0200065765", Active: true, Licence: LicenceKBO,
	}
	if got := m["0200065765"]; !reflect.DeepEqual(got, want) {
		t.Errorf("Flemish enterprise\n got %+v\nwant %+v", got, want)
	}
	br := m["0201310929"]
	if br.Name != "Exemple Chemins de Fer" || br.Street != "Rue de France 56 bte 3" || br.City != "Saint-Gilles" ||
		br.IndustryID != "H" || br.Website != "www.exemple-rail.example" || br.VAT != "BE0201310929" {
		t.Errorf("Brussels enterprise, French first, NACE 2008: %+v", br)
	}
	fr := m["0204000001"]
	if fr.Name != "Example Branch Trading" || fr.LegalName != "" || fr.Country != "" || fr.IndustryID != "G" || fr.Founded != 2011 {
		t.Errorf("foreign seat, commercial name only: %+v", fr)
	}
	if _, ok := m["0202239951"]; ok {
		t.Error("an enterprise without a published name was imported")
	}
}

// reverseRows copies the CSV files of dir into a new directory, the rows
// (not the header) of the named ones in reverse order, then extra lines.
func reverseRows(t *testing.T, dir string, names map[string]string) string {
	t.Helper()
	out := t.TempDir()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if extra, ok := names[e.Name()]; ok {
			eol := "\n"
			if strings.Contains(string(b), "\r\n") {
				eol = "\r\n"
			}
			lines := strings.Split(strings.TrimSuffix(string(b), eol), eol)
			body := lines[1:]
			slices.Reverse(body)
			b = []byte(lines[0] + eol + strings.Join(body, eol) + eol + extra)
		}
		if err := os.WriteFile(filepath.Join(out, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestKBOUnsortedFilesAreSorted(t *testing.T) {
	sorted := zipDir(t, filepath.Join(t.TempDir(), "KboOpenData_0140_2026_12_Full.zip"), "testdata/kbo")
	want, wantBad, _, err := read(t, "kbo", sorted, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// activity.csv and denomination.csv reversed, a malformed row at the
	// end of activity.csv (its line 10); many sort runs.
	defer func(b, f int) { sortBudget, maxFanIn = b, f }(sortBudget, maxFanIn)
	sortBudget, maxFanIn = 100, 2
	dir := reverseRows(t, "testdata/kbo", map[string]string{
		"activity.csv":     "\"0X\",\"001\",\"2008\",\"62010\",\"MAIN\"\r\n",
		"denomination.csv": "",
	})
	tmp := t.TempDir()
	path := zipDir(t, filepath.Join(t.TempDir(), "KboOpenData_0140_2026_12_Full.zip"), dir)
	got, bad, st, err := read(t, "kbo", path, Options{TempDir: tmp})
	if err != nil {
		t.Fatal(err)
	}
	if st.Sorted != 2 || st.Records != 3 {
		t.Errorf("stats %+v", st)
	}
	if !reflect.DeepEqual(got.byKey(t), want.byKey(t)) {
		t.Errorf("joined from sorted copies:\n got %+v\nwant %+v", got, want)
	}
	if g, w := badLines(bad), append(badLines(wantBad), "activity.csv:10"); !slices.Equal(slices.Sorted(slices.Values(g)), slices.Sorted(slices.Values(w))) {
		t.Errorf("bad rows %v, want %v (lines of the original file)", g, w)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("sorted copies left behind: %v", left)
	}
}

func TestSIRENEUnsortedEstablishmentsAreSorted(t *testing.T) {
	dir := reverseRows(t, "testdata/sirene", map[string]string{"StockEtablissement_utf8.csv": ""})
	recs, _, st, err := read(t, "sirene", filepath.Join(dir, "StockEtablissement_utf8.csv"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Sorted != 1 || st.Records != 3 {
		t.Fatalf("stats %+v", st)
	}
	if r := recs.byKey(t)["301000001"]; r.City != "PARIS" || r.CompanyReg != "30100000100012" {
		t.Errorf("head office after sorting: %+v", r)
	}
}

func TestKBONeedsTheZip(t *testing.T) {
	if _, _, _, err := read(t, "kbo", "testdata/kbo/enterprise.csv", Options{}); err == nil {
		t.Fatal("a lone CSV was accepted")
	}
}

func TestLayoutChecked(t *testing.T) {
	// A file of another register is refused before any record.
	for _, c := range []struct{ format, path string }{
		{"gleif", "testdata/companies-house/BasicCompanyDataAsOneFile-2026-12-01.csv"},
		{"companies-house", "testdata/gleif/20261201-0800-gleif-goldencopy-lei2-golden-copy.csv"},
		{"sirene", "testdata/kbo/enterprise.csv"},
	} {
		_, _, st, err := read(t, c.format, c.path, Options{})
		if err == nil || st.Records != 0 {
			t.Errorf("%s on %s: err %v, stats %+v", c.format, c.path, err, st)
		}
	}
	if _, _, _, err := read(t, "nope", "testdata/kbo/enterprise.csv", Options{}); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestRecordOverLimitStops(t *testing.T) {
	// An unterminated quote would pull the rest of the file into a field:
	// the read stops at maxRecordBytes with the line, memory bounded.
	hdr, err := os.ReadFile("testdata/companies-house/BasicCompanyDataAsOneFile-2026-12-01.csv")
	if err != nil {
		t.Fatal(err)
	}
	first := strings.SplitAfterN(string(hdr), "\r\n", 3)
	path := filepath.Join(t.TempDir(), "broken.csv")
	big := first[0] + first[1] + "\"UNTERMINATED," + strings.Repeat("x,\r\n", maxRecordBytes/2)
	if err := os.WriteFile(path, []byte(big), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, st, err := read(t, "companies-house", path, Options{})
	if !errors.Is(err, errRecordTooLong) || !strings.Contains(err.Error(), "line 3") || st.Records != 1 {
		t.Fatalf("err %v, stats %+v", err, st)
	}
}

func TestProgressAndCancel(t *testing.T) {
	path := synthFile(t, "companies-house", 3*progressEvery)
	var calls int
	var last, total int64
	_, _, _, err := read(t, "companies-house", path, Options{Progress: func(d, tot int64) { calls++; last, total = d, tot }})
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if calls < 3 || last != fi.Size() || total != fi.Size() {
		t.Errorf("progress: %d calls, last %d/%d, file %d", calls, last, total, fi.Size())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var sink sliceSink
	st, err := ReadFile(ctx, "companies-house", path, &sink, Options{})
	if !errors.Is(err, context.Canceled) || st.Records >= 3*progressEvery {
		t.Fatalf("cancelled: err %v, stats %+v", err, st)
	}
}

type failSink struct{ n int }

func (f *failSink) Put(registers.Record) error {
	if f.n++; f.n == 2 {
		return errors.New("disk full")
	}
	return nil
}

func TestSinkErrorStops(t *testing.T) {
	st, err := ReadFile(context.Background(), "companies-house",
		"testdata/companies-house/BasicCompanyDataAsOneFile-2026-12-01.csv", &failSink{}, Options{})
	if err == nil || !strings.Contains(err.Error(), "disk full") || st.Records != 1 {
		t.Fatalf("err %v, stats %+v", err, st)
	}
}

func TestDomainOf(t *testing.T) {
	for in, want := range map[string]string{
		"www.example.be": "example.be", "http://www.Example.be/fr/": "example.be", "https://shop.example.be:8443?x": "shop.example.be",
		"example": "", "": "", "www.exa mple.be": "", "mailto:info@example.be": "example.be",
	} {
		if got := domainOf(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func TestIndustry(t *testing.T) {
	for code, want := range map[string]string{
		"62.01Z": "J", "62012": "J", "01110": "A", "35.11Z": "D", "99000": "U", "45.20A": "G", "": "", "X1": "", "00": "", "4": "",
	} {
		if id, name := industry(code); id != want || (id != "" && name == "") {
			t.Errorf("%q: %q %q, want %q", code, id, name, want)
		}
	}
}
