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
// The package also holds the outbound dial guard: in air-gapped mode every
// connection iapd opens (provider APIs, upstream) is refused unless its
// host was allowed (a configured provider's), before any name is resolved;
// and CallerURL, the client for URLs a caller chose (SMS delivery-report
// webhooks, alert webhooks), which dials public addresses only unless the
// operator allows more (SSRF).
//
// Package proxy may import the standard library, fasthttp, prometheus's
// client, package storage (service names, error kinds) and package rpc
// (the routes table, the error envelope, token hashing) with rpc/fallback
// (the answer type the routes declare). It must not import
// storage backends, providers or cmd.
package proxy
