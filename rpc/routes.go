package rpc

import (
	"time"

	"github.com/iapd/iapd/rpc/fallback"
	"github.com/iapd/iapd/storage"
)

// The routes table: every JSON-RPC path the public listener serves, the
// gorilla method that handles it, its body limit and what it is for. It is
// the only place a path is bound to a handler; the router, the codec and
// the documentation all read it.
var routes = []Route{
	{Path: "/iap/1/balance", Method: "Account.Balance", Account: true, MaxBody: 64 << 10,
		Answer: fallback.Balance,
		Doc:    "available credit of one account (PROTOCOL §4.1; 16.0–19.0)"},
	{Path: "/iap/services-token", Method: "Account.ServicesToken", Account: true, MaxBody: 1 << 20, MaxItems: maxAccountsPerCall,
		TooMany: msgTooManyAccounts,
		Doc:     "account list of the 17.0 IAP accounts view (§4.2)"},
	{Path: "/iap/update-warning-odoo", Method: "Account.UpdateWarningOdoo", Account: true, MaxBody: 64 << 10,
		Doc: "low-credit alert settings pushed by 17.0 (§4.3)"},
	{Path: "/iap/1/get-accounts-information", Method: "Account.GetAccountsInformation", Account: true, MaxBody: 1 << 20, MaxItems: maxAccountsPerCall,
		TooMany: msgTooManyAccounts,
		Doc:     "account details read by the 18.0+ account form (§4.4)"},
	{Path: "/iap/1/update-warning-email-alerts", Method: "Account.UpdateWarningEmailAlerts", Account: true, MaxBody: 256 << 10, MaxItems: maxRecipientsPerCall,
		TooMany: "Too many alert recipients in one call.",
		Doc:     "low-credit threshold and recipients pushed by 18.0+ (§4.5)"},
	{Path: "/iap/1/authorize", Method: "Transaction.Authorize", MaxBody: 64 << 10, CreditErrors: true,
		Doc: "hold credit for a service provider (§5.1)"},
	{Path: "/iap/1/capture", Method: "Transaction.Capture", MaxBody: 64 << 10, CreditErrors: true,
		Doc: "confirm a hold (§5.2)"},
	{Path: "/iap/1/cancel", Method: "Transaction.Cancel", MaxBody: 64 << 10, CreditErrors: true,
		Doc: "release a hold (§5.3)"},
}

// Route describes one JSON-RPC route of the public listener.
type Route struct {
	Path    string // normalised: single slashes, no trailing slash
	Method  string // gorilla "Service.Method"
	MaxBody int    // largest accepted request body, in bytes
	Doc     string // what the route is for

	// Endpoint is the Odoo system parameter whose value the client puts
	// in front of Path (PROTOCOL §2): "iap.endpoint", "sms.endpoint",
	// "snailmail.endpoint", "iap.partner_autocomplete.endpoint",
	// "enrich.endpoint" or "reveal.endpoint". Empty means iap.endpoint.
	Endpoint string
	// Service is the IAP service the route bills (its account tokens are
	// of that service); empty for the account routes of iap.endpoint,
	// which name their service in the params. The proxy decides a
	// route's mode (local, upstream, refuse) by it.
	Service storage.ServiceName
	// Timeout is how long the calling Odoo waits for the answer
	// (PROTOCOL §13); zero means the default 15 s.
	Timeout time.Duration
	// CreditErrors: the route may answer InsufficientCreditError (the
	// client catches it there). Otherwise such an error is our bug and
	// is answered as an internal error.
	CreditErrors bool
	// Account marks the account routes of iap.endpoint (§4): their
	// clients catch only AccessError (what an unreachable IAP becomes in
	// iap_jsonrpc), so an outage is answered AccessError there (the
	// account column of errorTable), never UserError.
	Account bool
	// MaxItems bounds every list (JSON array) in the request: the decoder
	// refuses the request as soon as one list has more elements, while
	// reading it. Zero means DefaultMaxItems.
	MaxItems int
	// TooLarge is the message (error.data.message) of the answer to a
	// body over MaxBody, TooMany the one to a list over MaxItems; written
	// for the user who reads it (PROTOCOL §1.4: Odoo builds of
	// generation A/B show it). Empty means a generic sentence.
	TooLarge, TooMany string
	// Answer is how the route's client takes a refusal or an outage
	// iapd answers itself (its service refused, its upstream down); the
	// zero Answer is the error envelope (errorTable's kind Forbidden or
	// Unavailable, AccessError on Account routes).
	Answer fallback.Answer
}

// DefaultMaxItems is the most elements a list of a request may hold when
// its route does not say.
const DefaultMaxItems = 1000

// DefaultTimeout is how long an Odoo client waits for an IAP answer when
// a route does not say (PROTOCOL §13).
const DefaultTimeout = 15 * time.Second

// Routes returns a copy of the core routes table (the account and
// transaction routes of iap.endpoint). Server.Routes adds the routes
// registered by service packages.
func Routes() []Route { return append([]Route(nil), routes...) }
