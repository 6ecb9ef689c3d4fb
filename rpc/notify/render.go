package notify

import (
	"bytes"
	"crypto/sha1" // #nosec G505 -- Odoo's hashed account token (PROTOCOL §4.7), an identifier, not a MAC
	"embed"
	"encoding/hex"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"net/url"
	"path"
	"sort"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/iapd/iapd/storage"
)

//go:embed templates/*.txt templates/*.html
var templateFS embed.FS

// DefaultLanguage is the language of recipients whose language has no
// translation.
const DefaultLanguage = "en"

// templates are the parsed alert e-mails by base language ("en", "fr").
type templates struct {
	text map[string]*texttemplate.Template // defines "subject" and "text"
	html map[string]*htmltemplate.Template // defines "html"
}

// loadTemplates parses templates/<lang>.txt and templates/<lang>.html;
// every language needs both, and DefaultLanguage must be there.
func loadTemplates(fsys fs.FS) (*templates, error) {
	t := &templates{text: map[string]*texttemplate.Template{}, html: map[string]*htmltemplate.Template{}}
	names, err := fs.Glob(fsys, "templates/*.txt")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		lang := strings.TrimSuffix(path.Base(n), ".txt")
		tt, err := texttemplate.ParseFS(fsys, n)
		if err != nil {
			return nil, err
		}
		ht, err := htmltemplate.ParseFS(fsys, "templates/"+lang+".html")
		if err != nil {
			return nil, fmt.Errorf("language %s: %w", lang, err)
		}
		for _, want := range []string{"subject", "text"} {
			if tt.Lookup(want) == nil {
				return nil, fmt.Errorf("templates/%s.txt defines no %q", lang, want)
			}
		}
		if ht.Lookup("html") == nil {
			return nil, fmt.Errorf("templates/%s.html defines no \"html\"", lang)
		}
		t.text[lang], t.html[lang] = tt, ht
	}
	if t.text[DefaultLanguage] == nil {
		return nil, fmt.Errorf("no %s templates", DefaultLanguage)
	}
	return t, nil
}

// Languages lists the languages alerts are translated into.
func (t *templates) languages() []string {
	out := make([]string, 0, len(t.text))
	for l := range t.text {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// language maps an Odoo lang code ("fr_FR", "fr_BE", "en_US", "fr") to a
// template language, DefaultLanguage when there is no translation.
func (t *templates) language(code string) string {
	base, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(code)), "_")
	base, _, _ = strings.Cut(base, "-")
	if t.text[base] != nil {
		return base
	}
	return DefaultLanguage
}

// alertData is what the templates see.
type alertData struct {
	Service      string // technical name ("sms")
	ServiceLabel string // the service's description, else its name
	Balance      string // formatted for the language
	Threshold    string
	Unit         string // the unit, plural
	BalanceUnit  string // the unit as it reads after Balance ("1 credit")
	ThreshUnit   string // the unit as it reads after Threshold
	At           string
	Link         string
}

// facts are what an alert says, before formatting.
type facts struct {
	Service   storage.ServiceName
	Label     string // service description, may be empty
	Unit      string // service unit name, may be empty
	Available storage.Credits
	Threshold storage.Credits
	At        time.Time
	Link      string
}

// message is a rendered alert.
type message struct {
	Lang, Subject, Text, HTML string
}

// render renders the alert in the recipient's language.
func (t *templates) render(langCode string, f facts) (message, error) {
	lang := t.language(langCode)
	d := alertData{
		Service:      string(f.Service),
		ServiceLabel: f.Label,
		Balance:      formatCredits(lang, f.Available),
		Threshold:    formatCredits(lang, f.Threshold),
		Unit:         unitName(lang, f.Unit, 2*storage.Scale),
		BalanceUnit:  unitName(lang, f.Unit, f.Available),
		ThreshUnit:   unitName(lang, f.Unit, f.Threshold),
		At:           formatTime(lang, f.At),
		Link:         f.Link,
	}
	if d.ServiceLabel == "" {
		d.ServiceLabel = d.Service
	}
	var b bytes.Buffer
	m := message{Lang: lang}
	for _, part := range []struct {
		name string
		out  *string
	}{{"subject", &m.Subject}, {"text", &m.Text}} {
		b.Reset()
		if err := t.text[lang].ExecuteTemplate(&b, part.name, d); err != nil {
			return message{}, err
		}
		*part.out = b.String()
	}
	b.Reset()
	if err := t.html[lang].ExecuteTemplate(&b, "html", d); err != nil {
		return message{}, err
	}
	m.HTML = b.String()
	m.Subject = strings.Join(strings.Fields(m.Subject), " ")
	return m, nil
}

// decimalComma lists the languages written with a decimal comma.
var decimalComma = map[string]bool{"fr": true, "de": true, "nl": true, "es": true}

// formatCredits writes c for lang: a decimal comma but in English.
func formatCredits(lang string, c storage.Credits) string {
	s := c.String()
	if decimalComma[lang] {
		s = strings.Replace(s, ".", ",", 1)
	}
	return s
}

// defaultUnit is the default unit per language, singular and plural.
var defaultUnit = map[string][2]string{
	"en": {"credit", "credits"},
	"fr": {"crédit", "crédits"},
	"de": {"Credit", "Credits"},
	"nl": {"credit", "credits"},
	"es": {"crédito", "créditos"},
}

// unitName translates the default unit for the amount n (singular for
// exactly 1, and below 2 in French); an operator's own unit is shown as
// configured.
func unitName(lang, unit string, n storage.Credits) string {
	if unit != "" && !strings.EqualFold(unit, "credits") && !strings.EqualFold(unit, "credit") {
		return unit
	}
	forms, ok := defaultUnit[lang]
	if !ok {
		forms = defaultUnit[DefaultLanguage]
	}
	if n < 0 {
		n = -n
	}
	if n == storage.Scale || (lang == "fr" && n < 2*storage.Scale) {
		return forms[0]
	}
	return forms[1]
}

// timeLayouts are the alert's time per language.
var timeLayouts = map[string]string{
	"en": "2006-01-02 at 15:04 UTC",
	"fr": "02/01/2006 à 15:04 UTC",
	"de": "02.01.2006 um 15:04 UTC",
	"nl": "02-01-2006 om 15:04 UTC",
	"es": "02/01/2006 a las 15:04 UTC",
}

func formatTime(lang string, at time.Time) string {
	l, ok := timeLayouts[lang]
	if !ok {
		l = timeLayouts[DefaultLanguage]
	}
	return at.UTC().Format(l)
}

// HashedToken is Odoo 19's hashed account token: SHA-1 hex of the token
// without its "+suffix" (PROTOCOL §4.7; the ledger's tokens carry none).
// The e-mails and webhooks carry it, never the token itself.
func HashedToken(tok storage.AccountToken) string {
	sum := sha1.Sum([]byte(tok)) // #nosec G401 -- protocol identifier
	return hex.EncodeToString(sum[:])
}

// CreditURL is the recharge link of an account as Odoo 19 builds it
// (PROTOCOL §4.7, fixtures odoo19/README.md): <public_url>/iap/1/credit
// with dbuuid (when known), service_name, the hashed token and hashed=1,
// in Odoo's order.
func CreditURL(publicURL string, svc storage.ServiceName, tok storage.AccountToken, dbuuid string) string {
	var q strings.Builder
	if dbuuid != "" {
		q.WriteString("dbuuid=" + url.QueryEscape(dbuuid) + "&")
	}
	q.WriteString("service_name=" + url.QueryEscape(string(svc)))
	q.WriteString("&account_token=" + HashedToken(tok))
	q.WriteString("&hashed=1")
	return strings.TrimRight(publicURL, "/") + "/iap/1/credit?" + q.String()
}
