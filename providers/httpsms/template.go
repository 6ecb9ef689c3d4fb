package httpsms

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Placeholders are the names a template may use, as {{name}}.
var Placeholders = []string{"to", "to_digits", "from", "text", "id", "dlr_url", "username", "password", "coding"}

var placeholderRE = regexp.MustCompile(`\{\{\s*([a-z_]+)\s*\}\}`)

// template is a string with {{name}} placeholders; the rest is literal.
type template struct {
	src   string
	parts []string // literal, name, literal, name, …, literal
}

func parseTemplate(what, s string) (template, error) {
	t := template{src: s}
	last := 0
	for _, m := range placeholderRE.FindAllStringSubmatchIndex(s, -1) {
		name := s[m[2]:m[3]]
		if !known(name) {
			return template{}, fmt.Errorf("%s: unknown placeholder {{%s}} (known: %s)", what, name, strings.Join(Placeholders, ", "))
		}
		t.parts = append(t.parts, s[last:m[0]], name)
		last = m[1]
	}
	t.parts = append(t.parts, s[last:])
	return t, nil
}

func known(name string) bool {
	for _, p := range Placeholders {
		if p == name {
			return true
		}
	}
	return false
}

// uses reports whether the template has the placeholder name.
func (t template) uses(name string) bool {
	for i := 1; i < len(t.parts); i += 2 {
		if t.parts[i] == name {
			return true
		}
	}
	return false
}

// render substitutes the values, each passed through escape.
func (t template) render(vals map[string]string, escape func(string) string) string {
	var b strings.Builder
	for i, p := range t.parts {
		if i%2 == 0 {
			b.WriteString(p)
		} else {
			b.WriteString(escape(vals[p]))
		}
	}
	return b.String()
}

func raw(s string) string { return s }

// jsonString escapes s for the inside of a JSON string literal.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}

var queryEscape = url.QueryEscape

func jsonValid(s string) bool { return json.Valid([]byte(s)) }
