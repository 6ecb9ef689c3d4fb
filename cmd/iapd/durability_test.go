package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/iapd/iapd/rpc/admin"
	"github.com/iapd/iapd/storage"
)

// TestDurabilityKill9 builds the iapd binary, drives it with concurrent
// authorize→capture and authorize→cancel JSON-RPC calls (as Odoo modules
// send them), balance reads and admin credits, SIGKILLs it at a random
// moment while calls are in flight, restarts it on the same data
// directory and checks, through the admin API, that
//
//   - every operation whose answer came back is in the ledger, and every
//     unanswered one is applied wholly or not at all;
//   - every acknowledged authorize's transaction exists exactly once, in
//     one account, with its amount and its acknowledged state; no
//     transaction has a doubled entry (one hold, then at most one capture
//     or release, one release after a partial capture);
//   - the unanswered operations, retried as a client would (capture and
//     cancel of the same token, credit with the same ref, authorize anew),
//     are applied exactly once whatever the first attempt did;
//   - each account's figures are exactly what the acknowledged operations
//     make them, with recharged = available + held + captured, and its
//     history replays to them.
//
// -short runs 3 kill cycles; the normal run 6; IAPD_DURABILITY_CYCLES sets
// another number (.ci/run: 20). IAPD_DURABILITY_REPORT names a file that
// gets the one-line summary (.ci/run prints it). The binary is built with
// -race when the test is, so that the server's own races under load are
// caught too (20 cycles take about 90 s that way on 2 cores).
func TestDurabilityKill9(t *testing.T) {
	cycles, load := 6, 1500*time.Millisecond
	if testing.Short() {
		cycles, load = 3, 800*time.Millisecond
	}
	if v := os.Getenv("IAPD_DURABILITY_CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("IAPD_DURABILITY_CYCLES=%q", v)
		}
		cycles = n
	}
	began := time.Now()

	d := &drill{t: t, bin: buildIapd(t), data: filepath.Join(t.TempDir(), "data"), model: newModel()}
	d.token = randHex(16)
	d.start()
	d.setup(8, "100000")
	d.verify()

	for c := 1; c <= cycles; c++ {
		inflight := d.loadAndKill(c, load)
		d.start()
		d.verify()      // resolve what the kill left unanswered
		r := d.retry()  // and retry it as a client would
		n := d.verify() // nothing doubled
		t.Logf("cycle %d: SIGKILL with %d calls in flight; %d unanswered operations retried; after restart %d ledger operations match the model",
			c, inflight, r, n)
	}
	d.stopGracefully()

	m := d.model
	acked := m.acked["authorize"] + m.acked["capture"] + m.acked["cancel"] + m.acked["credit"]
	summary := fmt.Sprintf("durability: %d SIGKILL cycles in %s, %d acknowledged operations checked present "+
		"(%d authorize, %d capture, %d cancel, %d credit; %d balance reads, %d refusals), "+
		"%d unanswered operations resolved from the ledger (%d had been applied) and retried without doubling, %d transactions, %d accounts exact",
		cycles, time.Since(began).Round(time.Second), acked, m.acked["authorize"], m.acked["capture"], m.acked["cancel"], m.acked["credit"],
		m.acked["balance"], m.acked["refused"], m.resolved, m.applied, len(m.txns), len(m.accounts))
	t.Log(summary)
	if f := os.Getenv("IAPD_DURABILITY_REPORT"); f != "" {
		if err := os.WriteFile(f, []byte(summary+"\n"), 0o644); err != nil {
			t.Errorf("writing the report: %v", err)
		}
	}
	if m.acked["authorize"] < drillAuthorizesPerCycle*cycles {
		t.Errorf("only %d authorizes acknowledged in %d cycles: the load did not run", m.acked["authorize"], cycles)
	}
	if m.acked["balance"] == 0 {
		t.Errorf("no balance read acknowledged: the load did not run")
	}
}

// buildIapd builds this command into a temp dir (with -race when the test
// binary has it, so the server's own races are caught under load).
func buildIapd(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the durability test builds the binary and needs the go command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "iapd")
	args := []string{"build", "-buildvcs=false", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command(goBin, append(args, ".")...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// ---- the process ----

type drill struct {
	t      *testing.T
	bin    string
	data   string
	token  string // admin token
	key    string // service key of the drill's service
	cmd    *exec.Cmd
	exited chan error
	stderr *syncBuffer
	public string
	admin  *adminClient
	hc     *http.Client
	model  *model
}

const drillService = "durable"

func (d *drill) start() {
	t := d.t
	t.Helper()
	d.stderr = &syncBuffer{}
	var ops string
	d.cmd, d.exited, d.public, ops = launch(t, d.bin, []string{"serve", "-listen", "127.0.0.1:0", "-ops-listen", "127.0.0.1:0",
		"-data", d.data, "-log-level", "warn"}, []string{"IAPD_ADMIN_TOKEN=" + d.token}, d.stderr)
	d.admin = &adminClient{base: ops, token: d.token, hc: &http.Client{Timeout: 30 * time.Second}}
	d.hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	// readyz must turn 200 (ledger open, listeners up).
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(d.admin.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("iapd never became ready\n%s", d.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill SIGKILLs the process and waits for it.
func (d *drill) kill() {
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
	d.checkNoRace()
}

func (d *drill) stopGracefully() {
	t := d.t
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		if err != nil {
			t.Errorf("iapd did not exit cleanly on SIGTERM: %v\n%s", err, d.stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Errorf("iapd did not stop on SIGTERM\n%s", d.stderr.String())
		_ = d.cmd.Process.Kill()
	}
	d.checkNoRace()
}

func (d *drill) checkNoRace() {
	if s := d.stderr.String(); strings.Contains(s, "DATA RACE") || strings.Contains(s, "panic:") {
		d.t.Fatalf("iapd reported a race or a panic:\n%s", s)
	}
}

// ---- calls ----

type rpcError struct {
	Name, Message string
}

func (e *rpcError) Error() string { return e.Name + ": " + e.Message }

// call posts one JSON-RPC request as Odoo's iap_jsonrpc does. err is a
// transport failure (no answer: outcome unknown); rerr an answered error.
func (d *drill) call(ctx context.Context, path string, params map[string]any) (result json.RawMessage, rerr *rpcError, err error) {
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": randHex(16), "params": params})
	req, err := http.NewRequestWithContext(ctx, "POST", d.public+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != 200 {
		return nil, nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, raw)
	}
	var env struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Data struct{ Name, Message string } `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, nil, fmt.Errorf("bad JSON answer %s: %w", raw, err)
	}
	if env.Error != nil {
		return nil, &rpcError{Name: env.Error.Data.Name, Message: env.Error.Data.Message}, nil
	}
	return env.Result, nil, nil
}

// ---- the model of what was acknowledged ----

type txnModel struct {
	token    string
	account  string
	amount   storage.Credits
	state    storage.TransactionState // held, captured or cancelled
	captured storage.Credits
	// pending is an operation sent whose answer was lost: "capture" (with
	// pendingAmount) or "cancel"; resolved from the ledger after restart.
	pending       string
	pendingAmount storage.Credits
}

type model struct {
	mu       sync.Mutex
	accounts []string
	txns     map[string]*txnModel
	// recharges per account: ref → amount, acknowledged ones.
	recharges map[string]map[string]storage.Credits
	// sent but unanswered: recharges (account → ref → amount) and
	// authorizes (account → amounts).
	pendingRecharges  map[string]map[string]storage.Credits
	pendingAuthorizes map[string][]storage.Credits
	open              []*txnModel // held, no pending op: for later cycles to finish
	// unanswered are the operations sent whose answer the kill took, in
	// the order sent: retried once resolved.
	unanswered []unansweredOp
	acked      map[string]int
	resolved   int // unanswered operations resolved from the ledger
	applied    int // … of which the ledger had applied
}

// unansweredOp is an operation whose answer was lost.
type unansweredOp struct {
	op      string // authorize, capture, cancel, credit
	tx      *txnModel
	account string
	amount  storage.Credits
	ref     string
}

func newModel() *model {
	return &model{
		txns:              map[string]*txnModel{},
		recharges:         map[string]map[string]storage.Credits{},
		pendingRecharges:  map[string]map[string]storage.Credits{},
		pendingAuthorizes: map[string][]storage.Credits{},
		acked:             map[string]int{},
	}
}

// setup creates the drill's service through the admin API and credits n
// accounts.
func (d *drill) setup(n int, credit string) {
	t := d.t
	ctx := context.Background()
	var sk admin.ServiceKey
	if err := d.admin.call(ctx, "POST", "/v1/services", nil, map[string]any{
		"name": drillService, "auto_register": true, "description": "durability drill",
	}, &sk); err != nil {
		t.Fatal(err)
	}
	d.key = sk.Key
	amount, _ := storage.ParseCredits(credit)
	for i := 0; i < n; i++ {
		acct := randHex(16)
		d.model.accounts = append(d.model.accounts, acct)
		d.model.recharges[acct] = map[string]storage.Credits{}
		ref := "init-" + acct[:8]
		if err := d.credit(ctx, acct, amount, ref); err != nil {
			t.Fatal(err)
		}
		d.model.recharges[acct][ref] = amount
		d.model.acked["credit"]++
	}
}

func (d *drill) credit(ctx context.Context, acct string, amount storage.Credits, ref string) error {
	return d.admin.call(ctx, "POST", "/v1/account/credit", nil, map[string]any{
		"service": drillService, "token": acct, "amount": json.Number(amount.String()), "ref": ref,
	}, nil)
}

// drillAuthorizesPerCycle is how many authorizes a cycle acknowledges at
// least before its kill.
const drillAuthorizesPerCycle = 20

var holdAmounts = []storage.Credits{5000, 10000, 22500, 30000} // 0.5, 1, 2.25, 3 credits

// loadAndKill runs workers against the server and SIGKILLs it after a
// random part of load, while they are mid-call. It returns how many calls
// were in flight at the kill.
func (d *drill) loadAndKill(cycle int, load time.Duration) int64 {
	m := d.model
	m.mu.Lock()
	authorizedBefore := m.acked["authorize"]
	m.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var killed atomic.Bool
	var inflight atomic.Int64
	var wg sync.WaitGroup
	fatal := make(chan error, 64)

	worker := func(seed uint64) {
		defer wg.Done()
		rng := mrand.New(mrand.NewPCG(seed, uint64(cycle)))
		for !killed.Load() {
			// Now and then a balance read, as Odoo's settings page does.
			if rng.IntN(8) == 0 {
				acct := m.accounts[rng.IntN(len(m.accounts))]
				inflight.Add(1)
				res, rerr, err := d.call(ctx, "/iap/1/balance", map[string]any{
					"account_token": acct, "service_name": drillService, "dbuuid": "drill-db",
				})
				inflight.Add(-1)
				switch {
				case err != nil:
					if !killed.Load() {
						fatal <- fmt.Errorf("balance failed while iapd was up: %w", err)
					}
					return
				case rerr != nil:
					fatal <- fmt.Errorf("balance refused: %v", rerr)
					return
				}
				if c, err := storage.ParseCredits(string(res)); err != nil || c < 0 {
					fatal <- fmt.Errorf("balance answered %s", res)
					return
				}
				m.mu.Lock()
				m.acked["balance"]++
				m.mu.Unlock()
				continue
			}
			// Finish an open hold of an earlier round, or authorize anew.
			var tx *txnModel
			m.mu.Lock()
			if len(m.open) > 0 && rng.IntN(4) == 0 {
				i := rng.IntN(len(m.open))
				tx = m.open[i]
				m.open = append(m.open[:i], m.open[i+1:]...)
			}
			m.mu.Unlock()
			if tx == nil {
				acct := m.accounts[rng.IntN(len(m.accounts))]
				amount := holdAmounts[rng.IntN(len(holdAmounts))]
				inflight.Add(1)
				res, rerr, err := d.call(ctx, "/iap/1/authorize", map[string]any{
					"account_token": acct, "key": d.key, "credit": json.Number(amount.String()),
					"description": "drill", "ttl": 1, "dbuuid": "drill-db",
				})
				inflight.Add(-1)
				m.mu.Lock()
				switch {
				case err != nil:
					m.pendingAuthorizes[acct] = append(m.pendingAuthorizes[acct], amount)
					m.unanswered = append(m.unanswered, unansweredOp{op: "authorize", account: acct, amount: amount})
					m.mu.Unlock()
					if !killed.Load() {
						fatal <- fmt.Errorf("authorize failed while iapd was up: %w", err)
					}
					return
				case rerr != nil:
					m.acked["refused"]++
					m.mu.Unlock()
					if !strings.HasSuffix(rerr.Name, "InsufficientCreditError") {
						fatal <- fmt.Errorf("authorize refused: %v", rerr)
						return
					}
					continue
				}
				var token string
				if json.Unmarshal(res, &token) != nil || token == "" {
					m.mu.Unlock()
					fatal <- fmt.Errorf("authorize answered %s", res)
					return
				}
				tx = &txnModel{token: token, account: acct, amount: amount, state: storage.Held}
				m.txns[token] = tx
				m.acked["authorize"]++
				m.mu.Unlock()
			}

			// Then capture (all, part, more), cancel, or leave open.
			op, params := "", map[string]any{"token": tx.token, "key": d.key}
			var amount storage.Credits
			switch r := rng.IntN(20); {
			case r < 9:
				op, amount = "capture", tx.amount
			case r < 12:
				op, amount = "capture", tx.amount/2
			case r < 13:
				op, amount = "capture", tx.amount+5000
			case r < 18:
				op = "cancel"
			default:
				m.mu.Lock()
				m.open = append(m.open, tx)
				m.mu.Unlock()
				continue
			}
			if op == "capture" {
				params["credit_to_capture"] = json.Number(amount.String())
			}
			m.mu.Lock()
			tx.pending, tx.pendingAmount = op, amount
			m.mu.Unlock()
			inflight.Add(1)
			res, rerr, err := d.call(ctx, "/iap/1/"+op, params)
			inflight.Add(-1)
			m.mu.Lock()
			switch {
			case err != nil: // unknown: stays pending
				m.unanswered = append(m.unanswered, unansweredOp{op: op, tx: tx, account: tx.account, amount: amount})
				m.mu.Unlock()
				if !killed.Load() {
					fatal <- fmt.Errorf("%s failed while iapd was up: %w", op, err)
				}
				return
			case rerr != nil:
				// Only an over-capture may be refused (not enough credit
				// for the difference); the hold is left as it was.
				tx.pending = ""
				m.acked["refused"]++
				m.open = append(m.open, tx)
				m.mu.Unlock()
				if !(op == "capture" && amount > tx.amount && strings.HasSuffix(rerr.Name, "InsufficientCreditError")) {
					fatal <- fmt.Errorf("%s of %s refused: %v", op, amount, rerr)
					return
				}
				continue
			}
			if string(res) != "true" {
				m.mu.Unlock()
				fatal <- fmt.Errorf("%s answered %s", op, res)
				return
			}
			tx.pending = ""
			if op == "capture" {
				tx.state, tx.captured = storage.Captured, amount
			} else {
				tx.state = storage.Cancelled
			}
			m.acked[op]++
			m.mu.Unlock()
		}
	}

	// Admin credits with refs, alongside.
	crediter := func() {
		defer wg.Done()
		for i := 0; !killed.Load(); i++ {
			acct := m.accounts[i%len(m.accounts)]
			ref := fmt.Sprintf("c%d-%d", cycle, i)
			amount := storage.Credits(1+i%10) * storage.Scale
			inflight.Add(1)
			err := d.credit(ctx, acct, amount, ref)
			inflight.Add(-1)
			m.mu.Lock()
			if err != nil {
				if m.pendingRecharges[acct] == nil {
					m.pendingRecharges[acct] = map[string]storage.Credits{}
				}
				m.pendingRecharges[acct][ref] = amount
				m.unanswered = append(m.unanswered, unansweredOp{op: "credit", account: acct, amount: amount, ref: ref})
				m.mu.Unlock()
				var ae *apiError
				if !killed.Load() || errors.As(err, &ae) {
					fatal <- fmt.Errorf("credit: %w", err)
				}
				return
			}
			m.recharges[acct][ref] = amount
			m.acked["credit"]++
			m.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}

	const workers = 16
	wg.Add(workers + 1)
	for i := 0; i < workers; i++ {
		go worker(uint64(i) + 1)
	}
	go crediter()

	// Kill at a random moment of the load (past its first fifth, so that
	// every kind of call is running), when calls are in flight.
	wait := load/5 + time.Duration(mrand.Int64N(int64(load*4/5)))
	select {
	case err := <-fatal:
		killed.Store(true)
		d.kill()
		wg.Wait()
		d.t.Fatalf("cycle %d: %v\n%s", cycle, err, d.stderr.String())
	case <-time.After(wait):
	}
	// Kill only once the cycle has done its share of the work (however
	// slowly a shared CPU lets it run: bounded by a minute, not by load)
	// and calls are in flight.
	ready := func() bool {
		m.mu.Lock()
		authorized := m.acked["authorize"] - authorizedBefore
		m.mu.Unlock()
		return authorized >= drillAuthorizesPerCycle && inflight.Load() > 0
	}
	for deadline := time.Now().Add(time.Minute); !ready(); {
		select {
		case err := <-fatal:
			killed.Store(true)
			d.kill()
			wg.Wait()
			d.t.Fatalf("cycle %d: %v\n%s", cycle, err, d.stderr.String())
		case <-time.After(100 * time.Microsecond):
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("cycle %d: in a minute, fewer than %d authorizes acknowledged or no call in flight to kill iapd under", cycle, drillAuthorizesPerCycle)
		}
	}
	n := inflight.Load()
	killed.Store(true)
	d.kill()
	wg.Wait()
	select {
	case err := <-fatal:
		d.t.Fatalf("cycle %d: %v", cycle, err)
	default:
	}
	return n
}

// ---- retries ----

// retry re-sends the operations the kill left unanswered (verify has
// resolved them from the ledger first), as a client that got no answer
// would: capture or cancel of the same token with the same amount, credit
// with the same ref, authorize anew (it is not idempotent: a hold the
// first attempt made stays, held, under a token the client never saw).
// Each must be acknowledged; the next verify checks that none was applied
// twice. It returns how many were retried.
func (d *drill) retry() int {
	t := d.t
	t.Helper()
	m := d.model
	ctx := context.Background()

	m.mu.Lock()
	ops := m.unanswered
	m.unanswered = nil
	retried := map[*txnModel]bool{}
	for _, op := range ops {
		if op.tx != nil {
			retried[op.tx] = true
		}
	}
	open := make([]*txnModel, 0, len(m.open))
	for _, tx := range m.open {
		if !retried[tx] {
			open = append(open, tx)
		}
	}
	m.open = open
	m.mu.Unlock()

	for _, op := range ops {
		switch op.op {
		case "capture", "cancel":
			tx := op.tx
			params := map[string]any{"token": tx.token, "key": d.key}
			if op.op == "capture" {
				params["credit_to_capture"] = json.Number(op.amount.String())
			}
			res, rerr, err := d.call(ctx, "/iap/1/"+op.op, params)
			if err != nil {
				t.Fatalf("retried %s of %s: %v", op.op, tx.token, err)
			}
			m.mu.Lock()
			switch {
			case rerr == nil && string(res) == "true":
				if op.op == "capture" {
					tx.state, tx.captured = storage.Captured, op.amount
				} else {
					tx.state = storage.Cancelled
				}
				m.acked[op.op]++
			case rerr != nil && op.op == "capture" && op.amount > tx.amount && tx.state == storage.Held &&
				strings.HasSuffix(rerr.Name, "InsufficientCreditError"):
				m.acked["refused"]++
			default:
				m.mu.Unlock()
				t.Fatalf("retried %s of %s (%s, ledger state %s) answered %s %v", op.op, tx.token, op.amount, tx.state, res, rerr)
			}
			if tx.state == storage.Held {
				m.open = append(m.open, tx)
			}
			state := tx.state
			m.mu.Unlock()
			d.crossCheck(ctx, tx, state)
		case "credit":
			if err := d.credit(ctx, op.account, op.amount, op.ref); err != nil {
				t.Fatalf("retried credit %s of %s: %v", op.ref, op.amount, err)
			}
			m.mu.Lock()
			m.recharges[op.account][op.ref] = op.amount
			m.acked["credit"]++
			m.mu.Unlock()
		case "authorize":
			res, rerr, err := d.call(ctx, "/iap/1/authorize", map[string]any{
				"account_token": op.account, "key": d.key, "credit": json.Number(op.amount.String()),
				"description": "drill retry", "ttl": 1, "dbuuid": "drill-db",
			})
			if err != nil {
				t.Fatalf("retried authorize: %v", err)
			}
			m.mu.Lock()
			var token string
			switch {
			case rerr != nil && strings.HasSuffix(rerr.Name, "InsufficientCreditError"):
				m.acked["refused"]++
			case rerr == nil && json.Unmarshal(res, &token) == nil && token != "":
				if _, dup := m.txns[token]; dup {
					m.mu.Unlock()
					t.Fatalf("retried authorize answered the token %s of an existing transaction", token)
				}
				tx := &txnModel{token: token, account: op.account, amount: op.amount, state: storage.Held}
				m.txns[token] = tx
				m.open = append(m.open, tx)
				m.acked["authorize"]++
			default:
				m.mu.Unlock()
				t.Fatalf("retried authorize answered %s %v", res, rerr)
			}
			m.mu.Unlock()
		default:
			t.Fatalf("unanswered %q", op.op)
		}
	}
	return len(ops)
}

// ---- verification ----

// verify resolves the unanswered operations from the ledger, then checks
// every account exactly. It returns the number of operations (holds,
// captures, cancels, credits) found in the ledger as the model has them.
func (d *drill) verify() int {
	t := d.t
	t.Helper()
	m := d.model
	m.mu.Lock()
	defer m.mu.Unlock()
	ctx := context.Background()
	checked := 0
	owner := map[string]string{} // transaction token → the account whose history has it

	for _, acct := range m.accounts {
		var a admin.Account
		if err := d.admin.call(ctx, "GET", "/v1/account", url.Values{"service": {drillService}, "token": {acct}}, nil, &a); err != nil {
			t.Fatalf("account %s: %v", acct, err)
		}
		if a.Recharged != a.Available+a.Held+a.Captured {
			t.Fatalf("account %s breaks recharged = available + held + captured: %+v", acct, a)
		}
		entries := d.history(ctx, acct)

		// Replay: the entries sum to the figures, seqs are 1..n.
		var sum admin.Account
		for i, e := range entries {
			if e.Seq != uint64(len(entries)-i) {
				t.Fatalf("account %s: entry %d has seq %d, want %d", acct, i, e.Seq, len(entries)-i)
			}
			sum.Recharged += e.DRecharged
			sum.Available += e.DAvailable
			sum.Held += e.DHeld
			sum.Captured += e.DCaptured
		}
		if sum.Recharged != a.Recharged || sum.Available != a.Available || sum.Held != a.Held || sum.Captured != a.Captured || uint64(len(entries)) != a.Seq {
			t.Fatalf("account %s: history sums to %+v, figures are %+v (seq %d, %d entries)", acct, sum, a, a.Seq, len(entries))
		}

		byTxn := map[string][]admin.Entry{}
		refs := map[string]admin.Entry{}
		for _, e := range entries {
			switch e.Kind {
			case storage.EntryRecharge, storage.EntryAdjustment:
				if _, dup := refs[e.Ref]; dup || e.Ref == "" {
					t.Fatalf("account %s: recharge with ref %q twice or without ref: %+v", acct, e.Ref, e)
				}
				refs[e.Ref] = e
			case storage.EntryHold, storage.EntryCapture, storage.EntryRelease:
				if o, ok := owner[e.Transaction]; ok && o != acct {
					t.Fatalf("transaction %s is in the histories of two accounts, %s and %s", e.Transaction, o, acct)
				}
				owner[e.Transaction] = acct
				byTxn[e.Transaction] = append(byTxn[e.Transaction], e)
			default:
				t.Fatalf("account %s: unexpected entry %+v", acct, e)
			}
		}

		// Recharges: every acknowledged one is there; unanswered ones are
		// there or not, with their amount; nothing else.
		for ref, amount := range m.recharges[acct] {
			e, ok := refs[ref]
			if !ok || e.DRecharged != amount {
				t.Fatalf("account %s: acknowledged credit %s of %s lost (found %+v)", acct, ref, amount, e)
			}
			checked++
		}
		for ref, amount := range m.pendingRecharges[acct] {
			if e, ok := refs[ref]; ok {
				if e.DRecharged != amount {
					t.Fatalf("account %s: unanswered credit %s has amount %s, sent %s", acct, ref, e.DRecharged, amount)
				}
				m.recharges[acct][ref] = amount
				m.applied++
			}
			m.resolved++
		}
		delete(m.pendingRecharges, acct)
		for ref := range refs {
			if _, ok := m.recharges[acct][ref]; !ok {
				t.Fatalf("account %s: credit %s was never sent", acct, ref)
			}
		}

		// Holds of unanswered authorizes: each matches one sent amount.
		pend := m.pendingAuthorizes[acct]
		for tok, es := range byTxn {
			if _, known := m.txns[tok]; known {
				continue
			}
			if len(es) != 1 || es[0].Kind != storage.EntryHold {
				t.Fatalf("account %s: unknown transaction %s has entries %+v", acct, tok, es)
			}
			i := indexOf(pend, es[0].DHeld)
			if i < 0 {
				t.Fatalf("account %s: hold of %s that no unanswered authorize asked for (pending %v)", acct, es[0].DHeld, pend)
			}
			pend = append(pend[:i], pend[i+1:]...)
			m.applied++
			tx := &txnModel{token: tok, account: acct, amount: es[0].DHeld, state: storage.Held}
			m.txns[tok] = tx
			m.open = append(m.open, tx)
		}
		m.resolved += len(m.pendingAuthorizes[acct])
		delete(m.pendingAuthorizes, acct)

		// Transactions: acknowledged states are there; pending ones are
		// resolved; the model then gives the figures exactly.
		var want admin.Account
		for _, ref := range m.recharges[acct] {
			want.Recharged += ref
		}
		for tok, tx := range m.txns {
			if tx.account != acct {
				continue
			}
			es := byTxn[tok]
			if len(es) == 0 || es[len(es)-1].Kind != storage.EntryHold || es[len(es)-1].DHeld != tx.amount {
				t.Fatalf("account %s: acknowledged hold %s of %s lost or wrong: %+v", acct, tok, tx.amount, es)
			}
			state, captured, bad := txnShape(es)
			if bad != "" {
				t.Fatalf("account %s: transaction %s %s: %+v", acct, tok, bad, es)
			}
			checked++
			switch tx.pending {
			case "capture":
				if state == storage.Captured {
					if captured != tx.pendingAmount {
						t.Fatalf("txn %s: unanswered capture of %s captured %s", tok, tx.pendingAmount, captured)
					}
					tx.state, tx.captured = storage.Captured, captured
					m.applied++
				} else if state != storage.Held {
					t.Fatalf("txn %s: unanswered capture, ledger state %s", tok, state)
				}
				d.crossCheck(ctx, tx, state)
				tx.pending = ""
				m.resolved++
				if tx.state == storage.Held {
					m.open = append(m.open, tx)
				}
			case "cancel":
				if state == storage.Cancelled {
					tx.state = storage.Cancelled
					m.applied++
				} else if state != storage.Held {
					t.Fatalf("txn %s: unanswered cancel, ledger state %s", tok, state)
				}
				d.crossCheck(ctx, tx, state)
				tx.pending = ""
				m.resolved++
				if tx.state == storage.Held {
					m.open = append(m.open, tx)
				}
			}
			if state != tx.state || captured != tx.captured {
				t.Fatalf("txn %s: acknowledged %s (captured %s), ledger has %s (captured %s): %+v", tok, tx.state, tx.captured, state, captured, es)
			}
			if tx.state != storage.Held {
				checked++ // the capture or cancel
			}
			switch tx.state {
			case storage.Held:
				want.Held += tx.amount
			case storage.Captured:
				want.Captured += tx.captured
			}
			delete(byTxn, tok)
		}
		if len(byTxn) != 0 {
			t.Fatalf("account %s: entries of transactions never seen: %v", acct, byTxn)
		}
		want.Available = want.Recharged - want.Held - want.Captured
		if want.Recharged != a.Recharged || want.Available != a.Available || want.Held != a.Held || want.Captured != a.Captured {
			t.Fatalf("account %s: acknowledged operations give recharged %s available %s held %s captured %s; the ledger has %s %s %s %s",
				acct, want.Recharged, want.Available, want.Held, want.Captured, a.Recharged, a.Available, a.Held, a.Captured)
		}
	}
	// A sample of transactions, cross-checked through /v1/transaction.
	n := 0
	for _, tx := range m.txns {
		if n++; n > 50 {
			break
		}
		d.crossCheck(ctx, tx, tx.state)
	}
	return checked
}

// txnShape reads a transaction's state from its entries (newest first)
// and checks their shape: one hold, then nothing (held), a release of all
// of it (cancelled), or a capture followed, when it took less than the
// hold, by a release of the rest (captured). Anything else — a second
// hold, capture or release — is a doubled operation, reported in bad.
func txnShape(es []admin.Entry) (state storage.TransactionState, captured storage.Credits, bad string) {
	n := len(es)
	if n == 0 || es[n-1].Kind != storage.EntryHold {
		return "", 0, "does not start with a hold"
	}
	held := es[n-1].DHeld
	kinds := make([]storage.EntryKind, 0, n)
	for i := n - 1; i >= 0; i-- {
		kinds = append(kinds, es[i].Kind)
	}
	switch {
	case n == 1:
		return storage.Held, 0, ""
	case n == 2 && kinds[1] == storage.EntryRelease:
		if es[0].DHeld != -held || es[0].DAvailable != held {
			return "", 0, "has a release that is not the hold"
		}
		return storage.Cancelled, 0, ""
	case n == 2 && kinds[1] == storage.EntryCapture:
		c := es[0].DCaptured
		if c < held || es[0].DHeld != -held {
			return "", 0, "has a capture of less than the hold without a release of the rest"
		}
		return storage.Captured, c, ""
	case n == 3 && kinds[1] == storage.EntryCapture && kinds[2] == storage.EntryRelease:
		c := es[1].DCaptured
		if c >= held || es[1].DHeld != -c || es[0].DHeld != -(held-c) {
			return "", 0, "has a capture and a release that do not add up to the hold"
		}
		return storage.Captured, c, ""
	}
	return "", 0, fmt.Sprintf("has the entries %v: an operation was applied twice", kinds)
}

func (d *drill) crossCheck(ctx context.Context, tx *txnModel, state storage.TransactionState) {
	var got admin.Transaction
	if err := d.admin.call(ctx, "GET", "/v1/transaction", url.Values{"token": {tx.token}}, nil, &got); err != nil {
		d.t.Fatalf("transaction %s: %v", tx.token, err)
	}
	if got.State != state || string(got.Account) != tx.account || got.Amount != tx.amount || got.Service != drillService {
		d.t.Fatalf("transaction %s: admin API shows %+v, want state %s account %s amount %s", tx.token, got, state, tx.account, tx.amount)
	}
}

func (d *drill) history(ctx context.Context, acct string) []admin.Entry {
	var all []admin.Entry
	q := url.Values{"service": {drillService}, "token": {acct}, "limit": {"1000"}}
	for {
		var h admin.History
		if err := d.admin.call(ctx, "GET", "/v1/account/history", q, nil, &h); err != nil {
			d.t.Fatalf("history of %s: %v", acct, err)
		}
		all = append(all, h.Entries...)
		if h.Next == 0 {
			return all
		}
		q.Set("before", strconv.FormatUint(h.Next, 10))
	}
}

func indexOf(s []storage.Credits, v storage.Credits) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// txnShape tells a doubled operation from a sound transaction: the crash
// drill relies on it.
func TestTxnShape(t *testing.T) {
	hold := admin.Entry{Kind: storage.EntryHold, DHeld: 10, DAvailable: -10}
	capFull := admin.Entry{Kind: storage.EntryCapture, DHeld: -10, DCaptured: 10}
	capPart := admin.Entry{Kind: storage.EntryCapture, DHeld: -4, DCaptured: 4}
	capMore := admin.Entry{Kind: storage.EntryCapture, DHeld: -10, DAvailable: -5, DCaptured: 15}
	rest := admin.Entry{Kind: storage.EntryRelease, DHeld: -6, DAvailable: 6}
	release := admin.Entry{Kind: storage.EntryRelease, DHeld: -10, DAvailable: 10}
	for _, c := range []struct {
		oldestFirst []admin.Entry
		state       storage.TransactionState
		captured    storage.Credits
		ok          bool
	}{
		{[]admin.Entry{hold}, storage.Held, 0, true},
		{[]admin.Entry{hold, release}, storage.Cancelled, 0, true},
		{[]admin.Entry{hold, capFull}, storage.Captured, 10, true},
		{[]admin.Entry{hold, capMore}, storage.Captured, 15, true},
		{[]admin.Entry{hold, capPart, rest}, storage.Captured, 4, true},
		{nil, "", 0, false},
		{[]admin.Entry{hold, hold}, "", 0, false},
		{[]admin.Entry{hold, release, release}, "", 0, false},
		{[]admin.Entry{hold, capFull, capFull}, "", 0, false},
		{[]admin.Entry{hold, capFull, release}, "", 0, false},
		{[]admin.Entry{hold, capPart}, "", 0, false},
		{[]admin.Entry{hold, capPart, rest, rest}, "", 0, false},
		{[]admin.Entry{release, hold}, "", 0, false},
	} {
		es := slices.Clone(c.oldestFirst)
		slices.Reverse(es) // the history is newest first
		state, captured, bad := txnShape(es)
		if (bad == "") != c.ok || state != c.state || captured != c.captured {
			t.Errorf("%v: state %q captured %s bad %q", c.oldestFirst, state, captured, bad)
		}
	}
}
