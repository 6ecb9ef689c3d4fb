package storage

import (
	"context"
	"time"
)

// Stores beside the credit ledger that the services and the portal need.
// Each is a whole-operation contract like Ledger (atomic, durable when it
// returns nil, errors of *Error with a Kind), so that a shared SQL backend
// implements them as it implements Ledger. The Badger ledger implements
// all of them; consumers declare the subset they use.

// Voucher is a top-up code an operator issued (PROTOCOL has none: a
// self-hosted server's way to sell credit). Only the hash of the code is
// stored.
type Voucher struct {
	CodeHash  [32]byte // HashKey of the code as the user types it (normalised by the caller)
	Service   ServiceName
	Amount    Credits // > 0
	Batch     string  // operator's label ("2026-11 reseller X"), may be empty
	CreatedAt time.Time
	ExpiresAt time.Time // zero: never

	// Set once redeemed.
	RedeemedAt time.Time
	RedeemedBy AccountToken
	Entry      uint64 // Seq of the recharge entry on RedeemedBy's account
}

// Redeemed reports whether the voucher was used.
func (v Voucher) Redeemed() bool { return !v.RedeemedAt.IsZero() }

// VoucherFilter selects vouchers to list, in CodeHash order.
type VoucherFilter struct {
	Service  ServiceName // empty: all
	Batch    string      // empty: all
	Redeemed *bool       // nil: both
	After    [32]byte    // continue after this hash
	Limit    int         // <= 0: a default of 100
}

// Vouchers is the voucher store.
type Vouchers interface {
	// CreateVouchers stores new vouchers, all or none. Exists if a code
	// hash is already stored; Invalid for a bad amount or service;
	// NotFound if the service is unknown.
	CreateVouchers(ctx context.Context, vs []Voucher) error
	// RedeemVoucher credits the voucher's amount to (svc, tok) as a
	// recharge entry (Ref "voucher:" + the first 16 hex of the hash) and
	// marks the voucher used, in one atomic step: under concurrent
	// redemption exactly one caller succeeds. The account is created
	// registered if absent. NotFound if no such voucher or it is for
	// another service (one answer for both: no enumeration); Conflict if
	// it was redeemed (by this account too: the caller tells the user) or
	// has expired at now.
	RedeemVoucher(ctx context.Context, codeHash [32]byte, svc ServiceName, tok AccountToken, now time.Time) (Voucher, Entry, error)
	// ListVouchers lists vouchers matching f.
	ListVouchers(ctx context.Context, f VoucherFilter) ([]Voucher, error)
}

// AlertNotice is a low-credit alert to send: an account's available
// credit went below its threshold (Available < Threshold, so threshold 0
// never fires). The ledger queues one in the same atomic step as the change
// that crossed the threshold (authorize — a hold lowers Available, the
// balance Odoo shows —, capture, negative adjustment), once per crossing,
// for registered accounts with alerts Enabled, recipients or not (the
// dispatcher decides what to do without any). UpdateAccount never queues
// one (a settings change is no way to send mail): enabling alerts or
// setting a threshold above the balance re-arms, and the next change of
// credit that leaves the account below queues the alert. The account
// re-arms when its available credit is at or above the threshold again
// (recharge, voucher, cancel, expiry) or when Enabled or Threshold change;
// a change of recipients alone does not re-arm.
type AlertNotice struct {
	ID         uint64 // unique, increasing
	Service    ServiceName
	Account    AccountToken
	Available  Credits // after the change
	Threshold  Credits
	Recipients []Recipient
	At         time.Time // when the crossing happened
	Attempts   int       // failed deliveries so far
	NextTry    time.Time // not before this time
	LastError  string    // of the last failed delivery, for operators
}

// AlertOutbox is the durable queue of low-credit alerts.
type AlertOutbox interface {
	// DueAlerts returns at most max (> 0, else Invalid) queued alerts
	// whose NextTry <= now, oldest first.
	DueAlerts(ctx context.Context, now time.Time, max int) ([]AlertNotice, error)
	// AlertSent removes a delivered alert. Idempotent.
	AlertSent(ctx context.Context, id uint64) error
	// AlertFailed records a failed delivery: Attempts+1, NextTry, and the
	// error text. NotFound if the alert is no longer queued.
	AlertFailed(ctx context.Context, id uint64, next time.Time, reason string) error
}

// Records is a small durable key-value store for the services'
// bookkeeping: SMS uuids already handled (a retried batch is neither sent
// nor charged twice), provider message ids awaiting a delivery report and
// the webhook to relay it to, letters sent. Keys live in namespaces; values
// are opaque (at most MaxRecordValue bytes); a record past its expiry is
// gone (reads miss it; Sweep deletes it). A zero expires means never; an
// expiry is judged on the store's own clock (expired when now >= expires).
//
// Namespaces are 1 to 64 bytes of printable ASCII other than space; keys 1
// to 512 bytes, any bytes. Invalid for anything else, or for a non-zero
// expires that is not after now (a record that would be born dead).
type Records interface {
	// PutRecordIfAbsent stores value under (ns, key) unless a live record
	// is there; it returns the stored value and whether it was created by
	// this call. Atomic: of concurrent callers with the same key, one
	// creates.
	PutRecordIfAbsent(ctx context.Context, ns, key string, value []byte, expires time.Time) (stored []byte, created bool, err error)
	// PutRecord stores value under (ns, key), replacing any record.
	PutRecord(ctx context.Context, ns, key string, value []byte, expires time.Time) error
	// GetRecord returns the live record. NotFound if absent or expired.
	GetRecord(ctx context.Context, ns, key string) ([]byte, error)
	// DeleteRecord removes a record. Idempotent.
	DeleteRecord(ctx context.Context, ns, key string) error
}

// MaxRecordValue is the largest value Records stores.
const MaxRecordValue = 16 << 10

// RecordSweeper deletes expired records. A Records store that keeps them
// until deleted implements it; Sweep calls it when the Ledger it sweeps
// does.
type RecordSweeper interface {
	// DeleteExpiredRecords deletes at most max (> 0) records whose expiry
	// is at or before now, oldest expiry first, and returns how many it
	// deleted.
	DeleteExpiredRecords(ctx context.Context, now time.Time, max int) (int, error)
}

// Record is one live record as ListRecords returns it.
type Record struct {
	Key     string
	Value   []byte
	Expires time.Time // zero: never
}

// RecordLister lists the records of a namespace. The services use it at
// start-up to find the sends a crash interrupted (a namespace of open
// sends is small: what was in flight).
type RecordLister interface {
	// ListRecords returns at most max (> 0, else Invalid) live records of
	// namespace ns whose key sorts after the key after ("" lists from the
	// start), in key order (bytewise), each as last written. Invalid for a
	// bad namespace.
	ListRecords(ctx context.Context, ns, after string, max int) ([]Record, error)
}
