// Package portal serves the web pages Odoo's "Buy credits" links, its
// insufficient-credit dialog and "View my services" open in the user's
// browser (PROTOCOL §4.7, §1.5): the credit page of one account
// (/iap/1/credit, raw token for 16.0–18.0, SHA-1 hashed token for 19.0+),
// the overview of a database's accounts (/iap/1/my_account,
// /iap/services, /iap/1/all-in-app-services) and the SMS account page
// (<sms.endpoint>/1/account). The pages show balances and held credit,
// the consumption history (paginated, by period, as CSV, with a daily
// chart drawn in SVG), let the user redeem a voucher and edit the
// low-credit alert settings, and list the operator's packs with links to
// the operator's shop.
//
// The customer reads them in their browser's language (Accept-Language;
// the texts are in locales/<lang>.json, a file per language a translator
// edits), on a phone as on a desktop, with the operator's name, logo and
// support contact, and a link back to the Odoo they came from (the
// Referer's origin). The history shows one row per operation (a hold and
// its capture are one line); holds in progress are listed apart. A
// message after an action is shown only from a link the portal signed
// (ResultLink: the forms' redirects, a payment's cancel and failure
// returns), or after a payment once the ledger or the provider confirms
// it (pay.go): one closed list of codes, texts from the catalogue.
//
// Knowing a token (or its hash) is what grants access, as in Odoo: every
// lookup compares in constant time, wrong and unknown tokens get the same
// page, failed lookups are rate-limited per client address in fixed
// memory, tokens are never logged nor sent to third parties (no external
// assets, Referrer-Policy no-referrer; the shop link carries the token's
// hash, never the token), every form carries a CSRF token bound to the
// account (HMAC with a secret kept in the data directory), and every
// answer carries a strict Content-Security-Policy. The pages need no
// JavaScript.
//
// With a payment provider (the Payments seam, pay.go; Stripe Checkout in
// providers/payments/stripe) the packs get Buy buttons and the provider's
// webhook credits a paid pack once, keyed on its session (webhook.go).
//
// It imports storage, rpc (to register its pages), rpc/limit,
// rpc/portal/voucher and providers/payments (the seam's types); cmd/iapd
// wires it.
package portal
