package portal

import (
	"fmt"
	"html/template"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"text/template/parse"

	"github.com/iapd/iapd/storage"
)

// The languages the portal must speak (issue 17): Odoo's users are
// largely European.
var wantLanguages = []string{"de", "en", "es", "fr", "nl"}

var placeholderInText = regexp.MustCompile(`\{[a-z]+\}`)

func placeholders(s string) string {
	ps := placeholderInText.FindAllString(s, -1)
	sort.Strings(ps)
	return strings.Join(slices.Compact(ps), ",")
}

// Every language has every key of English, no other, with the same
// placeholders, and a singular form wherever English has one.
func TestCatalogueComplete(t *testing.T) {
	cat, err := loadCatalogue(localeFS)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range wantLanguages {
		if cat[l] == nil {
			t.Errorf("no locales/%s.json", l)
		}
	}
	en := cat[DefaultLanguage]
	for lang, l := range cat {
		for k, et := range en.msgs {
			lt, ok := l.msgs[k]
			switch {
			case !ok:
				t.Errorf("%s: key %q missing", lang, k)
				continue
			case strings.TrimSpace(lt.other) == "":
				t.Errorf("%s: key %q is empty", lang, k)
			case et.one != "" && lt.one == "" && !strings.HasPrefix(k, "_"):
				t.Errorf("%s: key %q needs {\"one\", \"other\"} forms, as in English", lang, k)
			}
			if placeholders(lt.other) != placeholders(et.other) || (lt.one != "" && placeholders(lt.one) != placeholders(et.other)) {
				t.Errorf("%s: %q has placeholders %s, English %s", lang, k, placeholders(lt.other), placeholders(et.other))
			}
		}
		for k := range l.msgs {
			if _, ok := en.msgs[k]; !ok {
				t.Errorf("%s: key %q is not in English", lang, k)
			}
		}
	}
}

// keysUsed returns the literal keys of t and tn calls in the templates,
// and fails on text a reader sees that does not go through the
// catalogue: every letter of the templates' text is inside a tag (or is
// an entity), every attribute a reader sees is an action.
func scanTemplates(tmpl *template.Template) (keys map[string]bool, problems []string) {
	keys = map[string]bool{}
	visible := regexp.MustCompile(`(?i)\b(placeholder|title|alt|aria-label|value)="([^"{]*[A-Za-z][^"]*)"`)
	tags := regexp.MustCompile(`<[^>]*>`)
	entities := regexp.MustCompile(`&[a-z]+;|&#[0-9]+;`)
	for _, tt := range tmpl.Templates() {
		if tt.Tree == nil || tt.Tree.Root == nil {
			continue
		}
		var text strings.Builder
		var walk func(n parse.Node)
		walk = func(n parse.Node) {
			switch n := n.(type) {
			case *parse.ListNode:
				if n == nil {
					return
				}
				for _, c := range n.Nodes {
					walk(c)
				}
			case *parse.TextNode:
				text.Write(n.Text)
			case *parse.ActionNode:
				text.WriteString("\x00")
				walkPipe(n.Pipe, keys)
			case *parse.IfNode:
				text.WriteString("\x00")
				walkPipe(n.Pipe, keys)
				walk(n.List)
				walk(n.ElseList)
			case *parse.RangeNode:
				text.WriteString("\x00")
				walkPipe(n.Pipe, keys)
				walk(n.List)
				walk(n.ElseList)
			case *parse.WithNode:
				walkPipe(n.Pipe, keys)
				walk(n.List)
				walk(n.ElseList)
			case *parse.TemplateNode:
				text.WriteString("\x00")
			}
		}
		walk(tt.Tree.Root)
		all := text.String()
		for _, m := range visible.FindAllStringSubmatch(all, -1) {
			if m[1] == "value" && !strings.ContainsAny(m[2], " ") {
				continue // form values the server reads ("redeem", "alerts"), never shown
			}
			problems = append(problems, fmt.Sprintf("template %s: attribute %s=%q is not translated", tt.Name(), m[1], m[2]))
		}
		rest := entities.ReplaceAllString(tags.ReplaceAllString(all, " "), " ")
		if loose := regexp.MustCompile(`[\p{L}]+`).FindAllString(rest, -1); len(loose) > 0 {
			problems = append(problems, fmt.Sprintf("template %s: text outside the catalogue: %q", tt.Name(), loose))
		}
	}
	return keys, problems
}

func walkPipe(p *parse.PipeNode, keys map[string]bool) {
	if p == nil {
		return
	}
	for _, c := range p.Cmds {
		if len(c.Args) >= 2 {
			if id, ok := c.Args[0].(*parse.IdentifierNode); ok && (id.Ident == "t" || id.Ident == "tn") {
				if s, ok := c.Args[1].(*parse.StringNode); ok {
					keys[s.Text] = true
				}
			}
		}
		for _, a := range c.Args {
			if pn, ok := a.(*parse.PipeNode); ok {
				walkPipe(pn, keys)
			}
		}
	}
}

// Every string of the templates and of the handlers goes through the
// catalogue, and every key they use is in it.
func TestEveryStringGoesThroughTheCatalogue(t *testing.T) {
	cat, err := loadCatalogue(localeFS)
	if err != nil {
		t.Fatal(err)
	}
	en := cat[DefaultLanguage]
	tmpl, err := template.New("portal").Funcs(funcs).Funcs(langFuncs(translator{})).ParseFS(assets, "assets/*.html")
	if err != nil {
		t.Fatal(err)
	}
	keys, problems := scanTemplates(tmpl)
	for _, p := range problems {
		t.Error(p)
	}
	// Keys in the Go code: T/N calls and page titles with a literal key.
	goKey := regexp.MustCompile(`(?:\.T\(|\.N\(|Title: )"([a-z][a-z0-9.-]*[a-z0-9])"`)
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range goKey.FindAllStringSubmatch(string(b), -1) {
			keys[m[1]] = true
		}
	}
	// Keys made from a closed list.
	for code := range messages {
		keys["msg."+code] = true
	}
	for _, s := range []storage.AccountState{storage.Registered, storage.Unregistered, storage.Banned} {
		keys["state."+string(s)] = true
	}
	for _, k := range []string{"recharge", "adjustment", "consumption", "cancelled", "expired"} {
		keys["op."+k], keys["op."+k+".bare"] = true, true
	}
	if len(keys) < 60 {
		t.Fatalf("only %d keys found: the scan is broken", len(keys))
	}
	for k := range keys {
		if _, ok := en.msgs[k]; !ok {
			t.Errorf("key %q is used but not in locales/en.json", k)
		}
	}
}

// The scan catches text and visible attributes outside the catalogue.
func TestCatalogueCheckCatchesLiteralText(t *testing.T) {
	tmpl := template.Must(template.New("x").Funcs(langFuncs(translator{})).Parse(
		`<p class="a">{{t "a.b"}} Welcome</p><input placeholder="Your code">{{if true}}<b>{{tn "c.d" 1}}</b>{{end}}`))
	keys, problems := scanTemplates(tmpl)
	if len(problems) != 2 || !strings.Contains(problems[0]+problems[1], "Welcome") || !strings.Contains(problems[0]+problems[1], "Your code") {
		t.Fatalf("problems %q", problems)
	}
	if !keys["a.b"] || !keys["c.d"] {
		t.Fatalf("keys %v", keys)
	}
}

func TestAcceptLanguage(t *testing.T) {
	cat, err := loadCatalogue(localeFS)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ header, want string }{
		{"", "en"},
		{"fr-BE,fr;q=0.9,en;q=0.8", "fr"},
		{"de;q=0.5, nl;q=0.9", "nl"},
		{"ja, es;q=0.1", "es"},
		{"fr;q=0, de", "de"},
		{"FR-ca", "fr"},
		{"nl_BE", "nl"},
		{"*", "en"},
		{"xx-YY, zz", "en"},
		{"en-US,en;q=0.9,fr;q=0.8", "en"},
		{"es;q=abc, de;q=0.2", "de"},
		{"de;q=0.8, es;q=0.8", "de"}, // equal q: the browser's order
		{"pt-BR, es ; q=0.7", "es"},
	} {
		if got := cat.negotiate(c.header); got != c.want {
			t.Errorf("Accept-Language %q: %s, want %s", c.header, got, c.want)
		}
	}
}

func TestPluralsAndNumbers(t *testing.T) {
	cat, err := loadCatalogue(localeFS)
	if err != nil {
		t.Fatal(err)
	}
	tr := func(l string) translator { return translator{cat[l], cat[DefaultLanguage]} }
	c := func(s string) storage.Credits {
		v, err := storage.ParseCredits(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, x := range []struct {
		lang, n, unit, want string
	}{
		{"en", "1", "", "1 credit"},
		{"en", "2", "Credits", "2 credits"},
		{"en", "0", "", "0 credits"},
		{"en", "1.5", "", "1.5 credits"},
		{"en", "1", "Stamps", "1 Stamps"}, // an operator's unit is shown as configured
		{"fr", "1", "", "1 crédit"},
		{"fr", "1.5", "", "1,5 crédit"},
		{"fr", "0", "", "0 crédit"},
		{"fr", "2", "", "2 crédits"},
		{"de", "1", "", "1 Credit"},
		{"de", "2.25", "", "2,25 Credits"},
		{"nl", "1", "", "1 credit"},
		{"nl", "3", "", "3 credits"},
		{"es", "1", "", "1 crédito"},
		{"es", "10", "", "10 créditos"},
	} {
		if got := tr(x.lang).Unit(c(x.n), x.unit); got != x.want {
			t.Errorf("%s %s %q: %q, want %q", x.lang, x.n, x.unit, got, x.want)
		}
	}
	en := tr("en")
	if got := en.T("credit.short", "more", en.Unit(c("1"), "")); got != "Odoo needed 1 credit more than the account had." {
		t.Errorf("shortfall: %q", got)
	}
	if got := en.N("limited.body", c("1")); !strings.HasSuffix(got, "in 1 second.") {
		t.Errorf("limited: %q", got)
	}
	if got := tr("fr").l.signed(-c("3.5")); got != "\u22123,5" {
		t.Errorf("signed: %q", got)
	}
}
