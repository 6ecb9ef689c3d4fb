package sms

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/iapd/iapd/storage"
)

// Segments as carriers count them (3GPP TS 23.038/23.040).
func TestSegments(t *testing.T) {
	for _, c := range []struct {
		name string
		text string
		n    int
		enc  Encoding
	}{
		{"empty", "", 1, GSM7},
		{"160 gsm", strings.Repeat("a", 160), 1, GSM7},
		{"161 gsm", strings.Repeat("a", 161), 2, GSM7},
		{"306 gsm", strings.Repeat("a", 306), 2, GSM7},
		{"307 gsm", strings.Repeat("a", 307), 3, GSM7},
		{"gsm accents", "Ça coûte 5€ à Zürich? ¿Sí!", 1, UCS2}, // û is not GSM-7
		{"gsm basic accents", "Ça va à Zürich? ¿Sí! Ñandú", 1, UCS2},
		{"gsm latin", "Ça è é ù ì ò Ø å Æ ß É Ä Ö Ñ Ü § ¿ ä ö ñ ü à", 1, GSM7},
		{"80 euro = 160 septets", strings.Repeat("€", 80), 1, GSM7},
		{"81 euro = 162 septets", strings.Repeat("€", 81), 2, GSM7},
		{"escape not split", strings.Repeat("a", 152) + "€" + strings.Repeat("a", 152), 3, GSM7}, // 306 septets, but € cannot straddle parts 1 and 2
		{"extension chars", "{}[]~|^\\", 1, GSM7},
		{"70 ucs2", strings.Repeat("ł", 70), 1, UCS2},
		{"71 ucs2", strings.Repeat("ł", 71), 2, UCS2},
		{"134 ucs2", strings.Repeat("ł", 134), 2, UCS2},
		{"135 ucs2", strings.Repeat("ł", 135), 3, UCS2},
		{"35 emoji = 70 units", strings.Repeat("😀", 35), 1, UCS2},
		{"36 emoji: pairs not split", strings.Repeat("😀", 36), 2, UCS2},                      // 33 pairs (66) + 3 pairs
		{"pair not split", strings.Repeat("ł", 66) + "😀" + strings.Repeat("ł", 66), 3, UCS2}, // 134 units, but the pair cannot straddle
	} {
		n, enc := Segments(c.text)
		if n != c.n || enc != c.enc {
			t.Errorf("%s: %d %s, want %d %s", c.name, n, enc, c.n, c.enc)
		}
	}
}

func decodeSettings(t *testing.T, src string) (Settings, error) {
	t.Helper()
	var s Settings
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return s, err
	}
	return s, s.Validate()
}

func TestSettings(t *testing.T) {
	s, err := decodeSettings(t, `
price: 1.25
prices: {"+32": 2, "+3247": "0.5"}
unsupported_prefixes: ["+882"]
providers: [a, b]
routes:
  - prefixes: ["+1"]
    providers: [c]
  - prefixes: ["+1415"]
    providers: [d]
webhooks: {allow_private: true, allow_cidrs: ["10.0.0.0/8"], retry_min: 1s}
send_timeout: 10s
`)
	if err != nil {
		t.Fatal(err)
	}
	svc := &Service{cfg: s.withDefaults(), prices: newPrefixTable[storage.Credits](), unsupported: newPrefixTable[bool]()}
	for p, v := range s.Prices {
		svc.prices.add(p, v.Credits)
	}
	for number, want := range map[string]string{"+32470123456": "0.5", "+3221234567": "2", "+33612345678": "1.25"} {
		if got := svc.price(number).String(); got != want {
			t.Errorf("price(%s) = %s, want %s", number, got, want)
		}
	}
	if c := svc.chain("+14155550100"); len(c) != 1 || c[0] != "c" {
		t.Errorf("the first matching rule wins: %v", c)
	}
	if c := svc.chain("+32470123456"); len(c) != 2 || c[0] != "a" {
		t.Errorf("default chain: %v", c)
	}
	if got := strings.Join(s.ProviderNames(), ","); got != "a,b,c,d" {
		t.Errorf("ProviderNames %s", got)
	}
	if got := strings.Join(Settings{}.ProviderNames(), ","); got != "outbox" {
		t.Errorf("default ProviderNames %s", got)
	}

	for _, bad := range []string{
		`prices: {"32": 1}`,
		`prices: {"+32": -1}`,
		`prices: {"+32": 0.00001}`,
		`prices: {"+32": 1000001}`,
		`price: 1000001`,
		`unsupported_prefixes: ["+0"]`,
		`routes: [{prefixes: ["+1"]}]`,
		`routes: [{prefixes: ["x"], providers: [a]}]`,
		`providers: [a, a]`,
		`registration: maybe`,
		`webhooks: {allow_cidrs: ["nope"]}`,
		`send_timeout: 20s`,
		`unknown_key: 1`,
		`hold_ttl: -1s`,
	} {
		if _, err := decodeSettings(t, bad); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestNormalizeNumber(t *testing.T) {
	for in, want := range map[string]string{
		"+32470123456":        "+32470123456",
		"+32 470 12 34 56":    "+32470123456",
		"0032 (470) 12.34-56": "+32470123456",
		"+1 415-555-0100":     "+14155550100",
		"0470123456":          "",
		"+0123456789":         "",
		"+32abc":              "",
		"":                    "",
		"+1234567":            "",
		"+1234567890123456":   "",
	} {
		got, ok := normalizeNumber(in)
		if ok != (want != "") || got != want {
			t.Errorf("normalizeNumber(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}
