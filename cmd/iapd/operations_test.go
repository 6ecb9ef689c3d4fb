package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dgbadger "github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/rpc/admin"
	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

// ---- an iapd process ----

// opsProc is one iapd serve process of the operations tests.
type opsProc struct {
	t      *testing.T
	bin    string
	data   string
	token  string
	cmd    *exec.Cmd
	exited chan error
	stderr *syncBuffer
	public string // http://host:port
	ops    string // host:port
	admin  *adminClient
}

func startOpsProc(t *testing.T, bin, data, token string, extra ...string) *opsProc {
	t.Helper()
	p := &opsProc{t: t, bin: bin, data: data, token: token, stderr: &syncBuffer{}}
	args := append([]string{"serve", "-listen", "127.0.0.1:0", "-ops-listen", "127.0.0.1:0", "-data", data, "-log-level", "warn"}, extra...)
	var ops string
	p.cmd, p.exited, p.public, ops = launch(t, bin, args, []string{"IAPD_ADMIN_TOKEN=" + token}, p.stderr)
	p.ops = strings.TrimPrefix(ops, "http://")
	p.admin = &adminClient{base: "http://" + p.ops, token: token, hc: &http.Client{Timeout: 30 * time.Second}}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if resp, err := http.Get("http://" + p.ops + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("iapd never became ready\n%s", p.stderr.String())
		}
	}
	return p
}

// stop sends SIGTERM and waits for a clean exit.
func (p *opsProc) stop() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		if err != nil {
			p.t.Fatalf("iapd did not exit cleanly on SIGTERM: %v\n%s", err, p.stderr.String())
		}
	case <-time.After(60 * time.Second):
		p.t.Fatalf("iapd did not stop on SIGTERM\n%s", p.stderr.String())
	}
	if s := p.stderr.String(); strings.Contains(s, "DATA RACE") || strings.Contains(s, "panic:") {
		p.t.Fatalf("iapd reported a race or a panic:\n%s", s)
	}
}

// cli runs the iapd binary with args against p's ops listener.
func (p *opsProc) cli(args ...string) (string, error) {
	cmd := exec.Command(p.bin, args...)
	cmd.Env = append(os.Environ(), "IAPD_ADMIN_TOKEN="+p.token, "IAPD_OPS="+p.ops)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// rpc posts one JSON-RPC call as Odoo's iap_jsonrpc does and returns the
// result; an answered error is an error too.
func rpcCall(hc *http.Client, base, path string, params map[string]any) (json.RawMessage, error) {
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": 1, "params": params})
	resp, err := hc.Post(base+path, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var env struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Data struct{ Name, Message string } `json:"data"`
		} `json:"error"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, fmt.Errorf("HTTP %d, %s: %w", resp.StatusCode, raw, err)
	}
	if env.Error != nil {
		return nil, fmt.Errorf("%s: %s", env.Error.Data.Name, env.Error.Data.Message)
	}
	return env.Result, nil
}

// TestOperations runs the operator tasks on the real binary, built once.
func TestOperations(t *testing.T) {
	bin := buildIapd(t)
	t.Run("BackupUnderLoad", func(t *testing.T) { testBackupUnderLoad(t, bin) })
	t.Run("GracefulShutdown", func(t *testing.T) { testGracefulShutdown(t, bin) })
}

// ---- backup under load, restore, second iapd ----

// opRecord is one acknowledged operation on a transaction.
type opRecord struct {
	token   string
	account string
	state   storage.TransactionState // held (authorize), captured, cancelled
	amount  storage.Credits          // held, or captured
	seq     int64                    // acknowledgement order
	// sentAfter: the request was sent after the backup had ended. (A
	// late seq does not say so: the worker may have got its answer
	// before the backup and recorded it only after, on a busy CPU.)
	sentAfter bool
}

// testBackupUnderLoad drives iapd with concurrent authorize/capture/cancel
// calls, takes a backup with "iapd backup" mid-load, restores it with
// "iapd restore" into a new directory, starts a second iapd on it and
// checks: every operation acknowledged before the backup began is there
// in its acknowledged state, nothing authorized after the backup ended is,
// every account is exact (recharged = available + held + captured, and the
// figures are what its transactions make them), and "iapd verify" (offline
// and online) is clean.
func testBackupUnderLoad(t *testing.T, bin string) {
	ctx := context.Background()
	token := randHex(16)
	a := startOpsProc(t, bin, filepath.Join(t.TempDir(), "a"), token)
	var sk admin.ServiceKey
	if err := a.admin.call(ctx, "POST", "/v1/services", nil, map[string]any{"name": "backed", "auto_register": true}, &sk); err != nil {
		t.Fatal(err)
	}
	const nAccts = 8
	accts := make([]string, nAccts)
	for i := range accts {
		accts[i] = randHex(16)
		if err := a.admin.call(ctx, "POST", "/v1/account/credit", nil, map[string]any{
			"service": "backed", "token": accts[i], "amount": 1000000, "ref": "init",
		}, nil); err != nil {
			t.Fatal(err)
		}
	}

	var (
		mu       sync.Mutex
		ops      []opRecord
		ackSeq   atomic.Int64
		backedUp atomic.Bool // the backup command has returned
		stop     atomic.Bool
		wg       sync.WaitGroup
		failure  = make(chan error, 16)
	)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	record := func(r opRecord) {
		mu.Lock()
		r.seq = ackSeq.Add(1)
		ops = append(ops, r)
		mu.Unlock()
	}
	amounts := []storage.Credits{5000, 10000, 22500, 30000}
	for w := 0; w < 12; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(w), 42))
			for !stop.Load() {
				acct := accts[rng.IntN(nAccts)]
				amount := amounts[rng.IntN(len(amounts))]
				sentAfter := backedUp.Load()
				res, err := rpcCall(hc, a.public, "/iap/1/authorize", map[string]any{
					"account_token": acct, "key": sk.Key, "credit": json.Number(amount.String()), "description": "backup drill", "ttl": 1,
				})
				var txn string
				if err == nil {
					err = json.Unmarshal(res, &txn)
				}
				if err != nil {
					failure <- fmt.Errorf("authorize: %w", err)
					return
				}
				record(opRecord{token: txn, account: acct, state: storage.Held, amount: amount, sentAfter: sentAfter})
				var state storage.TransactionState
				var captured storage.Credits
				switch r := rng.IntN(10); {
				case r < 5:
					_, err = rpcCall(hc, a.public, "/iap/1/capture", map[string]any{"token": txn, "key": sk.Key, "credit_to_capture": json.Number(amount.String())})
					state, captured = storage.Captured, amount
				case r < 7:
					_, err = rpcCall(hc, a.public, "/iap/1/capture", map[string]any{"token": txn, "key": sk.Key, "credit_to_capture": json.Number((amount / 2).String())})
					state, captured = storage.Captured, amount/2
				case r < 9:
					_, err = rpcCall(hc, a.public, "/iap/1/cancel", map[string]any{"token": txn, "key": sk.Key})
					state = storage.Cancelled
				default:
					continue // left open
				}
				if err != nil {
					failure <- fmt.Errorf("%s: %w", state, err)
					return
				}
				record(opRecord{token: txn, account: acct, state: state, amount: captured})
			}
		}()
	}

	// waitLoad waits (a minute at most: a shared CPU makes the load slow,
	// not absent) until cond holds of the acknowledged operations.
	waitLoad := func(what string, cond func() bool) {
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
			mu.Lock()
			ok := cond()
			mu.Unlock()
			if ok {
				return
			}
			select {
			case err := <-failure:
				t.Fatalf("load: %v\n%s", err, a.stderr.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("the load did not run: %s in a minute", what)
			}
		}
	}

	// The backup, mid-load, with the real CLI.
	time.Sleep(700 * time.Millisecond)
	waitLoad("100 operations acknowledged", func() bool { return len(ops) >= 100 })
	file := filepath.Join(t.TempDir(), "ledger.iapdbak")
	before := ackSeq.Load()
	out, err := a.cli("backup", "-o", file)
	backedUp.Store(true)
	after := ackSeq.Load()
	if err != nil {
		t.Fatalf("iapd backup: %v\n%s", err, out)
	}
	time.Sleep(300 * time.Millisecond)
	waitLoad("an authorize sent after the backup", func() bool {
		for i := len(ops) - 1; i >= 0 && ops[i].seq > after; i-- {
			if ops[i].sentAfter {
				return true
			}
		}
		return false
	})
	stop.Store(true)
	wg.Wait()
	close(failure)
	for err := range failure {
		t.Fatalf("load: %v\n%s", err, a.stderr.String())
	}
	t.Logf("iapd backup: %s", strings.TrimSpace(out))
	a.stop()

	// Restore into a new directory and verify it offline.
	bdir := filepath.Join(t.TempDir(), "b")
	out, err = a.cli("restore", "-data", bdir, file)
	if err != nil || !strings.Contains(out, "restored into "+bdir) || !strings.Contains(out, "ok: no problem found") {
		t.Fatalf("iapd restore: %v\n%s", err, out)
	}
	if out, err := a.cli("verify", "-data", bdir); err != nil || !strings.Contains(out, "ok: no problem found") {
		t.Fatalf("iapd verify -data: %v\n%s", err, out)
	}

	// A second iapd on the restored directory.
	b := startOpsProc(t, bin, bdir, token)
	defer b.stop()
	latest := map[string]opRecord{}     // per transaction: the last op acknowledged before the backup began
	lateTokens := map[string]opRecord{} // transactions whose authorize was sent after the backup ended
	for _, r := range ops {
		switch {
		case r.seq <= before:
			latest[r.token] = r
		case r.sentAfter:
			lateTokens[r.token] = r
		}
	}
	for tok, r := range latest {
		var tr admin.Transaction
		if err := b.admin.call(ctx, "GET", "/v1/transaction", url.Values{"token": {tok}}, nil, &tr); err != nil {
			t.Fatalf("transaction acknowledged (%s) before the backup began: %v", r.state, err)
		}
		switch {
		case string(tr.Account) != r.account:
			t.Fatalf("transaction %s: account %s, want %s", tok, tr.Account, r.account)
		case r.state == storage.Held:
			// Its capture or cancel may have landed before the snapshot.
		case tr.State != r.state || r.state == storage.Captured && tr.Captured != r.amount:
			t.Fatalf("transaction %s acknowledged %s (%s) before the backup began; restored: %s (%s)", tok, r.state, r.amount, tr.State, tr.Captured)
		}
	}
	for tok := range lateTokens {
		if err := b.admin.call(ctx, "GET", "/v1/transaction", url.Values{"token": {tok}}, nil, nil); err == nil {
			t.Fatalf("transaction %s whose authorize was sent after the backup ended is in it", tok)
		}
	}
	// Every account exact: the invariant, and the figures its restored
	// transactions and credits make.
	for _, acct := range accts {
		var got admin.Account
		if err := b.admin.call(ctx, "GET", "/v1/account", url.Values{"service": {"backed"}, "token": {acct}}, nil, &got); err != nil {
			t.Fatal(err)
		}
		if got.Recharged != got.Available+got.Held+got.Captured || got.Recharged != 1000000*storage.Scale {
			t.Fatalf("account %s restored as %+v", acct, got)
		}
	}
	out, err = b.cli("verify")
	if err != nil || !strings.Contains(out, "ok: no problem found") || !strings.Contains(out, fmt.Sprintf("%d accounts", nAccts)) {
		t.Fatalf("iapd verify (online) on the restored iapd: %v\n%s", err, out)
	}
	t.Logf("%d operations acknowledged before the backup began (%d transactions) all restored; %d during it; %d transactions authorized after it absent",
		before, len(latest), after-before, len(lateTokens))
	if before < 100 || len(lateTokens) == 0 {
		t.Fatalf("%d operations before the backup, %d after: the load did not run around it", before, len(lateTokens))
	}
}

// ---- graceful shutdown ----

// testGracefulShutdown sends requests whose bodies arrive slowly, sends
// SIGTERM while they are in flight, and checks that they complete with a
// normal answer, that iapd exits cleanly once they are answered, and that
// what they did is in the ledger after a restart.
func testGracefulShutdown(t *testing.T, bin string) {
	ctx := context.Background()
	token := randHex(16)
	data := filepath.Join(t.TempDir(), "data")
	p := startOpsProc(t, bin, data, token)
	var sk admin.ServiceKey
	if err := p.admin.call(ctx, "POST", "/v1/services", nil, map[string]any{"name": "slow", "auto_register": true}, &sk); err != nil {
		t.Fatal(err)
	}
	acct := randHex(16)
	if err := p.admin.call(ctx, "POST", "/v1/account/credit", nil, map[string]any{"service": "slow", "token": acct, "amount": 10}, nil); err != nil {
		t.Fatal(err)
	}

	// Two requests, half sent: an authorize on the public listener and a
	// credit on the ops listener.
	authBody, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": 1, "params": map[string]any{
		"account_token": acct, "key": sk.Key, "credit": 3, "description": "in flight at SIGTERM", "ttl": 1}})
	creditBody, _ := json.Marshal(map[string]any{"service": "slow", "token": acct, "amount": 5, "ref": "in-flight"})
	type slowReq struct {
		name string
		conn net.Conn
		br   *bufio.Reader
		body []byte
	}
	// open sends a first, complete request on a new connection and reads
	// its answer (so the server has accepted the connection and serves
	// it), then the header and half the body of the slow one.
	open := func(name, hostport, warmup, head string, body []byte) slowReq {
		c, err := net.Dial("tcp", hostport)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		br := bufio.NewReader(c)
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: iapd\r\n\r\n", warmup); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: warm-up request: %v", name, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if _, err := fmt.Fprintf(c, "%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", head, len(body)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(body[:len(body)/2]); err != nil {
			t.Fatal(err)
		}
		return slowReq{name, c, br, body[len(body)/2:]}
	}
	pubHost := strings.TrimPrefix(p.public, "http://")
	reqs := []slowReq{
		open("authorize", pubHost, "/iap/1/nowhere", "POST /iap/1/authorize HTTP/1.1\r\nHost: iapd\r\n", authBody),
		open("credit", p.ops, "/healthz", "POST /v1/account/credit HTTP/1.1\r\nHost: iapd\r\nAuthorization: Bearer "+token+"\r\n", creditBody),
	}
	// Let the server read the first bytes of both (a connection it has not
	// read from yet is idle, and shutdown closes idle connections; no
	// outcome shows that it has, short of a hook in the server).
	time.Sleep(time.Second)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New connections are refused once shutdown began (polled: how soon
	// the listener closes after the signal is the scheduler's business),
	// and iapd does not exit with the requests in flight.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-p.exited:
			t.Fatalf("iapd exited (%v) with requests in flight\n%s", err, p.stderr.String())
		default:
		}
		c, err := net.DialTimeout("tcp", pubHost, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("the public listener still accepts connections a minute into shutdown")
		}
	}
	answers := map[string]string{}
	for _, r := range reqs {
		if _, err := r.conn.Write(r.body); err != nil {
			t.Fatalf("%s: finishing the body: %v", r.name, err)
		}
		_ = r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(r.br, nil)
		if err != nil {
			t.Fatalf("%s in flight at SIGTERM got no answer: %v\n%s", r.name, err, p.stderr.String())
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s in flight at SIGTERM: HTTP %d %s", r.name, resp.StatusCode, b)
		}
		answers[r.name] = string(b)
	}
	var rpcAns struct {
		Result string          `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal([]byte(answers["authorize"]), &rpcAns); err != nil || rpcAns.Result == "" || rpcAns.Error != nil {
		t.Fatalf("authorize in flight at SIGTERM answered %s", answers["authorize"])
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("iapd exit after the in-flight requests: %v\n%s", err, p.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("iapd did not exit once the requests in flight were answered\n%s", p.stderr.String())
	}

	// The ledger was flushed and closed: both changes are there.
	l, err := badger.Open(badger.Options{Dir: data})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	tr, err := l.Transaction(ctx, rpcAns.Result)
	if err != nil || tr.State != storage.Held || tr.Amount != 3*storage.Scale {
		t.Fatalf("the authorize answered during shutdown: %+v, %v", tr, err)
	}
	a, err := l.LookupAccount(ctx, "slow", storage.AccountToken(acct))
	if err != nil || a.Recharged != 15*storage.Scale || a.Held != 3*storage.Scale {
		t.Fatalf("account after shutdown: %+v, %v", a, err)
	}
	if r, err := l.Verify(ctx, badger.VerifyOptions{}); err != nil || !r.Clean() {
		t.Fatalf("verify after shutdown: %+v, %v", r, err)
	}
}

// ---- verify finds a corrupted ledger ----

// TestVerifyCommandFindsCorruption damages a ledger behind iapd's back —
// it copies the value of one account's first entry (a recharge of 30) over
// another's (a recharge of 100), through Badger, in the ledger's own
// encoding — and checks that "iapd verify -data" fails naming the service,
// the account (by its SHA-256 prefix, in full with -show-tokens) and the
// discrepancy, and that an intact copy verifies clean.
func TestVerifyCommandFindsCorruption(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	const victim, donor = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	l, err := badger.Open(badger.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true}); err != nil {
		t.Fatal(err)
	}
	for tok, amount := range map[storage.AccountToken]storage.Credits{victim: 100, donor: 30} {
		if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: tok, Amount: amount * storage.Scale, Kind: storage.EntryRecharge}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	verify := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := run(ctx, append([]string{"verify", "-data", dir}, args...), func(string) string { return "" }, strings.NewReader(""), &out, &errb)
		return out.String() + errb.String(), err
	}
	if out, err := verify(); err != nil || !strings.Contains(out, "ok: no problem found") {
		t.Fatalf("intact ledger: %v\n%s", err, out)
	}

	// The damage: entry 1 of the victim becomes the donor's.
	entryKey := func(tok string) []byte {
		return append([]byte("esms\x00"+tok+"\x00"), 0, 0, 0, 0, 0, 0, 0, 1)
	}
	db, err := dgbadger.Open(dgbadger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(txn *dgbadger.Txn) error {
		item, err := txn.Get(entryKey(donor))
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		if _, err := txn.Get(entryKey(victim)); err != nil {
			return err
		}
		return txn.Set(entryKey(victim), v)
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	out, err := verify()
	// The entry sums of the victim, and the service's aggregate figures
	// (recharged), disagree with the damaged entry.
	if err == nil || !strings.Contains(err.Error(), "3 errors") {
		t.Fatalf("iapd verify of a corrupted ledger: %v\n%s", err, out)
	}
	short := admin.ShortID(victim)
	for _, want := range []string{"ERROR", "entry-sum", "sms", short,
		"recharged is 100 but its entries sum to 30 (difference 70)", "aggregate", "FAILED: 3 errors"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, victim) || strings.Contains(out, admin.ShortID(donor)) {
		t.Errorf("report shows the full token or names the intact account:\n%s", out)
	}
	if out, _ := verify("-show-tokens"); !strings.Contains(out, victim) {
		t.Errorf("-show-tokens does not show the token:\n%s", out)
	}
	out, _ = verify("-json")
	var rep admin.VerifyReport
	if err := json.Unmarshal([]byte(out[:strings.LastIndex(out, "}")+1]), &rep); err != nil || rep.Clean || rep.Errors != 3 ||
		rep.Problems[0].Account != short || rep.Problems[0].Service != "sms" {
		t.Fatalf("-json: %+v, %v\n%s", rep, err, out)
	}
}

// ---- the production examples ----

// TestProductionExamples checks that docs/iapd.example.yaml loads and
// validates as iapd serve would load it under docs/systemd/iapd.service
// (admin token from the credential), with no trial credits, and that the
// unit keeps its hardening.
func TestProductionExamples(t *testing.T) {
	creds := t.TempDir()
	if err := os.WriteFile(filepath.Join(creds, "admin-token"), []byte("example-admin-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := loadExampleConfig(t, creds) // sandbox_test.go
	if cfg.AdminToken != "example-admin-token-0123456789" || cfg.Data != "/var/lib/iapd" || cfg.PublicURL != "https://iap.example.com" {
		t.Fatalf("example config: %+v", cfg)
	}
	for _, s := range cfg.ServicePolicies() {
		if s.TrialCredits != 0 {
			t.Errorf("service %s gives %s trial credits in the production example", s.Name, s.TrialCredits)
		}
	}

	unit, err := os.ReadFile(filepath.Join("..", "..", "docs", "systemd", "iapd.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"User=iapd", "StateDirectory=iapd", "ProtectSystem=strict", "ProtectHome=yes", "NoNewPrivileges=yes",
		"PrivateTmp=yes", "CapabilityBoundingSet=\n", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "MemoryDenyWriteExecute=yes",
		"LoadCredential=admin-token:", "ExecStart=/usr/local/bin/iapd serve -config /etc/iapd/iapd.yaml", "ExecReload=/bin/kill -HUP $MAINPID"} {
		if !strings.Contains(string(unit), "\n"+d) {
			t.Errorf("docs/systemd/iapd.service lacks %q", strings.TrimSpace(d))
		}
	}
}

// TestRestoreCommand checks iapd restore's refusals: a damaged file writes
// nothing, a non-empty directory needs -force, -force empties only an
// iapd data directory that no process has open.
func TestRestoreCommand(t *testing.T) {
	ctx := context.Background()
	src, err := badger.Open(badger.Options{Dir: filepath.Join(t.TempDir(), "src")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "tok", Amount: storage.Scale, Kind: storage.EntryRecharge}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := src.Backup(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	src.Close()
	tmp := t.TempDir()
	file, damaged := filepath.Join(tmp, "ok.iapdbak"), filepath.Join(tmp, "damaged.iapdbak")
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(buf.Bytes())
	bad[len(bad)/2] ^= 1
	if err := os.WriteFile(damaged, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	restore := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(ctx, append([]string{"restore"}, args...), func(string) string { return "" }, strings.NewReader(""), &out, &out)
		return out.String(), err
	}

	dir := filepath.Join(tmp, "data")
	if out, err := restore("-data", dir, damaged); err == nil || !strings.Contains(err.Error(), "not a valid iapd backup") {
		t.Fatalf("damaged file: %v\n%s", err, out)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("a refused restore created %s", dir)
	}
	if out, err := restore("-data", dir, file); err != nil || !strings.Contains(out, "restored into "+dir+": 1 services, 1 accounts, 1 entries") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	if out, err := restore("-data", dir, file); err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Fatalf("restore over a ledger without -force: %v\n%s", err, out)
	}
	if out, err := restore("-data", dir, "-force", file); err != nil || !strings.Contains(out, "deleted the previous ledger") {
		t.Fatalf("restore -force: %v\n%s", err, out)
	}
	// What iapd serve makes beside the ledger is kept (prepareRestoreDir);
	// anything else makes -force refuse, deleting nothing.
	served := map[string]string{
		"portal/secret":                      strings.Repeat("s", 32),
		"providers/outbox/sms.jsonl":         `{"to":"+32470123456"}` + "\n",
		"providers/folder/letters/1.pdf":     "%PDF",
		"journal-corrupt-20250601T020000Z/x": "evidence",
	}
	for name, body := range served {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, stray := range []string{"notes.txt", "portal/notes.txt", "providers/notes.txt", "backups/"} {
		p := filepath.Join(dir, stray)
		if strings.HasSuffix(stray, "/") {
			err = os.Mkdir(p, 0o750)
		} else {
			err = os.WriteFile(p, []byte("keep me"), 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
		want := stray + ", which iapd did not put there"
		if out, err := restore("-data", dir, "-force", file); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("restore -force with %s in the directory: %v (want %q)\n%s", stray, err, want, out)
		}
		if _, err := os.Stat(filepath.Join(dir, "MANIFEST")); err != nil {
			t.Fatalf("a refused restore deleted the ledger: %v", err)
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	out, err := restore("-data", dir, "-force", file)
	if err != nil || !strings.Contains(out, "kept journal-corrupt-20250601T020000Z/, portal/, providers/") ||
		!strings.Contains(out, "the ledger restored is sound; the journal errors are about folders kept from before the restore") {
		t.Fatalf("restore -force over a served directory: %v\n%s", err, out)
	}
	for name, body := range served {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != body {
			t.Errorf("%s after restore -force: %q, %v; want it kept", name, b, err)
		}
	}
	if err := os.RemoveAll(filepath.Join(dir, "journal-corrupt-20250601T020000Z")); err != nil {
		t.Fatal(err)
	}
	// A ledger in use is not emptied.
	l, err := badger.Open(badger.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := restore("-data", dir, "-force", file); err == nil || !strings.Contains(err.Error(), "data directory "+dir+" is in use") {
		t.Fatalf("restore -force over an open ledger: %v\n%s", err, out)
	}
	// Nor verified offline: the message says to verify online.
	var vout, verr bytes.Buffer
	if err := run(context.Background(), []string{"verify", "-data", dir}, func(string) string { return "" }, strings.NewReader(""), &vout, &verr); err == nil ||
		!strings.Contains(err.Error(), "data directory "+dir+" is in use") || !strings.Contains(err.Error(), "without -data") {
		t.Fatalf("verify -data on an open ledger: %v\n%s%s", err, vout.String(), verr.String())
	}
	l.Close()
	// Nor is a directory that is not a ledger.
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "notes.txt"), []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := restore("-data", other, "-force", file); err == nil || !strings.Contains(err.Error(), "not an iapd data directory") {
		t.Fatalf("restore -force over another directory: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(other, "notes.txt")); err != nil {
		t.Fatalf("restore deleted a file it should not have: %v", err)
	}
}
