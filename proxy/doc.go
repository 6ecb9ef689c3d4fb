// Package proxy decides, per JSON-RPC route, where a request of an Odoo
// database goes: served by iapd's own handlers (mode local), forwarded
// untouched to Odoo's IAP host of the route's role (mode upstream), or
// answered here with the refusal that route understands (mode refuse).
//
// The decision is by service (PROTOCOL §3: sms, snailmail,
// partner_autocomplete, reveal, …); the account route /iap/1/balance
// follows the service it names, /iap/1/get-accounts-information each
// account's, and the account routes that name none (services-token, the
// alert settings) combine iapd's answer with one upstream call's.
// Forwarding passes the request body and the
// upstream answer through byte for byte, errors included, within the
// calling Odoo's own timeout (§13), over pooled connections, with a body
// size limit; an upstream that is down, slow or answers something Odoo
// could not read (§1.2–§1.3) becomes a well-formed answer the route's
// client handles: on the account routes the unreachable-IAP answer
// (AccessError, rpc's error table), on the service routes their in-band
// "server error" states (the route's Answer, rpc/fallback) or Odoo's error envelope. An upstream
// call runs in the request's context (deadline, client gone, shutdown). Forwarded traffic is counted (iap_upstream_requests_total,
// iap_upstream_request_duration_seconds) and written to an audit log
// (JSON lines, account tokens hashed, no bodies).
//
// Its transport to Odoo's hosts is an outbound.Outbound
// (providers/outbound, the air-gap guard) that cmd/iapd passes in.
//
// Package proxy may import the standard library, fasthttp, prometheus's
// client, package storage (service names, error kinds), package rpc
// (the routes table, the error envelope, token hashing) with rpc/fallback
// (the answer type the routes declare), and providers/outbound (the
// air-gap guard's host syntax). It must not import a ledger backend
// (storage/badger), the providers SPI (providers) or an adapter, nor cmd.
package proxy
