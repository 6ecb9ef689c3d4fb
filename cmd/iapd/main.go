// Command iapd is a self-hosted server for Odoo's In-App Purchase (IAP)
// protocol, and the command-line client of its admin API.
//
//	iapd [serve] [-config FILE] [-listen ADDR] [-ops-listen ADDR] [-data DIR]
//	iapd services list|create|rotate-key …
//	iapd accounts list|show|ban|unban|register …
//	iapd credit SERVICE TOKEN AMOUNT [-ref REF] [-description D]
//	iapd history SERVICE TOKEN [-limit N]
//	iapd transaction TOKEN
//	iapd backup -o FILE
//	iapd restore -data DIR [-force] FILE
//	iapd verify [-data DIR]
//	iapd export [-format csv|jsonl] [-service S] [-account TOKEN] [-since T] [-until T]
//	iapd version
//	iapd help [COMMAND]   (also iapd -h; iapd COMMAND -h lists its flags)
//
// main only wires the process (signals, environment, standard streams) to
// run, which the tests drive end to end. Package main may import every
// package of iapd: it is where the ledger backend, the JSON-RPC front and
// the admin API are put together; nothing imports it.
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
