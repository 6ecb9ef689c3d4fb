// Command iapload drives a running iapd with a mix of Odoo-shaped JSON-RPC
// calls — authorize then capture, authorize then cancel, balance reads,
// SMS sends — and prints throughput, latency percentiles, errors by kind,
// the CPU time client and server spent per request and the server's
// resident memory.
//
// Figures on a shared machine are only meaningful side by side, so
// -baseline first measures, in the same run and with the same client, a
// minimal native fasthttp JSON-RPC echo on loopback, then the same echo
// answering only once a record per request is durable (group fsyncs of a
// file in -syncdir: the ceiling of any server that acknowledges only
// durable writes, on that disk and this client), then iapd, and prints
// the ratios iapd / baseline, durable / baseline and iapd / durable.
//
// Usage:
//
//	IAPD_ADMIN_TOKEN=… iapload -url http://127.0.0.1:8070 -ops 127.0.0.1:9070 \
//	    -mix authcap=8,balance=1,authcancel=1 -c 64 -d 10s [-newconn] [-baseline [-syncdir DIR]] [-pid PID]
//
// The tool creates (or reuses) a service "iapload" and credits -accounts
// accounts through the admin API before the run (and the same tokens'
// accounts of service sms when the mix sends SMS: they go through the sms
// service's configured provider, the sandbox outbox by default). It only
// ever talks to the addresses it is given; use loopback.
//
// With -grow N it runs no load: it grows iapd's ledger by N new accounts
// of -grow-service (sms by default) through /iap/1/balance on fresh tokens,
// as new Odoo databases do, and exits — to measure a large ledger (issue
// 21) after restarting iapd on it. Raise iapd's account-creation limits
// for it (limits: accounts_per_address, accounts_total).
package main

import (
	"context"
	"fmt"

	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "iapload:", err)
		os.Exit(1)
	}
}
