// Command iapd is a self-hosted server for Odoo's In-App Purchase (IAP)
// protocol, and the command-line client of its admin API.
//
//	iapd [serve] [-config FILE] [-listen ADDR] [-ops-listen ADDR] [-data DIR]
//	iapd COMMAND …   (iapd help lists them all: the command table in run.go)
//
// main only wires the process (signals, environment, standard streams) to
// run, which the tests drive end to end. Package main may import every
// package of iapd: it is where the ledger backend, the JSON-RPC front and
// the admin API are put together; nothing imports it. As the one place
// that wires, it may import every package of iapd: rpc/..., proxy/...,
// providers/..., storage/... and metrics/....
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process the default way
	}()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		// "-h" asked for the usage, which was printed: not a failure.
	default:
		fmt.Fprintln(os.Stderr, "iapd:", err)
		os.Exit(1)
	}
}
