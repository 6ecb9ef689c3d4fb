package storage

// Stats is a snapshot of a ledger's figures, by service, for monitoring:
// what a metrics collector reads at scrape time. It holds no account token
// and nothing about any single account.
type Stats struct {
	// Services has one entry for every service the ledger knows, whether
	// or not it has accounts.
	Services map[ServiceName]ServiceStats
}

// ServiceStats are the figures of one service.
//
// The state figures (Accounts … Held) describe the ledger at the time of
// the snapshot. The flow figures (Authorized … Recharged) are totals over
// the ledger's whole history, summed from its entries: they never decrease,
// and they count every way a change happens (the JSON-RPC routes, the admin
// API, the expiry sweep, a capture or cancel that finds its hold expired).
// For each service, at every snapshot:
//
//	Authorized + (what captures drew beyond their hold) = Captured + Released + Expired + Held
type ServiceStats struct {
	// Accounts counts the service's accounts by state.
	Accounts map[AccountState]int
	// BelowThreshold counts the registered accounts whose low-credit alert
	// is enabled and whose Available is below the alert's Threshold.
	BelowThreshold int
	// Available sums the accounts' available credit.
	Available Credits
	// Holds counts the open holds (transactions in state held, those past
	// their ExpiresAt that no sweep has ended yet included); Held sums
	// their amounts (the accounts' Held).
	Holds int
	Held  Credits

	// Authorized is the credit held by authorize (hold entries).
	Authorized Credits
	// Captured is the credit consumed by captures (capture entries); it is
	// also the sum of the accounts' Captured.
	Captured Credits
	// Released is the credit a hold returned to Available by cancel, or
	// by a capture for less than the hold (release entries).
	Released Credits
	// Expired is the credit returned to Available by holds that expired
	// (expiry entries).
	Expired Credits
	// Recharged is the credit added by recharges, trial credit included
	// (recharge entries; adjustments, which may be negative, are not
	// counted).
	Recharged Credits
}
