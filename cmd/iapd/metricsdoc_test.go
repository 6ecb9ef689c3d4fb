package main

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/iapd/iapd/rpc/rpctest"
)

// TestEveryMetricFamilyDocumented: every metric family a running iapd
// exports on /metrics (parsed with the Prometheus text parser, after an SMS
// and a letter so that the families created on first use are there), and
// every iap_ family the sources define (some appear only with traffic this
// test cannot make: upstream forwarding, delivery reports relayed), is in
// the table of README "Monitor iapd"; and every name that table gives is one
// iapd defines.
func TestEveryMetricFamilyDocumented(t *testing.T) {
	names, prefixes := monitorTable(t)

	s := startServer(t, map[string]string{"IAPD_ADMIN_TOKEN": testAdminToken})
	const tok = "0123456789abcdef0123456789abcdef"
	s.mustCLI(t, "", "credit", "sms", tok, "10")
	if res, errName := publicCall(t, s.public, "/api/sms/3/send", map[string]any{
		"account_token": tok, "dbuuid": "metrics-doc", "webhook_url": "http://127.0.0.1:1/sms/status",
		"messages": []any{map[string]any{"content": "Hello", "numbers": []any{map[string]any{"number": "+32470123456", "uuid": "84eeceb7fe5c4a64a42e6610d7aaeddc"}}}},
	}); errName != "" || !strings.Contains(string(res), `"success"`) {
		t.Fatalf("SMS send: %s %s", errName, res)
	}
	req := rpctest.Load(t, "odoo18", func(r *rpctest.Request) bool { return r.Name == "013_iap_snailmail_1_print.json" })[0]
	var body struct {
		Params struct {
			AccountToken string `json:"account_token"`
		}
	}
	if err := json.Unmarshal(req.Wire(t), &body); err != nil {
		t.Fatal(err)
	}
	s.mustCLI(t, "", "credit", "snailmail", strings.Split(body.Params.AccountToken, "+")[0], "10")
	if docs, raw := postPrint(t, s, req); len(docs) != 1 || docs[0]["sent"] != true {
		t.Fatalf("letter: %s", raw)
	}

	documented := func(name string) bool {
		if names[name] {
			return true
		}
		for _, p := range prefixes {
			if strings.HasPrefix(name, p) {
				return true
			}
		}
		return false
	}
	exported := scrapeMetrics(t, s.ops)
	for _, want := range []string{"iap_sms_messages_total", "iap_snailmail_letters_total", "iap_provider_sandbox", "iap_ledger_size_bytes"} {
		if _, ok := exported[want]; !ok {
			t.Errorf("%s not exported after an SMS and a letter", want)
		}
	}
	for name := range exported {
		if !documented(name) {
			t.Errorf("/metrics exports %s, which README \"Monitor iapd\" does not document", name)
		}
	}
	defined := definedFamilies(t)
	for name := range defined {
		if !documented(name) {
			t.Errorf("the sources define %s, which README \"Monitor iapd\" does not document", name)
		}
	}
	for name := range names {
		if _, ok := exported[name]; !ok && !defined[name] {
			t.Errorf("README \"Monitor iapd\" documents %s, which iapd neither exports nor defines", name)
		}
	}
}

// monitorTable returns the metric names of the first column of the tables
// in README's "Monitor iapd" section, and the prefixes it gives as `go_*`.
func monitorTable(t *testing.T) (map[string]bool, []string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	start := strings.Index(readme, "\n## Monitor iapd\n")
	if start < 0 {
		t.Fatal(`README has no "## Monitor iapd" section`)
	}
	section := readme[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	names := map[string]bool{}
	var prefixes []string
	code := regexp.MustCompile("`([a-z_]+\\*?)`")
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || !strings.HasPrefix(line, "| `") {
			continue
		}
		for _, m := range code.FindAllStringSubmatch(cells[1], -1) {
			if p, ok := strings.CutSuffix(m[1], "*"); ok {
				prefixes = append(prefixes, p)
			} else {
				names[m[1]] = true
			}
		}
	}
	if len(names) < 20 || len(prefixes) < 2 {
		t.Fatalf(`README "Monitor iapd": %d metric names and prefixes %v in its tables; the parse is broken`, len(names), prefixes)
	}
	return names, prefixes
}

// definedFamilies returns the iap_ metric names the non-test Go sources
// define: Name: "iap_…" (CounterOpts and the like), NewDesc("iap_…", and
// constants = "iap_…".
func definedFamilies(t *testing.T) map[string]bool {
	t.Helper()
	def := regexp.MustCompile(`(?:Name:\s*|NewDesc\(\s*|=\s*)"(iap_[a-z0-9_]+)"`)
	out := map[string]bool{}
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") && path != root) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range def.FindAllSubmatch(b, -1) {
			out[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 30 {
		names := make([]string, 0, len(out))
		for n := range out {
			names = append(names, n)
		}
		sort.Strings(names)
		t.Fatalf("only %d iap_ families found in the sources: %v", len(out), names)
	}
	return out
}
