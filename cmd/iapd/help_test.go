package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"regexp"
	"strings"
	"testing"
)

// runHelp runs iapd with args as main would and returns its stdout; help
// that was asked for is not an error.
func runHelp(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("iapd %s: %v\nstderr: %s", strings.Join(args, " "), err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Fatalf("iapd %s: help went to stderr: %s", strings.Join(args, " "), stderr.String())
	}
	return stdout.String()
}

// TestHelpListsEveryCommand: "iapd --help", "-h", "-help" and "iapd help"
// print the same text, which has every synopsis of the command table (the
// table run dispatches on: a command cannot be added without a line here).
func TestHelpListsEveryCommand(t *testing.T) {
	want := runHelp(t, "help")
	for _, args := range [][]string{{"--help"}, {"-h"}, {"-help"}} {
		if got := runHelp(t, args...); got != want {
			t.Errorf("iapd %s differs from iapd help:\n%s", args[0], got)
		}
	}
	for _, c := range commands() {
		if len(c.synopses) == 0 || !strings.Contains(want, "\n  iapd "+c.names[0]) && c.names[0] != "serve" {
			t.Errorf("command %s is not in iapd help", c.names[0])
		}
		for _, s := range c.synopses {
			if !strings.Contains(want, "\n  "+s+"\n") {
				t.Errorf("iapd help lacks %q", s)
			}
			if !strings.HasPrefix(s, "iapd "+c.names[0]) && !(c.names[0] == "serve" && strings.HasPrefix(s, "iapd [serve]")) &&
				!(c.names[0] == "restore" && strings.HasPrefix(s, "iapd verify")) {
				t.Errorf("synopsis %q of command %s names another command", s, c.names[0])
			}
		}
		for _, sub := range c.subs {
			if !regexp.MustCompile(`(?m)^  iapd ` + c.names[0] + ` (\S+\|)?` + regexp.QuoteMeta(sub) + `\b`).MatchString(want) {
				t.Errorf("iapd help lacks iapd %s %s", c.names[0], sub)
			}
		}
	}
	if !strings.Contains(want, "iapd credit SERVICE TOKEN AMOUNT") || !strings.Contains(want, "iapd vouchers create") {
		t.Fatalf("help: %s", want)
	}
}

// TestHelpOfEachCommandListsItsFlags: "iapd CMD -h" (and "iapd CMD SUB
// -h") prints its usage on stdout, and every flag its synopsis in iapd
// help names is among the flags it lists; "iapd help CMD" is the same.
func TestHelpOfEachCommandListsItsFlags(t *testing.T) {
	flagRE := regexp.MustCompile(`(?:\[|\s)(-[a-z][a-z-]*)`)
	for _, c := range commands() {
		if c.run == nil { // help itself
			continue
		}
		var invocations [][]string
		if len(c.subs) == 0 {
			invocations = append(invocations, []string{c.names[0]})
		} else {
			out := runHelp(t, c.names[0], "-h")
			for _, s := range c.synopses {
				if !strings.Contains(out, s) {
					t.Errorf("iapd %s -h lacks %q:\n%s", c.names[0], s, out)
				}
			}
			for _, sub := range c.subs {
				invocations = append(invocations, []string{c.names[0], sub})
			}
		}
		for _, inv := range invocations {
			out := runHelp(t, append(inv, "-h")...)
			if !strings.HasPrefix(out, "usage: ") {
				t.Errorf("iapd %s -h: no usage line:\n%s", strings.Join(inv, " "), out)
				continue
			}
			if c.section == secAdmin && !strings.Contains(out, "  -ops ") {
				t.Errorf("iapd %s -h does not list -ops:\n%s", strings.Join(inv, " "), out)
			}
			if got := runHelp(t, append([]string{"help"}, inv...)...); got != out {
				t.Errorf("iapd help %s differs from iapd %s -h", strings.Join(inv, " "), strings.Join(inv, " "))
			}
			// The flags the help's synopses of this (sub-)command name
			// are the flags it has (-ops and -json: said once for all).
			named := map[string]bool{"-ops": true, "-json": true}
			for _, cc := range commands() {
				for _, s := range cc.synopses {
					words := strings.Fields(strings.ReplaceAll(s, "[serve]", "serve"))
					if words[1] != inv[0] || len(inv) == 2 && !strings.Contains("|"+words[2]+"|", "|"+inv[1]+"|") {
						continue
					}
					for _, m := range flagRE.FindAllStringSubmatch(s, -1) {
						named[m[1]] = true
						if !strings.Contains(out, "\n  "+m[1]+" ") && !strings.Contains(out, "\n  "+m[1]+"\n") {
							t.Errorf("iapd %s -h does not list %s (named in %q):\n%s", strings.Join(inv, " "), m[1], s, out)
						}
					}
				}
			}
			for _, m := range regexp.MustCompile(`(?m)^  (-[a-z-]+)`).FindAllStringSubmatch(out, -1) {
				if !named[m[1]] {
					t.Errorf("iapd help does not name %s of iapd %s", m[1], strings.Join(inv, " "))
				}
			}
		}
	}
}
