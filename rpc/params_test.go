package rpc

import (
	"strings"
	"testing"

	"github.com/iapd/iapd/storage"
)

// Any suffix after the '+' that is not empty counts as disabled (PROTOCOL
// §3): a mangled "+disabled" — whitespace, NUL, control characters, case,
// a typo — must never read as enabled, or a neutralised staging copy
// would spend production credit. The account stays the part before the
// '+'; a token with nothing before it, or a suffix over 64 bytes, is not
// a token at all.
func TestAccountTokenSuffix(t *testing.T) {
	const tok = "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		raw      string
		disabled bool
		account  storage.AccountToken // "": tok
	}{
		// What Odoo sends.
		{raw: tok, disabled: false},
		{raw: tok + "+disabled", disabled: true},
		{raw: "dummy_value+disabled", disabled: true, account: "dummy_value"},
		// A '+' and nothing after it: no suffix.
		{raw: tok + "+", disabled: false},
		// Hostile and mangled spellings of "disabled".
		{raw: tok + "+disabled ", disabled: true},
		{raw: tok + "+ disabled", disabled: true},
		{raw: tok + "+disabled\x00", disabled: true},
		{raw: tok + "+\x00disabled", disabled: true},
		{raw: tok + "+disabled\n", disabled: true},
		{raw: tok + "+disabled\r\n", disabled: true},
		{raw: tok + "+disabled\t", disabled: true},
		{raw: tok + "+\tdisabled", disabled: true},
		{raw: tok + "+disabled\x7f", disabled: true},
		{raw: tok + "+disabled\u00a0", disabled: true},
		{raw: tok + "+disabled\u200b", disabled: true},
		{raw: tok + "+\ufeffdisabled", disabled: true},
		{raw: tok + "+DISABLED", disabled: true},
		{raw: tok + "+Disabled", disabled: true},
		{raw: tok + "+dİsabled", disabled: true},
		{raw: tok + "+disable", disabled: true},
		{raw: tok + "+disabledx", disabled: true},
		{raw: tok + "+d", disabled: true},
		{raw: tok + "+x+disabled", disabled: true},
		{raw: tok + "+disabled+x", disabled: true},
		{raw: tok + "++disabled", disabled: true},
		{raw: tok + "++", disabled: true},
		{raw: tok + "+ ", disabled: true},
		{raw: tok + "+\x00", disabled: true},
		{raw: tok + "+\xff\xfe", disabled: true},
		{raw: tok + "+enabled", disabled: true},
		{raw: tok + "+" + strings.Repeat("x", 64), disabled: true},
	} {
		want := tc.account
		if want == "" {
			want = tok
		}
		got, disabled, err := ParseAccountToken("op", "account_token", tc.raw)
		if err != nil || got != want || disabled != tc.disabled {
			t.Errorf("ParseAccountToken(%q) = %q, disabled %v, %v; want disabled %v", tc.raw, got, disabled, err, tc.disabled)
		}
	}
	for _, raw := range []string{"", "+disabled", "+", " +disabled", tok + " +disabled", tok + "\x00+disabled", tok + "\x00",
		tok + "+" + strings.Repeat("x", 65), strings.Repeat("a", 65) + "+disabled"} {
		if got, disabled, err := ParseAccountToken("op", "account_token", raw); !storage.Is(err, storage.Invalid) {
			t.Errorf("ParseAccountToken(%q) = %q, disabled %v, %v; want Invalid", raw, got, disabled, err)
		} else if strings.Contains(err.Error(), tok) {
			t.Errorf("the error quotes the token: %v", err)
		}
	}
}
