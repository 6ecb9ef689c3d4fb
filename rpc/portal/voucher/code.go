// Package voucher makes and reads voucher codes: the top-up codes an
// operator issues (iapd vouchers create) and a user types on the credit
// page (rpc/portal). A code is 100 random bits written as 20 Crockford
// base32 characters in four groups ("7K3QF-9ZC1M-…"), easy to read aloud
// and to type; the ledger stores only Hash of the normalised code
// (storage.Voucher.CodeHash). It imports only storage.
package voucher

import (
	"crypto/rand"
	"errors"
	"strings"

	"github.com/iapd/iapd/storage"
)

// alphabet is Crockford's base32: digits and letters without I, L, O, U.
const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// Length is the number of symbols of a code (5 bits each: 100 bits).
const Length = 20

// group is the number of symbols between dashes when a code is shown.
const group = 5

// ErrMalformed is returned by Normalize for text that cannot be a code.
var ErrMalformed = errors.New("not a voucher code: 20 letters and digits are expected")

// New returns a fresh random code, formatted for display.
func New() (string, error) {
	var b [Length]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	var sb strings.Builder
	for i, x := range b {
		if i > 0 && i%group == 0 {
			sb.WriteByte('-')
		}
		sb.WriteByte(alphabet[x&31]) // 256 is a multiple of 32: no bias
	}
	return sb.String(), nil
}

// Normalize returns the canonical form of a code as a user typed it:
// case, spaces and dashes ignored, and the look-alikes O → 0, I and L → 1
// read as Crockford says. ErrMalformed if it is not 20 symbols of the
// alphabet.
func Normalize(typed string) (string, error) {
	if len(typed) > 4*Length {
		return "", ErrMalformed
	}
	var sb strings.Builder
	for _, r := range typed {
		switch {
		case r == '-' || r == ' ' || r == '\t':
			continue
		case r >= 'a' && r <= 'z':
			r -= 'a' - 'A'
		}
		switch r {
		case 'O':
			r = '0'
		case 'I', 'L':
			r = '1'
		}
		if r > 127 || !strings.ContainsRune(alphabet, r) {
			return "", ErrMalformed
		}
		sb.WriteRune(r)
	}
	if sb.Len() != Length {
		return "", ErrMalformed
	}
	return sb.String(), nil
}

// Hash is what the ledger stores for a code (storage.HashKey of the
// normalised code). ErrMalformed as for Normalize.
func Hash(typed string) ([32]byte, error) {
	n, err := Normalize(typed)
	if err != nil {
		return [32]byte{}, err
	}
	return storage.HashKey(n), nil
}
