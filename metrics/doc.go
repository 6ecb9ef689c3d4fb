// Package metrics defines iapd's Prometheus metrics and the collectors that
// read the ledger at scrape time.
//
// Everything is registered on a prometheus.Registerer the caller injects
// (cmd/iapd makes a fresh prometheus.Registry per run and serves it on the
// ops listener); nothing touches the default registry and there is no
// global state. Names start with iap_, counters end in _total, durations are
// in seconds, and labels are bounded: route, outcome, service, state. No
// label ever carries an account token or anything else per account.
//
// Two parts, fed differently:
//
//   - Metrics (metrics.go): request counts and durations by route and
//     outcome, fed by the JSON-RPC router through its Observer hook
//     (ObserveRequest); ledger sync latency and batch size, fed by the
//     Badger ledger's OnSync hook (ObserveSync); journal checkpoint
//     durations and keys, fed by its OnCheckpoint hook (ObserveCheckpoint);
//     build info; the Go runtime and process collectors.
//   - LedgerCollector (ledger.go): accounts, balances, open holds and the
//     credit flows (authorized, captured, released, expired, recharged) by
//     service, read from the ledger at scrape time through the small
//     StatsReader interface this package defines, with the result cached
//     for a few seconds. The credit counters come from the ledger's own
//     entries, so they count every change that succeeded and nothing else,
//     whatever made it (a route, the admin API, the expiry sweep).
//
// Package metrics imports the standard library, package storage (the
// ledger vocabulary: ServiceName, Credits, Stats) and client_golang. It
// imports no other iapd package: *Metrics satisfies rpc.Observer, its
// ObserveSync and ObserveCheckpoint method values are the Badger ledger's
// OnSync and OnCheckpoint hooks, and the
// Badger StatsReader satisfies StatsReader; cmd/iapd wires them.
package metrics
