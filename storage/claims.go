package storage

import "time"

// Claim is a record (Records) that a hold is made for: a sending service
// claims each message's key before it is charged or sent, so that a retry
// is neither sent nor charged twice. A backend that can write the claims
// and the hold in one atomic, durable change offers it as an operation
// taking an AuthorizeRequest and []Claim (storage/badger: AuthorizeClaims);
// the consumer defines the interface (rpc/sendflow.ClaimHolder).
//
// A claim is created under (NS, Key) with Value and Expires, as
// Records.PutRecordIfAbsent would, unless a live record is there; Price is
// added to the hold only when the claim is created.
type Claim struct {
	NS      string
	Key     string
	Value   []byte
	Expires time.Time // zero: never
	Price   Credits
}

// ClaimResult is what became of one Claim: Created by this call, or found
// (a live record, or an earlier claim of the same call with the same key)
// with the value Stored.
type ClaimResult struct {
	Stored  []byte
	Created bool
}
