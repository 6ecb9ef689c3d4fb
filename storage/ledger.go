package storage

import (
	"context"
	"crypto/sha1" // #nosec G505 -- Odoo 19's hashed token (PROTOCOL §4.7) is SHA-1; an identifier
	"crypto/sha256"
	"strings"
	"time"
)

// ServiceName is the technical name of an IAP service: "sms", "snailmail",
// "partner_autocomplete", "reveal", or one an operator registered.
type ServiceName string

// The services Odoo itself uses (PROTOCOL §3).
const (
	SMS                 ServiceName = "sms"
	Snailmail           ServiceName = "snailmail"
	PartnerAutocomplete ServiceName = "partner_autocomplete"
	Reveal              ServiceName = "reveal"
)

// BuiltinServices lists the services every iapd has.
var BuiltinServices = []ServiceName{SMS, Snailmail, PartnerAutocomplete, Reveal}

// ValidServiceName reports whether s is usable as a service name: 1 to 64
// characters among a-z, 0-9, '_' and '-', starting with a letter.
func ValidServiceName(s string) bool {
	if len(s) == 0 || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// AccountToken identifies an account within a service. It is the token Odoo
// generated (32 lowercase hex in practice) with any "+suffix" removed.
type AccountToken string

// SplitToken splits a token as Odoo sends it on the first '+': the account
// is identified by the prefix, the suffix says e.g. "disabled" (a
// neutralised database, PROTOCOL §3). ok is false when the prefix is not a
// plausible token: empty, longer than 64 bytes, or containing anything but
// printable ASCII other than space.
func SplitToken(raw string) (tok AccountToken, suffix string, ok bool) {
	prefix, suffix, _ := strings.Cut(raw, "+")
	if len(prefix) == 0 || len(prefix) > 64 || len(suffix) > 64 {
		return "", "", false
	}
	for i := 0; i < len(prefix); i++ {
		if prefix[i] <= ' ' || prefix[i] >= 0x7f {
			return "", "", false
		}
	}
	return AccountToken(prefix), suffix, true
}

// HashToken is the hashed form of an account token in Odoo 19's links
// (PROTOCOL §4.7): SHA-1 of the token.
func HashToken(tok AccountToken) [sha1.Size]byte { return sha1.Sum([]byte(tok)) } // #nosec G401 -- see import

// HashKey is how service keys are stored: SHA-256 of the key. Keys are
// random (at least 128 bits) so a plain hash is enough.
func HashKey(key string) [32]byte { return sha256.Sum256([]byte(key)) }

// Service is a billable IAP service and its policy for new accounts.
type Service struct {
	Name ServiceName
	// KeyHash is HashKey of the service key; zero when the service has no
	// key (it then cannot be used with authorize/capture/cancel).
	KeyHash [32]byte
	HasKey  bool
	// AutoRegister: accounts seen for the first time are created registered
	// with TrialCredits; otherwise they are recorded as unregistered.
	AutoRegister bool
	TrialCredits Credits
	Description  string // shown in Odoo's account list (17.0)
	UnitName     string // "Credits", "Stamps", "Enrichments"
	CreatedAt    time.Time
}

// AccountState is an account's registration state, as Odoo 18+ stores it.
type AccountState string

// Account states (PROTOCOL §4.4: the only values Odoo accepts).
const (
	Registered   AccountState = "registered"
	Unregistered AccountState = "unregistered"
	Banned       AccountState = "banned"
)

// Valid reports whether s is one of the three states.
func (s AccountState) Valid() bool { return s == Registered || s == Unregistered || s == Banned }

// Recipient is one low-credit alert recipient.
type Recipient struct {
	Email string `json:"email"`
	Lang  string `json:"lang_code,omitempty"`
}

// Alerts are an account's low-credit alert settings. Odoo owns nothing
// here: 18.0 overwrites its local threshold with iapd's, so iapd stores what
// the warning routes push.
type Alerts struct {
	Enabled    bool // 17.0 warn_me; 18.0+: a threshold was pushed
	Threshold  Credits
	Recipients []Recipient
}

// Account is the credit state of one (service, token) pair.
//
// Recharged = Available + Held + Captured at every read.
type Account struct {
	Service ServiceName
	Token   AccountToken
	State   AccountState

	Recharged Credits // sum of all recharges and adjustments (trial included)
	Available Credits // what can be spent now: the "balance"
	Held      Credits // sum of open holds
	Captured  Credits // sum of all captures

	Alerts     Alerts
	SenderName string // SMS sender name (18.0+)
	DBUUID     string // the database that first used the token, if known

	Seq       uint64 // number of entries written for this account
	CreatedAt time.Time
	UpdatedAt time.Time
}

// TransactionState is the life cycle of a hold.
type TransactionState string

// Transaction states.
const (
	Held      TransactionState = "held"
	Captured  TransactionState = "captured"
	Cancelled TransactionState = "cancelled"
	Expired   TransactionState = "expired"
)

// Transaction is a hold on an account's credit (Odoo's word), created by
// authorize and ended by capture, cancel or expiry.
type Transaction struct {
	Token       string // opaque, 32 lowercase hex, unguessable
	Service     ServiceName
	Account     AccountToken
	State       TransactionState
	Amount      Credits // held by authorize
	Captured    Credits // what capture took (may differ from Amount)
	Description string
	CreatedAt   time.Time
	ExpiresAt   time.Time
	EndedAt     time.Time // capture, cancel or expiry time
}

// EntryKind says what changed an account.
type EntryKind string

// Entry kinds.
const (
	EntryRecharge   EntryKind = "recharge"   // credit added (operator, voucher, trial)
	EntryAdjustment EntryKind = "adjustment" // operator correction, may be negative
	EntryHold       EntryKind = "hold"       // authorize
	EntryCapture    EntryKind = "capture"    // consumption
	EntryRelease    EntryKind = "release"    // cancel, or the unused part of a capture
	EntryExpiry     EntryKind = "expiry"     // a hold past its ttl returned
)

// Entry is an immutable ledger line. Its deltas obey the invariant:
// DRecharged = DAvailable + DHeld + DCaptured.
type Entry struct {
	Seq         uint64 // 1, 2, … per account
	Time        time.Time
	Service     ServiceName
	Account     AccountToken
	Kind        EntryKind
	DRecharged  Credits
	DAvailable  Credits
	DHeld       Credits
	DCaptured   Credits
	Transaction string // the hold concerned, if any
	Ref         string // idempotency reference of a recharge, if any
	Description string
}

// Amount is the entry's effect as a customer reads it: credit added for
// recharges and adjustments, credit consumed (negative) for captures, held
// or released for holds.
func (e Entry) Amount() Credits {
	switch e.Kind {
	case EntryRecharge, EntryAdjustment:
		return e.DRecharged
	case EntryCapture:
		return -e.DCaptured
	default:
		return e.DAvailable
	}
}

// FirstSight describes who asks for an account, for the record created on
// first sight.
type FirstSight struct {
	DBUUID string
	// NoTrial creates the account without the service's TrialCredits
	// (still registered when the service auto-registers): the caller's
	// policy gives trial credit once per database, not per token.
	NoTrial bool
}

// AuthorizeRequest asks for a hold.
type AuthorizeRequest struct {
	Service     ServiceName
	Account     AccountToken
	Amount      Credits
	Description string
	TTL         time.Duration // > 0
	FirstSight  FirstSight
}

// CaptureRequest confirms a hold.
type CaptureRequest struct {
	Service     ServiceName // the transaction must belong to this service
	Transaction string
	// Amount to capture; nil means the held amount. Less than held releases
	// the rest; more than held draws the difference from available credit.
	Amount *Credits
}

// RechargeRequest adds (or, for an adjustment, removes) credit.
type RechargeRequest struct {
	Service     ServiceName
	Account     AccountToken
	Amount      Credits // > 0 for a recharge; non-zero for an adjustment
	Kind        EntryKind
	Ref         string // idempotency key; empty means none
	Description string
}

// AccountUpdate changes an account's settings; nil fields are left alone.
type AccountUpdate struct {
	State      *AccountState
	Alerts     *Alerts
	SenderName *string
}

// AccountFilter selects accounts to list, in (service, token) order.
type AccountFilter struct {
	Service ServiceName  // empty: all
	State   AccountState // empty: all
	After   AccountToken // continue after this token (with Service set)
	Limit   int          // <= 0: a default of 100
}

// HistoryQuery selects entries of one account, newest first.
type HistoryQuery struct {
	Before uint64 // only entries with Seq < Before; 0: from the newest
	Since  time.Time
	Until  time.Time
	Limit  int // <= 0: a default of 100
}

// Ledger is the durable credit ledger. Every method is safe for concurrent
// use. Every method that changes state is atomic and, when it returns nil,
// durable (on stable storage). Errors are *Error values with a Kind.
type Ledger interface {
	// EnsureService creates the service or updates its policy
	// (AutoRegister, TrialCredits, Description, UnitName); the key and the
	// creation time of an existing service are kept. Invalid if the name is
	// not ValidServiceName.
	EnsureService(ctx context.Context, s Service) (Service, error)
	// Service returns one service. NotFound if unknown.
	Service(ctx context.Context, name ServiceName) (Service, error)
	// Services lists all services by name.
	Services(ctx context.Context) ([]Service, error)
	// SetServiceKey stores the hash of a new key, replacing any previous one
	// (rotation). NotFound if the service is unknown; Exists if another
	// service already has that key.
	SetServiceKey(ctx context.Context, name ServiceName, keyHash [32]byte) error
	// ServiceByKey returns the service whose key hashes to keyHash.
	// Unauthorized if none.
	ServiceByKey(ctx context.Context, keyHash [32]byte) (Service, error)

	// Account returns the account, creating it on first sight: registered
	// with the service's TrialCredits (a recharge entry, ref "trial"; none
	// with fs.NoTrial) when the service auto-registers, unregistered
	// otherwise. NotFound if the
	// service is unknown.
	Account(ctx context.Context, svc ServiceName, tok AccountToken, fs FirstSight) (Account, error)
	// LookupAccount returns the account without creating it. NotFound if
	// absent.
	LookupAccount(ctx context.Context, svc ServiceName, tok AccountToken) (Account, error)
	// AccountsByToken returns the accounts of every service that have this
	// token (Odoo 17's list routes send tokens without services). Empty,
	// not an error, when none.
	AccountsByToken(ctx context.Context, tok AccountToken) ([]Account, error)
	// TokenByHash returns the token whose SHA-1 is h, among the tokens of
	// the accounts of every service: Odoo 19's hashed credit links
	// (PROTOCOL §4.7) name an account by HashToken of its token. NotFound
	// when no account has such a token. Its cost does not grow with the
	// number of accounts (an index written with each account).
	TokenByHash(ctx context.Context, h [sha1.Size]byte) (AccountToken, error)
	// Accounts lists accounts matching f.
	Accounts(ctx context.Context, f AccountFilter) ([]Account, error)
	// UpdateAccount applies u atomically and returns the result. NotFound
	// if the account does not exist; Invalid for an unknown state.
	UpdateAccount(ctx context.Context, svc ServiceName, tok AccountToken, u AccountUpdate) (Account, error)

	// Recharge adds credit (Kind EntryRecharge, Amount > 0) or corrects it
	// (Kind EntryAdjustment, Amount != 0, never taking Available below 0:
	// InsufficientCredit). The account is created registered if absent.
	// With a Ref, a second call with the same Ref, kind and amount returns
	// the first entry and changes nothing; the same Ref with another amount
	// is a Conflict. Invalid for a bad amount or kind.
	Recharge(ctx context.Context, r RechargeRequest) (Entry, error)

	// Authorize holds Amount (>= 0) of the account's available credit,
	// creating the account on first sight as Account does. Forbidden if the
	// account is not registered; InsufficientCredit (with Service and
	// Credit set) if Available < Amount; Invalid for a bad amount or ttl.
	Authorize(ctx context.Context, r AuthorizeRequest) (Transaction, error)
	// Capture confirms a hold. Idempotent: capturing a captured
	// transaction again with the same amount (or nil) returns it unchanged.
	// NotFound if the transaction does not exist or belongs to another
	// service; Conflict if it was cancelled or expired (a hold past its
	// ExpiresAt counts as expired), or was captured for another amount;
	// Forbidden if Amount exceeds the hold and the account is not
	// registered (banned since the authorize: the excess would be new
	// spending; up to the hold settles what was held and is allowed);
	// InsufficientCredit if Amount exceeds the hold by more than the
	// available credit. A refused capture leaves the hold as it was.
	Capture(ctx context.Context, r CaptureRequest) (Transaction, error)
	// Cancel releases a hold. Idempotent: cancelling a cancelled or expired
	// transaction returns it unchanged. NotFound as for Capture; Conflict
	// if it was captured.
	Cancel(ctx context.Context, svc ServiceName, txn string) (Transaction, error)
	// Transaction returns a transaction. NotFound if absent.
	Transaction(ctx context.Context, txn string) (Transaction, error)
	// ExpireDue releases at most max holds whose ExpiresAt <= now and
	// returns how many it released.
	ExpireDue(ctx context.Context, now time.Time, max int) (int, error)

	// History returns entries of one account, newest first.
	History(ctx context.Context, svc ServiceName, tok AccountToken, q HistoryQuery) ([]Entry, error)

	// Close flushes and releases the ledger. Later calls fail Unavailable.
	Close() error
}
