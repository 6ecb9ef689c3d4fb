package portal

import (
	"html/template"
	"strings"
	"time"

	"github.com/iapd/iapd/storage"
)

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"credits":  func(c storage.Credits) string { return c.String() },
	"price":    formatPrice,
	"when":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") + " UTC" },
	"kind":     kindLabel,
	"negative": func(c storage.Credits) bool { return c < 0 },
	"amount":   entryAmount,
	"positive": func(c storage.Credits) bool { return c > 0 },
}

// formatPrice shows a price with at least two decimals (19.9 → 19.90).
func formatPrice(c storage.Credits) string {
	s := c.String()
	i := strings.IndexByte(s, '.')
	switch {
	case i < 0:
		return s + ".00"
	case len(s)-i == 2:
		return s + "0"
	}
	return s
}

// kindLabel names an entry kind for a customer.
func kindLabel(k storage.EntryKind) string {
	switch k {
	case storage.EntryRecharge:
		return "Recharge"
	case storage.EntryAdjustment:
		return "Adjustment"
	case storage.EntryHold:
		return "Hold"
	case storage.EntryCapture:
		return "Consumption"
	case storage.EntryRelease:
		return "Release"
	case storage.EntryExpiry:
		return "Expired hold"
	}
	return string(k)
}

// entryAmount is an entry's effect as the history shows it: credit added
// or consumed with its sign; holds, releases and expired holds (which
// neither add nor consume) in parentheses.
func entryAmount(e storage.Entry) string {
	switch e.Kind {
	case storage.EntryHold:
		return "(" + (-e.DAvailable).String() + " held)"
	case storage.EntryRelease:
		return "(" + e.DAvailable.String() + " released)"
	case storage.EntryExpiry:
		return "(" + e.DAvailable.String() + " returned)"
	}
	a := e.Amount()
	if a > 0 {
		return "+" + a.String()
	}
	return a.String()
}
