package directory

import (
	"bufio"
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/providertest"
)

func sampleDir(t *testing.T) *Directory {
	t.Helper()
	d, err := (&Config{}).New("directory", nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestConformance(t *testing.T) {
	providertest.TestCompanyProvider(t, providertest.CompanyHarness{
		New: func(t *testing.T) providers.Provider {
			d := sampleDir(t)
			t.Cleanup(func() { _ = d.Close() })
			return d
		},
		Known:   providers.Company{ID: "371234567", Name: "Stub Company SA", VAT: "BE0000000097", Domain: "stub-company.example", Country: "BE"},
		KnownIP: netip.MustParseAddr("192.0.2.130"),
	})
}

// The embedded sample is fictitious: .example domains and e-mail
// addresses, documentation IP ranges only (RFC 2606, 5737, 3849).
func TestSampleIsFictitious(t *testing.T) {
	doc := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	es, err := parseFile(SampleFile, bytes.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(es) < 8 {
		t.Fatalf("%d companies in the sample", len(es))
	}
	for _, e := range es {
		if !strings.HasSuffix(e.c.Domain, ".example") || (e.c.Email != "" && !strings.HasSuffix(e.c.Email, ".example")) {
			t.Errorf("%s: domain %s, e-mail %s: want .example", e.c.Name, e.c.Domain, e.c.Email)
		}
		for _, c := range e.c.Contacts {
			if c.Email != "" && !strings.HasSuffix(c.Email, ".example") {
				t.Errorf("%s: contact e-mail %s", e.c.Name, c.Email)
			}
		}
		for _, p := range e.ranges {
			ok := false
			for _, d := range doc {
				ok = ok || (d.Contains(p.Addr()) && p.Bits() >= d.Bits())
			}
			if !ok {
				t.Errorf("%s: range %s is not a documentation range", e.c.Name, p)
			}
		}
	}
}

func write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Every load error names the file and line and what is wrong.
func TestLoadErrors(t *testing.T) {
	const ok = `{"id":"1","name":"A","country":"BE"}` + "\n"
	cases := []struct{ name, content, want string }{
		{"a.jsonl", ok + `{"id":"2","name":"B","country":"BE","colour":"red"}`, `a.jsonl:2: json: unknown field "colour"`},
		{"a.jsonl", ok + `{"id":"2","name":"","country":"BE"}`, "a.jsonl:2: name: required"},
		{"a.jsonl", ok + `{"id":"1","name":"B","country":"BE"}`, `a.jsonl:2: id "1" already used at a.jsonl:1`},
		{"a.jsonl", ok + `{"id":"2","name":"B","country":"Belgium"}`, "a.jsonl:2: country"},
		{"a.jsonl", ok + "\n# comment\n" + `{"id":"2","name":"B","country":"BE","ip_ranges":["10.0.0.1/8"]}`, "a.jsonl:4: ip_ranges: \"10.0.0.1/8\" has host bits set (write 10.0.0.0/8)"},
		{"a.jsonl", `{"id":"1","name":"A","country":"BE","ip_ranges":["10.0.0.0/8"]}` + "\n" + `{"id":"2","name":"B","country":"BE","ip_ranges":["10.0.0.0/8"]}`, `a.jsonl:2: ip range "10.0.0.0/8" already used at a.jsonl:1`},
		{"a.jsonl", ok + `{"id":"2","name":"B","country":"BE","ip_ranges":["nope"]}`, `a.jsonl:2: ip_ranges: "nope" is not a CIDR range`},
		{"a.jsonl", ok + `{"id":"2","name":"B","country":"BE","domain":"bad domain"}`, "a.jsonl:2: domain"},
		{"a.jsonl", ok + `{"id":"2","name":"B","country":"BE","vat":"12"}`, "a.jsonl:2: vat"},
		{"a.jsonl", ok + `{"id":"2","name":"B","country":"BE","contacts":[{"email":"x@y.example"}]}`, "a.jsonl:2: contacts[0].name: required"},
		{"b.csv", "id,name,country,color\n1,A,BE,red\n", `b.csv:1: unknown column "color"`},
		{"b.csv", "id,name,country,employees\n1,A,BE,10\n2,B,BE,many\n", `b.csv:3: employees: "many" is not a whole number`},
		{"b.csv", "id,name,country,contacts\n1,A,BE,\"[{\"\"nom\"\":\"\"x\"\"}]\"\n", "b.csv:2: contacts: want a JSON array of contacts"},
		{"b.csv", "id,name,country,domain\n1,A,BE,a.example\n2,B,BE,A.example\n", `b.csv:3: domain "a.example" already used at b.csv:2`},
		{"c.txt", ok, "c.txt: unknown format"},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			f := write(t, c.name, c.content)
			_, err := (&Config{Files: []string{f}}).New("d", nil)
			if err == nil || !strings.Contains(strings.ReplaceAll(err.Error(), filepath.Dir(f)+string(filepath.Separator), ""), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

// The same company in CSV and JSONL loads the same.
func TestCSVAndJSONL(t *testing.T) {
	csvF := write(t, "x.csv", "id,name,legal_name,domain,vat,country,state_code,employees,founded,industry_id,ip_ranges,twitter,contacts\n"+
		`42,Ünïcode Café,Café SA,https://www.cafe.example/about,be 0400.000.086,be,wal,12,1999,153,192.0.2.0/28 2001:db8::/64,cafe,"[{""name"":""Zoë"",""role"":""CEO"",""seniority"":""Executive""}]"`+"\n")
	jsonF := write(t, "x.jsonl", `{"id":"42","name":"Ünïcode Café","legal_name":"Café SA","domain":"https://www.cafe.example/about","vat":"be 0400.000.086","country":"be","state_code":"wal","employees":12,"founded":1999,"industry_id":"153","ip_ranges":["192.0.2.0/28","2001:db8::/64"],"twitter":"cafe","contacts":[{"name":"Zoë","role":"CEO","seniority":"Executive"}]}`+"\n")
	var got []*providers.Company
	for _, f := range []string{csvF, jsonF} {
		d, err := (&Config{Files: []string{f}}).New("d", nil)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := d.CompanyByID(context.Background(), "42")
		if c == nil || c.Domain != "cafe.example" || c.VAT != "BE0400000086" || c.Country != "BE" || c.StateCode != "WAL" ||
			c.Socials["twitter"] != "cafe" || len(c.Contacts) != 1 || c.Contacts[0].Seniority != "executive" {
			t.Fatalf("%s: %+v", f, c)
		}
		got = append(got, c)
	}
	if got[0].Name != got[1].Name || got[0].Employees != got[1].Employees || got[0].Founded != got[1].Founded {
		t.Errorf("CSV %+v, JSONL %+v", got[0], got[1])
	}
}

func TestQueries(t *testing.T) {
	f := write(t, "q.jsonl", strings.Join([]string{
		`{"id":"1","name":"Alpha Widgets","country":"BE","domain":"alpha.example","employees":10,"industry_id":"86","state_code":"BRU","ip_ranges":["198.51.100.0/24"],"contacts":[{"name":"A1","role":"marketing"},{"name":"A2","role":"CEO"},{"name":"A3","seniority":"manager"}]}`,
		`{"id":"2","name":"Widgets","country":"FR","domain":"w.example","employees":1000,"industry_id":"165","ip_ranges":["198.51.100.0/25","::ffff:203.0.113.0/120"]}`,
		`{"id":"3","name":"Café Crème","legal_name":"Beta Holding","country":"BE","industry_id":"86"}`,
	}, "\n"))
	d, err := (&Config{Files: []string{f}, MaxResults: 5}).New("d", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	names := func(cs []providers.Company) string {
		var n []string
		for _, c := range cs {
			n = append(n, c.Name)
		}
		return strings.Join(n, ",")
	}
	for _, c := range []struct{ q, country, want string }{
		{"widg", "", "Widgets,Alpha Widgets"}, // exact/prefix first
		{"widg", "BE", "Alpha Widgets,Widgets"},
		{"al wi", "", "Alpha Widgets"},
		{"creme", "", "Café Crème"},
		{"beta", "", "Café Crème"}, // legal name
		{"zeta", "", ""},
		{"  ", "", ""},
	} {
		cs, err := d.CompaniesByName(ctx, providers.NameQuery{Name: c.q, Country: c.country})
		if err != nil || names(cs) != c.want {
			t.Errorf("%q/%s: %q, %v; want %q", c.q, c.country, names(cs), err, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"alpha.example", "1"}, {"jane@ALPHA.example", "1"}, {"mail.eu.alpha.example", "1"}, {"https://w.example/x", "2"}, {"example", ""}, {"other.example", ""},
	} {
		co, err := d.CompanyByDomain(ctx, c.in)
		if err != nil || (co == nil) != (c.want == "") || (co != nil && co.ID != c.want) {
			t.Errorf("domain %q: %+v, %v; want %q", c.in, co, err, c.want)
		}
	}
	for _, c := range []struct{ ip, want string }{
		{"198.51.100.9", "2"}, {"198.51.100.200", "1"}, {"203.0.113.5", "2"}, {"::ffff:198.51.100.200", "1"}, {"192.0.2.1", ""},
	} {
		co, err := d.CompanyByIP(ctx, netip.MustParseAddr(c.ip))
		if err != nil || (co == nil) != (c.want == "") || (co != nil && co.ID != c.want) {
			t.Errorf("ip %s: %+v, %v; want %q", c.ip, co, err, c.want)
		}
	}
	search := func(c providers.Criteria) string {
		cs, err := d.SearchCompanies(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		return names(cs)
	}
	if got := search(providers.Criteria{Countries: []string{"be"}, Industries: []string{"86"}}); got != "Alpha Widgets,Café Crème" {
		t.Errorf("BE/86: %s", got)
	}
	if got := search(providers.Criteria{MinSize: 5, MaxSize: 500}); got != "Alpha Widgets" {
		t.Errorf("size 5–500 (unknown size never matches a bound): %s", got)
	}
	if got := search(providers.Criteria{States: []string{"bru"}}); got != "Alpha Widgets" {
		t.Errorf("state BRU: %s", got)
	}
	if got := search(providers.Criteria{Exclude: []string{"alpha.example"}, Limit: 1}); got != "Widgets" {
		t.Errorf("exclude + limit: %s", got)
	}
	cs, _ := d.SearchCompanies(ctx, providers.Criteria{Countries: []string{"BE"}, Limit: 1, ContactsPerCompany: 2, Roles: []string{"ceo", "marketing"}})
	if len(cs) != 1 || len(cs[0].Contacts) != 2 || cs[0].Contacts[0].Name != "A2" || cs[0].Contacts[1].Name != "A1" {
		t.Errorf("contacts by role order: %+v", cs)
	}
	cs, _ = d.SearchCompanies(ctx, providers.Criteria{Countries: []string{"BE"}, Limit: 1, ContactsPerCompany: 3, Seniorities: []string{"manager"}})
	if len(cs) != 1 || len(cs[0].Contacts) != 1 || cs[0].Contacts[0].Name != "A3" {
		t.Errorf("contacts by seniority: %+v", cs)
	}
}

// The registered factory decodes its settings strictly.
func TestFactory(t *testing.T) {
	f := write(t, "f.jsonl", `{"id":"1","name":"A","country":"BE"}`+"\n")
	settings := func(src string) yaml.Node {
		var n yaml.Node
		if err := yaml.NewDecoder(bufio.NewReader(strings.NewReader(src))).Decode(&n); err != nil {
			t.Fatal(err)
		}
		return *n.Content[0]
	}
	p, err := providers.Builtin.New(providers.Config{Name: "mine", Type: Type, Settings: settings("files: [" + f + "]\nmax_results: 3\n")}, providers.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if d := p.(*Directory); d.Len() != 1 || d.Name() != "mine" {
		t.Fatalf("%d companies (the sample must not be added when files are given)", d.Len())
	}
	if _, err := providers.Builtin.New(providers.Config{Name: "x", Type: Type, Settings: settings("file: [a]\n")}, providers.Deps{}); err == nil || !strings.Contains(err.Error(), "field file not found") {
		t.Fatalf("unknown key: %v", err)
	}
	if _, err := providers.Builtin.New(providers.Config{Name: "x", Type: Type, Settings: settings("sample: false\n")}, providers.Deps{}); err == nil {
		t.Fatal("an empty directory must be refused")
	}
}

// Reload reads the files again; a file that does not load leaves the
// directory as it was.
func TestReload(t *testing.T) {
	ctx := context.Background()
	f := write(t, "r.jsonl", `{"id":"1","name":"Old Name","country":"BE","domain":"old.example"}`+"\n")
	c := Config{Files: []string{f}}
	d, err := c.New("r", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := d.CompanyByDomain(ctx, "old.example"); got == nil || got.Name != "Old Name" {
		t.Fatalf("before reload: %+v", got)
	}
	if err := os.WriteFile(f, []byte(`{"id":"1","name":"New Name","country":"BE","domain":"new.example"}`+"\n"+
		`{"id":"2","name":"Second","country":"FR"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.CompanyByDomain(ctx, "new.example"); got == nil || got.Name != "New Name" || d.Len() != 2 {
		t.Fatalf("after reload: %+v, %d companies", got, d.Len())
	}
	if got, _ := d.CompanyByDomain(ctx, "old.example"); got != nil {
		t.Fatalf("the old domain is still found: %+v", got)
	}
	// A broken file: the error names it, the directory stays as it was.
	if err := os.WriteFile(f, []byte(`{"id":"3","name":"Dup","country":"BE"}`+"\n"+`{"id":"3","name":"Dup again","country":"BE"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err == nil || !strings.Contains(err.Error(), "r.jsonl") {
		t.Fatalf("reload of a broken file: %v", err)
	}
	if got, _ := d.CompanyByDomain(ctx, "new.example"); got == nil || d.Len() != 2 {
		t.Fatalf("after a failed reload: %+v, %d companies", got, d.Len())
	}
}

// The fictitious sample makes an instance a sandbox; the operator's own
// files do not, unless the sample is added to them.
func TestSandbox(t *testing.T) {
	f := write(t, "c.csv", "id,name,country\n1,Real Company,BE\n")
	yes := true
	for _, c := range []struct {
		cfg  Config
		want bool
	}{
		{Config{}, true},
		{Config{Files: []string{f}}, false},
		{Config{Files: []string{f}, Sample: &yes}, true},
	} {
		d, err := c.cfg.New("d", nil)
		if err != nil {
			t.Fatal(err)
		}
		if d.Sandbox() != c.want {
			t.Errorf("%+v: Sandbox() = %v, want %v", c.cfg, d.Sandbox(), c.want)
		}
	}
}
