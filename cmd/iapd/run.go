package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"

	"github.com/iapd/iapd/providers/registers/formats"
	"github.com/iapd/iapd/storage/badger"
)

// stdio is what a sub-command may use of the process: the environment
// (through getenv) and the standard streams.
type stdio struct {
	getenv         func(string) string
	stdin          io.Reader
	stdout, stderr io.Writer
}

// command is one sub-command: run dispatches on its names, help lists its
// synopses under their sections. A command with subs ("services list")
// takes the sub-command as its first argument; the help test asks each
// sub for its flags.
type command struct {
	names    []string // the first is listed, the others are aliases
	section  string   // secServer, secAdmin, secConfig, secOffline or secOther
	synopses []string // help lines, each starting with "iapd NAME"
	subs     []string
	run      func(ctx context.Context, args []string, io stdio) error
}

// The sections of "iapd help", in this order.
const (
	secServer  = "Server:"
	secAdmin   = "Admin (clients of the admin API on the ops listener; token in $IAPD_ADMIN_TOKEN):"
	secConfig  = "Configuration (no server needed):"
	secOffline = "Offline (iapd stopped):"
	secOther   = "Other:"
)

// commands is the table of iapd's sub-commands: the one list run
// dispatches on and help prints, so that no command can be left out of
// the help.
func commands() []command {
	return []command{
		{names: []string{"serve"}, section: secServer, synopses: []string{
			"iapd [serve] [-config FILE] [-listen ADDR] [-ops-listen ADDR] [-data DIR | -ledger URL]\n               [-public-url URL] [-log-level LEVEL] [-journal-corrupt refuse|move-aside]",
		}, run: func(ctx context.Context, args []string, s stdio) error {
			return runServeWithMemoryLimit(ctx, args, s.getenv, s.stdout, s.stderr) // memlimit.go
		}},
		{names: []string{"services", "service"}, section: secAdmin, subs: []string{"list", "create", "rotate-key"}, synopses: []string{
			"iapd services list",
			"iapd services create NAME [-key-stdin] [-trial N] [-auto-register=false] [-description D] [-unit U]",
			"iapd services rotate-key NAME [-key-stdin]",
		}, run: func(ctx context.Context, args []string, s stdio) error {
			return runServices(ctx, args, s.getenv, s.stdin, s.stdout, s.stderr)
		}},
		{names: []string{"accounts", "account"}, section: secAdmin, subs: []string{"list", "show", "ban", "unban", "register"}, synopses: []string{
			"iapd accounts list [-service S] [-state registered|unregistered|banned] [-limit N]",
			"iapd accounts show|ban|unban SERVICE TOKEN",
			"iapd accounts register SERVICE TOKEN [-any-token]",
		}, run: func(ctx context.Context, args []string, s stdio) error {
			return runAccounts(ctx, args, s.getenv, s.stdout, s.stderr)
		}},
		{names: []string{"credit"}, section: secAdmin, synopses: []string{
			"iapd credit SERVICE TOKEN AMOUNT [-ref REF] [-description D] [-any-token]",
		}, run: func(ctx context.Context, args []string, s stdio) error {
			return runCredit(ctx, args, s.getenv, s.stdout, s.stderr)
		}},
		{names: []string{"history"}, section: secAdmin, synopses: []string{
			"iapd history SERVICE TOKEN [-limit N] [-before SEQ]",
		}, run: func(ctx context.Context, args []string, s stdio) error {
			return runHistory(ctx, args, s.getenv, s.stdout, s.stderr)
		}},
		{names: []string{"transaction"}, section: secAdmin, synopses: []string{
			"iapd transaction TOKEN",
		}, run: func(ctx context.Context, args []string, s stdio) error {
			return runTransaction(ctx, args, s.getenv, s.stdout, s.stderr)
		}},
		{names: []string{"vouchers", "voucher"}, section: secAdmin, subs: []string{"create", "list"}, synopses: []string{
			"iapd vouchers create SERVICE AMOUNT [-count N] [-expires T] [-batch LABEL]",
			"iapd vouchers list [-service S] [-batch LABEL] [-redeemed true|false] [-limit N] [-after HASH]",
		}, run: func(ctx context.Context, args []string, s stdio) error {
			return runVouchers(ctx, args, s.getenv, s.stdout, s.stderr) // vouchers.go
		}},
		{names: []string{"backup"}, section: secAdmin, synopses: []string{
			"iapd backup -o FILE [-force]",
		}, run: func(ctx context.Context, args []string, s stdio) error {
			return runBackup(ctx, args, s.getenv, s.stdout, s.stderr)
		}},
		{names: []string{"verify"}, section: secAdmin, synopses: []string{
			"iapd verify [-grace D] [-show-tokens]                 (offline: -data DIR, below)",
		}, run: func(ctx context.Context, args []string, s stdio) error {
			return runVerify(ctx, args, s.getenv, s.stdout, s.stderr)
		}},
		{names: []string{"export"}, section: secAdmin, synopses: []string{
			"iapd export [-format csv|jsonl] [-service S] [-account TOKEN] [-since T] [-until T] [-o FILE]",
		}, run: func(ctx context.Context, args []string, s stdio) error {
			return runExport(ctx, args, s.getenv, s.stdout, s.stderr)
		}},
		{names: []string{"version"}, section: secOther, synopses: []string{
			"iapd version",
		}, run: func(_ context.Context, args []string, s stdio) error {
			fs := newFlagSet("version", s.stderr, "iapd version")
			if _, err := parseArgs(fs, args, 0); err != nil {
				return err
			}
			fmt.Fprintln(s.stdout, badger.BuildVersion(), runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH)
			return nil
		}},
		{names: []string{"routes"}, section: secConfig, synopses: []string{
			"iapd routes [-config FILE] [-json]   every route with its mode and destination",
		}, run: func(ctx context.Context, args []string, s stdio) error {
			return runRoutes(ctx, args, s.getenv, s.stdout, s.stderr) // routes.go
		}},
		{names: []string{"migrate"}, section: secOffline, synopses: []string{
			"iapd migrate [-ledger URL] [-config FILE]   bring a PostgreSQL ledger's schema up to date",
		}, run: func(ctx context.Context, args []string, s stdio) error {
			return runMigrate(ctx, args, s.getenv, s.stdout, s.stderr) // ledger_pg.go
		}},
		{names: []string{"ledger"}, section: secOffline, subs: []string{"copy"}, synopses: []string{
			"iapd ledger copy -from DIR -to URL   move a stopped Badger ledger into an empty PostgreSQL one",
		}, run: func(ctx context.Context, args []string, s stdio) error {
			return runLedger(ctx, args, s.getenv, s.stdout, s.stderr) // ledger_copy.go
		}},
		{names: []string{"restore"}, section: secOffline, synopses: []string{
			"iapd restore -data DIR [-force] FILE",
			"iapd verify -data DIR [-grace D] [-show-tokens]",
		}, run: func(ctx context.Context, args []string, s stdio) error {
			return runRestore(ctx, args, s.getenv, s.stdout, s.stderr)
		}},
		{names: []string{"directory"}, section: secOffline, subs: []string{"import"}, synopses: []string{
			"iapd directory import -format gleif|sirene|companies-house|kbo [-data DIR | -ops ADDR] FILE…",
		}, run: func(ctx context.Context, args []string, s stdio) error {
			return runDirectory(ctx, args, s, formats.ReadFile) // directory.go
		}},
		{names: []string{"help"}, section: secOther, synopses: []string{
			"iapd help [COMMAND]                 this text, or one command's flags (as iapd COMMAND -h)",
		}},
	}
}

// lookupCommand returns the command named name (or one of its aliases).
func lookupCommand(cmds []command, name string) (command, bool) {
	for _, c := range cmds {
		if slices.Contains(c.names, name) {
			return c, true
		}
	}
	return command{}, false
}

// writeUsage writes "iapd help": every command's synopses by section.
func writeUsage(w io.Writer, cmds []command) {
	fmt.Fprint(w, "iapd — a self-hosted server for Odoo's In-App Purchase protocol\n")
	for _, sec := range []string{secServer, secAdmin, secConfig, secOffline, secOther} {
		fmt.Fprintf(w, "\n%s\n", sec)
		for _, c := range cmds {
			if c.section == sec {
				for _, s := range c.synopses {
					fmt.Fprintf(w, "  %s\n", s)
				}
			}
		}
	}
	fmt.Fprint(w, `
Every admin command takes -ops ADDR (default $IAPD_OPS or 127.0.0.1:9070)
and -json (machine-readable output). "iapd COMMAND -h" lists a command's
flags; without a command, iapd serves.
`)
}

// writeCommandUsage writes the synopses of one command (for "iapd
// services -h", whose sub-commands each have their own flags).
func writeCommandUsage(w io.Writer, name string) {
	c, _ := lookupCommand(commands(), name)
	fmt.Fprintln(w, "usage:")
	for _, s := range c.synopses {
		fmt.Fprintf(w, "  %s\n", s)
	}
	fmt.Fprintf(w, "\"iapd %s SUB-COMMAND -h\" lists a sub-command's flags.\n", name)
}

// isHelpFlag reports whether a is one of the flags that ask for help.
func isHelpFlag(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

// run is iapd: it parses args and runs one sub-command, serve by default.
// It reads the environment only through getenv and writes only to stdout
// and stderr; stdin is read by "-key-stdin". Help that was asked for (-h,
// help) goes to stdout; a command's -h returns flag.ErrHelp, which main
// turns into exit status 0.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmds := commands()
	name := "serve"
	switch {
	case len(args) > 0 && isHelpFlag(args[0]):
		writeUsage(stdout, cmds)
		return nil
	case len(args) > 0 && !strings.HasPrefix(args[0], "-"):
		name, args = args[0], args[1:]
	}
	if name == "help" {
		if len(args) == 0 {
			writeUsage(stdout, cmds)
			return nil
		}
		name, args = args[0], append(args[1:], "-h")
	}
	c, ok := lookupCommand(cmds, name)
	if !ok || c.run == nil {
		return fmt.Errorf("unknown command %q (iapd help lists them)", name)
	}
	sio := stdio{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	if wantsHelp(args) {
		sio.stderr = stdout // the flag set's usage, asked for
	}
	return c.run(ctx, args, sio)
}

// wantsHelp reports whether a help flag is among args (before "--").
func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if isHelpFlag(a) {
			return true
		}
	}
	return false
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
