package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/postgres/pgtest"
	"github.com/iapd/iapd/storage/storagetest"
)

// The optional operation rpc/sendflow uses when the ledger has it
// (storage must not import rpc: storagetest states the same method set).
var _ storagetest.ClaimHolder = (*Ledger)(nil)

func claimsReq(tok storage.AccountToken, amount storage.Credits) storage.AuthorizeRequest {
	return storage.AuthorizeRequest{Service: "sms", Account: tok, Amount: amount, TTL: time.Hour, Description: "send"}
}

// TestClaimsTwoNodes: two ledgers on one database ("nodes"), 24 callers
// claiming the same 40 keys at once, each in its own order and for its
// own account (half of them seen for the first time, so the first-sight
// path races too): each key is created by exactly one caller, its price is
// held exactly once in all, each caller's hold is the sum of the prices of
// the keys it created, and each record holds its creator's value.
func TestClaimsTwoNodes(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Schema(t)
	nodes := make([]*Ledger, 2)
	for i := range nodes {
		cfg, err := pgxpool.ParseConfig(url)
		if err != nil {
			t.Fatal(err)
		}
		if nodes[i], err = open(ctx, cfg, Options{Registerer: prometheus.NewRegistry()}); err != nil {
			t.Fatal(err)
		}
		defer nodes[i].Close()
	}
	if _, err := nodes[0].EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true, TrialCredits: 1000 * storage.Scale}); err != nil {
		t.Fatal(err)
	}
	const callers, keys = 24, 40
	price := func(k int) storage.Credits { return storage.Credits(k+1) * storage.Scale / 100 }
	toks := make([]storage.AccountToken, callers)
	for i := range toks {
		toks[i] = storage.AccountToken(fmt.Sprintf("claims-node-%04d", i))
		if i%2 == 0 { // the odd ones are first sights
			if _, err := nodes[1].Account(ctx, "sms", toks[i], storage.FirstSight{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	type outcome struct {
		txn     storage.Transaction
		claims  []storage.Claim
		results []storage.ClaimResult
		err     error
	}
	outs := make([]outcome, callers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < callers; i++ {
		var cs []storage.Claim
		for _, k := range rand.Perm(keys) {
			cs = append(cs, storage.Claim{NS: "uuids", Key: fmt.Sprintf("key-%02d", k), Value: []byte(fmt.Sprintf("caller-%d", i)), Price: price(k)})
		}
		outs[i].claims = cs
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			o := &outs[i]
			o.txn, o.results, o.err = nodes[i%2].AuthorizeClaims(ctx, claimsReq(toks[i], 0), o.claims)
		}()
	}
	close(start)
	wg.Wait()

	for i, n := range nodes { // a figure, not a condition: retries are the contract's business
		t.Logf("node %d: %v serialization and %v deadlock retries", i,
			testutil.ToFloat64(n.retries.WithLabelValues("serialization")), testutil.ToFloat64(n.retries.WithLabelValues("deadlock")))
	}
	creator := make(map[string]int)
	var heldByCallers storage.Credits
	for i, o := range outs {
		if o.err != nil {
			t.Fatalf("caller %d: %v", i, o.err)
		}
		var want storage.Credits
		for j, r := range o.results {
			c := o.claims[j]
			if r.Created {
				if prev, ok := creator[c.Key]; ok {
					t.Fatalf("%s created by callers %d and %d", c.Key, prev, i)
				}
				creator[c.Key] = i
				want += c.Price
			}
		}
		if o.txn.Amount != want || (want == 0) != (o.txn.Token == "") {
			t.Fatalf("caller %d: hold %+v, want %s (the prices of the keys it created)", i, o.txn, want)
		}
		heldByCallers += want
	}
	if len(creator) != keys {
		t.Fatalf("%d keys created, want %d", len(creator), keys)
	}
	var all storage.Credits
	for k := 0; k < keys; k++ {
		all += price(k)
	}
	var held storage.Credits
	for i, tok := range toks {
		a, err := nodes[0].LookupAccount(ctx, "sms", tok)
		if storage.Is(err, storage.NotFound) && i%2 == 1 && outs[i].txn.Token == "" {
			continue // a first sight that created nothing writes nothing
		}
		if err != nil {
			t.Fatalf("account %d: %v", i, err)
		}
		held += a.Held
	}
	if held != all || heldByCallers != all {
		t.Fatalf("held %s in the accounts, %s by the callers' holds, want %s: each key priced once", held, heldByCallers, all)
	}
	for k := 0; k < keys; k++ {
		key := fmt.Sprintf("key-%02d", k)
		v, err := nodes[1].GetRecord(ctx, "uuids", key)
		if err != nil || string(v) != fmt.Sprintf("caller-%d", creator[key]) {
			t.Fatalf("%s: %q %v, want the creator's value caller-%d", key, v, err, creator[key])
		}
	}
	for i, o := range outs { // a found claim reports the creator's value
		for j, r := range o.results {
			if want := fmt.Sprintf("caller-%d", creator[o.claims[j].Key]); string(r.Stored) != want {
				t.Fatalf("caller %d, %s: stored %q, want %q", i, o.claims[j].Key, r.Stored, want)
			}
		}
	}
}

// TestClaimsFirstSightRefused: an account seen for the first time whose
// trial credit does not cover the claims is kept (with its trial), and
// no claim is written (the savepoint path); one that covers them gets
// the claims and the hold; one whose claims are all found is not written.
func TestClaimsFirstSightRefused(t *testing.T) {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(pgtest.Schema(t))
	if err != nil {
		t.Fatal(err)
	}
	l, err := open(ctx, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true, TrialCredits: 2 * storage.Scale}); err != nil {
		t.Fatal(err)
	}
	cs := []storage.Claim{{NS: "uuids", Key: "a", Value: []byte("va"), Price: storage.Scale}, {NS: "uuids", Key: "b", Value: []byte("vb"), Price: 2 * storage.Scale}}
	_, rs, err := l.AuthorizeClaims(ctx, storage.AuthorizeRequest{Service: "sms", Account: "fresh-token-0001", TTL: time.Hour,
		FirstSight: storage.FirstSight{DBUUID: "db-1"}}, cs)
	var se *storage.Error
	if !errors.As(err, &se) || se.Kind != storage.InsufficientCredit || se.Credit != 3*storage.Scale || rs != nil {
		t.Fatalf("first sight short of credit: %v %v, want InsufficientCredit for 3 credits", err, rs)
	}
	for _, k := range []string{"a", "b"} {
		if _, err := l.GetRecord(ctx, "uuids", k); !storage.Is(err, storage.NotFound) {
			t.Fatalf("claim %s written by a refused call: %v", k, err)
		}
	}
	a, err := l.LookupAccount(ctx, "sms", "fresh-token-0001")
	if err != nil || a.Available != 2*storage.Scale || a.Held != 0 || a.DBUUID != "db-1" {
		t.Fatalf("first sight not kept: %+v %v", a, err)
	}

	txn, rs, err := l.AuthorizeClaims(ctx, storage.AuthorizeRequest{Service: "sms", Account: "fresh-token-0002", TTL: time.Hour},
		[]storage.Claim{cs[0], {NS: "uuids", Key: "empty"}})
	if err != nil || txn.Amount != storage.Scale || len(rs) != 2 || !rs[0].Created || !rs[1].Created || rs[1].Stored == nil || len(rs[1].Stored) != 0 {
		t.Fatalf("first sight with credit: %+v %v %v", txn, rs, err)
	}
	// A found claim of an empty value reads back empty, not nil.
	if _, rs, err := l.AuthorizeClaims(ctx, claimsReq("fresh-token-0002", 0), []storage.Claim{{NS: "uuids", Key: "empty", Value: []byte("x")}}); err != nil ||
		len(rs) != 1 || rs[0].Created || rs[0].Stored == nil || len(rs[0].Stored) != 0 {
		t.Fatalf("empty value found: %v %v", rs, err)
	}
	if a, err := l.LookupAccount(ctx, "sms", "fresh-token-0002"); err != nil || a.Available != storage.Scale || a.Held != storage.Scale {
		t.Fatalf("account after the hold: %+v %v", a, err)
	}
	// Nothing created and no amount: not even the account is written.
	txn, rs, err = l.AuthorizeClaims(ctx, storage.AuthorizeRequest{Service: "sms", Account: "fresh-token-0003", TTL: time.Hour}, cs[:1])
	if err != nil || txn.Token != "" || len(rs) != 1 || rs[0].Created || string(rs[0].Stored) != "va" {
		t.Fatalf("first sight, claims all found: %+v %v %v", txn, rs, err)
	}
	if _, err := l.LookupAccount(ctx, "sms", "fresh-token-0003"); !storage.Is(err, storage.NotFound) {
		t.Fatalf("an account written by a call that created nothing: %v", err)
	}
	if rep, err := l.Verify(ctx, 0); err != nil || !rep.Clean() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// TestClaimsRoundTrips pins AuthorizeClaims' round trips (docs/postgres.md):
// on an existing account 2, as Authorize ([BEGIN, lock the account, insert
// the claims, read them] then [hold, entry, account, COMMIT]), whether
// claims are created or all found.
func TestClaimsRoundTrips(t *testing.T) {
	ctx := context.Background()
	l, trips := countedLedger(t)
	if _, err := l.EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true, TrialCredits: storage.Scale}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "tok", Amount: 100 * storage.Scale, Kind: storage.EntryRecharge}); err != nil {
		t.Fatal(err)
	}
	count := func(what string, want int64, fn func() error) {
		t.Helper()
		before := trips.n.Load()
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := trips.n.Load() - before; got != want {
			t.Errorf("%s: %d round trips, want %d", what, got, want)
		}
	}
	claims := func(round int, tok storage.AccountToken, n int) func() error {
		return func() error {
			var cs []storage.Claim
			for i := 0; i < n; i++ {
				cs = append(cs, storage.Claim{NS: "uuids", Key: fmt.Sprintf("%d-%d", round, i), Value: []byte("v"), Price: storage.Scale / 10})
			}
			_, _, err := l.AuthorizeClaims(ctx, claimsReq(tok, 0), cs)
			return err
		}
	}
	for round := 0; round < 2; round++ { // the first warms the statement cache
		if round == 0 {
			_ = claims(round, "tok", 3)()
			_ = claims(round, "tok", 3)()
			_ = claims(round, "first-sight-0", 1)()
			continue
		}
		count("claims created", 2, claims(round, "tok", 3))
		count("claims found", 2, claims(round, "tok", 3))
		// [BEGIN, lock (absent), claims], ROLLBACK, lock, service, insert
		// the account, [trial entry, SAVEPOINT, claims], [hold, COMMIT].
		count("claims on a first sight", 7, claims(round+1, "first-sight-1", 1))
	}
}
