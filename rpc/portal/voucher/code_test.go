package voucher

import (
	"strings"
	"testing"
)

func TestNewNormalizeHash(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		c, err := New()
		if err != nil {
			t.Fatal(err)
		}
		if len(c) != Length+3 || strings.Count(c, "-") != 3 {
			t.Fatalf("code %q: want 4 groups of 5", c)
		}
		if seen[c] {
			t.Fatalf("code %q twice", c)
		}
		seen[c] = true
		n, err := Normalize(c)
		if err != nil || n != strings.ReplaceAll(c, "-", "") {
			t.Fatalf("Normalize(%q) = %q, %v", c, n, err)
		}
		// Typed in lower case with spaces: the same hash.
		h1, _ := Hash(c)
		h2, err := Hash(" " + strings.ToLower(strings.ReplaceAll(c, "-", " ")) + " ")
		if err != nil || h1 != h2 {
			t.Fatalf("hash of the typed code differs: %v", err)
		}
	}
}

func TestNormalizeLookAlikes(t *testing.T) {
	got, err := Normalize("oooo0-iiiil-11111-abcde")
	if err != nil || got != "00000111111111"+"1ABCDE" {
		t.Fatalf("Normalize = %q, %v", got, err)
	}
	for _, bad := range []string{"", "ABC", "UUUUU-UUUUU-UUUUU-UUUUU", "00000-00000-00000-0000", "00000-00000-00000-000000", "00000-00000-00000-0000é", strings.Repeat("-", 200)} {
		if _, err := Normalize(bad); err == nil {
			t.Errorf("Normalize(%q) accepted", bad)
		}
	}
}

// Normalize reads what users type: never panics, and its output is a
// fixed point of 20 alphabet symbols.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"7K3QF-9ZC1M-T4WXA-0B8RD", "oooo0 iiiil 11111 abcde", "", "é", strings.Repeat("-", 90)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Normalize(s)
		if err != nil {
			return
		}
		if len(n) != Length || strings.Trim(n, alphabet) != "" {
			t.Fatalf("Normalize(%q) = %q", s, n)
		}
		if again, err := Normalize(n); err != nil || again != n {
			t.Fatalf("not a fixed point: %q → %q, %v", n, again, err)
		}
	})
}
