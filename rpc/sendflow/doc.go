// Package sendflow is the send pipeline of iapd's paid sending services
// (rpc/sms, rpc/snailmail), free of any transport: for a batch of priced
// items it claims each item's key (a retry is neither sent nor charged
// twice), holds the price, has the service record the hold and dispatch
// the items to its providers, settles the hold (the accepted part
// captured, the indeterminate part kept on hold, the rest released) and
// has the service record each outcome; the claims of items not sent are
// released so that the caller may send them again.
//
// Each item moves through explicit states (State): Pending → Replayed |
// Refused | Held → Accepted | Invalid | Unavailable | Indeterminate |
// Deferred. Claim and hold are one ledger change when the ledger offers
// ClaimHolder (storage/badger does: one durable wait fewer per send);
// otherwise the claims are written first, then the hold.
//
// Package sendflow imports the standard library, storage (the ledger and
// records contracts) and rpc/internal/failpoint (the crash tests' steps).
package sendflow
