package formats

import (
	"errors"
	"strconv"
	"strings"
)

// errRow is the error Bad is told for a row that parsed but cannot make a
// record.
func errRow(why string) error { return errors.New(why) }

// quote shortens v for an error message (rows may carry anything).
func quote(v string) string {
	if len(v) > 40 {
		v = v[:40] + "…"
	}
	return strconv.Quote(v)
}

func joinNonEmpty(sep string, parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		if p == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(sep)
		}
		b.WriteString(p)
	}
	return b.String()
}

// digits reports whether s is all ASCII digits (and not empty).
func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// year checks a four-digit year; 0 when it is not one.
func year(s string) int {
	if len(s) != 4 || !digits(s) {
		return 0
	}
	y, _ := strconv.Atoi(s)
	if y < 1000 {
		return 0
	}
	return y
}

// yearISO: "2012-06-06", "2012-06-06T15:53:00Z" → 2012.
func yearISO(s string) int {
	if len(s) < 4 {
		return 0
	}
	if len(s) > 4 && s[4] != '-' {
		return 0
	}
	return year(s[:4])
}

// yearDMY: "06/06/2012", "06-06-2012" → 2012.
func yearDMY(s string) int {
	if len(s) != 10 {
		return 0
	}
	return year(s[6:])
}

// domainOf returns the host of a website as registers write it
// ("www.example.be", "http://www.example.be/fr", "example.be"), without
// "www."; "" when it is not a plausible host name.
func domainOf(website string) string {
	h := strings.ToLower(strings.TrimSpace(website))
	if i := strings.Index(h, "://"); i >= 0 {
		h = h[i+3:]
	}
	if i := strings.IndexAny(h, "/?#"); i >= 0 {
		h = h[:i]
	}
	if i := strings.LastIndexByte(h, '@'); i >= 0 {
		h = h[i+1:]
	}
	if i := strings.IndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "www."), ".")
	if !strings.Contains(h, ".") || len(h) > 253 {
		return ""
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return ""
		}
	}
	return h
}
