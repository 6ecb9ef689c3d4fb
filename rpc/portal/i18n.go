package portal

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/iapd/iapd/storage"
)

// The pages' text is in locales/<lang>.json, one file per language, that a
// translator edits without reading Go: each key maps to a text, or for a
// text that depends on a number to {"one": …, "other": …}. {name} in a
// text is replaced by the named argument. "_name" is the language's own
// name and "_decimal" its decimal separator. English is complete by
// definition; every language must have every English key (a test checks).

//go:embed locales/*.json
var localeFS embed.FS

// DefaultLanguage is the language of a browser that asks for none of ours.
const DefaultLanguage = "en"

// text is one catalogue entry: other is the text; one, when set, is the
// singular form.
type text struct{ one, other string }

// locale is one language of the catalogue.
type locale struct {
	lang    string
	decimal string
	msgs    map[string]text
}

// catalogue holds the languages by code ("en", "fr").
type catalogue map[string]*locale

// loadCatalogue reads locales/*.json from fsys.
func loadCatalogue(fsys fs.FS) (catalogue, error) {
	names, err := fs.Glob(fsys, "locales/*.json")
	if err != nil {
		return nil, err
	}
	c := catalogue{}
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, err
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(b, &raw); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		l := &locale{lang: strings.TrimSuffix(path.Base(n), ".json"), decimal: ".", msgs: map[string]text{}}
		for k, v := range raw {
			var s string
			if json.Unmarshal(v, &s) == nil {
				l.msgs[k] = text{other: s}
				continue
			}
			var p struct{ One, Other string }
			if err := json.Unmarshal(v, &p); err != nil || p.One == "" || p.Other == "" {
				return nil, fmt.Errorf("%s: %q: a text or {\"one\": …, \"other\": …} is required", n, k)
			}
			l.msgs[k] = text{one: p.One, other: p.Other}
		}
		if d := l.msgs["_decimal"].other; d != "" {
			l.decimal = d
		}
		c[l.lang] = l
	}
	if c[DefaultLanguage] == nil {
		return nil, fmt.Errorf("no locales/%s.json", DefaultLanguage)
	}
	return c, nil
}

// negotiate picks the language of an Accept-Language header (RFC 9110
// §12.5.4): the highest q-value the catalogue has, by primary subtag
// ("fr-BE" is "fr"); q=0 excludes; equal q-values keep the browser's
// order; DefaultLanguage when none matches. At most 32 ranges are read.
func (c catalogue) negotiate(header string) string {
	best, bestQ := DefaultLanguage, 0.0
	parts := strings.SplitN(header, ",", 33) // the 33rd holds the rest, unread
	for _, part := range parts[:min(len(parts), 32)] {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil || f < 0 || f > 1 {
					f = 0
				}
				q = f
			}
		}
		primary, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(tag)), "-")
		primary, _, _ = strings.Cut(primary, "_")
		if q > bestQ && c[primary] != nil {
			best, bestQ = primary, q
		}
	}
	return best
}

// get returns the text of key, English when the language lacks it, the key
// itself when English does too (visible, never a blank).
func (l *locale) get(key string, en *locale) text {
	if t, ok := l.msgs[key]; ok {
		return t
	}
	if t, ok := en.msgs[key]; ok {
		return t
	}
	return text{other: key}
}

// singular reports whether n takes the singular form: exactly 1 in
// English, Dutch, German and Spanish; 0 to less than 2 in French
// ("0,5 crédit", "1,5 crédit").
func (l *locale) singular(n storage.Credits) bool {
	if n < 0 {
		n = -n
	}
	if l.lang == "fr" {
		return n < 2*storage.Scale
	}
	return n == storage.Scale
}

// num writes c with the language's decimal separator.
func (l *locale) num(c storage.Credits) string {
	s := c.String()
	if l.decimal != "." {
		s = strings.Replace(s, ".", l.decimal, 1)
	}
	return s
}

// signed writes a consumed or added amount as the history shows it:
// "+5", "−3" (a true minus sign), "0".
func (l *locale) signed(c storage.Credits) string {
	switch {
	case c > 0:
		return "+" + l.num(c)
	case c < 0:
		return "\u2212" + l.num(-c)
	}
	return "0"
}

// format replaces each {name} of s by its argument (pairs of name and
// value); Credits are written with num, other values with fmt.
func (l *locale) format(s string, args []any) string {
	if len(args) < 2 || !strings.Contains(s, "{") {
		return s
	}
	pairs := make([]string, 0, len(args))
	for i := 0; i+1 < len(args); i += 2 {
		v := args[i+1]
		var vs string
		switch x := v.(type) {
		case storage.Credits:
			vs = l.num(x)
		case string:
			vs = x
		default:
			vs = fmt.Sprint(x)
		}
		pairs = append(pairs, "{"+fmt.Sprint(args[i])+"}", vs)
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// translator is a locale with the English fallback: the functions the
// templates and the handlers call.
type translator struct {
	l, en *locale
}

// T is the text of key with its {name} arguments.
func (tr translator) T(key string, args ...any) string {
	return tr.l.format(tr.l.get(key, tr.en).other, args)
}

// N is the text of key for the number n (singular or plural form), with
// {n} and the other arguments.
func (tr translator) N(key string, n storage.Credits, args ...any) string {
	t := tr.l.get(key, tr.en)
	s := t.other
	if t.one != "" && tr.l.singular(n) {
		s = t.one
	}
	return tr.l.format(s, append([]any{"n", n}, args...))
}

// Unit is n followed by the unit, in the language: the default unit
// ("Credits", or none configured) is translated and takes the plural; an
// operator's own unit name is shown as configured.
func (tr translator) Unit(n storage.Credits, unit string) string {
	if unit == "" || strings.EqualFold(unit, "credits") || strings.EqualFold(unit, "credit") {
		return tr.N("unit.credits", n)
	}
	return tr.l.num(n) + " " + unit
}

// UnitName is the unit as a column heading.
func (tr translator) UnitName(unit string) string {
	if unit == "" || strings.EqualFold(unit, "credits") || strings.EqualFold(unit, "credit") {
		return tr.T("unit.heading")
	}
	return unit
}
