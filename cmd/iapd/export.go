package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/iapd/iapd/rpc/admin"
)

// runExport streams ledger entries from the admin API as CSV or JSON lines,
// to standard output or a file (written under a temporary name, renamed
// once complete).
func runExport(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export", stderr,
		"iapd export [-format csv|jsonl] [-service S] [-account TOKEN] [-since T] [-until T] [-o FILE] [-ops ADDR]")
	cf := addClientFlags(fs, getenv)
	format := fs.String("format", "csv", "`csv` or jsonl")
	service := fs.String("service", "", "only this `service`")
	account := fs.String("account", "", "only this account `token`")
	since := fs.String("since", "", "only entries at or after `T` (RFC 3339 or YYYY-MM-DD, UTC)")
	until := fs.String("until", "", "only entries before `T` (RFC 3339 or YYYY-MM-DD, UTC)")
	out := fs.String("o", "-", "output `file` (- for standard output)")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *format != "csv" && *format != "jsonl" {
		return fmt.Errorf("export: -format %q: want csv or jsonl", *format)
	}
	q := url.Values{"format": {*format}}
	for name, v := range map[string]string{"since": *since, "until": *until} {
		if v == "" {
			continue
		}
		if _, err := admin.ParseExportTime(v); err != nil {
			return fmt.Errorf("export: -%s %q: %w", name, v, err)
		}
		q.Set(name, v)
	}
	if *service != "" {
		q.Set("service", *service)
	}
	if *account != "" {
		q.Set("token", *account)
	}
	c, err := cf.client(getenv)
	if err != nil {
		return err
	}
	body, err := c.stream(ctx, "/v1/export", q)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer body.Close()
	prog := newProgress(stderr, time.Now)
	if *out == "-" && writesToTerminal(stdout) {
		prog = nil
	}
	prog.Phase("export:", "bytes", 0)
	defer prog.Done()
	if *out == "-" {
		if _, err := io.Copy(countingWriter{stdout, prog}, body); err != nil {
			return fmt.Errorf("export: the export was cut short (the output is incomplete): %w", err)
		}
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".partial-*")
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer func() {
		if tmp != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	n, err := io.Copy(countingWriter{tmp, prog}, body)
	prog.Done()
	if err != nil {
		return fmt.Errorf("export: the export was cut short (nothing written to %s): %w", *out, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	tmp = nil
	fmt.Fprintf(stderr, "export: %d bytes written to %s\n", n, *out)
	return nil
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
