// Package storage is the vocabulary of the iapd credit ledger and the
// contract every ledger backend implements.
//
// It defines the domain types (Credits, ServiceName, AccountToken, Account,
// Transaction — Odoo's word for a hold —, Entry), the error model (Kind) and
// the Ledger interface. Operations on the ledger are coarse and atomic:
// authorize, capture, cancel, expire and recharge are each one whole change,
// so that a backend on a shared SQL database is an adapter, not a rewrite.
//
// The invariant every backend keeps, per account and at every read:
//
//	Recharged = Available + Held + Captured
//
// The rules a backend applies before and while it writes are here once
// (check.go): the request checks (RechargeRequest.Check, AuthorizeRequest.Check,
// CheckRecord, …), ApplyEntry (how an entry changes its account) and
// CaptureEntries (the capture decision); storage/badger and storage/postgres
// call them rather than copy them.
//
// Package storage imports only the standard library. Backends live in
// sub-packages (storage/badger, storage/postgres); storage/storagetest is the conformance suite
// each backend's tests run.
package storage
