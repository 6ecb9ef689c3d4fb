package storage

import (
	"errors"
	"time"
)

// The checks every backend makes on a request before touching its store:
// one place, so storage/badger and storage/postgres refuse the same
// requests with the same Invalid errors (the conformance suite pins them).

// Limits of what a request may carry.
const (
	// MaxText bounds descriptions, in bytes.
	MaxText = 4096
	// MaxShortText bounds refs, db uuids, sender names, e-mails, unit names
	// and voucher batch labels, in bytes.
	MaxShortText = 256
	// MaxLang bounds a language code, in bytes.
	MaxLang = 32
	// MaxRecipients bounds an account's alert recipients.
	MaxRecipients = 50
	// MaxTTL bounds a hold's time to live.
	MaxTTL = 100 * 365 * 24 * time.Hour
	// MaxTotal bounds an account's Recharged (and so all its figures,
	// which lie between 0 and Recharged), far from int64 overflow.
	MaxTotal = Credits(1 << 62)
	// TrialRef is the Ref of the ledger's own trial-credit entry;
	// Recharge refuses it.
	TrialRef = "trial"
	// MaxRecordNS and MaxRecordKey bound a record's namespace and key, in
	// bytes.
	MaxRecordNS  = 64
	MaxRecordKey = 512
	// MaxClaimBytes bounds the keys and values of one AuthorizeClaims call
	// (in storage/badger a hold and its claims are one journal record).
	MaxClaimBytes = 4 << 20
)

// ValidAccountToken reports whether tok is an account token as SplitToken
// produces it: 1 to 64 bytes of printable ASCII other than space, without
// the '+' that starts a suffix.
func ValidAccountToken(tok AccountToken) bool {
	if len(tok) == 0 || len(tok) > 64 {
		return false
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c >= 0x7f || c == '+' {
			return false
		}
	}
	return true
}

// CheckAccount validates the (service, token) of a call: Invalid for a bad
// service name or account token, else nil.
func CheckAccount(op string, svc ServiceName, tok AccountToken) error {
	if !ValidServiceName(string(svc)) {
		return E(op, Invalid, "invalid service name")
	}
	if !ValidAccountToken(tok) {
		return E(op, Invalid, "invalid account token")
	}
	return nil
}

// CheckAmount validates an amount from outside: Invalid unless
// 0 ≤ c ≤ MaxCredits.
func CheckAmount(op string, c Credits) error {
	if c < 0 || c > MaxCredits {
		return Ef(op, Invalid, "amount %s out of range", c)
	}
	return nil
}

// CheckText refuses (Invalid, naming what) a text s longer than max bytes.
func CheckText(op, what string, s string, max int) error {
	if len(s) > max {
		return Ef(op, Invalid, "%s longer than %d bytes", what, max)
	}
	return nil
}

// Check validates a recharge before any store is read: Invalid for a bad
// account, a kind other than EntryRecharge (0 < Amount ≤ MaxCredits) or
// EntryAdjustment (Amount ≠ 0, |Amount| ≤ MaxCredits), the reserved
// TrialRef, a Ref over MaxShortText or a Description over MaxText bytes.
func (r RechargeRequest) Check(op string) error {
	if err := CheckAccount(op, r.Service, r.Account); err != nil {
		return err
	}
	switch r.Kind {
	case EntryRecharge:
		if r.Amount <= 0 || r.Amount > MaxCredits {
			return Ef(op, Invalid, "recharge amount %s out of range", r.Amount)
		}
	case EntryAdjustment:
		if r.Amount == 0 || r.Amount > MaxCredits || r.Amount < -MaxCredits {
			return Ef(op, Invalid, "adjustment amount %s out of range", r.Amount)
		}
	default:
		return E(op, Invalid, "kind must be recharge or adjustment")
	}
	if r.Ref == TrialRef {
		return E(op, Invalid, `ref "trial" is reserved`)
	}
	if err := CheckText(op, "ref", r.Ref, MaxShortText); err != nil {
		return err
	}
	return CheckText(op, "description", r.Description, MaxText)
}

// Check validates a hold request before any store is read: Invalid for a
// bad account, an Amount outside [0, MaxCredits], a TTL outside
// (0, MaxTTL], a Description over MaxText or a db uuid over MaxShortText
// bytes.
func (r AuthorizeRequest) Check(op string) error {
	if err := CheckAccount(op, r.Service, r.Account); err != nil {
		return err
	}
	if err := CheckAmount(op, r.Amount); err != nil {
		return err
	}
	if r.TTL <= 0 || r.TTL > MaxTTL {
		return Ef(op, Invalid, "ttl %v out of range", r.TTL)
	}
	if err := CheckText(op, "description", r.Description, MaxText); err != nil {
		return err
	}
	return CheckText(op, "db uuid", r.FirstSight.DBUUID, MaxShortText)
}

// Check validates a service given to EnsureService: Invalid for a bad
// name, TrialCredits outside [0, MaxCredits], a zero key hash with HasKey,
// a Description over MaxText or a UnitName over MaxShortText bytes.
func (s Service) Check(op string) error {
	if !ValidServiceName(string(s.Name)) {
		return E(op, Invalid, "invalid service name")
	}
	if err := CheckAmount(op, s.TrialCredits); err != nil {
		return err
	}
	if s.HasKey && s.KeyHash == ([32]byte{}) {
		return E(op, Invalid, "zero key hash")
	}
	if err := CheckText(op, "description", s.Description, MaxText); err != nil {
		return err
	}
	return CheckText(op, "unit name", s.UnitName, MaxShortText)
}

// Check validates a new voucher given to CreateVouchers: Invalid for a
// zero code hash, a bad service name, an Amount outside (0, MaxCredits], a
// voucher given as redeemed or a Batch over MaxShortText bytes.
func (v Voucher) Check(op string) error {
	switch {
	case v.CodeHash == [32]byte{}:
		return E(op, Invalid, "zero voucher code hash")
	case !ValidServiceName(string(v.Service)):
		return E(op, Invalid, "invalid service name")
	case v.Amount <= 0 || v.Amount > MaxCredits:
		return Ef(op, Invalid, "voucher amount %s out of range", v.Amount)
	case v.Redeemed() || v.RedeemedBy != "" || v.Entry != 0:
		return E(op, Invalid, "a new voucher cannot be redeemed")
	}
	return CheckText(op, "batch", v.Batch, MaxShortText)
}

// CheckVouchers validates a batch given to CreateVouchers, in order:
// each voucher's Check (Invalid), then Exists for a code hash given twice.
func CheckVouchers(op string, vs []Voucher) error {
	seen := make(map[[32]byte]bool, len(vs))
	for i := range vs {
		if err := vs[i].Check(op); err != nil {
			return err
		}
		if seen[vs[i].CodeHash] {
			return E(op, Exists, "a voucher code is given twice")
		}
		seen[vs[i].CodeHash] = true
	}
	return nil
}

// ValidRecordNS reports whether ns is a usable record namespace: 1 to
// MaxRecordNS bytes of printable ASCII other than space.
func ValidRecordNS(ns string) bool {
	if len(ns) == 0 || len(ns) > MaxRecordNS {
		return false
	}
	for i := 0; i < len(ns); i++ {
		if c := ns[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// CheckRecordKey validates a record's address: Invalid for a bad namespace
// or a key not of 1 to MaxRecordKey bytes.
func CheckRecordKey(op, ns, key string) error {
	if !ValidRecordNS(ns) {
		return E(op, Invalid, "invalid record namespace")
	}
	if len(key) == 0 || len(key) > MaxRecordKey {
		return Ef(op, Invalid, "record key must be 1 to %d bytes", MaxRecordKey)
	}
	return nil
}

// CheckRecord validates a record to store: CheckRecordKey, then Invalid
// for a value over MaxRecordValue bytes. The expiry is the backend's to
// check against its own clock and precision.
func CheckRecord(op, ns, key string, value []byte) error {
	if err := CheckRecordKey(op, ns, key); err != nil {
		return err
	}
	if len(value) > MaxRecordValue {
		return Ef(op, Invalid, "record value of %d bytes exceeds %d", len(value), MaxRecordValue)
	}
	return nil
}

// Check validates an account update before any store is read: Invalid for
// an unknown State, a SenderName over MaxShortText bytes, an alert
// Threshold outside [0, MaxCredits], more than MaxRecipients recipients, an
// e-mail over MaxShortText or a language over MaxLang bytes.
func (u AccountUpdate) Check(op string) error {
	if u.State != nil && !u.State.Valid() {
		return E(op, Invalid, "invalid account state")
	}
	if u.SenderName != nil {
		if err := CheckText(op, "sender name", *u.SenderName, MaxShortText); err != nil {
			return err
		}
	}
	if u.Alerts == nil {
		return nil
	}
	if err := CheckAmount(op, u.Alerts.Threshold); err != nil {
		return err
	}
	if len(u.Alerts.Recipients) > MaxRecipients {
		return Ef(op, Invalid, "more than %d recipients", MaxRecipients)
	}
	for _, r := range u.Alerts.Recipients {
		if err := CheckText(op, "e-mail", r.Email, MaxShortText); err != nil {
			return err
		}
		if err := CheckText(op, "language", r.Lang, MaxLang); err != nil {
			return err
		}
	}
	return nil
}

// Check validates a capture before any store is read: Invalid for a bad
// service name or an Amount (when set) outside [0, MaxCredits]. The
// transaction token's form is the backend's (an unknown one is NotFound).
func (r CaptureRequest) Check(op string) error {
	if !ValidServiceName(string(r.Service)) {
		return E(op, Invalid, "invalid service name")
	}
	if r.Amount != nil {
		return CheckAmount(op, *r.Amount)
	}
	return nil
}

// CheckServiceKey validates a key given to SetServiceKey: Invalid for a bad
// service name or a zero key hash.
func CheckServiceKey(op string, name ServiceName, keyHash [32]byte) error {
	if !ValidServiceName(string(name)) {
		return E(op, Invalid, "invalid service name")
	}
	if keyHash == ([32]byte{}) {
		return E(op, Invalid, "zero key hash")
	}
	return nil
}

// ApplyEntry appends e to account a in memory, the one rule every backend
// follows: an entry whose deltas do not balance (DRecharged ≠ DAvailable +
// DHeld + DCaptured) is refused with a plain error (an Internal fault, not
// the caller's) and changes nothing; otherwise e gets a's next Seq, its
// Service and Account, and a time that never goes back within the account
// (now, or a.UpdatedAt if the clock stepped back), and its deltas are
// added to a's figures. The backend stores e and a afterwards.
func ApplyEntry(a *Account, e *Entry, now time.Time) error {
	if e.DRecharged != e.DAvailable+e.DHeld+e.DCaptured {
		return errors.New("entry deltas do not balance; change refused")
	}
	if now.Before(a.UpdatedAt) {
		now = a.UpdatedAt
	}
	a.Seq++
	e.Seq = a.Seq
	e.Time = now
	e.Service = a.Service
	e.Account = a.Token
	a.Recharged += e.DRecharged
	a.Available += e.DAvailable
	a.Held += e.DHeld
	a.Captured += e.DCaptured
	a.UpdatedAt = now
	return nil
}

// CaptureEntries is the capture decision on an open hold t of account a,
// taking *amount (nil: the held amount; checked by CaptureRequest.Check).
// Up to the held amount: a capture entry and, for the rest, a release
// entry. Beyond it the capture also draws the excess from Available:
// Forbidden unless a is registered (the excess is new spending, which
// Authorize would refuse), InsufficientCredit (Service, Credit = the amount
// to capture) when Available is short. It returns the entries to append in
// order and the captured amount; a refusal changes nothing.
func CaptureEntries(op string, t Transaction, a Account, amount *Credits) ([]Entry, Credits, error) {
	held, c := t.Amount, t.Amount
	if amount != nil {
		c = *amount
	}
	capture := Entry{Kind: EntryCapture, Transaction: t.Token, Description: t.Description}
	if c <= held {
		capture.DHeld, capture.DCaptured = -c, c
	} else {
		extra := c - held
		switch a.State {
		case Registered:
		case Banned:
			return nil, 0, E(op, Forbidden, "account is banned: a capture may not exceed its hold")
		default:
			return nil, 0, E(op, Forbidden, "account is not registered: a capture may not exceed its hold")
		}
		if a.Available < extra {
			return nil, 0, &Error{Op: op, Kind: InsufficientCredit,
				Msg: "capture exceeds the hold and available credit", Service: t.Service, Credit: c}
		}
		capture.DHeld, capture.DAvailable, capture.DCaptured = -held, -extra, c
	}
	es := []Entry{capture}
	if rest := held - c; rest > 0 {
		es = append(es, Entry{Kind: EntryRelease, DHeld: -rest, DAvailable: rest,
			Transaction: t.Token, Description: t.Description})
	}
	return es, c, nil
}

// Check validates an account listing's filter: Invalid for a bad Service
// (when set), After without Service, or an unknown State (when set).
func (f AccountFilter) Check(op string) error {
	if f.Service != "" && !ValidServiceName(string(f.Service)) {
		return E(op, Invalid, "invalid service name")
	}
	if f.After != "" && f.Service == "" {
		return E(op, Invalid, "After needs Service")
	}
	if f.State != "" && !f.State.Valid() {
		return E(op, Invalid, "invalid account state")
	}
	return nil
}
