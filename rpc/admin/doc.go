// Package admin is iapd's operator API: a small JSON-over-HTTP API to
// manage services, keys and accounts, served on the ops listener (never on
// the public JSON-RPC listener). The iapd command's sub-commands (`iapd
// services`, `iapd accounts`, `iapd credit`, `iapd history`) are its
// clients.
//
// It is a net/http handler (the ops listener reaches it through
// fasthttpadaptor; this is not the hot path). It imports only the standard
// library and package storage.
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
// first entry and changes nothing; the same ref with another amount is a
// conflict.
//
// Lists are paged: when more items exist the answer carries "next", to pass
// back as "after" (accounts) or "before" (history).
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
