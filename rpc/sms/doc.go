// Package sms is iapd's SMS service (PROTOCOL §6): the JSON-RPC routes an
// unmodified Odoo calls on its sms.endpoint, billed on the ledger and
// carried out by the provider instances the operator configured.
//
//   - /iap/sms/2/send (16.0: flat messages, results by res_id, §6.1),
//     /iap/message_send (16.0's sms.api._send_sms: one text, several
//     numbers; all or nothing, InsufficientCreditError when short),
//     /iap/sms/3/send and /api/sms/3/send (17.0–19.0: messages grouped by
//     body, results by uuid, §6.2);
//   - the 18.0+ registration routes /api/sms/1/account/create,
//     /api/sms/2/account/verify and /api/sms/1/account/update_sender (§6.3),
//     (the /1/account page their "Register now" link opens is rpc/portal's);
//   - delivery reports: provider callbacks are mapped back to the Odoo
//     uuid and relayed to the database's webhook_url as the JSON-RPC
//     message_statuses call of §6.4, from a durable queue, batched,
//     retried with backoff, through a dialer that refuses internal
//     addresses (the URL comes from the caller).
//
// Billing: a batch's price (segments × the price of the number's E.164
// prefix) is held before any provider is called, the part the providers
// accepted is captured, the rest released; what a provider may or may not
// have sent (an indeterminate failure) stays held for reconciliation. A
// retried batch is neither sent nor charged twice: every uuid is claimed
// in storage.Records before it is sent. Each send keeps a durable trace
// (settle.go) of its messages, its hold and what each provider was handed
// and answered, so that Settle, run at start-up before any request, settles
// exactly once the sends a crash interrupted.
//
// The send itself (claim, hold, dispatch, settle, record) runs through
// rpc/sendflow; this package gives it the messages and its steps (the
// trace, the provider calls, the records).
//
// Package sms imports rpc (routes, params), rpc/sendflow (the send
// pipeline), storage (ledger, records),
// providers (the SMS SPI), providers/outbound (the webhook's CallerURL),
// rpc/fallback (its routes' refusal answers) and rpc/internal/failpoint
// (crash tests); cmd/iapd wires it (wire_sms.go).
package sms
