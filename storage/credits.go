package storage

import (
	"errors"
	"math"
	"strconv"
)

// Credits is an amount of IAP credit in fixed point: one credit is Scale
// units (four decimals, the precision Odoo rounds balances to). Amounts are
// exact integers inside iapd; floats appear only at the JSON edge.
type Credits int64

// Scale is the number of Credits units in one credit.
const Scale = 10000

// MaxCredits bounds every amount iapd accepts from outside: a trillion
// credits. Anything larger is refused as absurd, which also keeps every sum
// of amounts far from int64 overflow.
const MaxCredits Credits = 1_000_000_000_000 * Scale

// Errors returned by ParseCredits and FromFloat. They are wrapped in an
// *Error of kind Invalid by callers that need a kind.
var (
	ErrNotANumber = errors.New("credit amount is not a number")
	ErrNegative   = errors.New("credit amount is negative")
	ErrTooLarge   = errors.New("credit amount is too large")
	ErrDust       = errors.New("credit amount has more than 4 decimals")
)

// ParseCredits parses a JSON number literal (as json.Number gives it, e.g.
// "2.5", "1e3", "-0", "0.0001") exactly, without going through a float.
// Only JSON number syntax is accepted ("+1", "01" and ".5" are not).
// Negative amounts, more than four significant decimals, and amounts above
// MaxCredits are refused. "NaN" and "Infinity" are not JSON numbers and are
// refused as ErrNotANumber.
func ParseCredits(s string) (Credits, error) {
	v, err := parseDecimal(s)
	if err != nil {
		return 0, err
	}
	if v < 0 {
		return 0, ErrNegative
	}
	return v, nil
}

// ParseSignedCredits is ParseCredits allowing a leading minus sign, for
// adjustments made by the operator.
func ParseSignedCredits(s string) (Credits, error) { return parseDecimal(s) }

func parseDecimal(s string) (Credits, error) {
	i := 0
	neg := false
	if i < len(s) && s[i] == '-' {
		neg = true
		i++
	}
	// JSON number syntax (RFC 8259 §6): int = "0" / [1-9] *DIGIT
	var digits []byte // significant digits, integer part then fraction
	intDigits := 0
	if i < len(s) && s[i] == '0' {
		digits = append(digits, '0')
		intDigits++
		i++
	} else {
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			digits = append(digits, s[i])
			intDigits++
			i++
		}
	}
	if intDigits == 0 {
		return 0, ErrNotANumber
	}
	if i < len(s) && s[i] == '.' {
		i++
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			digits = append(digits, s[i])
			i++
		}
		if i == start {
			return 0, ErrNotANumber
		}
	}
	exp := 0
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		esign := 1
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			if s[i] == '-' {
				esign = -1
			}
			i++
		}
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if exp < 1_000_000 { // saturate: the value is decided by the digits then
				exp = exp*10 + int(s[i]-'0')
			}
			i++
		}
		if i == start {
			return 0, ErrNotANumber
		}
		exp *= esign
	}
	if i != len(s) {
		return 0, ErrNotANumber
	}
	// value = 0.digits * 10^(intDigits+exp); we want value * 10^4.
	point := intDigits + exp + 4 // digits before the decimal point of the scaled value
	// strip leading zeros so that point stays meaningful for huge zero runs
	for len(digits) > 0 && digits[0] == '0' {
		digits = digits[1:]
		point--
	}
	if len(digits) == 0 {
		return 0, nil
	}
	if point > 19 {
		if neg {
			return 0, ErrNegative
		}
		return 0, ErrTooLarge
	}
	var v int64
	for k, d := range digits {
		if k >= point {
			if d != '0' {
				return 0, ErrDust
			}
			continue
		}
		if v > (math.MaxInt64-9)/10 {
			return 0, ErrTooLarge
		}
		v = v*10 + int64(d-'0')
	}
	for k := len(digits); k < point; k++ {
		if v > math.MaxInt64/10 {
			return 0, ErrTooLarge
		}
		v *= 10
	}
	if point < 0 || v == 0 {
		// all significant digits lie below the fourth decimal
		return 0, ErrDust
	}
	c := Credits(v)
	if c > MaxCredits {
		if neg {
			return 0, ErrNegative
		}
		return 0, ErrTooLarge
	}
	if neg {
		c = -c
	}
	return c, nil
}

// FromFloat converts a float (configuration files, tests) to Credits,
// refusing NaN, infinities, negatives and values that are not a whole number
// of 1/Scale within float precision.
func FromFloat(f float64) (Credits, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, ErrNotANumber
	}
	return ParseCredits(strconv.FormatFloat(f, 'f', -1, 64))
}

// String formats c as a plain decimal with no exponent and no trailing
// zeros: 12.5, 0.0001, 3, -1.25. It is also a valid JSON number.
func (c Credits) String() string {
	var buf [32]byte
	return string(c.AppendJSON(buf[:0]))
}

// AppendJSON appends c as a JSON number literal (the String form).
func (c Credits) AppendJSON(b []byte) []byte {
	u := uint64(c)
	if c < 0 {
		b = append(b, '-')
		u = uint64(-c)
	}
	b = strconv.AppendUint(b, u/Scale, 10)
	frac := u % Scale
	if frac == 0 {
		return b
	}
	var f [4]byte
	for k := 3; k >= 0; k-- {
		f[k] = byte('0' + frac%10)
		frac /= 10
	}
	n := 4
	for n > 0 && f[n-1] == '0' {
		n--
	}
	b = append(b, '.')
	return append(b, f[:n]...)
}

// MarshalJSON encodes c as a JSON number (exact decimal).
func (c Credits) MarshalJSON() ([]byte, error) { return c.AppendJSON(nil), nil }

// UnmarshalJSON decodes a JSON number exactly; negatives are accepted here
// (history lines carry signed deltas); validation of request amounts is
// ParseCredits' job.
func (c *Credits) UnmarshalJSON(b []byte) error {
	v, err := parseDecimal(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// Float64 returns c as a float for the JSON edge only.
func (c Credits) Float64() float64 { return float64(c) / Scale }
