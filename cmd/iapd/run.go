package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

const usage = `iapd — a self-hosted server for Odoo's In-App Purchase protocol

Server:
  iapd [serve] [-config FILE] [-listen ADDR] [-ops-listen ADDR] [-data DIR]
               [-public-url URL] [-log-level LEVEL]

Admin (clients of the admin API on the ops listener; token in $IAPD_ADMIN_TOKEN):
  iapd services list
  iapd services create NAME [-key-stdin] [-trial N] [-auto-register=false] [-description D] [-unit U]
  iapd services rotate-key NAME [-key-stdin]
  iapd accounts list [-service S] [-state registered|unregistered|banned] [-limit N]
  iapd accounts show|ban|unban|register SERVICE TOKEN
  iapd credit SERVICE TOKEN AMOUNT [-ref REF] [-description D]
  iapd history SERVICE TOKEN [-limit N] [-before SEQ]
  iapd transaction TOKEN
  iapd vouchers create SERVICE AMOUNT [-count N] [-expires T] [-batch LABEL]
  iapd vouchers list [-service S] [-batch LABEL] [-redeemed true|false]
  iapd backup -o FILE [-force]
  iapd verify [-grace D] [-show-tokens]
  iapd export [-format csv|jsonl] [-service S] [-account TOKEN] [-since T] [-until T] [-o FILE]
  iapd version

Configuration (no server needed):
  iapd routes [-config FILE] [-json]   every route with its mode and destination

Offline (iapd stopped):
  iapd restore -data DIR [-force] FILE
  iapd verify -data DIR [-grace D] [-show-tokens]

Every admin command takes -ops ADDR (default $IAPD_OPS or 127.0.0.1:9070)
and -json (machine-readable output).
`

// run is iapd: it parses args and runs one sub-command, serve by default.
// It reads the environment only through getenv and writes only to stdout
// and stderr; stdin is read by "-key-stdin".
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return runServeWithMemoryLimit(ctx, args, getenv, stdout, stderr) // memlimit.go
	case "services", "service":
		return runServices(ctx, args, getenv, stdin, stdout, stderr)
	case "accounts", "account":
		return runAccounts(ctx, args, getenv, stdout, stderr)
	case "credit":
		return runCredit(ctx, args, getenv, stdout, stderr)
	case "history":
		return runHistory(ctx, args, getenv, stdout, stderr)
	case "transaction":
		return runTransaction(ctx, args, getenv, stdout, stderr)
	case "vouchers", "voucher":
		return runVouchers(ctx, args, getenv, stdout, stderr) // vouchers.go
	case "backup":
		return runBackup(ctx, args, getenv, stdout, stderr)
	case "restore":
		return runRestore(ctx, args, getenv, stdout, stderr)
	case "verify":
		return runVerify(ctx, args, getenv, stdout, stderr)
	case "export":
		return runExport(ctx, args, getenv, stdout, stderr)
	case "routes":
		return runRoutes(ctx, args, getenv, stdout, stderr) // routes.go
	case "version":
		if len(args) > 0 {
			return fmt.Errorf("version takes no arguments")
		}
		fmt.Fprintln(stdout, "iapd", version())
		return nil
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// version describes the build from the module's build information.
func version() string {
	v := "(devel)"
	var rev, modified string
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = "+dirty"
				}
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " " + rev + modified
	}
	return v + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name string, stderr io.Writer, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseArgs parses flags placed anywhere among the positional arguments
// ("iapd credit sms TOKEN 10 -ref x" as well as "iapd credit -ref x sms
// TOKEN 10"), and returns the positional ones, of which there must be
// exactly want (any number when want < 0). A negative number such as
// "-2.5" is positional, not a flag; "--" ends the flags.
func parseArgs(fs *flag.FlagSet, args []string, want int) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		a := args[0]
		switch {
		case a == "--":
			pos = append(pos, args[1:]...)
			args = nil
			continue
		case len(a) < 2 || a[0] != '-' || isNumber(a):
			pos = append(pos, a)
			args = args[1:]
			continue
		}
		// One flag, with its value when it takes one and has no "=".
		n := 1
		name := strings.TrimLeft(a, "-")
		if !strings.Contains(name, "=") {
			if f := fs.Lookup(name); f != nil && !isBoolFlag(f) && len(args) > 1 {
				n = 2
			}
		}
		if err := fs.Parse(args[:n]); err != nil {
			return nil, err
		}
		if fs.NArg() > 0 { // a flag missing its value swallowed nothing
			pos = append(pos, fs.Args()...)
		}
		args = args[n:]
	}
	if want >= 0 && len(pos) != want {
		fs.Usage()
		if len(pos) < want {
			return nil, fmt.Errorf("%s: missing arguments", fs.Name())
		}
		return nil, fmt.Errorf("%s: unexpected argument %q", fs.Name(), pos[want])
	}
	return pos, nil
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func isNumber(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	dot := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
		case c == '.' && !dot:
			dot = true
		default:
			return false
		}
	}
	return true
}
