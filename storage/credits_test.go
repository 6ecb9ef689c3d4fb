package storage

import (
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"regexp"
	"testing"
)

func TestParseCredits(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Credits
		err  error
	}{
		{"1", 1 * Scale, nil},
		{"2.5", 25000, nil},
		{"25.5", 255000, nil},
		{"3.0", 3 * Scale, nil},
		{"4242.1235", 42421235, nil},
		{"0.0001", 1, nil},
		{"0", 0, nil},
		{"-0", 0, nil},
		{"0.00010000", 1, nil},
		{"1e3", 1000 * Scale, nil},
		{"1E-4", 1, nil},
		{"12.5e-1", 12500, nil},
		{"1000000000000", MaxCredits, nil},
		{"1000000000000.0001", 0, ErrTooLarge},
		{"1e13", 0, ErrTooLarge},
		{"1e999999999", 0, ErrTooLarge},
		{"99999999999999999999999999", 0, ErrTooLarge},
		{"4242.123456", 0, ErrDust},
		{"0.00001", 0, ErrDust},
		{"1e-5", 0, ErrDust},
		{"-1", 0, ErrNegative},
		{"-0.5", 0, ErrNegative},
		{"NaN", 0, ErrNotANumber},
		{"Infinity", 0, ErrNotANumber},
		{"", 0, ErrNotANumber},
		{"1.2.3", 0, ErrNotANumber},
		{"1e", 0, ErrNotANumber},
		{"0x10", 0, ErrNotANumber},
		{"+1", 0, ErrNotANumber},
		{"01", 0, ErrNotANumber},
		{".5", 0, ErrNotANumber},
		{"1.", 0, ErrNotANumber},
		{"-", 0, ErrNotANumber},
		{" 1", 0, ErrNotANumber},
		{"true", 0, ErrNotANumber},
	} {
		got, err := ParseCredits(c.in)
		if !errors.Is(err, c.err) || got != c.want {
			t.Errorf("ParseCredits(%q) = %d, %v; want %d, %v", c.in, got, err, c.want, c.err)
		}
	}
	if v, err := ParseSignedCredits("-2.5"); err != nil || v != -25000 {
		t.Errorf("ParseSignedCredits(-2.5) = %d, %v", v, err)
	}
}

func TestCreditsString(t *testing.T) {
	for _, c := range []struct {
		in   Credits
		want string
	}{{0, "0"}, {1, "0.0001"}, {25000, "2.5"}, {42421235, "4242.1235"}, {-25000, "-2.5"}, {10 * Scale, "10"}, {MaxCredits, "1000000000000"}} {
		if got := c.in.String(); got != c.want {
			t.Errorf("%d.String() = %q, want %q", int64(c.in), got, c.want)
		}
		b, _ := json.Marshal(struct{ C Credits }{c.in})
		var back struct{ C Credits }
		if err := json.Unmarshal(b, &back); err != nil || back.C != c.in {
			t.Errorf("JSON round trip of %d: %s → %d, %v", int64(c.in), b, back.C, err)
		}
	}
}

func TestFromFloat(t *testing.T) {
	for _, c := range []struct {
		in   float64
		want Credits
		ok   bool
	}{{0.1, 1000, true}, {2.5, 25000, true}, {4242.123456, 0, false}, {math.NaN(), 0, false}, {math.Inf(1), 0, false}, {-1, 0, false}, {1e15, 0, false}} {
		got, err := FromFloat(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("FromFloat(%v) = %d, %v", c.in, got, err)
		}
	}
}

var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// FuzzParseCredits checks the parser against math/big on every JSON number:
// it succeeds exactly when the value is a non-negative multiple of 1/Scale
// not above MaxCredits, and then it is exact. Seeds: the credit values the
// Odoo fixtures carry (PROTOCOL §5.1: credit is a JSON number).
func FuzzParseCredits(f *testing.F) {
	for _, s := range []string{"1", "2.5", "2", "25.5", "3.0", "10", "10.0", "4242.123456", "0", "1e3", "-1", "0.0001", "1e-5", "NaN", "1000000000000"} {
		f.Add(s)
	}
	scale := big.NewRat(Scale, 1)
	max := new(big.Rat).SetInt64(int64(MaxCredits))
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseCredits(s)
		if !jsonNumber.MatchString(s) {
			if err == nil {
				t.Fatalf("ParseCredits(%q) accepted a non-JSON number: %d", s, got)
			}
			return
		}
		r, ok := new(big.Rat).SetString(s)
		if !ok {
			return // exponent beyond math/big's range: nothing to compare with
		}
		r.Mul(r, scale)
		want := r.Sign() >= 0 && r.IsInt() && r.Cmp(max) <= 0
		if want != (err == nil) {
			t.Fatalf("ParseCredits(%q) = %d, %v; exact value ×%d = %s", s, got, err, Scale, r.RatString())
		}
		if err == nil {
			if r.Num().Int64() != int64(got) {
				t.Fatalf("ParseCredits(%q) = %d, want %s", s, got, r.RatString())
			}
			back, err := ParseCredits(got.String())
			if err != nil || back != got {
				t.Fatalf("round trip of %q via %q: %d, %v", s, got.String(), back, err)
			}
		}
	})
}
