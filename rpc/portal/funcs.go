package portal

import (
	"html/template"
	"strings"
	"time"

	"github.com/iapd/iapd/storage"
)

// funcs are the templates' helpers that do not depend on the language
// (langFuncs are those that do).
var funcs = template.FuncMap{
	"credits":  func(c storage.Credits) string { return c.String() }, // form values: what ParseCredits reads back
	"day":      func(t time.Time) string { return t.UTC().Format(time.DateOnly) },
	"clock":    func(t time.Time) string { return t.UTC().Format("15:04:05") + " UTC" },
	"negative": func(c storage.Credits) bool { return c < 0 },
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
