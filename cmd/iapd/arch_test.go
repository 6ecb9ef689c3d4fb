package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// The architecture of iapd's packages (issue 15 item 6), checked on the
// import graph `go list` reports for the shipped (non-test) files:
//   - layerRules: a package group must not import another group;
//   - no import loop between the package groups (rpc, proxy, providers,
//     storage, metrics, cmd);
//   - each package doc's import sentence ("may import …", "It imports …",
//     "must not import …") agrees with the package's imports.

const modulePath = "github.com/iapd/iapd"

// layerRules: packages of the group on the left import nothing of the
// groups on the right.
var layerRules = map[string][]string{
	"providers": {"storage", "rpc", "proxy", "cmd"},
	"storage":   {"rpc", "providers", "proxy", "metrics", "cmd"},
}

// knownExceptions are the forbidden edges that remain, with the reason.
// The list may only shrink: an exception whose edge is gone fails the
// test until it is deleted here.
// (Empty since the alert dispatcher, which reads the ledger, moved from
// providers/notify to rpc/notify.)
var knownExceptions = map[string]string{}

// TestArchitecture checks iapd's own import graph.
func TestArchitecture(t *testing.T) {
	pkgs := listPackages(t)
	graph := map[string][]string{}
	for p, pk := range pkgs {
		graph[p] = pk.imports
	}
	for _, e := range layerViolations(graph, knownExceptions) {
		t.Error(e)
	}
	for _, e := range groupCycles(graph) {
		t.Error(e)
	}
	paths := make([]string, 0, len(pkgs))
	for p := range pkgs {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		for _, e := range docViolations(p, pkgs[p].doc, pkgs[p].imports, pkgs) {
			t.Error(e)
		}
	}
}

// The checks find what they are meant to on a graph and docs made to break
// them, so that TestArchitecture cannot pass by checking nothing.
func TestArchitectureChecksFail(t *testing.T) {
	graph := map[string][]string{
		"providers/acme": {"providers", "storage/badger"},
		"providers/beta": {"providers", "storage"},
		"storage":        nil,
		"storage/badger": {"storage", "metrics"},
		"metrics":        {"storage"},
		"rpc":            {"storage", "proxy"},
		"proxy":          {"rpc"},
	}
	got := strings.Join(layerViolations(graph, map[string]string{
		"providers/beta -> storage": "test",
		"providers/gone -> rpc":     "stale",
	}), "\n")
	for _, want := range []string{"providers/acme imports storage/badger", "storage/badger imports metrics", "providers/gone -> rpc"} {
		if !strings.Contains(got, want) {
			t.Errorf("layerViolations misses %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "providers/beta") {
		t.Errorf("layerViolations reports a known exception:\n%s", got)
	}
	cyc := strings.Join(groupCycles(graph), "\n")
	for _, want := range []string{"proxy -> rpc", "rpc -> proxy", "metrics -> storage", "storage -> metrics"} {
		if !strings.Contains(cyc, want) {
			t.Errorf("groupCycles misses %q:\n%s", want, cyc)
		}
	}
	known := map[string]pkgInfo{"rpc": {}, "rpc/limit": {}, "storage": {}, "storage/badger": {}, "providers": {}, "cmd/iapd": {}}
	for _, c := range []struct {
		doc     string
		imports []string
		want    string // "" when consistent
	}{
		{"Package rpc may import the standard library and package storage. It must not import storage/badger, providers or cmd; cmd wires it.",
			[]string{"storage", "providers"}, "rpc imports providers, which its doc forbids"},
		{"Package rpc may import storage and rpc/limit.", []string{"storage", "rpc/limit"}, ""},
		{"Package rpc imports only the standard library.", []string{"rpc/limit"}, "rpc imports rpc/limit, which its doc does not name"},
		{"It imports storage/...; cmd/iapd wires it.", []string{"storage/badger"}, ""},
		{"It imports storage/...; cmd/iapd wires it.", []string{"cmd/iapd"}, "rpc imports cmd/iapd, which its doc does not name"},
		{"Package rpc answers.", []string{"storage"}, "rpc: the package doc has no import sentence"},
	} {
		got := strings.Join(docViolations("rpc", c.doc, c.imports, known), "\n")
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("doc %q, imports %v: got %q, want %q", c.doc, c.imports, got, c.want)
		}
	}
}

type pkgInfo struct {
	doc     string   // the package doc comment's text
	imports []string // iapd packages imported by the shipped files, module-relative
}

// listPackages runs `go list` on the module and reads each package's doc.
func listPackages(t *testing.T) map[string]pkgInfo {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Dir,GoFiles,Imports", "./...")
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]pkgInfo{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p struct {
			ImportPath, Dir string
			GoFiles         []string
			Imports         []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		rel, ok := relPath(p.ImportPath)
		if !ok {
			continue
		}
		var info pkgInfo
		for _, imp := range p.Imports {
			if r, ok := relPath(imp); ok {
				info.imports = append(info.imports, r)
			}
		}
		fset := token.NewFileSet()
		for _, f := range p.GoFiles {
			af, err := parser.ParseFile(fset, filepath.Join(p.Dir, f), nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if af.Doc != nil {
				info.doc += af.Doc.Text() + "\n"
			}
		}
		pkgs[rel] = info
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages of %s; is the test run from cmd/iapd?", len(pkgs), modulePath)
	}
	return pkgs
}

// relPath returns p relative to the module, if it is one of iapd's.
func relPath(p string) (string, bool) {
	if r, ok := strings.CutPrefix(p, modulePath+"/"); ok {
		return r, true
	}
	return "", false
}

// group is a package's top-level directory.
func group(p string) string {
	g, _, _ := strings.Cut(p, "/")
	return g
}

// layerViolations lists the imports layerRules forbid, less the known
// exceptions, and the exceptions that no longer happen.
func layerViolations(graph map[string][]string, exceptions map[string]string) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range sortedKeys(graph) {
		forbidden := layerRules[group(p)]
		for _, imp := range graph[p] {
			for _, g := range forbidden {
				if group(imp) != g {
					continue
				}
				edge := p + " -> " + group(imp)
				if _, ok := exceptions[edge]; ok {
					seen[edge] = true
					continue
				}
				out = append(out, fmt.Sprintf("%s imports %s: package group %s must not import %s", p, imp, group(p), g))
			}
		}
	}
	for _, edge := range sortedKeys(exceptions) {
		if !seen[edge] {
			out = append(out, fmt.Sprintf("known exception %q no longer happens: delete it from knownExceptions", edge))
		}
	}
	return out
}

// groupCycles lists each pair of package groups that import each other
// (directly or through other groups), with the edges that close the loop.
func groupCycles(graph map[string][]string) []string {
	edges := map[string]map[string]string{} // group → group → an example "pkg imports pkg"
	for _, p := range sortedKeys(graph) {
		for _, imp := range graph[p] {
			a, b := group(p), group(imp)
			if a == b {
				continue
			}
			if edges[a] == nil {
				edges[a] = map[string]string{}
			}
			if _, ok := edges[a][b]; !ok {
				edges[a][b] = p + " imports " + imp
			}
		}
	}
	// path returns a chain of groups from a to b, or nil.
	path := func(a, b string) []string {
		prev := map[string]string{a: ""}
		queue := []string{a}
		for len(queue) > 0 {
			g := queue[0]
			queue = queue[1:]
			for _, n := range sortedKeys(edges[g]) {
				if _, ok := prev[n]; ok {
					continue
				}
				prev[n] = g
				if n == b {
					var chain []string
					for x := b; x != a; x = prev[x] {
						chain = append([]string{x}, chain...)
					}
					return append([]string{a}, chain...)
				}
				queue = append(queue, n)
			}
		}
		return nil
	}
	var out []string
	for _, a := range sortedKeys(edges) {
		for _, b := range sortedKeys(edges[a]) {
			if a > b {
				continue // each loop through the pair once
			}
			back := path(b, a)
			if back == nil {
				continue
			}
			loop := []string{a + " -> " + b + " (" + edges[a][b] + ")"}
			for i := 0; i+1 < len(back); i++ {
				loop = append(loop, back[i]+" -> "+back[i+1]+" ("+edges[back[i]][back[i+1]]+")")
			}
			out = append(out, "import loop between package groups: "+strings.Join(loop, ", "))
		}
	}
	return out
}

var (
	importWord = regexp.MustCompile(`\bimports?\b`)
	mustNot    = regexp.MustCompile(`\bmust not import\b`)
	pathToken  = regexp.MustCompile(`[a-z][a-z0-9]*(?:/[a-z0-9]+)*(?:/\.\.\.)?`)
)

// docViolations checks the import sentences of p's doc against its imports.
// In a clause that starts at "import(s)" and runs to the next ';' or the
// end of the sentence, a module-relative package path (known) names that
// package, "x/..." names x and every package under it, and a bare "cmd"
// names cmd/.... Every iapd import must be named by a clause that is not a
// "must not import" one, and none may be named by a "must not import" one.
func docViolations(p, doc string, imports []string, known map[string]pkgInfo) []string {
	text := strings.Join(strings.Fields(strings.ReplaceAll(doc, modulePath+"/", "")), " ")
	text = strings.ReplaceAll(text, "/...", "/\x00") // not a sentence's end
	var allowed, forbidden []string
	found := false
	for _, s := range regexp.MustCompile(`\.\s+`).Split(text, -1) {
		s = strings.ReplaceAll(s, "/\x00", "/...")
		if !importWord.MatchString(s) {
			continue
		}
		found = true
		head, tail := s, ""
		if loc := mustNot.FindStringIndex(s); loc != nil {
			head, tail = s[:loc[0]], s[loc[1]:]
		}
		if loc := importWord.FindStringIndex(head); loc != nil {
			allowed = append(allowed, names(clause(head[loc[1]:]), known)...)
		}
		if tail != "" {
			forbidden = append(forbidden, names(clause(tail), known)...)
		}
	}
	if !found {
		if len(imports) == 0 {
			return nil
		}
		return []string{p + ": the package doc has no import sentence (\"It imports …\", \"may import …\")"}
	}
	var out []string
	for _, imp := range imports {
		if n, ok := named(imp, forbidden); ok {
			out = append(out, fmt.Sprintf("%s imports %s, which its doc forbids (%q)", p, imp, n))
		} else if _, ok := named(imp, allowed); !ok {
			out = append(out, fmt.Sprintf("%s imports %s, which its doc does not name (named: %v)", p, imp, allowed))
		}
	}
	return out
}

// clause cuts s at its first ';'.
func clause(s string) string {
	s, _, _ = strings.Cut(s, ";")
	return s
}

// names returns the package names and patterns among the words of s.
func names(s string, known map[string]pkgInfo) []string {
	var out []string
	for _, w := range pathToken.FindAllString(s, -1) {
		base := strings.TrimSuffix(w, "/...")
		switch {
		case w == "cmd":
			out = append(out, "cmd/...")
		case base != w && hasPkgUnder(known, base):
			out = append(out, w)
		default:
			if _, ok := known[w]; ok {
				out = append(out, w)
			}
		}
	}
	return out
}

// hasPkgUnder reports whether base or a package under it is known.
func hasPkgUnder(known map[string]pkgInfo, base string) bool {
	for k := range known {
		if k == base || strings.HasPrefix(k, base+"/") {
			return true
		}
	}
	return false
}

// named reports the first of names that names imp.
func named(imp string, names []string) (string, bool) {
	for _, n := range names {
		if base, ok := strings.CutSuffix(n, "/..."); ok {
			if imp == base || strings.HasPrefix(imp, base+"/") {
				return n, true
			}
		} else if imp == n {
			return n, true
		}
	}
	return "", false
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
