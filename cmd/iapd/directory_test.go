package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/registers"
	"github.com/iapd/iapd/providers/registers/formats"
)

// jsonlRecords is a registerReader of JSONL files holding one
// registers.Record a line (until the register readers of package formats
// are merged, the import command's tests feed it records this way): a
// line that does not decode is a bad row.
func jsonlRecords(ctx context.Context, format, path string, sink registers.Sink, opt formats.Options) (formats.Stats, error) {
	var st formats.Stats
	f, err := os.Open(path)
	if err != nil {
		return st, err
	}
	defer f.Close()
	fi, _ := f.Stat()
	sc := bufio.NewScanner(f)
	var line, done int64
	for sc.Scan() {
		line++
		done += int64(len(sc.Bytes())) + 1
		var r registers.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			st.Bad++
			if opt.Bad != nil {
				opt.Bad(path, line, err)
			}
			continue
		}
		if err := sink.Put(r); err != nil {
			return st, err
		}
		st.Records++
		if opt.Progress != nil {
			opt.Progress(done, fi.Size())
		}
	}
	return st, sc.Err()
}

// sampleRecords are the companies of the embedded sample directory (the
// ones the Odoo fixtures ask for) as register records of source "kbo",
// keyed by their id, and the reveal mapping of their IP ranges.
func sampleRecords(t *testing.T) ([]registers.Record, string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "providers", "directory", "sample.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var recs []registers.Record
	ranges := "cidr,source,key\n"
	for _, l := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(l)) == 0 || l[0] == '#' {
			continue
		}
		var c struct {
			ID, Name, LegalName, Domain, VAT, Street, Zip, City, State, StateCode, Country, Phone, Email string
			Website, Industry, IndustryID, Description                                                   string
			Employees, Founded                                                                           int
			IPRanges                                                                                     []string `json:"ip_ranges"`
			Contacts                                                                                     []providers.Contact
		}
		dec := json.NewDecoder(bytes.NewReader(l))
		if err := dec.Decode(&c); err != nil {
			t.Fatal(err)
		}
		// encoding/json matches keys case-insensitively but not
		// snake_case: the two-word ones by hand.
		var snake struct {
			LegalName  string `json:"legal_name"`
			StateCode  string `json:"state_code"`
			IndustryID string `json:"industry_id"`
		}
		_ = json.Unmarshal(l, &snake)
		recs = append(recs, registers.Record{Source: "kbo", Key: c.ID, Active: true, Licence: "test sample",
			Company: providers.Company{Name: c.Name, LegalName: snake.LegalName, Domain: c.Domain, VAT: c.VAT,
				Street: c.Street, Zip: c.Zip, City: c.City, State: c.State, StateCode: snake.StateCode, Country: c.Country,
				Phone: c.Phone, Email: c.Email, Website: c.Website, Industry: c.Industry, IndustryID: snake.IndustryID,
				Description: c.Description, Employees: c.Employees, Founded: c.Founded, Contacts: c.Contacts}})
		for _, r := range c.IPRanges {
			ranges += r + ",kbo," + c.ID + "\n"
		}
	}
	if len(recs) < 8 {
		t.Fatalf("%d sample companies", len(recs))
	}
	return recs, ranges
}

func writeJSONL(t *testing.T, path string, recs []registers.Record, extra ...string) {
	t.Helper()
	var b bytes.Buffer
	for _, r := range recs {
		j, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(append(j, '\n'))
	}
	for _, e := range extra {
		b.WriteString(e + "\n")
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func runImport(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := runDirectory(context.Background(), args, stdio{getenv: func(string) string { return "" }, stdout: &out, stderr: &errb}, jsonlRecords)
	return out.String(), errb.String(), err
}

// importSample imports the sample companies into a new data directory
// with their reveal mapping, as an operator would, and returns it.
func importSample(t *testing.T) string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	recs, ranges := sampleRecords(t)
	file := filepath.Join(t.TempDir(), "sample.jsonl")
	writeJSONL(t, file, recs)
	if _, errOut, err := runImport(t, "import", "-format", "kbo", "-data", data, file); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if err := os.WriteFile(filepath.Join(registers.DefaultDir(data), registers.IPRangesFile), []byte(ranges), 0o600); err != nil {
		t.Fatal(err)
	}
	return data
}

// TestDirectoryImport: the import command reads files into the index,
// names bad rows by file and line, prints what it did, strikes off on
// re-import what a newer file lacks, and refuses a data directory a
// running iapd holds.
func TestDirectoryImport(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	recs, _ := sampleRecords(t)
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first.jsonl"), filepath.Join(dir, "second.jsonl")
	writeJSONL(t, first, recs[:4], "{not json")
	writeJSONL(t, second, recs[4:])
	out, errOut, err := runImport(t, "import", "-format", "kbo", "-data", data, first, second)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if !strings.Contains(errOut, first+":5: skipped:") {
		t.Errorf("bad row not named by file and line:\n%s", errOut)
	}
	want := fmt.Sprintf("index %s: %d new, 0 changed, 0 unchanged, 0 struck off", registers.DefaultDir(data), len(recs))
	if !strings.Contains(out, want) || !strings.Contains(out, "1 bad rows skipped") {
		t.Errorf("first import printed:\n%s\nwant %q", out, want)
	}
	// A newer file without the first company, and one company changed.
	recs[1].City = "Elsewhere"
	writeJSONL(t, first, recs[1:4])
	out, errOut, err = runImport(t, "import", "-format", "kbo", "-data", data, first, second)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	want = fmt.Sprintf("0 new, 1 changed, %d unchanged, 1 struck off", len(recs)-2)
	if !strings.Contains(out, want) {
		t.Errorf("re-import printed:\n%s\nwant %q", out, want)
	}
	// Refusals: arguments, and a data directory in use.
	for _, args := range [][]string{
		{"import", "-format", "nosuch", "-data", data, first},
		{"import", "-format", "kbo", "-data", data},
		{"import", "-format", "kbo", "-data", data, filepath.Join(dir, "absent.csv")},
		{"export"},
	} {
		if _, _, err := runImport(t, args...); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	startServer(t, nil, "-data", data) // stopped when the test ends
	_, _, err = runImport(t, "import", "-format", "kbo", "-data", data, second)
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("import into a running iapd's data directory: %v", err)
	}
}

// withoutPartnerGID drops the old API's partner_gid from the shape
// differences: it is an integer id of Odoo's own database (PROTOCOL
// §8.1), which the client only stores and sends back to enrich, where a
// missing one is false and the domain and VAT number find the company;
// the registers' ids ("kbo:0477472701") are not integers, so the answers
// leave it out.
func withoutPartnerGID(diffs []string) []string {
	out := diffs[:0]
	for _, d := range diffs {
		if !strings.HasSuffix(d, ".partner_gid: missing") {
			out = append(out, d)
		}
	}
	return out
}

// TestCompanyFixturesFromRegisters replays every captured partner
// autocomplete, enrichment, mining and reveal request (odoo16–odoo19) to
// iapd started with its default configuration on a data directory whose
// registers were imported with iapd directory import (the sample
// companies, as records of a register, and their IP ranges as the
// reveal mapping): the answers come from the on-disk index, have the
// shape the real Odoo accepted, find what the fixtures ask for (ids are
// the index's, "kbo:<key>"), and keep the ledger invariant.
func TestCompanyFixturesFromRegisters(t *testing.T) {
	env := map[string]string{"IAPD_ADMIN_TOKEN": testAdminToken}
	paid := startServer(t, env, "-data", importSample(t))
	broke := startServer(t, env, "-data", importSample(t))
	if !strings.Contains(paid.stdout.String()+paid.stderr.String(), "registers (registers)") {
		t.Fatalf("the default configuration does not answer from the registers:\n%s\n%s", paid.stdout.String(), paid.stderr.String())
	}
	ids := regexp.MustCompile(`"(clearbit_id|duns)":"`)
	replayCompanyFixtures(t, paid, broke, func(s string) string { return ids.ReplaceAllString(s, `"$1":"kbo:`) }, withoutPartnerGID)
}

// Off a terminal the import writes a plain progress line every
// plainProgressEvery, with the file's percentage, records/s and ETA; bad
// rows are named up to maxBadShown, then counted.
func TestImportProgressLines(t *testing.T) {
	var out bytes.Buffer
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sink := &countingSink{Sink: discardSink{}}
	p := newImportProgress(&out, "gleif: golden.csv", sink, func() time.Time { return now })
	for range 3000 {
		_ = sink.Put(registers.Record{})
	}
	now = now.Add(time.Second)
	p.bytes(10e6, 40e6)
	if out.Len() != 0 {
		t.Fatalf("a line before %s: %q", plainProgressEvery, out.String())
	}
	now = now.Add(plainProgressEvery)
	p.bytes(10e6, 40e6)
	want := "gleif: golden.csv 25% (10.0 of 40.0 MB), 3000 records, 97 records/s, ETA 1m33s\n"
	if out.String() != want {
		t.Fatalf("progress line %q, want %q", out.String(), want)
	}
	out.Reset()
	for i := range maxBadShown + 5 {
		p.bad("f.csv", int64(i+2), fmt.Errorf("bad"))
	}
	if n := strings.Count(out.String(), ": skipped: bad\n"); n != maxBadShown || !strings.Contains(out.String(), "more bad rows skipped") {
		t.Errorf("%d bad rows named:\n%s", n, out.String())
	}
}

type discardSink struct{}

func (discardSink) Put(registers.Record) error { return nil }
