package rpc

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/iapd/iapd/storage"
)

// Validation of params shared by the handlers. Every failure is a
// storage.Invalid error naming the param; none quotes a token or a key.

func missing(op, param string) error {
	return storage.Ef(op, storage.Invalid, "Missing param %s.", param)
}

// accountToken splits an account token as Odoo sends it (PROTOCOL §3):
// the account is the part before the first '+'; disabled reports a
// suffix (a neutralised database, isDisabled), which refuses paid work.
func accountToken(op, param, raw string) (tok storage.AccountToken, disabled bool, err error) {
	if raw == "" {
		return "", false, missing(op, param)
	}
	tok, suffix, ok := storage.SplitToken(raw)
	if !ok {
		return "", false, storage.Ef(op, storage.Invalid, "Invalid param %s: not an account token.", param)
	}
	return tok, isDisabled(suffix), nil
}

// isDisabled reports whether a token suffix marks a neutralised database:
// any suffix that is not empty. Odoo's tokens carry none, and neutralising
// a database replaces whatever suffix a token had with "+disabled"
// (PROTOCOL §3), so any other suffix is "disabled" mangled on the way —
// " disabled ", "disabled\x00", "DISABLED\n", "disable" — or made up.
// Reading it as enabled would let a staging copy spend production credit;
// reading it as disabled only refuses paid work, while the account stays
// readable (a neutralised database still shows its balance), which is
// why it is not refused outright as malformed. "tok+" (a '+' and nothing
// after it) is tok, enabled.
func isDisabled(suffix string) bool { return suffix != "" }

// serviceName checks a service name param; an unusable name is an unknown
// service (NotFound, so AccessError on the wire).
func serviceName(op, param, raw string) (storage.ServiceName, error) {
	if raw == "" {
		return "", missing(op, param)
	}
	if !storage.ValidServiceName(raw) {
		return "", storage.E(op, storage.NotFound, "Unknown service.")
	}
	return storage.ServiceName(raw), nil
}

// credits converts a numeric param exactly (storage.ParseCredits).
func credits(op, param string, n Number) (storage.Credits, error) {
	if !n.Set() {
		return 0, missing(op, param)
	}
	c, err := storage.ParseCredits(n.Lit)
	if err != nil {
		return 0, &storage.Error{Op: op, Kind: storage.Invalid, Msg: "Invalid param " + param + ": " + err.Error() + ".", Err: err}
	}
	return c, nil
}

// Bounds of authorize's ttl, in hours.
const (
	defaultTTLHours = 4320   // the client helper's default: 180 days (§5.1)
	maxTTLHours     = 876000 // 100 years: anything longer is a mistake
)

// ttlHours returns authorize's ttl: an integer number of hours, default
// 4320.
func ttlHours(op string, n Number) (int64, error) {
	if !n.Set() {
		return defaultTTLHours, nil
	}
	f, err := strconv.ParseFloat(n.Lit, 64)
	if err != nil || f != math.Trunc(f) || f < 1 || f > maxTTLHours {
		return 0, storage.Ef(op, storage.Invalid, "Invalid param ttl: expected a whole number of hours from 1 to %d.", maxTTLHours)
	}
	return int64(f), nil
}

// serviceKey checks a service key param (its value is never shown).
func serviceKey(op, raw string) ([32]byte, error) {
	if raw == "" {
		return [32]byte{}, storage.E(op, storage.Unauthorized, "Missing service key.")
	}
	return storage.HashKey(raw), nil
}

// transactionToken checks a transaction token param.
func transactionToken(op, raw string) (string, error) {
	if raw == "" {
		return "", missing(op, "token")
	}
	if len(raw) > 128 {
		return "", storage.E(op, storage.Invalid, "Invalid param token: not a transaction token.")
	}
	return raw, nil
}

// maxDescription bounds a transaction description, in bytes; longer ones
// are cut (refusing paid work over a label would be worse).
const maxDescription = 512

func description(t Text) string {
	s := t.S
	if len(s) <= maxDescription {
		return s
	}
	s = s[:maxDescription]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// tokenID identifies a token as Odoo sends it (or any secret) in logs:
// TokenRef of the part before '+'.
func tokenID(raw string) string {
	prefix, _, _ := strings.Cut(raw, "+")
	return TokenRef(storage.AccountToken(prefix))
}

// TokenRef identifies an account in record keys and logs without
// revealing its token: the first 24 hex digits of the token's SHA-256.
func TokenRef(tok storage.AccountToken) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:12])
}

// kindIs reports whether err has kind k (a nil error has none).
func kindIs(err error, k storage.Kind) bool { return err != nil && storage.KindOf(err) == k }

// asStorage returns err's *storage.Error, if any.
func asStorage(err error) *storage.Error {
	var se *storage.Error
	if errors.As(err, &se) {
		return se
	}
	return nil
}

// Helpers for the service packages (rpc/sms, rpc/snailmail, …), so that
// every route reads tokens and credits the same way.

// ParseAccountToken splits an account token param as Odoo sends it
// (PROTOCOL §3): the account, and whether its suffix marks a neutralised
// database ("+disabled", or any other suffix that is not empty: a mangled
// "disabled" is still disabled), which must refuse paid work. A missing or
// implausible token is an Invalid error naming param, never quoting it.
func ParseAccountToken(op, param, raw string) (tok storage.AccountToken, disabled bool, err error) {
	return accountToken(op, param, raw)
}

// ParseCreditsParam converts a numeric param exactly (no float on the
// way): Invalid for a missing, negative-zero-dust, NaN-like or
// out-of-range value.
func ParseCreditsParam(op, param string, n Number) (storage.Credits, error) {
	return credits(op, param, n)
}

// HashedToken is Odoo's account_uuid_hashed: SHA-1 hex of the token
// without its suffix (PROTOCOL §4.2, §4.7).
func HashedToken(tok storage.AccountToken) string { return sha1Hex(string(tok)) }
