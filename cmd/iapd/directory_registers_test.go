package main

import (
	"archive/zip"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/registers"
	"github.com/iapd/iapd/providers/registers/formats"
)

// registerTestdata is where the register readers keep their extracts in
// the published layouts.
var registerTestdata = filepath.Join("..", "..", "providers", "registers", "formats", "testdata")

// zipFiles writes the files of dir into a new zip named name, as KBO
// distributes its open data, and returns its path.
func zipFiles(t *testing.T, dir, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		src, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		w, err := zw.Create(e.Name())
		if err == nil {
			_, err = io.Copy(w, src)
		}
		src.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDirectoryImportRegisterFiles: iapd directory import reads each
// register's file as distributed (the readers' extracts; KBO zipped)
// into one index, names bad rows by file and line, and the registers
// provider then finds the companies by the VAT numbers derived from
// SIREN and enterprise numbers, by LEI and registry id, and by name;
// a newer Companies House file without a company strikes it off.
func TestDirectoryImportRegisterFiles(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	run := func(args ...string) (string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		err := runDirectory(context.Background(), append([]string{"import", "-data", data}, args...),
			stdio{getenv: func(string) string { return "" }, stdout: &out, stderr: &errb}, formats.ReadFile)
		if err != nil {
			t.Fatalf("import %v: %v\n%s", args, err, errb.String())
		}
		return out.String(), errb.String()
	}
	chFile := filepath.Join(registerTestdata, "companies-house", "BasicCompanyDataAsOneFile-2026-12-01.csv")
	imports := [][]string{
		{"-format", "gleif", filepath.Join(registerTestdata, "gleif", "20261201-0800-gleif-goldencopy-lei2-golden-copy.csv")},
		{"-format", "companies-house", chFile},
		{"-format", "sirene", filepath.Join(registerTestdata, "sirene", "StockEtablissement_utf8.csv")},
		{"-format", "kbo", zipFiles(t, filepath.Join(registerTestdata, "kbo"), "KboOpenData_0140_2026_12_Full.zip")},
	}
	for _, args := range imports {
		out, errOut := run(args...)
		if !strings.Contains(out, " new, 0 changed, 0 unchanged, 0 struck off") || strings.Contains(out, ": 0 new,") {
			t.Errorf("%s: import printed:\n%s", args[1], out)
		}
		if !strings.Contains(errOut, ": skipped: ") {
			t.Errorf("%s: no bad row named (each extract has one):\n%s", args[1], errOut)
		}
	}

	open := func() *registers.Registers {
		t.Helper()
		p, err := (&registers.Config{Dir: registers.DefaultDir(data)}).New("registers", nil)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	ctx := context.Background()
	p := open()
	byVAT := func(vat string) *providers.Company {
		t.Helper()
		c, err := p.CompanyByVAT(ctx, vat)
		if err != nil {
			t.Fatalf("VAT %s: %v", vat, err)
		}
		return c
	}
	if c := byVAT("BE0200065765"); c == nil || c.Name != "Voorbeeld Software" || c.Country != "BE" {
		t.Errorf("KBO enterprise 0200.065.765 by its VAT number: %+v", c)
	}
	// A French VAT number is FR, a two-digit key, then the SIREN.
	fr, err := p.CompaniesByName(ctx, providers.NameQuery{Name: "exemple logiciels", Country: "FR", Limit: 5})
	if err != nil || len(fr) == 0 {
		t.Fatalf("SIRENE company by name: %v, %v", fr, err)
	}
	if v := fr[0].VAT; len(v) != 13 || !strings.HasPrefix(v, "FR") || !strings.HasSuffix(v, "301000001") {
		t.Errorf("SIRENE 301000001 first for 'exemple logiciels' in FR, with its VAT: %+v", fr[0])
	} else if c := byVAT(v); c == nil || !strings.HasSuffix(c.VAT, "301000001") {
		t.Errorf("SIRENE company by its derived VAT %s: %+v", v, c)
	}
	if c, err := p.CompanyByID(ctx, "5493001KJTIIGC8Y1R12"); err != nil || c == nil || !strings.Contains(c.Name, "Exemple Logiciels") {
		t.Errorf("GLEIF entity by LEI: %+v, %v", c, err)
	}
	if c, err := p.CompanyByID(ctx, "companies-house:09876543"); err != nil || c == nil || c.Country != "GB" {
		t.Errorf("Companies House company by number: %+v, %v", c, err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	// Next month's file lacks EXAMPLE SOFTWARE LTD: struck off, still
	// found, listed after the active companies.
	src, err := os.ReadFile(chFile)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, line := range strings.SplitAfter(string(src), "\n") {
		if !strings.Contains(line, `"09876543"`) {
			kept = append(kept, line)
		}
	}
	newer := filepath.Join(t.TempDir(), "BasicCompanyDataAsOneFile-2027-01-01.csv")
	if err := os.WriteFile(newer, []byte(strings.Join(kept, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, _ := run("-format", "companies-house", newer); !strings.Contains(out, "0 new, 0 changed, 3 unchanged, 1 struck off") {
		t.Errorf("re-import without one company printed:\n%s", out)
	}
	p = open()
	defer p.Close()
	mined, err := p.SearchCompanies(ctx, providers.Criteria{Countries: []string{"GB"}, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range mined {
		if strings.Contains(c.Name, "EXAMPLE SOFTWARE") {
			t.Errorf("lead mining offers a struck-off company: %+v", c)
		}
	}
	if len(mined) == 0 {
		t.Errorf("lead mining in GB found none of the active companies")
	}
}
