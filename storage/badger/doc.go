// Package badger is the storage.Ledger backed by an embedded Badger v4
// database in one data directory.
//
// It imports the standard library, github.com/dgraph-io/badger/v4,
// github.com/iapd/iapd/storage and its own storage/badger/internal/journal,
// nothing else of iapd. The key layout and the
// value encoding are private to this package (keys.go, codec.go); values
// start with a format byte so that a later format can be read next to the
// old one.
//
// # What a caller may rely on
//
// Every operation is atomic: an authorize writes the account, the hold
// entry, the transaction and the expiry index together or not at all.
// Operations on one account are serialised; unrelated accounts proceed in
// parallel. Conflict retries are bounded (10), after which the call fails
// Unavailable.
//
// A call returns only once its change is on stable storage, even against
// power loss, and no call answers with a change that a crash could still
// take back. If a sync or a commit fails (I/O error, disk full), the calls
// waiting on it fail with kind Internal and the ledger refuses all further
// work (Unavailable) until it is reopened.
//
// On a nearly full volume the writes that grow the ledger fail Unavailable
// with ErrDiskFull while reads, captures, cancels and expiry go on; closer
// to full every write fails; Open refuses, naming the shortfall, a volume
// that cannot take what opening writes.
//
// Every change is a record of the package's journal
// (storage/badger/internal/journal), durable before it is acknowledged;
// Badger holds what checkpoints copy from it. How (group commit, the
// overlay, checkpoints, the caches, the free-space bounds) and why: see
// docs/storage.md.
//
// # Choices where the storage.Ledger contract is silent
//
//   - Tokens are validated as storage.SplitToken produces them (no '+',
//     printable ASCII, at most 64 bytes): anything else is Invalid.
//     Malformed transaction tokens are NotFound.
//   - A partial capture writes two entries, a capture and a release of the
//     rest; an over-capture writes one capture entry that also draws from
//     Available.
//   - A hold past its ExpiresAt is expired by the Capture or Cancel that
//     finds it (EndedAt = ExpiresAt), in the same write.
//   - Recharge refs are per account; the ref "trial" is the ledger's own.
//   - Entry times never decrease within an account.
//   - Texts are bounded (descriptions 4096 bytes; refs, unit names, db
//     uuids, e-mails and sender names 256; languages 32; 50 alert
//     recipients), which keeps every record under 16 KiB and out of the
//     value log.
//   - Recharge on an absent account creates it as first sight would (trial
//     credits included when the service auto-registers) and registers it;
//     a refused Recharge creates nothing. A refused Authorize keeps the
//     account its first sight created.
//   - Reads of Accounts and History page by After / Before and return
//     empty slices, not nil, when nothing matches.
//
// # Beside the ledger
//
// The Ledger also implements storage.Vouchers (vouchers.go),
// storage.AlertOutbox (alerts.go) and storage.Records with
// storage.RecordSweeper (kv.go), in the same database, so that a voucher's
// recharge, or a low-credit alert and the change that crossed the
// threshold, are one atomic write, and Backup, Restore and Verify cover
// them. Choices where those contracts are silent:
//
//   - A voucher redemption is a recharge entry with Ref "voucher:" and 16
//     hex digits of the code hash (the ref is indexed like a recharge ref);
//     the account is created registered if absent and otherwise keeps its
//     state. A CreateVouchers batch too big for one Badger txn is Invalid.
//   - An alert is queued when a change leaves Available below the
//     threshold of an armed, enabled alert of a registered account; holds
//     count (Available is the balance Odoo shows); threshold 0 never
//     fires; see alerts.go for the whole rule.
//   - Records expire on the ledger's clock; a zero expiry is never, a
//     non-zero expiry not after now is Invalid; expired records read as
//     absent until DeleteExpiredRecords (storage.Sweep) deletes them.
package badger
