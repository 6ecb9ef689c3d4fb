package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/iapd/iapd/rpc/admin"
	"github.com/iapd/iapd/storage"
)

// result prints an admin API answer: raw JSON with -json, else the table
// that table writes after raw is decoded into v.
func result(stdout io.Writer, asJSON bool, raw json.RawMessage, v any, table func(w io.Writer)) error {
	if asJSON {
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return err
		}
		buf.WriteByte('\n')
		_, err := stdout.Write(buf.Bytes())
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decoding the answer: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ---- services ----

func runServices(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("services: want list, create NAME or rotate-key NAME (iapd help)")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "-h", "-help", "--help", "help":
		writeCommandUsage(stdout, "services")
		return nil
	case "list", "ls":
		fs := newFlagSet("services list", stderr, "iapd services list [-ops ADDR] [-json]")
		cf := addClientFlags(fs, getenv)
		if _, err := parseArgs(fs, args, 0); err != nil {
			return err
		}
		c, err := cf.client(getenv)
		if err != nil {
			return err
		}
		var raw json.RawMessage
		if err := c.call(ctx, "GET", "/v1/services", nil, nil, &raw); err != nil {
			return fmt.Errorf("services list: %w", err)
		}
		var out struct{ Services []admin.Service }
		return result(stdout, *cf.json, raw, &out, func(w io.Writer) {
			fmt.Fprintln(w, "NAME\tKEY\tAUTO-REGISTER\tTRIAL\tUNIT\tDESCRIPTION")
			for _, s := range out.Services {
				key := "none"
				if s.HasKey {
					key = "set"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, key, yesNo(s.AutoRegister), s.TrialCredits, s.UnitName, orDash(s.Description))
			}
		})

	case "create":
		fs := newFlagSet("services create", stderr,
			"iapd services create NAME [-key-stdin] [-trial N] [-auto-register=false] [-description D] [-unit U]")
		cf := addClientFlags(fs, getenv)
		keyStdin := fs.Bool("key-stdin", false, "import the service key from standard input (first line) instead of generating one")
		trial := fs.String("trial", "0", "trial `credits` given to each new account")
		autoReg := fs.Bool("auto-register", true, "register accounts on first sight (else they start unregistered)")
		desc := fs.String("description", "", "`text` shown in Odoo's account list")
		unit := fs.String("unit", "Credits", "`name` of the unit of credit")
		pos, err := parseArgs(fs, args, 1)
		if err != nil {
			return err
		}
		if _, err := storage.ParseCredits(*trial); err != nil {
			return fmt.Errorf("services create: -trial %q: %w", *trial, err)
		}
		c, err := cf.client(getenv)
		if err != nil {
			return err
		}
		body := map[string]any{
			"name": pos[0], "trial_credits": json.Number(*trial), "auto_register": *autoReg,
			"description": *desc, "unit_name": *unit,
		}
		if *keyStdin {
			k, err := readKey(stdin)
			if err != nil {
				return fmt.Errorf("services create: %w", err)
			}
			body["key"] = k
		}
		var raw json.RawMessage
		if err := c.call(ctx, "POST", "/v1/services", nil, body, &raw); err != nil {
			return fmt.Errorf("services create %s: %w", pos[0], err)
		}
		return printKey(stdout, stderr, *cf.json, raw, *keyStdin, "created")

	case "rotate-key":
		fs := newFlagSet("services rotate-key", stderr, "iapd services rotate-key NAME [-key-stdin]")
		cf := addClientFlags(fs, getenv)
		keyStdin := fs.Bool("key-stdin", false, "import the new key from standard input (first line) instead of generating one")
		pos, err := parseArgs(fs, args, 1)
		if err != nil {
			return err
		}
		c, err := cf.client(getenv)
		if err != nil {
			return err
		}
		body := map[string]any{}
		if *keyStdin {
			k, err := readKey(stdin)
			if err != nil {
				return fmt.Errorf("services rotate-key: %w", err)
			}
			body["key"] = k
		}
		if !storage.ValidServiceName(pos[0]) {
			return fmt.Errorf("services rotate-key: %q is not a valid service name", pos[0])
		}
		var raw json.RawMessage
		if err := c.call(ctx, "POST", "/v1/services/"+pos[0]+"/key", nil, body, &raw); err != nil {
			return fmt.Errorf("services rotate-key %s: %w", pos[0], err)
		}
		return printKey(stdout, stderr, *cf.json, raw, *keyStdin, "has a new key")
	}
	return fmt.Errorf("services: unknown sub-command %q (want list, create or rotate-key)", sub)
}

// readKey reads a key from the first line of r.
func readKey(r io.Reader) (string, error) {
	if r == nil {
		return "", errors.New("-key-stdin: no standard input")
	}
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("-key-stdin: %w", err)
	}
	k := strings.TrimSpace(line)
	if k == "" {
		return "", errors.New("-key-stdin: standard input holds no key")
	}
	return k, nil
}

// printKey shows a service and its key, which the admin API shows once.
func printKey(stdout, stderr io.Writer, asJSON bool, raw json.RawMessage, imported bool, what string) error {
	var sk admin.ServiceKey
	if asJSON {
		return result(stdout, true, raw, &sk, nil)
	}
	if err := json.Unmarshal(raw, &sk); err != nil {
		return fmt.Errorf("decoding the answer: %w", err)
	}
	fmt.Fprintf(stdout, "service %s %s\n", sk.Service.Name, what)
	if imported {
		fmt.Fprintln(stdout, "key: (the key read from standard input)")
		return nil
	}
	fmt.Fprintf(stdout, "key: %s\n", sk.Key)
	fmt.Fprintln(stderr, "Store this key now: iapd keeps only its hash and cannot show it again.")
	return nil
}

// ---- accounts ----

func runAccounts(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("accounts: want list, show, ban, unban or register (iapd help)")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "-h", "-help", "--help", "help":
		writeCommandUsage(stdout, "accounts")
		return nil
	case "list", "ls":
		return accountsList(ctx, args, getenv, stdout, stderr)
	case "show":
		fs := newFlagSet("accounts show", stderr, "iapd accounts show SERVICE TOKEN [-ops ADDR] [-json]")
		cf := addClientFlags(fs, getenv)
		pos, err := parseArgs(fs, args, 2)
		if err != nil {
			return err
		}
		c, err := cf.client(getenv)
		if err != nil {
			return err
		}
		var raw json.RawMessage
		if err := c.call(ctx, "GET", "/v1/account", url.Values{"service": {pos[0]}, "token": {pos[1]}}, nil, &raw); err != nil {
			return fmt.Errorf("accounts show: %w", err)
		}
		var a admin.Account
		return result(stdout, *cf.json, raw, &a, func(w io.Writer) { accountTable(w, a) })
	case "ban", "unban", "register":
		synopsis := "iapd accounts " + sub + " SERVICE TOKEN [-ops ADDR] [-json]"
		if sub == "register" {
			synopsis = "iapd accounts register SERVICE TOKEN [-any-token] [-ops ADDR] [-json]"
		}
		fs := newFlagSet("accounts "+sub, stderr, synopsis)
		cf := addClientFlags(fs, getenv)
		var anyToken *bool
		if sub == "register" { // creates the account if absent
			anyToken = fs.Bool("any-token", false, "accept a TOKEN that is not 32 lowercase hex characters (Odoo generates only those)")
		}
		pos, err := parseArgs(fs, args, 2)
		if err != nil {
			return err
		}
		if anyToken != nil {
			if err := checkOdooToken("accounts register", pos[1], *anyToken); err != nil {
				return err
			}
		}
		c, err := cf.client(getenv)
		if err != nil {
			return err
		}
		var raw json.RawMessage
		if err := c.call(ctx, "POST", "/v1/account/"+sub, nil, map[string]string{"service": pos[0], "token": pos[1]}, &raw); err != nil {
			return fmt.Errorf("accounts %s: %w", sub, err)
		}
		var a admin.StateChange
		return result(stdout, *cf.json, raw, &a, func(w io.Writer) {
			if !a.Changed {
				fmt.Fprintf(w, "%s/%s: %s already (nothing changed)\n", a.Service, a.Token, a.State)
				return
			}
			fmt.Fprintf(w, "%s/%s: %s\n", a.Service, a.Token, a.State)
		})
	}
	return fmt.Errorf("accounts: unknown sub-command %q (want list, show, ban, unban or register)", sub)
}

func accountsList(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("accounts list", stderr, "iapd accounts list [-service S] [-state S] [-limit N] [-ops ADDR] [-json]")
	cf := addClientFlags(fs, getenv)
	service := fs.String("service", "", "only this `service`")
	state := fs.String("state", "", "only this `state`: registered, unregistered or banned")
	limit := fs.Int("limit", 0, "at most `N` accounts (0: all)")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *limit < 0 {
		return errors.New("accounts list: -limit must not be negative")
	}
	c, err := cf.client(getenv)
	if err != nil {
		return err
	}
	var all []admin.Account
	after := ""
	for {
		q := url.Values{"limit": {"1000"}}
		if *limit > 0 && *limit-len(all) < 1000 {
			q.Set("limit", strconv.Itoa(*limit-len(all)))
		}
		for k, v := range map[string]string{"service": *service, "state": *state, "after": after} {
			if v != "" {
				q.Set(k, v)
			}
		}
		var page admin.AccountList
		if err := c.call(ctx, "GET", "/v1/accounts", q, nil, &page); err != nil {
			return fmt.Errorf("accounts list: %w", err)
		}
		all = append(all, page.Accounts...)
		if page.Next == "" || (*limit > 0 && len(all) >= *limit) {
			break
		}
		after = page.Next
	}
	if *cf.json {
		b, err := json.MarshalIndent(struct {
			Accounts []admin.Account `json:"accounts"`
		}{Accounts: append([]admin.Account{}, all...)}, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SERVICE\tTOKEN\tSTATE\tAVAILABLE\tHELD\tCAPTURED\tRECHARGED\t")
	for _, a := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", a.Service, a.Token, a.State, a.Available, a.Held, a.Captured, a.Recharged)
	}
	return tw.Flush()
}

func accountTable(w io.Writer, a admin.Account) {
	row := func(k string, v any) { fmt.Fprintf(w, "%s\t%v\n", k, v) }
	row("service", a.Service)
	row("token", a.Token)
	row("state", a.State)
	row("available", a.Available)
	row("held", a.Held)
	row("captured", a.Captured)
	row("recharged", a.Recharged)
	alerts := "off"
	if a.Alerts.Enabled {
		var who []string
		for _, r := range a.Alerts.Recipients {
			who = append(who, r.Email)
		}
		alerts = fmt.Sprintf("below %s, to %s", a.Alerts.Threshold, orDash(strings.Join(who, ", ")))
	}
	row("alerts", alerts)
	if a.SenderName != "" {
		row("sender name", a.SenderName)
	}
	row("database", orDash(a.DBUUID))
	row("entries", a.Seq)
	row("created", orDash(a.CreatedAt))
	row("updated", orDash(a.UpdatedAt))
}

// ---- account tokens ----

// odooTokenLen is the length of the account tokens Odoo generates:
// uuid4().hex, 32 lowercase hexadecimal characters, in 16.0 to 19.0
// (addons/iap/models/iap_account.py, the default of account_token;
// PROTOCOL §3).
const odooTokenLen = 32

// checkOdooToken refuses, for the commands that create an account (credit,
// accounts register), a token Odoo could not have generated: a typo would
// otherwise get an account, and its credit, that no Odoo ever uses. A
// "+suffix" (+disabled on a neutralised database) is allowed: the account
// is the prefix's. anyToken (-any-token) skips the check, for tokens of
// another shape (one pasted into Odoo by hand, say). The error describes
// the token without echoing it.
func checkOdooToken(op, tok string, anyToken bool) error {
	if anyToken {
		return nil
	}
	prefix, _, _ := strings.Cut(tok, "+")
	var problem string
	switch {
	case len(prefix) != odooTokenLen:
		problem = fmt.Sprintf("it has %d characters", len(prefix))
	case strings.ToLower(prefix) != prefix:
		problem = "it has uppercase letters"
	case strings.Trim(prefix, "0123456789abcdef") != "":
		problem = "it has characters other than 0-9 and a-f"
	default:
		return nil
	}
	return fmt.Errorf("%s: the token given is not an account token Odoo generates (%d lowercase hexadecimal characters): %s. "+
		"Copy the token from Odoo (developer mode: Settings > Technical > IAP > IAP Accounts), or pass -any-token to use a token of another shape",
		op, odooTokenLen, problem)
}

// ---- credit, history, transaction ----

func runCredit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("credit", stderr, "iapd credit SERVICE TOKEN AMOUNT [-ref REF] [-description D] [-any-token] [-ops ADDR] [-json]")
	cf := addClientFlags(fs, getenv)
	ref := fs.String("ref", "", "idempotency `reference`: repeating the call with it changes nothing (and says so)")
	desc := fs.String("description", "", "`text` recorded with the entry")
	anyToken := fs.Bool("any-token", false, "accept a TOKEN that is not 32 lowercase hex characters (Odoo generates only those)")
	pos, err := parseArgs(fs, args, 3)
	if err != nil {
		return err
	}
	if err := checkOdooToken("credit", pos[1], *anyToken); err != nil {
		return err
	}
	if _, err := storage.ParseSignedCredits(pos[2]); err != nil {
		return fmt.Errorf("credit: amount %q: %w", pos[2], err)
	}
	c, err := cf.client(getenv)
	if err != nil {
		return err
	}
	body := map[string]any{"service": pos[0], "token": pos[1], "amount": json.Number(pos[2]), "ref": *ref, "description": *desc}
	var raw json.RawMessage
	if err := c.call(ctx, "POST", "/v1/account/credit", nil, body, &raw); err != nil {
		return fmt.Errorf("credit: %w", err)
	}
	// A repeated -ref is a success (exit 0: what the retry wanted holds),
	// said to be one that applied nothing.
	var cr admin.Credit
	return result(stdout, *cf.json, raw, &cr, func(w io.Writer) {
		if cr.Replayed {
			fmt.Fprintf(w, "nothing applied: ref %q was already applied as entry %d (%s of %s on %s/%s, %s); available %s, held %s\n",
				cr.Entry.Ref, cr.Entry.Seq, cr.Entry.Kind, cr.Entry.Amount, cr.Account.Service, cr.Account.Token, cr.Entry.Time,
				cr.Account.Available, cr.Account.Held)
			return
		}
		fmt.Fprintf(w, "%s of %s on %s/%s (entry %d); available %s, held %s\n",
			cr.Entry.Kind, cr.Entry.Amount, cr.Account.Service, cr.Account.Token, cr.Entry.Seq, cr.Account.Available, cr.Account.Held)
	})
}

func runHistory(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("history", stderr, "iapd history SERVICE TOKEN [-limit N] [-before SEQ] [-ops ADDR] [-json]")
	cf := addClientFlags(fs, getenv)
	limit := fs.Int("limit", 20, "at most `N` entries, newest first")
	before := fs.Uint64("before", 0, "only entries older than entry `SEQ`")
	pos, err := parseArgs(fs, args, 2)
	if err != nil {
		return err
	}
	if *limit <= 0 {
		return errors.New("history: -limit must be positive")
	}
	c, err := cf.client(getenv)
	if err != nil {
		return err
	}
	q := url.Values{"service": {pos[0]}, "token": {pos[1]}, "limit": {strconv.Itoa(*limit)}}
	if *before > 0 {
		q.Set("before", strconv.FormatUint(*before, 10))
	}
	var raw json.RawMessage
	if err := c.call(ctx, "GET", "/v1/account/history", q, nil, &raw); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	var h admin.History
	return result(stdout, *cf.json, raw, &h, func(w io.Writer) {
		fmt.Fprintln(w, "SEQ\tTIME\tKIND\tAMOUNT\tAVAILABLE±\tHELD±\tTRANSACTION\tREF\tDESCRIPTION")
		for _, e := range h.Entries {
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time, e.Kind, e.Amount, e.DAvailable, e.DHeld,
				orDash(e.Transaction), orDash(e.Ref), orDash(e.Description))
		}
		if h.Next != 0 {
			fmt.Fprintf(w, "… older entries: -before %d\n", h.Next)
		}
	})
}

func runTransaction(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("transaction", stderr, "iapd transaction TOKEN [-ops ADDR] [-json]")
	cf := addClientFlags(fs, getenv)
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	c, err := cf.client(getenv)
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := c.call(ctx, "GET", "/v1/transaction", url.Values{"token": {pos[0]}}, nil, &raw); err != nil {
		return fmt.Errorf("transaction: %w", err)
	}
	var t admin.Transaction
	return result(stdout, *cf.json, raw, &t, func(w io.Writer) {
		row := func(k string, v any) { fmt.Fprintf(w, "%s\t%v\n", k, v) }
		row("transaction", t.Token)
		row("service", t.Service)
		row("account", t.Account)
		row("state", t.State)
		row("amount", t.Amount)
		row("captured", t.Captured)
		row("description", orDash(t.Description))
		row("created", orDash(t.CreatedAt))
		row("expires", orDash(t.ExpiresAt))
		row("ended", orDash(t.EndedAt))
	})
}
