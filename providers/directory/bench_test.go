package directory

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/iapd/iapd/providers"
)

// bigDirectory builds a directory of n generated companies, each with a
// /28 of 10.0.0.0/8.
func bigDirectory(b *testing.B, n int) *index {
	b.Helper()
	var buf bytes.Buffer
	words := []string{"alpha", "beta", "gamma", "delta", "omega", "widget", "solar", "media", "bakery", "logistics"}
	for i := 0; i < n; i++ {
		base := netip.AddrFrom4([4]byte{10, byte(i >> 12), byte(i >> 4), byte(i << 4)})
		fmt.Fprintf(&buf, `{"id":"%d","name":"%s %s %d","country":"BE","domain":"c%d.example","vat":"BE%010d","employees":%d,"industry_id":"86","ip_ranges":["%s/28"]}`+"\n",
			100000000+i, words[i%10], words[(i/10)%10], i, i, i, 1+i%500, base)
	}
	es, err := parseFile("big.jsonl", &buf)
	if err != nil {
		b.Fatal(err)
	}
	d, err := build("big", es)
	if err != nil {
		b.Fatal(err)
	}
	d.max = 10
	return d
}

func BenchmarkDirectory(b *testing.B) {
	d := bigDirectory(b, 100_000)
	ctx := context.Background()
	b.Run("ByName", func(b *testing.B) { // common words: 20% of the directory are candidates
		for i := 0; b.Loop(); i++ {
			if cs, _ := d.CompaniesByName(ctx, providers.NameQuery{Name: "gamma wid", Limit: 10}); len(cs) == 0 {
				b.Fatal("nothing found")
			}
		}
	})
	b.Run("ByIP", func(b *testing.B) {
		ip := netip.MustParseAddr("10.1.2.3")
		for b.Loop() {
			if c, _ := d.CompanyByIP(ctx, ip); c == nil {
				b.Fatal("nothing found")
			}
		}
	})
	b.Run("ByDomain", func(b *testing.B) {
		for b.Loop() {
			if c, _ := d.CompanyByDomain(ctx, "jane@mail.c77777.example"); c == nil {
				b.Fatal("nothing found")
			}
		}
	})
	b.Run("Search", func(b *testing.B) {
		for b.Loop() {
			if cs, _ := d.SearchCompanies(ctx, providers.Criteria{Countries: []string{"BE"}, MinSize: 490, Limit: 200}); len(cs) != 200 {
				b.Fatal("short")
			}
		}
	})
}

// The file parsers never panic, and every error names the file.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"id":"1","name":"A","country":"BE","ip_ranges":["192.0.2.0/24"],"contacts":[{"name":"x"}]}`), true)
	f.Add([]byte("id,name,country,ip_ranges,contacts\n1,A,BE,192.0.2.0/24,\"[{\"\"name\"\":\"\"x\"\"}]\"\n"), false)
	f.Add(sample, true)
	f.Fuzz(func(t *testing.T, data []byte, jsonl bool) {
		name := "f.csv"
		if jsonl {
			name = "f.jsonl"
		}
		es, err := parseFile(name, bytes.NewReader(data))
		if err != nil {
			if !strings.HasPrefix(err.Error(), name) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if _, err := build("f", es); err != nil && !strings.HasPrefix(err.Error(), name) {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}
