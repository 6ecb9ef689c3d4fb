// Package postgres is the storage.Ledger backed by a PostgreSQL database
// that any number of iapd nodes share.
//
// It imports the standard library, github.com/jackc/pgx/v5,
// github.com/prometheus/client_golang and github.com/iapd/iapd/storage,
// nothing else of iapd.
//
// # What a caller may rely on
//
// Every operation is one database transaction; it returns nil only after
// PostgreSQL acknowledged the commit (durable with synchronous_commit on,
// PostgreSQL's default). Operations on one account are serialised by the
// account's row lock; unrelated accounts proceed in parallel, on one node or
// many. Serialization failures (40001) and deadlocks (40P01) are retried
// with bounded, jittered backoff (at most 8 attempts), then fail
// Unavailable. A lost connection, a stopped server or a closed ledger fail
// Unavailable; a constraint the schema enforces (no overdraft, no negative
// hold, balanced entries) fails Internal, never silently.
//
// Idempotency stands on unique constraints, not on reads: a recharge ref
// and a voucher's ref are unique per account (iapd_entries_ref), a
// voucher is redeemed by one conditional UPDATE, a record created by INSERT
// … ON CONFLICT. Several nodes drain the expiry sweep and the alert outbox
// without double work: each claims rows with FOR UPDATE SKIP LOCKED.
//
// The schema is versioned (migrations/, embedded): Open applies what is
// missing under pg_advisory_lock, and refuses a database whose schema is
// newer than this build knows. docs/postgres.md has the design, the
// statements that need care on PostgreSQL-wire distributed databases, and
// the figures.
package postgres
