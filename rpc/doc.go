// Package rpc is iapd's public JSON-RPC front: the listener an unmodified
// Odoo 16–19 reaches through its iap.endpoint system parameter.
//
// A request goes through three layers, each in one place:
//
//   - the router (router.go) normalises the path, looks it up in the one
//     routes table (routes.go), answers unknown paths and wrong methods the
//     way Odoo expects, and hands RPC routes to
//   - the seam (seam.go), the only fasthttp↔net/http bridge: gorilla/rpc's
//     server is called synchronously on the fasthttp goroutine with a
//     pooled *http.Request and http.ResponseWriter, the body handed over
//     without a copy, to
//   - the Odoo codec (codec.go), which takes the operation from the URL
//     path, decodes Odoo's JSON-RPC envelope into the route's params struct
//     and writes Odoo's success or error envelope; every error is turned
//     into Odoo's error.data.name by the one table in errors.go.
//
// In front of the router, Front (body.go) reads each body within its
// path's limit and, with Config.AccessLog, writes one access line per
// request, whoever answered it (access.go).
//
// The handlers are gorilla service methods grouped per service area:
// Account (balance and the account-management routes of PROTOCOL §4) and
// Transaction (authorize, capture, cancel: §5).
//
// Package rpc may import the standard library, package storage (the ledger
// vocabulary and contract, never a backend), providers (the SPI's vendor
// callback types, never an adapter), rpc/limit, rpc/fallback (the routes'
// refusal and outage answers), fasthttp and gorilla/rpc v2.
// It must not import a ledger backend (storage/badger), proxy or cmd; cmd
// wires a storage.Ledger in through Config.
package rpc
