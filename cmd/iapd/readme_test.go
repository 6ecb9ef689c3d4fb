package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iapd/iapd/proxy"
	"github.com/iapd/iapd/rpc/portal"
	"github.com/iapd/iapd/rpc/rpctest"
)

// readReadme returns the repository's README.md.
func readReadme(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// readmeSection returns the text of the "## title" section, up to the next
// "## " heading.
func readmeSection(t *testing.T, readme, title string) string {
	t.Helper()
	start := strings.Index(readme, "\n## "+title+"\n")
	if start < 0 {
		t.Fatalf("README has no %q section", "## "+title)
	}
	section := readme[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	return section
}

// yamlKeys returns the yaml names of typ's fields (not "-"), each with
// prefix.
func yamlKeys(typ reflect.Type, prefix string) []string {
	var keys []string
	for i := 0; i < typ.NumField(); i++ {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		keys = append(keys, prefix+name)
	}
	return keys
}

// nestedKey reports whether the dotted yaml path (upstream.max_answer_bytes)
// names a field of typ's nested structs: a table row may document one key
// of a section the table otherwise describes in one row.
func nestedKey(typ reflect.Type, path string) bool {
	for _, name := range strings.Split(path, ".") {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct {
			return false
		}
		found := false
		for i := 0; i < typ.NumField(); i++ {
			if tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ","); tag == name {
				typ, found = typ.Field(i).Type, true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// rawSectionKey reports whether the dotted path names a key of a section
// Config keeps raw (a RawSection) for the package that parses it.
func rawSectionKey(path string) bool {
	sections := map[string]reflect.Type{"upstream": reflect.TypeOf(proxy.Config{}), "portal": reflect.TypeOf(portal.Config{})}
	root, rest, ok := strings.Cut(path, ".")
	typ, raw := sections[root]
	return ok && raw && nestedKey(typ, rest)
}

// TestReadmeConfigurationTable: the table of README "Configuration
// reference" names every key of the configuration file (Config and
// ServiceConfig, as services.<name>.KEY) and no other, and every flag it
// names is one "iapd serve" takes.
func TestReadmeConfigurationTable(t *testing.T) {
	section := readmeSection(t, readReadme(t), "Configuration reference")
	documented := map[string]bool{}
	var flags []string
	code := regexp.MustCompile("`([^`]+)`")
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(line, "| `") {
			continue
		}
		for _, m := range code.FindAllStringSubmatch(cells[1], -1) {
			documented[m[1]] = true
			if root, _, ok := strings.Cut(m[1], ".<"); ok {
				documented[root] = true // a map: services.<name>…, providers.<instance>
			}
		}
		for _, m := range code.FindAllStringSubmatch(cells[2], -1) {
			flags = append(flags, m[1])
		}
	}
	want := append(yamlKeys(reflect.TypeOf(Config{}), ""), yamlKeys(reflect.TypeOf(ServiceConfig{}), "services.<name>.")...)
	sort.Strings(want)
	known := map[string]bool{}
	for _, k := range want {
		known[k] = true
		if !documented[k] {
			t.Errorf("configuration key %s is missing from README's Configuration reference table", k)
		}
	}
	for k := range documented {
		if !known[k] && k != "providers.<instance>" && !nestedKey(reflect.TypeOf(Config{}), k) && !rawSectionKey(k) {
			t.Errorf("README's Configuration reference table names %s, which is no configuration key", k)
		}
	}

	var usage bytes.Buffer
	if _, err := loadServeConfig([]string{"-h"}, func(string) string { return "" }, &usage); err == nil {
		t.Fatal("serve -h: no error")
	}
	for _, f := range flags {
		if !strings.Contains(usage.String(), "\n  "+f+" ") && !strings.Contains(usage.String(), "\n  "+f+"\n") {
			t.Errorf("README's Configuration reference table names the flag %s, which serve's usage does not list:\n%s", f, usage.String())
		}
	}
	if len(flags) == 0 {
		t.Error("README's Configuration reference table names no flag")
	}
}

// githubSlug is the anchor GitHub gives a heading: lower case, punctuation
// other than '-' and '_' dropped, spaces made '-'.
func githubSlug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// markdownAnchors returns the anchors of the headings of a Markdown text
// (fenced code skipped; a repeated heading gets GitHub's -1, -2 suffix).
func markdownAnchors(text string) map[string]bool {
	anchors := map[string]bool{}
	fenced := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced || !strings.HasPrefix(line, "#") {
			continue
		}
		heading := strings.TrimLeft(line, "#")
		if !strings.HasPrefix(heading, " ") {
			continue
		}
		slug := githubSlug(strings.ReplaceAll(heading, "`", ""))
		a := slug
		for n := 1; anchors[a]; n++ {
			a = slug + "-" + strconv.Itoa(n)
		}
		anchors[a] = true
	}
	return anchors
}

// TestReadmeLinksResolve: every link of the README to one of its own
// headings (](#anchor)) names a heading that exists, every relative link
// names a file or directory of the repository, and a link into another
// Markdown file of the repository (file.md#anchor) names one of its
// headings.
func TestReadmeLinksResolve(t *testing.T) {
	readme := readReadme(t)
	own := markdownAnchors(readme)
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, m := range link.FindAllStringSubmatch(readme, -1) {
		target := m[1]
		if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
			continue
		}
		path, anchor, _ := strings.Cut(target, "#")
		if path == "" {
			if !own[anchor] {
				t.Errorf("README links to #%s, which is no heading of README", anchor)
			}
			continue
		}
		file := filepath.Join("..", "..", filepath.FromSlash(path))
		if _, err := os.Stat(file); err != nil {
			t.Errorf("README links to %s, which is not in the repository: %v", path, err)
			continue
		}
		if anchor != "" && strings.HasSuffix(path, ".md") {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if !markdownAnchors(string(raw))[anchor] {
				t.Errorf("README links to %s#%s, which is no heading of %s", path, anchor, path)
			}
		}
	}
}

// TestReadmeSandboxTour runs the ```sh blocks of README "Try every Odoo
// flow in the sandbox" as written, in a temporary directory, with bash,
// curl and python3, and checks what the README says they print: every
// "# → …" answer (up to its first "…"), the recharge line, the geocoding
// account's figures and the letter's files. Only what would clash with the
// machine is replaced: the built binary for `go build`, free ports for
// 8070 and 9070, the fixtures directory for ../shared/fixtures.
func TestReadmeSandboxTour(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the README's sandbox tour needs %s (.ci/run installs it): %v", tool, err)
		}
	}
	section := readmeSection(t, readReadme(t), "Try every Odoo flow in the sandbox")
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1)
	if len(blocks) < 3 {
		t.Fatalf("the sandbox tour has %d sh blocks, want 3", len(blocks))
	}
	var script strings.Builder
	var want []string
	for _, b := range blocks {
		script.WriteString(b[1])
		for _, line := range strings.Split(b[1], "\n") {
			if _, answer, ok := strings.Cut(line, "# → "); ok {
				answer, _, _ = strings.Cut(answer, "…")
				want = append(want, strings.TrimSpace(answer))
			}
		}
	}
	if len(want) < 4 {
		t.Fatalf("the sandbox tour states %d answers (# → …), want at least 4", len(want))
	}
	want = append(want,
		"recharge of 100 on sms/0123456789abcdef0123456789abcdef (entry 2); available 110, held 0",
		"FOLDER-", ".pdf")

	bin := buildIapd(t)
	freePort := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	}
	pub, ops := freePort(), freePort()
	text := strings.NewReplacer(
		"go build -o iapd ./cmd/iapd", "ln -s "+bin+" iapd",
		"./iapd serve -config sandbox.yaml", "./iapd serve -config sandbox.yaml -listen 127.0.0.1:"+pub+" -ops-listen 127.0.0.1:"+ops,
		"localhost:8070", "127.0.0.1:"+pub,
		"localhost:9070", "127.0.0.1:"+ops,
		"../shared/fixtures", rpctest.Dir(t),
	).Replace(script.String())
	if strings.Contains(text, "8070") || strings.Contains(text, "9070") || strings.Contains(text, "go build") {
		t.Fatalf("the tour names a port or a build this test does not replace:\n%s", text)
	}
	// A failing line stops the script, and the EXIT trap stops the iapd it
	// started, so the test never waits on a server left behind.
	text = "set -e\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + text + "\nkill %1\nwait\n"

	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", text)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "IAPD_OPS=127.0.0.1:"+ops, "IAPD_ADMIN_TOKEN=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "iapd.log"))
		t.Fatalf("the sandbox tour failed: %v\n%s\niapd.log:\n%s", err, out, log)
	}
	for _, w := range want {
		if !strings.Contains(string(out), w) {
			t.Errorf("the sandbox tour's output lacks %q", w)
		}
	}
	for _, re := range []string{`(?m)^available +4$`, `(?m)^captured +1$`} {
		if !regexp.MustCompile(re).Match(out) {
			t.Errorf("the sandbox tour's `iapd accounts show geocoding` lacks %s", re)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}
