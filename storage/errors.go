package storage

import (
	"errors"
	"fmt"
)

// Kind classifies an error for the edges: the rpc package maps each Kind to
// the error Odoo understands (one table, rpc/errors.go), the admin API maps
// it to an HTTP status.
type Kind uint8

// The kinds of error a Ledger returns.
const (
	Other              Kind = iota // unclassified
	Invalid                        // the request is malformed (amount, ttl, name …)
	NotFound                       // no such service, account or transaction
	Exists                         // the thing to create exists already
	Conflict                       // the state forbids it (capture after cancel, ref reused with another amount)
	InsufficientCredit             // available credit is below the amount
	Forbidden                      // the account may not do paid work (unregistered, banned, disabled)
	Unauthorized                   // wrong or missing service key / admin token
	Unavailable                    // the backend cannot serve now (closed, disk full); retry later
	Internal                       // a bug or corrupted data
)

var kindNames = [...]string{
	Other: "other", Invalid: "invalid", NotFound: "not found", Exists: "exists",
	Conflict: "conflict", InsufficientCredit: "insufficient credit", Forbidden: "forbidden",
	Unauthorized: "unauthorized", Unavailable: "unavailable", Internal: "internal",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// ErrDiskFull is the cause of the Unavailable errors of writes a ledger
// refuses for lack of free space on its volume: a temporary condition,
// counted and logged once by the ledger, not at every refusal.
var ErrDiskFull = errors.New("not enough free space on the data volume")

// Error is the error type of the ledger: an operation, a kind, a message for
// humans (never containing a secret) and an optional cause.
type Error struct {
	Op   string // the operation, e.g. "authorize"
	Kind Kind
	Msg  string // safe to show to the caller
	Err  error  // the cause, for logs; may be nil

	// For InsufficientCredit: the service and the amount that was asked.
	Service ServiceName
	Credit  Credits
}

func (e *Error) Error() string {
	s := e.Op
	if e.Msg != "" {
		if s != "" {
			s += ": "
		}
		s += e.Msg
	}
	if e.Err != nil {
		if s != "" {
			s += ": "
		}
		s += e.Err.Error()
	}
	if s == "" {
		s = e.Kind.String()
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// E builds an *Error.
func E(op string, kind Kind, msg string) *Error { return &Error{Op: op, Kind: kind, Msg: msg} }

// Ef builds an *Error with a formatted message.
func Ef(op string, kind Kind, format string, args ...any) *Error {
	return &Error{Op: op, Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Wrap builds an *Error of the given kind around a cause.
func Wrap(op string, kind Kind, err error) *Error { return &Error{Op: op, Kind: kind, Err: err} }

// KindOf returns the Kind of the first *Error in err's chain, Other if none.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Other
}

// Is reports whether err is an *Error of kind k.
func Is(err error, k Kind) bool { return err != nil && KindOf(err) == k }
