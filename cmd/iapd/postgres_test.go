package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iapd/iapd/rpc/admin"
	"github.com/iapd/iapd/rpc/sendflow"
	"github.com/iapd/iapd/rpc/sms"
	"github.com/iapd/iapd/rpc/snailmail"
	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
	"github.com/iapd/iapd/storage/postgres/pgtest"
)

// pgSchema is pgtest.Schema, with the shared cluster stopped after the
// package's tests (abuseCleanups, TestMain).
func pgSchema(t *testing.T) string {
	t.Helper()
	pgStopOnce.Do(func() { abuseCleanups = append(abuseCleanups, pgtest.Stop) })
	return pgtest.Schema(t)
}

var pgStopOnce sync.Once

// pgService creates a service through p's admin API and returns its key.
func pgService(t *testing.T, p *abuseProc, name string) string {
	t.Helper()
	var sk admin.ServiceKey
	if err := p.Admin.call(context.Background(), "POST", "/v1/services", nil, map[string]any{
		"name": name, "auto_register": true, "description": "postgres test",
	}, &sk); err != nil {
		t.Fatal(err)
	}
	return sk.Key
}

func pgAccount(t *testing.T, p *abuseProc, svc, tok string) admin.Account {
	t.Helper()
	var a admin.Account
	if err := p.Admin.call(context.Background(), "GET", "/v1/account", url.Values{"service": {svc}, "token": {tok}}, nil, &a); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestPostgresNodes (issue 16): three iapd processes on one PostgreSQL
// ledger under concurrent authorize/capture/cancel spread across them; one
// is SIGKILLed mid-run and restarted. Afterwards every acknowledged
// operation is in the ledger, as seen from any node; no account is
// overdrawn; the accounts' figures are what the operations make them; and
// verify is clean.
func TestPostgresNodes(t *testing.T) {
	// The test cluster trusts local connections: the password is sent
	// and ignored, and must appear in no log.
	const pw = "Pg-n0des-secret"
	ledger := strings.Replace(pgSchema(t), "postgres://iapd@", "postgres://iapd:"+pw+"@", 1)
	start := func(i int) *abuseProc {
		u := pgtest.WithParam(ledger, "application_name", fmt.Sprint("node", i)) // its own in-flight traces
		return startAbuse(t, abuseOpts{Args: []string{"-ledger", u, "-log-level", "info"}})
	}
	var nodes [3]*abuseProc
	for i := range nodes {
		nodes[i] = start(i)
	}
	const svc = "pgnodes"
	key := pgService(t, nodes[0], svc)
	const nAccts, credit = 6, 40
	accts := make([]string, nAccts)
	for i := range accts {
		accts[i] = randHex(16)
		if err := nodes[1].Admin.call(context.Background(), "POST", "/v1/account/credit", nil, map[string]any{
			"service": svc, "token": accts[i], "amount": json.Number(fmt.Sprint(credit)), "ref": "init",
		}, nil); err != nil {
			t.Fatal(err)
		}
	}

	// The model: what each acknowledged call did.
	type hold struct {
		acct  string
		state storage.TransactionState // held, captured, cancelled as acknowledged
	}
	var mu sync.Mutex
	holds := map[string]*hold{}
	var acked, refused, lost atomic.Int64
	var current [3]atomic.Pointer[abuseProc]
	for i := range nodes {
		current[i].Store(nodes[i])
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errc := make(chan error, 32)
	for w := 0; w < 9; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 16))
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				p := current[(w+n)%3].Load()
				acct := accts[rng.IntN(nAccts)]
				res, rerr, err := p.Call("/iap/1/authorize", map[string]any{
					"account_token": acct, "key": key, "credit": json.Number("1"), "description": "pg", "ttl": 3600,
				}, 30*time.Second)
				if err != nil {
					lost.Add(1) // the killed node: indeterminate
					continue
				}
				if rerr != nil {
					if !strings.HasSuffix(rerr.Name, "InsufficientCreditError") {
						errc <- fmt.Errorf("authorize: %v", rerr)
						return
					}
					refused.Add(1)
					continue
				}
				var tok string
				if json.Unmarshal(res, &tok) != nil || tok == "" {
					errc <- fmt.Errorf("authorize answered %s", res)
					return
				}
				h := &hold{acct: acct, state: storage.Held}
				mu.Lock()
				holds[tok] = h
				mu.Unlock()
				acked.Add(1)
				// Finish it on another node.
				op, want := "capture", storage.Captured
				if rng.IntN(3) == 0 {
					op, want = "cancel", storage.Cancelled
				}
				q := current[(w+n+1)%3].Load()
				_, rerr, err = q.Call("/iap/1/"+op, map[string]any{"token": tok, "key": key}, 30*time.Second)
				if err != nil {
					lost.Add(1)
					continue
				}
				if rerr != nil {
					errc <- fmt.Errorf("%s: %v", op, rerr)
					return
				}
				mu.Lock()
				h.state = want
				mu.Unlock()
				acked.Add(1)
			}
		}(w)
	}
	// Let the load run, SIGKILL node 2 with calls in flight, restart it.
	waitFor := func(n int64) {
		deadline := time.Now().Add(2 * time.Minute)
		for acked.Load() < n && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor(150)
	nodes[2].Kill()
	killedLog := nodes[2].Stderr.String()
	nodes[2] = start(2)
	current[2].Store(nodes[2])
	before := acked.Load()
	waitFor(before + 150)
	close(stop)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if acked.Load() < 300 {
		t.Fatalf("only %d calls acknowledged: the load did not run", acked.Load())
	}

	// Every acknowledged operation, read through a node that did not serve it.
	perAcct := map[string]storage.Credits{}
	for tok, h := range holds {
		var tr admin.Transaction
		if err := nodes[(len(tok))%3].Admin.call(context.Background(), "GET", "/v1/transaction", url.Values{"token": {tok}}, nil, &tr); err != nil {
			t.Fatalf("acknowledged hold %s: %v", tok, err)
		}
		if h.state != storage.Held && tr.State != h.state {
			t.Fatalf("hold %s: state %s, acknowledged %s", tok, tr.State, h.state)
		}
		if tr.State == storage.Captured {
			perAcct[h.acct] += tr.Captured
		}
	}
	for _, acct := range accts {
		a := pgAccount(t, nodes[0], svc, acct)
		if a.Available < 0 || a.Held < 0 || a.Recharged != a.Available+a.Held+a.Captured {
			t.Fatalf("account %s: %+v", acct, a)
		}
		if a.Recharged != storage.Credits(credit)*storage.Scale {
			t.Fatalf("account %s recharged %s, want %d", acct, a.Recharged, credit)
		}
		// Captures of holds whose authorize was lost in the kill are
		// unknown to the model: captured can only be more.
		if a.Captured < perAcct[acct] {
			t.Fatalf("account %s captured %s, acknowledged captures sum to %s", acct, a.Captured, perAcct[acct])
		}
	}
	var rep admin.VerifyReport
	if err := nodes[1].Admin.call(context.Background(), "GET", "/v1/verify", nil, nil, &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.Clean {
		t.Fatalf("verify: %+v", rep)
	}
	// The admin CLI against a node: verify clean, backup pointing to
	// PostgreSQL's tools, migrate finding the schema current (password
	// not printed).
	env := map[string]string{"IAPD_ADMIN_TOKEN": nodes[1].Token, "IAPD_OPS": strings.TrimPrefix(nodes[1].Ops, "http://")}
	cli := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errb)
		return out.String() + errb.String(), err
	}
	if out, err := cli("verify"); err != nil {
		t.Fatalf("iapd verify: %v\n%s", err, out)
	}
	if out, err := cli("backup", "-o", filepath.Join(t.TempDir(), "ledger.iapdbak")); err == nil || !strings.Contains(err.Error()+out, "pg_dump") {
		t.Fatalf("iapd backup on PostgreSQL: %v\n%s; want a refusal naming pg_dump", err, out)
	}
	exported := filepath.Join(t.TempDir(), "entries.jsonl")
	if out, err := cli("export", "-format", "jsonl", "-service", svc, "-o", exported); err != nil {
		t.Fatalf("iapd export: %v\n%s", err, out)
	}
	if raw, err := os.ReadFile(exported); err != nil || int64(strings.Count(string(raw), "\n")) != rep.Entries {
		t.Fatalf("iapd export: %d lines (%v), verify counted %d entries", strings.Count(string(raw), "\n"), err, rep.Entries)
	}
	if out, err := cli("migrate", "-ledger", ledger); err != nil || !strings.Contains(out, "current (version 1)") || strings.Contains(out, pw) {
		t.Fatalf("iapd migrate: %v\n%s", err, out)
	}

	t.Logf("3 nodes on PostgreSQL: %d calls acknowledged (%d holds), %d refused for credit, %d lost with the killed node; verify clean (%d entries)",
		acked.Load(), len(holds), refused.Load(), lost.Load(), rep.Entries)
	for _, p := range nodes {
		p.Stop()
	}
	for _, log := range []string{killedLog, nodes[0].Stderr.String(), nodes[1].Stderr.String(), nodes[2].Stderr.String()} {
		if strings.Contains(log, pw) {
			t.Fatalf("a node logged the ledger URL's password:\n%s", log)
		}
		if !strings.Contains(log, "ledger on PostgreSQL") || !strings.Contains(log, "xxxxx") {
			t.Fatalf("no redacted ledger line in the log:\n%.2000s", log)
		}
	}
}

// TestPostgresOutage (issue 16): PostgreSQL stopped under a running node:
// /readyz says 503, authorize answers an error Odoo understands (not a
// dropped connection) within its deadline and takes no credit; when the
// server is back the node serves again by itself.
func TestPostgresOutage(t *testing.T) {
	c := pgtest.Private(t)
	p := startAbuse(t, abuseOpts{Args: []string{"-ledger", c.URL}})
	key := pgService(t, p, "outage")
	acct := randHex(16)
	if err := p.Admin.call(context.Background(), "POST", "/v1/account/credit", nil, map[string]any{
		"service": "outage", "token": acct, "amount": json.Number("10"),
	}, nil); err != nil {
		t.Fatal(err)
	}
	authorize := func() (json.RawMessage, *rpcError, error) {
		return p.Call("/iap/1/authorize", map[string]any{"account_token": acct, "key": key, "credit": json.Number("1"), "ttl": 3600}, time.Minute)
	}
	if _, rerr, err := authorize(); err != nil || rerr != nil {
		t.Fatalf("authorize with PostgreSQL up: %v %v", rerr, err)
	}

	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		code, _ := p.Readyz()
		if code == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d a minute after PostgreSQL stopped", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	res, rerr, err := authorize()
	if err != nil || rerr == nil {
		t.Fatalf("authorize with PostgreSQL down: result %s, rpc error %v, err %v; want an rpc error", res, rerr, err)
	}
	t.Logf("authorize with PostgreSQL down: %s: %s", rerr.Name, rerr.Message)

	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(2 * time.Minute)
	for {
		code, _ := p.Readyz()
		if code == 200 {
			if _, rerr, err := authorize(); err == nil && rerr == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node did not serve again within 2 minutes of PostgreSQL's return\n%s", p.Stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	a := pgAccount(t, p, "outage", acct)
	if a.Held != 2*storage.Scale || a.Available != 8*storage.Scale {
		t.Fatalf("after the outage: %+v, want 2 held (the two acknowledged holds), 8 available", a)
	}
	// The backup command says what to use instead.
	var out strings.Builder
	err = p.Admin.call(context.Background(), "GET", "/v1/backup", nil, nil, &out)
	if err == nil || !strings.Contains(err.Error(), "pg_dump") {
		t.Fatalf("backup on PostgreSQL: %v, want a refusal naming pg_dump", err)
	}
	p.Stop()
}

// TestNodeScopedRecords: on a shared ledger the traces of sends in flight
// are each node's own (a node's start-up settlement lists only its own),
// while every other namespace is shared; the node's name comes from the
// URL's application_name, else the host name.
func TestNodeScopedRecords(t *testing.T) {
	l, err := badger.Open(badger.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	host := func() (string, error) { return "db-host 1", nil }
	a := scopedRecords{recordStore: l, node: nodeName("postgres://x@h/db?application_name=node-a", host)}
	b := scopedRecords{recordStore: l, node: nodeName("postgres://x@h/db", host)}
	if a.node != "node-a" || b.node != "db-host1" {
		t.Fatalf("node names %q, %q", a.node, b.node)
	}
	for _, ns := range []string{sms.OpenNamespace, sms.QueueNamespace, snailmail.OpenNamespace} {
		if err := a.PutRecord(ctx, ns, "send1/h", []byte("a's"), time.Time{}); err != nil {
			t.Fatal(err)
		}
		if rs, err := b.ListRecords(ctx, ns, "", 10); err != nil || len(rs) != 0 {
			t.Fatalf("%s: node b lists %v, %v; want none of node a's", ns, rs, err)
		}
		if rs, err := a.ListRecords(ctx, ns, "", 10); err != nil || len(rs) != 1 {
			t.Fatalf("%s: node a lists %v, %v; want its trace", ns, rs, err)
		}
		if _, err := b.GetRecord(ctx, ns, "send1/h"); !storage.Is(err, storage.NotFound) {
			t.Fatalf("%s: node b reads node a's trace: %v", ns, err)
		}
	}
	if _, made, err := a.PutRecordIfAbsent(ctx, "sms-uuid", "db/uuid1", []byte("x"), time.Time{}); err != nil || !made {
		t.Fatal(made, err)
	}
	if v, made, err := b.PutRecordIfAbsent(ctx, "sms-uuid", "db/uuid1", []byte("y"), time.Time{}); err != nil || made || string(v) != "x" {
		t.Fatalf("shared namespace: node b created %v (%q, %v); want node a's claim", made, v, err)
	}
	// A send's claims in a shared namespace go with its hold (one ledger
	// change); in a node-scoped one they could not (the ledger would write
	// them unscoped), so the send claims first.
	if sendflow.ClaimsOf(l, a, "sms-uuid") == nil {
		t.Error("claims in a shared namespace: ClaimsOf nil, want the ledger's AuthorizeClaims")
	}
	if sendflow.ClaimsOf(l, a, sms.OpenNamespace) != nil {
		t.Error("claims in a node-scoped namespace would go with the hold, unscoped")
	}
}

// TestPostgresSMSAcrossNodes: an SMS sent through one node and retried by
// Odoo through another (same uuid) is sent and charged once: the uuids
// handled are shared by the nodes.
func TestPostgresSMSAcrossNodes(t *testing.T) {
	ledger := pgSchema(t)
	var nodes [2]*abuseProc
	for i := range nodes {
		nodes[i] = startAbuse(t, abuseOpts{Args: []string{"-ledger", pgtest.WithParam(ledger, "application_name", fmt.Sprint("sms", i))}})
	}
	tok := randHex(16)
	if err := nodes[0].Admin.call(context.Background(), "POST", "/v1/account/credit", nil, map[string]any{
		"service": "sms", "token": tok, "amount": json.Number("10"),
	}, nil); err != nil {
		t.Fatal(err)
	}
	send := func(p *abuseProc) string {
		t.Helper()
		res, rerr, err := p.Call("/api/sms/3/send", map[string]any{
			"account_token": tok, "dbuuid": "pg-sms", "webhook_url": "http://127.0.0.1:1/sms/status",
			"messages": []any{map[string]any{"content": "Hello", "numbers": []any{map[string]any{"number": "+32470123456", "uuid": "5d1e0c3bd6a14b1f9a0f2c1b8e7d6c5a"}}}},
		}, time.Minute)
		if err != nil || rerr != nil {
			t.Fatalf("SMS send: %v %v", rerr, err)
		}
		return string(res)
	}
	first := send(nodes[0])
	if !strings.Contains(first, `"success"`) {
		t.Fatalf("first send: %s", first)
	}
	charged := pgAccount(t, nodes[1], "sms", tok).Captured
	if charged <= 0 {
		t.Fatalf("first send charged %s", charged)
	}
	if again := send(nodes[1]); !strings.Contains(again, `"success"`) {
		t.Fatalf("retry through the other node: %s", again)
	}
	if a := pgAccount(t, nodes[0], "sms", tok); a.Captured != charged || a.Held != 0 {
		t.Fatalf("after the retry: captured %s held %s, want %s and 0", a.Captured, a.Held, charged)
	}
	for _, p := range nodes {
		p.Stop()
	}
}

// TestLedgerConfig: ledger comes from -ledger, else the file, else
// IAPD_LEDGER; anything but a postgres:// URL is refused without echoing
// it.
func TestLedgerConfig(t *testing.T) {
	env := map[string]string{"IAPD_LEDGER": "postgres://iapd:env-secret@db/iapd"}
	getenv := func(k string) string { return env[k] }
	cfg, err := loadServeConfig(nil, getenv, io.Discard)
	if err != nil || cfg.Ledger != env["IAPD_LEDGER"] {
		t.Fatalf("from IAPD_LEDGER: %q, %v", cfg.Ledger, err)
	}
	file := filepath.Join(t.TempDir(), "iapd.yaml")
	if err := os.WriteFile(file, []byte("ledger: postgresql://iapd@file/iapd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err = loadServeConfig([]string{"-config", file}, getenv, io.Discard); err != nil || cfg.Ledger != "postgresql://iapd@file/iapd" {
		t.Fatalf("from the file: %q, %v", cfg.Ledger, err)
	}
	if cfg, err = loadServeConfig([]string{"-config", file, "-ledger", "postgres://iapd@flag/iapd"}, getenv, io.Discard); err != nil || cfg.Ledger != "postgres://iapd@flag/iapd" {
		t.Fatalf("from the flag: %q, %v", cfg.Ledger, err)
	}
	_, err = loadServeConfig([]string{"-ledger", "mysql://root:flag-secret@db/iapd"}, getenv, io.Discard)
	if err == nil || strings.Contains(err.Error(), "flag-secret") || !strings.Contains(err.Error(), "postgres://") {
		t.Fatalf("a MySQL URL: %v", err)
	}
	if w := ledgerWhere(Config{Ledger: env["IAPD_LEDGER"]}); strings.Contains(w, "env-secret") || !strings.Contains(w, "xxxxx") {
		t.Fatalf("ledgerWhere: %q", w)
	}
}
