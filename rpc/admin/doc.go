// Package admin is iapd's operator API: a small JSON-over-HTTP API to
// manage services, keys and accounts, served on the ops listener (never on
// the public JSON-RPC listener). The iapd command's sub-commands (`iapd
// services`, `iapd accounts`, `iapd credit`, `iapd history`) are its
// clients.
//
// It is a net/http handler (the ops listener reaches it through
// fasthttpadaptor; this is not the hot path). It imports only the standard
// library, package storage and rpc/portal/voucher (voucher codes).
//
// # Authentication
//
// Every route except /healthz and /readyz requires
//
//	Authorization: Bearer <admin token>
//
// compared in constant time. A missing or wrong token is 401. When the
// configured token is empty the API is disabled: every authenticated route
// answers 401. The admin token is never logged nor echoed.
//
// # Routes
//
//	GET  /healthz                        the process is alive (no auth)
//	GET  /readyz                         Config.Ready() returned nil (no auth)
//
//	GET  /v1/services                    list services
//	POST /v1/services                    create a service; returns its key once
//	GET  /v1/services/{service}          show a service
//	POST /v1/services/{service}/key      rotate (or import) the key; returns it once
//
//	GET  /v1/accounts?service=&state=&after=&limit=
//	                                     list accounts, in (service, token) order
//	GET  /v1/account?service=&token=     show one account and its figures
//	POST /v1/account/ban                 {"service", "token"} → state banned
//	POST /v1/account/unban               {"service", "token"} banned → registered
//	POST /v1/account/register            {"service", "token"} unregistered → registered
//	                                     (creates the account if absent)
//	POST /v1/account/credit              {"service", "token", "amount", "ref", "description"}
//	GET  /v1/account/history?service=&token=&before=&limit=
//	                                     ledger entries, newest first
//	GET  /v1/transaction?token=          show one transaction (hold)
//
//	GET  /v1/backup                      a backup file of the whole ledger, streamed
//	GET  /v1/verify?grace=&show_tokens=  verify the ledger; a report, clean or not (200)
//	GET  /v1/export?format=csv|jsonl&service=&token=&since=&until=
//	                                     ledger entries for accounting, streamed
//
//	POST /v1/registers/import            {"format", "files": [absolute paths on the server]}
//	                                     starts an online import of company registers: 202,
//	                                     409 while one runs (registers.go)
//	GET  /v1/registers/import            the running or last import's status
//
// Account and transaction tokens travel in query strings or JSON bodies,
// never in paths, so that access logs (which record the path only) never
// hold them.
//
// Creating a service:
//
//	POST /v1/services
//	{"name": "myservice", "key": "optional, ≥16 characters, to import one",
//	 "auto_register": true, "trial_credits": 10, "description": "…", "unit_name": "Credits"}
//	→ 201 {"service": {…}, "key": "<64 hex>"}
//
// Without "key", a key of 32 random bytes (64 hex characters) is generated.
// Only storage.HashKey(key) is stored: the key is in this answer and
// nowhere else. A service declared in iapd's configuration file exists
// without a key until one is set with POST /v1/services/{service}/key.
//
// Crediting: "amount" is a JSON number (or a string holding one) with at
// most four decimals; a positive amount is a recharge, a negative one an
// adjustment (which may not take the available credit below zero). "ref"
// makes the call idempotent: the same ref with the same amount returns the
// first entry and changes nothing, with "replayed": true (false when this
// call wrote the entry); the same ref with another amount is a conflict.
// ban, unban and register answer the account with "changed": false when it
// was in that state already.
//
// Lists are paged: when more items exist the answer carries "next", to pass
// back as "after" (accounts) or "before" (history).
//
// # Operations (operations.go)
//
// Backup, verify and export need more of the ledger than storage.Ledger:
// Config.Operator (the Badger ledger's, through cmd/iapd). /v1/backup
// streams one consistent snapshot (the file format is storage/badger's,
// with a header and a SHA-256 trailer); /v1/export streams CSV or JSON
// lines in (service, account, seq) order, since/until as RFC 3339 or
// YYYY-MM-DD. A stream that fails after its first byte is cut (the
// client sees an incomplete chunked answer, never a short one that looks
// whole). /v1/verify names accounts by ShortID (a SHA-256 prefix) unless
// show_tokens=true; grace (a duration, default 1h) is how long an open
// hold may be overdue before it is an error rather than a warning.
// Requests in flight when iapd shuts down are finished, not cancelled.
//
// # Errors
//
// Every error is
//
//	{"error": {"kind": "not_found", "message": "…"}}
//
// with the HTTP status given by the kind (one table, errors.go):
// invalid 400, unauthorized 401, forbidden 403, not_found 404, exists 409,
// conflict 409, insufficient_credit 409, unavailable 503, internal 500.
package admin
