// Package badger is the storage.Ledger backed by an embedded Badger v4
// database in one data directory.
//
// It imports the standard library, github.com/dgraph-io/badger/v4 and
// github.com/iapd/iapd/storage, nothing else of iapd. The key layout and the
// value encoding are private to this package (keys.go, codec.go); values
// start with a format byte so that a later format can be read next to the
// old one.
//
// # Atomicity and concurrency
//
// Every operation is atomic: an authorize writes the account, the hold
// entry, the transaction and the expiry index together or not at all. The
// hold operations (authorize, capture, cancel, the expiry of a hold) and
// the bookkeeping records do so as one journal record, checkpointed into
// Badger later (journal.go, overlay.go: ledger format 3); every other
// operation is one Badger txn, made after the journal's writes are in
// Badger.
// Operations on one account are serialised in-process by a striped mutex
// (1024 stripes by a hash of service and token) held around the Badger
// read-modify-write, never across the wait for durability; so a hot account
// does not turn into a storm of Badger conflict retries, and unrelated
// accounts proceed in parallel. No key is shared by every write (the entry
// counter lives in the account record). Badger's conflict detection stays
// on for the keys that are shared (service records, key index) and
// conflict retries are bounded (10), after which the call fails
// Unavailable.
//
// Every write of an account or transaction record holds the account's
// stripe (putAccount and putTxn refuse a write that does not), so a stripe
// knows the last committed record of its accounts and of their holds: it
// caches the account records written under it, and a small shared cache
// the transaction records (cache.go). The writes of an operation read them
// from there rather than through Badger, whose Get consults every level of
// the LSM tree. ServiceByKey, the first read of every provider call, is
// answered from a cache of the durable services that every service write
// empties.
//
// # Why acknowledged means durable, even against power loss
//
// Badger runs with SyncWrites off; durability comes from group commit. After
// its Badger txn commits, a call queues on the sync round that is forming
// and waits. A single syncer goroutine takes all callers queued so far, runs
// one sync round, and releases them together; the next batch forms while a
// round runs, so one fsync serves many commits (on a disk doing about 4000
// fsyncs a second, a few tens of thousands of commits a second). Under
// load, when only a few of the callers a round released are back, the
// syncer waits up to a millisecond for more before the next round
// (groupsync.go, gather); a wait only ever delays an answer, never lets
// one out before its round.
//
// What a round syncs follows from how Badger v4 writes. A commit is
// appended to the WAL of the active memtable (a *.mem file written through
// mmap) before it becomes visible; values too big for the LSM tree would
// go to the value log. When the memtable is full, Badger rotates it — the
// old one waits to be flushed to an SST — without syncing its WAL, and
// db.Sync() only msyncs the active memtable's WAL and the value log. A
// commit that landed in a memtable rotated out before the round would be
// acknowledged but not on disk. So a round is:
//
//  1. fdatasync of every WAL file (*.mem) that may hold a commit not
//     synced yet: the active memtable's, kept open from round to round
//     through a read-only descriptor, and — once, in the first round that
//     knows Badger has rotated it — each rotated one. fdatasync acts on
//     the inode, so it writes back the pages Badger dirtied through its
//     mmap (msync(MS_SYNC) on Linux is the same fdatasync, limited to a
//     range). Badger numbers WAL files in sequence and all its writes come
//     from one goroutine, which creates WAL n+1 after its last write to
//     WAL n: a WAL file below the newest one seen is complete, and once
//     synced after that it is closed and never synced again (on ext4 every
//     sync call costs a device cache flush, even on a clean file). A WAL
//     file that has vanished was flushed into an SST that Badger synced and
//     recorded in its synced MANIFEST before deleting the WAL. New WAL
//     files are learnt from an inotify watch on the directory, one read
//     per round (where there is none, from a listing of the directory every
//     round): a commit made before a round began went to a WAL file created
//     before it began, which the round knows of;
//  2. fsync of the directory when a WAL file was created: Badger does not
//     sync the directory after creating a WAL file (it preallocates it,
//     and ristretto's z.OpenMmapFile only syncs the directory for files
//     created empty), so without this a commit in a new WAL could be lost
//     with the file's directory entry.
//
// db.Sync() itself is not called: its WAL half is step 1 for one file, and
// its value-log half has nothing to do because no value ever goes there
// (every value is checked to be below Badger's ValueThreshold when it is
// written, and text fields are bounded so that real records stay far
// below). On ext4 each sync call costs a device cache flush even when the
// file is clean; calling db.Sync() as well made a round about three times
// slower. A commit made before a caller queued is therefore on stable
// storage when the round that caller joined returns, whichever memtable it
// went to.
//
// Reads get the same care: a call (a read, an idempotent retry, a refusal)
// may see a change that is committed but whose own caller is still waiting
// for its round. Each commit is counted before it becomes visible and
// uncounted when its round is over; a call that ends while the count is not
// zero waits for the next round before answering. So nothing this ledger
// answers can be taken back by a crash, and an idle ledger pays nothing for
// it.
//
// If a sync round or a commit fails (I/O error, disk full), the outcome of
// the calls waiting on it is unknown: they fail with kind Internal, and the
// ledger refuses all further work (Unavailable) until it is reopened, which
// replays the WAL — Badger's data in the page cache can no longer be
// trusted to reach the disk after a failed fsync.
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
//
// # A full disk
//
// Badger writes its memtables' WALs and builds its tables through mmap on
// files it only ftruncates, so a full volume raises SIGBUS, not an error.
// The ledger measures free space (space.go) and keeps Badger clear of it:
// below a reserve the writes that grow the ledger fail Unavailable with
// ErrDiskFull while reads, captures, cancels and expiry go on; below the
// floor Badger's own work may still need, every write fails and the
// checkpoint pauses; Open refuses, naming the shortfall, a volume that
// cannot take what opening writes.
package badger
