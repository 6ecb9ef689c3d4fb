package badger

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/storagetest"
)

// The crash test: the parent re-runs this test binary as a child
// (TestCrashChild) that writes from several goroutines and prints every
// acknowledged change; the parent SIGKILLs it at a random moment, reopens
// the directory and checks that every acknowledged change is there and
// every account is exact. The child also redeems vouchers and writes
// bookkeeping records, and its accounts have low-credit alerts, so that
// vouchers, records and the alerts queued with the changes that crossed a
// threshold are checked too. SIGKILL loses what the process held, not what the
// kernel held: this proves crash consistency and that nothing is
// acknowledged before Badger wrote it, not the fsyncs themselves (that
// needs power loss, which a test cannot cause).

const (
	crashDirEnv   = "IAPD_CRASH_DIR"
	crashMemEnv   = "IAPD_CRASH_MEMTABLE"
	crashCycleEnv = "IAPD_CRASH_CYCLE"
	crashService  = storage.ServiceName("crash")
	crashAccounts = 8
	minCrashAcks  = 200
	crashRecNS    = "crash"
)

// crashThreshold is the low-credit threshold of the child's accounts.
const crashThreshold = 50 * storage.Scale

func crashToken(i int) storage.AccountToken { return storage.AccountToken(fmt.Sprintf("acct%d", i)) }

// TestCrashChild is the child of TestCrash; it does nothing otherwise.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("run by TestCrash")
	}
	mts, _ := strconv.ParseInt(os.Getenv(crashMemEnv), 10, 64)
	cycle := os.Getenv(crashCycleEnv)
	desc := ""
	if mts > 0 { // small memtables: big records, to rotate often
		desc = strings.Repeat("d", 1000)
	}
	l, err := Open(Options{Dir: dir, MemTableSize: mts})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := l.EnsureService(ctx, storage.Service{Name: crashService, AutoRegister: true}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	ack := func(format string, args ...any) {
		line := fmt.Sprintf(format+"\n", args...)
		mu.Lock()
		defer mu.Unlock()
		if _, err := io.WriteString(os.Stdout, line); err != nil {
			os.Exit(3)
		}
	}
	die := func(err error) {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
	for i := 0; i < crashAccounts; i++ {
		if _, err := l.Account(ctx, crashService, crashToken(i), storage.FirstSight{}); err != nil {
			t.Fatal(err)
		}
		al := storage.Alerts{Enabled: true, Threshold: crashThreshold}
		if _, err := l.UpdateAccount(ctx, crashService, crashToken(i), storage.AccountUpdate{Alerts: &al}); err != nil {
			t.Fatal(err)
		}
	}
	ack("READY")
	for w := 0; w < 8; w++ {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			type hold struct {
				token  string
				amount storage.Credits
			}
			var open []hold
			for n := 0; ; n++ {
				tok := crashToken(rng.IntN(crashAccounts))
				switch op := rng.IntN(13); {
				case op == 12: // a threshold near the balance, so that holds cross it
					a, err := l.LookupAccount(ctx, crashService, tok)
					if err != nil {
						die(err)
					}
					al := storage.Alerts{Enabled: true, Threshold: a.Available + storage.Credits(rng.Int64N(int64(10*storage.Scale))) - 5*storage.Scale}
					al.Threshold = max(al.Threshold, 0)
					if _, err := l.UpdateAccount(ctx, crashService, tok, storage.AccountUpdate{Alerts: &al}); err != nil {
						die(err)
					}
				case op == 10:
					key := fmt.Sprintf("c%s-w%d-%d", cycle, w, n)
					if _, created, err := l.PutRecordIfAbsent(ctx, crashRecNS, key, []byte(key+desc), time.Time{}); err != nil || !created {
						die(fmt.Errorf("record %s: created %v, %v", key, created, err))
					}
					ack("P %s", key)
				case op == 11:
					key := fmt.Sprintf("c%s-w%d-%d", cycle, w, n)
					h := storage.HashKey(key)
					amount := storage.Credits(1 + rng.Int64N(20*storage.Scale))
					if err := l.CreateVouchers(ctx, []storage.Voucher{{CodeHash: h, Service: crashService, Amount: amount}}); err != nil {
						die(err)
					}
					_, en, err := l.RedeemVoucher(ctx, h, crashService, tok, time.Now())
					if err != nil {
						die(err)
					}
					ack("R %s %s %d %d", tok, en.Ref, amount, en.Seq)
					ack("V %s %s", tok, key)
				case op < 3:
					ref := fmt.Sprintf("c%s-w%d-%d", cycle, w, n)
					amount := storage.Credits(1 + rng.Int64N(100*storage.Scale))
					en, err := l.Recharge(ctx, storage.RechargeRequest{Service: crashService, Account: tok, Amount: amount, Kind: storage.EntryRecharge, Ref: ref, Description: desc})
					if err != nil {
						die(err)
					}
					ack("R %s %s %d %d", tok, ref, amount, en.Seq)
				case op < 6:
					amount := storage.Credits(rng.Int64N(5 * storage.Scale))
					r := storage.AuthorizeRequest{Service: crashService, Account: tok, Amount: amount, TTL: 1000 * time.Hour, Description: desc}
					var tx storage.Transaction
					var err error
					key := fmt.Sprintf("c%s-w%d-%d", cycle, w, n)
					if op == 5 { // a claim with its hold (claimhold.go): one record
						r.Amount = 0
						tx, _, err = l.AuthorizeClaims(ctx, r, []storage.Claim{{NS: crashRecNS, Key: key, Value: []byte(key + desc), Price: amount}})
					} else {
						tx, err = l.Authorize(ctx, r)
					}
					if storage.Is(err, storage.InsufficientCredit) {
						continue
					}
					if err != nil {
						die(err)
					}
					if op == 5 {
						ack("P %s", key)
					}
					ack("A %s %s %d", tok, tx.Token, amount)
					open = append(open, hold{tx.Token, amount})
				case len(open) > 0:
					i := rng.IntN(len(open))
					h := open[i]
					open[i] = open[len(open)-1]
					open = open[:len(open)-1]
					if op < 8 {
						amount := storage.Credits(rng.Int64N(int64(h.amount) + 1))
						if _, err := l.Capture(ctx, storage.CaptureRequest{Service: crashService, Transaction: h.token, Amount: &amount}); err != nil {
							die(err)
						}
						ack("C %s %d", h.token, amount)
					} else {
						if _, err := l.Cancel(ctx, crashService, h.token); err != nil {
							die(err)
						}
						ack("X %s", h.token)
					}
				}
			}
		}()
	}
	select {} // until killed
}

// crashAcks is what the children acknowledged, over all cycles.
type crashAcks struct {
	recharges map[string]crashRecharge // by ref
	holds     map[string]crashHold     // by transaction token
	captured  map[string]storage.Credits
	cancelled map[string]bool
	records   []string                        // keys
	vouchers  map[string]storage.AccountToken // code → redeemer
}

type crashRecharge struct {
	tok    storage.AccountToken
	amount storage.Credits
	seq    uint64
}

type crashHold struct {
	tok    storage.AccountToken
	amount storage.Credits
}

func (a *crashAcks) parse(t *testing.T, line string) {
	f := strings.Fields(line)
	num := func(s string) int64 {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("bad ack %q", line)
		}
		return v
	}
	switch {
	case len(f) == 5 && f[0] == "R":
		a.recharges[f[2]] = crashRecharge{storage.AccountToken(f[1]), storage.Credits(num(f[3])), uint64(num(f[4]))}
	case len(f) == 4 && f[0] == "A":
		a.holds[f[2]] = crashHold{storage.AccountToken(f[1]), storage.Credits(num(f[3]))}
	case len(f) == 3 && f[0] == "C":
		a.captured[f[1]] = storage.Credits(num(f[2]))
	case len(f) == 2 && f[0] == "X":
		a.cancelled[f[1]] = true
	case len(f) == 2 && f[0] == "P":
		a.records = append(a.records, f[1])
	case len(f) == 3 && f[0] == "V":
		a.vouchers[f[2]] = storage.AccountToken(f[1])
	default:
		t.Fatalf("bad ack %q", line)
	}
}

// crashWorkBound bounds how long a child may take to do the work a cycle
// needs (minCrashAcks changes, and the memtable rotations of the tiny
// memtables cycle). It is not a timing assertion: a child that is merely
// slow (a shared CPU, -race) gets there long before; only one that makes
// no progress does not.
const crashWorkBound = 3 * time.Minute

// runCrashChild starts a child on dir and kills it once it has run for
// about d, has acknowledged at least minCrashAcks changes and enough()
// holds (when not nil; polled while the child writes), and returns its
// acknowledgements. The child writes until then, however slowly it runs.
func runCrashChild(t *testing.T, dir string, cycle int, memTableSize int64, d time.Duration, enough func() bool) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		crashDirEnv+"="+dir,
		crashMemEnv+"="+strconv.FormatInt(memTableSize, 10),
		crashCycleEnv+"="+strconv.Itoa(cycle))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }() // on a t.Fatal below; harmless once it is dead
	ready := make(chan struct{})
	lines := make(chan []string, 1)
	var count atomic.Int64
	go func() {
		var acks []string
		r := bufio.NewReader(out)
		sawReady := false
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				break // a last line without its newline was not acknowledged
			}
			line = strings.TrimSuffix(line, "\n")
			if line == "READY" && !sawReady {
				sawReady = true
				close(ready)
				continue
			}
			acks = append(acks, line)
			count.Add(1)
		}
		if !sawReady {
			close(ready)
		}
		lines <- acks
	}()
	select {
	case <-ready:
	case <-time.After(crashWorkBound):
		_ = cmd.Process.Kill()
		t.Fatal("crash child did not start")
	}
	// Kill after d, but not before the child has done the cycle's work.
	time.Sleep(d)
	done := func() bool { return count.Load() >= minCrashAcks && (enough == nil || enough()) }
	for deadline := time.Now().Add(crashWorkBound); !done() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	acks := <-lines
	_ = cmd.Wait()
	if stderr.Len() > 0 {
		t.Logf("child stderr:\n%s", stderr.String())
	}
	if strings.Contains(stderr.String(), "crash child:") {
		t.Fatalf("child failed")
	}
	return acks
}

// crashRotations is how many memtable rotations the tiny memtables cycle
// waits for before its kill.
const crashRotations = 3

// maxMemFid returns the highest number of a WAL file (*.mem) in dir, 0
// when there is none.
func maxMemFid(t *testing.T, dir string) int {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := 0
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".mem"); ok {
			if v, err := strconv.Atoi(n); err == nil && v > m {
				m = v
			}
		}
	}
	return m
}

func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test in -short mode")
	}
	dir := t.TempDir()
	acks := &crashAcks{
		recharges: map[string]crashRecharge{}, holds: map[string]crashHold{},
		captured: map[string]storage.Credits{}, cancelled: map[string]bool{},
		vouchers: map[string]storage.AccountToken{},
	}
	cycles := []struct {
		memTableSize int64
		name         string
	}{{0, "default"}, {0, "default"}, {0, "default"}, {MinMemTableSize, "tiny memtables"}}
	for i, c := range cycles {
		d := time.Duration(300+rand.IntN(700)) * time.Millisecond
		fidBefore := maxMemFid(t, dir)
		// The tiny memtables cycle is there to crash with rotated WAL
		// files about (the sync rounds' path for them, docs/storage.md): its child
		// writes until Badger has rotated its memtable three times,
		// however long that takes on a busy machine, rather than for a
		// time that may not be enough.
		var rotated func() bool
		if c.memTableSize != 0 {
			rotated = func() bool { return maxMemFid(t, dir)-fidBefore >= crashRotations }
		}
		start := time.Now()
		lines := runCrashChild(t, dir, i, c.memTableSize, d, rotated)
		for _, line := range lines {
			acks.parse(t, line)
		}
		fidAfter := maxMemFid(t, dir)
		t.Logf("cycle %d (%s): killed after %v (at least %v), %d acknowledged changes, WAL files %d → %d",
			i, c.name, time.Since(start).Round(time.Millisecond), d, len(lines), fidBefore, fidAfter)
		if len(lines) < minCrashAcks {
			t.Fatalf("cycle %d: only %d acknowledged changes in %v; the test means nothing", i, len(lines), crashWorkBound)
		}
		if c.memTableSize != 0 && fidAfter-fidBefore < crashRotations {
			t.Fatalf("cycle %d: %d acknowledged changes in %v and the memtables did not rotate %d times (WAL fid %d → %d)",
				i, len(lines), crashWorkBound, crashRotations, fidBefore, fidAfter)
		}
		verifyCrash(t, dir, acks)
	}
}

// verifyCrash reopens dir and checks every acknowledged change and every
// account.
func verifyCrash(t *testing.T, dir string, acks *crashAcks) {
	t.Helper()
	ctx := context.Background()
	l, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	holdsSeen := map[string]bool{}
	for i := 0; i < crashAccounts; i++ {
		tok := crashToken(i)
		if _, err := l.LookupAccount(ctx, crashService, tok); storage.Is(err, storage.NotFound) {
			continue
		}
		a := storagetest.Audit(t, l, crashService, tok)
		var all []storage.Entry
		for before := uint64(0); ; {
			page, err := l.History(ctx, crashService, tok, storage.HistoryQuery{Before: before, Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, page...)
			if len(page) < 1000 {
				break
			}
			before = page[len(page)-1].Seq
		}
		bySeq := make(map[uint64]storage.Entry, len(all))
		var held storage.Credits
		for _, en := range all {
			bySeq[en.Seq] = en
			if en.Kind == storage.EntryHold && !holdsSeen[en.Transaction] {
				holdsSeen[en.Transaction] = true
				tx, err := l.Transaction(ctx, en.Transaction)
				if err != nil {
					t.Fatalf("hold %s of the history: %v", en.Transaction, err)
				}
				if tx.State == storage.Held {
					held += tx.Amount
				}
			}
		}
		if held != a.Held {
			t.Fatalf("%s: held %s, open holds sum to %s", tok, a.Held, held)
		}
		for ref, r := range acks.recharges {
			if r.tok != tok {
				continue
			}
			en, ok := bySeq[r.seq]
			if !ok || en.Ref != ref || en.DRecharged != r.amount {
				t.Fatalf("acknowledged recharge %s (%s, seq %d) lost: %+v", ref, r.amount, r.seq, en)
			}
		}
	}
	for token, h := range acks.holds {
		tx, err := l.Transaction(ctx, token)
		if err != nil {
			t.Fatalf("acknowledged hold %s lost: %v", token, err)
		}
		if tx.Account != h.tok || tx.Amount != h.amount {
			t.Fatalf("hold %s: %+v, acknowledged %+v", token, tx, h)
		}
		if c, ok := acks.captured[token]; ok && (tx.State != storage.Captured || tx.Captured != c) {
			t.Fatalf("acknowledged capture of %s for %s lost: %+v", token, c, tx)
		}
		if acks.cancelled[token] && tx.State != storage.Cancelled {
			t.Fatalf("acknowledged cancel of %s lost: %+v", token, tx)
		}
	}
	for _, key := range acks.records {
		if v, err := l.GetRecord(ctx, crashRecNS, key); err != nil || !strings.HasPrefix(string(v), key) {
			t.Fatalf("acknowledged record %s lost: %q, %v", key, v, err)
		}
	}
	redeemed := map[[32]byte]storage.Voucher{}
	for after := [32]byte{}; ; {
		page, err := l.ListVouchers(ctx, storage.VoucherFilter{After: after, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range page {
			redeemed[v.CodeHash] = v
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].CodeHash
	}
	for key, tok := range acks.vouchers {
		if v := redeemed[storage.HashKey(key)]; !v.Redeemed() || v.RedeemedBy != tok {
			t.Fatalf("acknowledged redemption of voucher %s by %s lost: %+v", key, tok, v)
		}
	}
	// Every account whose alert is disarmed has an alert queued (the
	// child sends none): the alert and the change that crossed were one
	// write. Verify checks the rest (vouchers and their entries, records,
	// alert state).
	due, err := l.DueAlerts(ctx, time.Now().Add(time.Hour), 100000)
	if err != nil {
		t.Fatal(err)
	}
	queued := map[storage.AccountToken]int{}
	for _, n := range due {
		queued[n.Account]++
	}
	for i := 0; i < crashAccounts; i++ {
		var a acct
		var found bool
		if err := l.db.View(func(txn *badger.Txn) (err error) {
			a, found, err = getAccount(txn, crashService, crashToken(i))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if found && a.alertSent && queued[a.Token] == 0 {
			t.Fatalf("%s: alert disarmed at %s but none queued", a.Token, a.Available)
		}
	}
	r, err := l.Verify(ctx, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Clean() || r.Warnings != 0 {
		t.Fatalf("verify after the crash: %+v\n%s", r, problemsString(r))
	}
	t.Logf("after the crash: %d vouchers, %d records, %d alerts queued", r.Vouchers, r.Records, r.Alerts)
}
