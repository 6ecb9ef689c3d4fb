package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/iapd/iapd/rpc/admin"
	"github.com/iapd/iapd/storage"
)

// vouchersPerCall is the size of one create call (the admin API's bound:
// each call is one atomic write).
const vouchersPerCall = 500

// maxVoucherCount bounds one "vouchers create".
const maxVoucherCount = 100_000

// runVouchers is "iapd vouchers create|list": top-up codes users redeem on
// the credit page (rpc/portal). Codes are printed once, at creation: only
// their hashes are stored.
func runVouchers(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("vouchers: want create SERVICE AMOUNT or list (iapd help)")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "create":
		return runVouchersCreate(ctx, args, getenv, stdout, stderr)
	case "list", "ls":
		return runVouchersList(ctx, args, getenv, stdout, stderr)
	case "-h", "-help", "--help", "help":
		writeCommandUsage(stdout, "vouchers")
		return nil
	}
	return fmt.Errorf("vouchers: unknown sub-command %q: want create or list", sub)
}

func runVouchersCreate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("vouchers create", stderr,
		"iapd vouchers create SERVICE AMOUNT [-count N] [-expires T] [-batch LABEL] [-ops ADDR] [-json]")
	cf := addClientFlags(fs, getenv)
	count := fs.Int("count", 1, "number of `N` vouchers to issue")
	expires := fs.String("expires", "", "expiry: an RFC 3339 time, a date `YYYY-MM-DD` (end of that day, UTC) or a duration from now (90d, 720h); empty: never")
	batch := fs.String("batch", "", "operator's `label` of the batch (listed, never shown to users)")
	pos, err := parseArgs(fs, args, 2)
	if err != nil {
		return err
	}
	if !storage.ValidServiceName(pos[0]) {
		return fmt.Errorf("vouchers create: %q is not a valid service name", pos[0])
	}
	if a, err := storage.ParseCredits(pos[1]); err != nil || a <= 0 {
		return fmt.Errorf("vouchers create: amount %q: a positive number of credits is expected", pos[1])
	}
	if *count < 1 || *count > maxVoucherCount {
		return fmt.Errorf("vouchers create: -count must be from 1 to %d", maxVoucherCount)
	}
	exp, err := parseExpiry(*expires, time.Now())
	if err != nil {
		return fmt.Errorf("vouchers create: -expires: %w", err)
	}
	c, err := cf.client(getenv)
	if err != nil {
		return err
	}
	var all admin.IssuedVouchers
	for left := *count; left > 0; {
		n := min(left, vouchersPerCall)
		body := map[string]any{"service": pos[0], "amount": json.Number(pos[1]), "count": n, "batch": *batch}
		if !exp.IsZero() {
			body["expires_at"] = exp.UTC().Format(time.RFC3339)
		}
		var got admin.IssuedVouchers
		if err := c.call(ctx, "POST", "/v1/vouchers", nil, body, &got); err != nil {
			if len(all.Vouchers) > 0 {
				// The earlier calls' codes exist: print them before failing.
				_ = printVouchers(stdout, *cf.json, all)
				return fmt.Errorf("vouchers create: after %d of %d vouchers: %w", len(all.Vouchers), *count, err)
			}
			return fmt.Errorf("vouchers create: %w", err)
		}
		all.Vouchers = append(all.Vouchers, got.Vouchers...)
		left -= n
	}
	if err := printVouchers(stdout, *cf.json, all); err != nil {
		return err
	}
	if !*cf.json {
		fmt.Fprintf(stderr, "iapd: %d voucher codes printed above: they are shown only this once.\n", len(all.Vouchers))
	}
	return nil
}

func printVouchers(stdout io.Writer, asJSON bool, v admin.IssuedVouchers) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var out admin.IssuedVouchers
	return result(stdout, asJSON, raw, &out, func(w io.Writer) {
		fmt.Fprintln(w, "CODE\tSERVICE\tAMOUNT\tEXPIRES\tBATCH")
		for _, x := range out.Vouchers {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", x.Code, x.Service, x.Amount, orDash(x.ExpiresAt), orDash(x.Batch))
		}
	})
}

// parseExpiry reads -expires: RFC 3339, a date (the end of that day,
// UTC), or a duration from now with "d" for days.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.AddDate(0, 0, 1), nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 || n > 36600 {
			return time.Time{}, fmt.Errorf("%q: a positive number of days is expected", s)
		}
		return now.AddDate(0, 0, n), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time, YYYY-MM-DD, or a duration such as 90d or 720h", s)
	}
	return now.Add(d), nil
}

func runVouchersList(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("vouchers list", stderr,
		"iapd vouchers list [-service S] [-batch LABEL] [-redeemed true|false] [-limit N] [-after HASH] [-ops ADDR] [-json]")
	cf := addClientFlags(fs, getenv)
	service := fs.String("service", "", "only vouchers of `service`")
	batch := fs.String("batch", "", "only vouchers of batch `label`")
	redeemed := fs.String("redeemed", "", "`true`: only redeemed ones; false: only unused ones")
	limit := fs.Int("limit", 100, "at most `N` vouchers")
	after := fs.String("after", "", "continue after this `hash` (the \"next\" of a previous page)")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *limit <= 0 {
		return errors.New("vouchers list: -limit must be positive")
	}
	c, err := cf.client(getenv)
	if err != nil {
		return err
	}
	q := url.Values{"limit": {strconv.Itoa(*limit)}}
	for k, v := range map[string]string{"service": *service, "batch": *batch, "redeemed": *redeemed, "after": *after} {
		if v != "" {
			q.Set(k, v)
		}
	}
	var raw json.RawMessage
	if err := c.call(ctx, "GET", "/v1/vouchers", q, nil, &raw); err != nil {
		return fmt.Errorf("vouchers list: %w", err)
	}
	var l admin.VoucherList
	return result(stdout, *cf.json, raw, &l, func(w io.Writer) {
		fmt.Fprintln(w, "HASH\tSERVICE\tAMOUNT\tBATCH\tCREATED\tEXPIRES\tREDEEMED\tBY")
		for _, v := range l.Vouchers {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Hash, v.Service, v.Amount, orDash(v.Batch),
				orDash(v.CreatedAt), orDash(v.ExpiresAt), orDash(v.RedeemedAt), orDash(string(v.RedeemedBy)))
		}
		if l.Next != "" {
			fmt.Fprintf(w, "… more: -after %s\n", l.Next)
		}
	})
}
