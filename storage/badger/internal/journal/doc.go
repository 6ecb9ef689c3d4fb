// Package journal is the write-ahead journal of storage/badger: records of
// key writes (set, delete), appended in sequence and made durable in
// group fdatasyncs, read back in order at start-up.
//
// It imports the standard library only.
//
// # What a caller may rely on
//
// Append hands out consecutive sequence numbers; Wait (WaitCtx) returns
// once the record is on stable storage, even against power loss. After a
// failed write or sync every later call fails: nothing is durable after
// it. Walk reads every valid record of a journal directory in sequence
// order and reports each stretch that does not read as records (Damage);
// Classify says which damage a crash can leave (a torn tail: never
// acknowledged) and which is corruption (acknowledged records lost).
// MoveAside moves a damaged journal into a folder of its own, durably.
//
// A record is a list of writes, each a kind byte, a key and (for a set) a
// value: an operation writes as many keys as it needs in one record, so
// an operation that combines others (a claim and a hold, say) is one
// record with the writes of both, and a new write kind can be added
// (older readers report a record holding it as damage, never misread
// it). The record layout: length u32 (of what follows the checksum),
// CRC-32C u32 (Castagnoli, of what follows it), seq uvarint, then per
// write the kind (Set, Del), the key (uvarint length, bytes) and for Set
// the value (uvarint length, bytes). Files are named journal-<first
// seq, 20 digits>.log.
package journal
