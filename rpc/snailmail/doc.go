// Package snailmail is iapd's letter service (PROTOCOL §7): the JSON-RPC
// route an unmodified Odoo 16–19 calls on its snailmail.endpoint,
// /iap/snailmail/1/print, billed on the ledger in Stamps and carried out by
// the provider instances the operator configured (providers/pingen,
// providers/folder).
//
// Every document of a call is answered in-band (Odoo sends batch: true),
// with the codes the client knows: the letter is sent with a send_id, or
// fails with CREDIT_ERROR, TRIAL_ERROR (unregistered, banned or
// "+disabled" account: never charged), NO_PRICE_AVAILABLE (destination not
// priced), FORMAT_ERROR (a PDF that cannot be read, or that the print
// service refused), MISSING_REQUIRED_FIELDS (recipient without street,
// city, zip or country) or UNKNOWN_ERROR (the print service was
// unavailable, or its answer was lost). A call with batch false raises
// InsufficientCreditError instead of CREDIT_ERROR, as the comment of the
// client says the real service does.
//
// Billing: a letter's price (base by destination country, colour,
// duplex/simplex and extra-page surcharges; pages counted in the PDF by
// package pdf) is held before the provider is called, captured when the
// provider accepted the letter, released when it definitely did not
// (invalid, unavailable) and kept held for reconciliation when the outcome
// is indeterminate. A retried print of the same document (same account,
// database, source record, PDF, recipient and options) is neither posted
// nor charged again: every document is claimed in storage.Records before
// it is sent. Each letter keeps a durable trace (settle.go) of its hold
// and of the provider it was handed to and its answer, so that Settle, run
// at start-up before any request, settles exactly once the letters a
// crash interrupted. The send (claim, hold, dispatch, settle, record) runs
// through rpc/sendflow, one item per letter.
//
// Package snailmail imports rpc (routes, params), rpc/sendflow (the send
// pipeline), storage (ledger,
// records), providers (the letter SPI), rpc/snailmail/pdf, rpc/fallback
// (its route's refusal answer) and rpc/internal/failpoint (crash tests); cmd/iapd
// wires it (wire_snailmail.go).
package snailmail
