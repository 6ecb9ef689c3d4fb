package sms

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/rpc/sendflow"
	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

// The durable waits of a send: every write to the ledger or the records
// returns only once it is durable, so the rounds of writes a request makes
// one after the other are the durable waits it pays. The counter makes
// every write take writeTime more, as a slow disk would: the writes a
// request's helpers make concurrently (sendflow.Parallel: a batch's
// claims, a trace's parts) then overlap and count as one round, as they
// share the ledger's group syncs; a round starts when a write begins while
// none is in flight.
const writeTime = 40 * time.Millisecond

// ledgerRecords is the badger ledger seen through its interfaces only (no
// AuthorizeClaims).
type ledgerRecords interface {
	storage.Ledger
	storage.Records
	storage.RecordLister
}

// counted counts the rounds of durable writes made through it.
type counted struct {
	ledgerRecords
	mu       sync.Mutex
	inflight int
	rounds   int
	writes   int
	delay    time.Duration // added to every write
}

func (c *counted) begin() func() {
	c.mu.Lock()
	if c.inflight == 0 {
		c.rounds++
	}
	c.inflight++
	c.writes++
	c.mu.Unlock()
	time.Sleep(c.delay)
	return func() {
		c.mu.Lock()
		c.inflight--
		c.mu.Unlock()
	}
}

// reset returns the counts since the last reset.
func (c *counted) reset() (rounds, writes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rounds, writes = c.rounds, c.writes
	c.rounds, c.writes = 0, 0
	return rounds, writes
}

func (c *counted) Authorize(ctx context.Context, r storage.AuthorizeRequest) (storage.Transaction, error) {
	defer c.begin()()
	return c.ledgerRecords.Authorize(ctx, r)
}

func (c *counted) Capture(ctx context.Context, r storage.CaptureRequest) (storage.Transaction, error) {
	defer c.begin()()
	return c.ledgerRecords.Capture(ctx, r)
}

func (c *counted) Cancel(ctx context.Context, svc storage.ServiceName, txn string) (storage.Transaction, error) {
	defer c.begin()()
	return c.ledgerRecords.Cancel(ctx, svc, txn)
}

func (c *counted) PutRecordIfAbsent(ctx context.Context, ns, key string, value []byte, expires time.Time) ([]byte, bool, error) {
	defer c.begin()()
	return c.ledgerRecords.PutRecordIfAbsent(ctx, ns, key, value, expires)
}

func (c *counted) PutRecord(ctx context.Context, ns, key string, value []byte, expires time.Time) error {
	defer c.begin()()
	return c.ledgerRecords.PutRecord(ctx, ns, key, value, expires)
}

func (c *counted) DeleteRecord(ctx context.Context, ns, key string) error {
	defer c.begin()()
	return c.ledgerRecords.DeleteRecord(ctx, ns, key)
}

// countedClaims is counted with the badger ledger's AuthorizeClaims.
type countedClaims struct {
	*counted
	b *badger.Ledger
}

func (c countedClaims) AuthorizeClaims(ctx context.Context, r storage.AuthorizeRequest, claims []storage.Claim) (storage.Transaction, []storage.ClaimResult, error) {
	defer c.begin()()
	return c.b.AuthorizeClaims(ctx, r, claims)
}

// newCountedEnv is an SMS service on l, seen through a counter that adds
// delay to every write; with claims, claim and hold are one change.
func newCountedEnv(t testing.TB, l *badger.Ledger, claims bool, delay time.Duration, senders ...providers.SMSSender) (*env, *counted) {
	t.Helper()
	c := &counted{ledgerRecords: l, delay: delay}
	var lr ledgerRecords = c
	if claims {
		lr = countedClaims{counted: c, b: l}
	}
	m := map[string]providers.SMSSender{}
	for _, s := range senders {
		m[s.Name()] = s
	}
	reg := prometheus.NewRegistry()
	svc, err := New(Settings{Providers: []string{senders[0].Name()}}, Deps{Ledger: lr, Records: lr, Senders: m, PublicURL: testPublicURL, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if got := svc.flow.Claims != nil; got != claims {
		t.Fatalf("claims with the hold: %v, want %v", got, claims)
	}
	srv, err := rpc.New(rpc.Config{Ledger: l, PublicURL: testPublicURL})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Register(ServiceName, svc, svc.Routes()); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Recharge(context.Background(), storage.RechargeRequest{Service: storage.SMS, Account: tokA, Amount: storage.MaxCredits / 2, Kind: storage.EntryRecharge}); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ledger: l, svc: svc, srv: srv, reg: reg}, c
}

// sendN sends n fresh numbers through /api/sms/3/send (i: the call's
// number) and checks every one succeeded.
func (e *env) sendN(i, n int) {
	e.t.Helper()
	var ns []num
	for j := 0; j < n; j++ {
		ns = append(ns, num{fmt.Sprintf("%016x%016x", i, j), fmt.Sprintf("+3247%07d", j)})
	}
	got := e.send3(tokA, "", map[string][]num{"hello": ns})
	for _, x := range ns {
		if got[x.uuid].State != stateSuccess {
			e.t.Fatalf("send %d: %s is %+v", i, x.uuid, got[x.uuid])
		}
	}
}

// TestSendDurableWaits counts the durable write rounds of one send on an
// on-disk ledger: claim and hold in one change save one round per send
// (issue 15 item 5), for one message and for a batch. A late goroutine on
// a busy machine can only split a round in two, so each mode's count is
// the least of three sends.
func TestSendDurableWaits(t *testing.T) {
	for _, n := range []int{1, 50} {
		rounds, writes := map[bool]int{}, map[bool]int{}
		for _, claims := range []bool{false, true} {
			l := openLedgerWith(t, true, badger.Options{Dir: t.TempDir()})
			e, c := newCountedEnv(t, l, claims, writeTime, &fakeSender{name: "fake"})
			for try := 0; try < 3; try++ {
				c.reset()
				e.sendN(try, n)
				r, w := c.reset()
				if try == 0 || r < rounds[claims] {
					rounds[claims] = r
				}
				if try > 0 && w != writes[claims] {
					t.Fatalf("%d writes, then %d for the same send", writes[claims], w)
				}
				writes[claims] = w
				// A retry of the same uuids is answered from the
				// claims, holds nothing and sends nothing.
				e.sendN(try, n)
				if a, _ := l.LookupAccount(context.Background(), storage.SMS, tokA); a.Held != 0 {
					t.Fatalf("held %s after the sends", a.Held)
				}
			}
			t.Logf("%d message(s), claims with the hold %v: %d durable write rounds (%d writes)", n, claims, rounds[claims], writes[claims])
		}
		// The claims' writes (one per message) and the hold's become one.
		if writes[true] != writes[false]-n {
			t.Errorf("%d message(s): %d writes with AuthorizeClaims, %d without: want %d fewer", n, writes[true], writes[false], n)
		}
		if rounds[true] != rounds[false]-1 {
			t.Errorf("%d message(s): %d rounds with AuthorizeClaims, %d without: want one fewer", n, rounds[true], rounds[false])
		}
	}
}

// BenchmarkSendDisk is one /api/sms/3/send of one number through the
// stack on an on-disk ledger, with claims and hold in one change
// ("claims+hold") and in two ("claims,hold"): run with -count to
// interleave them on a noisy machine.
func BenchmarkSendDisk(b *testing.B) {
	for _, mode := range []struct {
		name   string
		claims bool
	}{{"claims,hold", false}, {"claims+hold", true}} {
		b.Run(mode.name, func(b *testing.B) {
			l := openLedgerWith(b, true, badger.Options{Dir: b.TempDir()})
			e, _ := newCountedEnv(b, l, mode.claims, 0, &fakeSender{name: "fake"})
			b.ResetTimer()
			var wg sync.WaitGroup
			// 8 concurrent senders, as Odoo's workers are.
			next := make(chan int)
			for w := 0; w < 8; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range next {
						env := e.call("/api/sms/3/send", map[string]any{"account_token": tokA, "dbuuid": "db",
							"messages": []map[string]any{{"content": "hi", "numbers": []map[string]string{{"uuid": fmt.Sprintf("%032x", i), "number": "+32470000001"}}}}})
						if r, ok := env["result"]; !ok || !strings.Contains(string(r), stateSuccess) {
							b.Errorf("%v", env)
						}
					}
				}()
			}
			for i := 0; i < b.N; i++ {
				next <- i
			}
			close(next)
			wg.Wait()
		})
	}
}

var _ sendflow.ClaimHolder = countedClaims{}
