package metrics

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestRefusalReasonsMatchTheCode reads the repository's Go sources (not
// tests) and checks that every snake_case word used as a refusal reason —
// a literal in a call Refuse("…"), Refused("…"), refused("…"), a
// constant Reason… = "…" or an assignment to reason — is in
// RefusalReasons, and that every listed reason is used: a new reason must
// be listed (its series then exists from the start) and documented.
func TestRefusalReasonsMatchTheCode(t *testing.T) {
	line := regexp.MustCompile(`\b(Refused?|refused)\("|\bReason[A-Z]\w*\s*=\s*"|\breason\s*:?=|, reason = `)
	word := regexp.MustCompile(`"([a-z]+(?:_[a-z]+)+)"`)
	notReasons := map[string]bool{"refused_since_last_line": true} // a log attribute
	used := map[string]string{}
	root := ".."
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "vendor" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || path == filepath.Join(root, "metrics", "metrics.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if !line.MatchString(l) || strings.HasPrefix(strings.TrimSpace(l), "//") {
				continue
			}
			for _, m := range word.FindAllStringSubmatch(l, -1) {
				if !notReasons[m[1]] {
					used[m[1]] = path
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for r, path := range used {
		if !slices.Contains(RefusalReasons, r) {
			t.Errorf("%s refuses with reason %q, which RefusalReasons does not list", path, r)
		}
	}
	seen := map[string]bool{}
	for _, r := range RefusalReasons {
		if seen[r] {
			t.Errorf("RefusalReasons lists %q twice", r)
		}
		seen[r] = true
		if _, ok := used[r]; !ok {
			t.Errorf("RefusalReasons lists %q, which no code refuses with", r)
		}
	}
}
