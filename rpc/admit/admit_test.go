package admit

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iapd/iapd/rpc/limit"
	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

type counts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counts) Refused(r string) { c.mu.Lock(); c.m[r]++; c.mu.Unlock() }
func (c *counts) get(r string) int { c.mu.Lock(); defer c.mu.Unlock(); return c.m[r] }

type env struct {
	t     *testing.T
	inner *badger.Ledger
	l     *Ledger
	c     *counts
	now   time.Time
}

// open returns an admit.Ledger over a Badger ledger in dir ("": in
// memory) with the sms service (auto-register, trial 10).
func open(t *testing.T, dir string, cfg limit.Config) *env {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, c: &counts{m: map[string]int{}}, now: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	inner, err := badger.Open(badger.Options{Dir: dir, InMemory: dir == ""})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inner.Close() })
	ctx := context.Background()
	for _, s := range []storage.Service{
		{Name: "sms", AutoRegister: true, TrialCredits: 10 * storage.Scale},
		{Name: "snailmail", AutoRegister: true},
	} {
		if _, err := inner.EnsureService(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	e.inner = inner
	e.l = New(cfg, Deps{Ledger: inner, Records: inner, Report: limit.NewReporter(e.c, nil, 0), Now: func() time.Time { return e.now }})
	return e
}

func from(addr string) context.Context { return limit.WithClient(context.Background(), addr) }

func tok(i int) storage.AccountToken { return storage.AccountToken(fmt.Sprintf("%032x", i)) }

// TestTrialOncePerDatabase (issue 13 finding 5): 100 fresh tokens
// sharing a dbuuid get one trial between them; another database gets
// its own; a token without dbuuid gets none; each account is created.
func TestTrialOncePerDatabase(t *testing.T) {
	e := open(t, "", limit.Config{})
	var total storage.Credits
	for i := range 100 {
		a, err := e.l.Account(from(fmt.Sprint("addr", i)), "sms", tok(i), storage.FirstSight{DBUUID: "db-farm"})
		if err != nil {
			t.Fatal(err)
		}
		if a.State != storage.Registered {
			t.Fatalf("token %d: %s", i, a.State)
		}
		total += a.Available
	}
	if total != 10*storage.Scale {
		t.Fatalf("100 tokens of one database got %s of trial credit, want 10", total)
	}
	if n := e.c.get(ReasonTrialDatabase); n != 99 {
		t.Fatalf("%d trial_database refusals, want 99", n)
	}
	a, err := e.l.Account(from("x"), "sms", tok(1000), storage.FirstSight{DBUUID: "db-other"})
	if err != nil || a.Available != 10*storage.Scale {
		t.Fatalf("another database: %+v %v", a, err)
	}
	a, err = e.l.Account(from("x"), "sms", tok(1001), storage.FirstSight{})
	if err != nil || a.Available != 0 || a.State != storage.Registered || e.c.get(ReasonTrialNoDatabase) != 1 {
		t.Fatalf("without dbuuid: %+v %v", a, err)
	}
	// The first token sees its trial again (no second grant, no refusal).
	if a, err = e.l.Account(from("x"), "sms", tok(0), storage.FirstSight{DBUUID: "db-farm"}); err != nil || a.Available != 10*storage.Scale || a.Recharged != 10*storage.Scale {
		t.Fatalf("second sight: %+v %v", a, err)
	}
}

// TestTrialSurvivesRestart: the claim is durable.
func TestTrialSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	e := open(t, dir, limit.Config{})
	if a, err := e.l.Account(from("a"), "sms", tok(1), storage.FirstSight{DBUUID: "db"}); err != nil || a.Available != 10*storage.Scale {
		t.Fatalf("%+v %v", a, err)
	}
	if err := e.inner.Close(); err != nil {
		t.Fatal(err)
	}
	e = open(t, dir, limit.Config{})
	if a, err := e.l.Account(from("b"), "sms", tok(2), storage.FirstSight{DBUUID: "db"}); err != nil || a.Available != 0 {
		t.Fatalf("after a restart, a second token of the database: %+v %v", a, err)
	}
}

// TestTrialPerAddressAndTotal: distinct databases from one address get
// trials up to the per-address bound; the global bound stops the rest,
// and a database refused by the global bound keeps its claim for later.
func TestTrialPerAddressAndTotal(t *testing.T) {
	e := open(t, "", limit.Config{TrialsPerAddress: limit.Rate{Burst: 3, Per: 24 * time.Hour}, TrialsTotal: limit.Rate{Burst: 4, Per: 24 * time.Hour}})
	got := 0
	for i := range 10 {
		a, err := e.l.Account(from("farm"), "sms", tok(i), storage.FirstSight{DBUUID: fmt.Sprint("db", i)})
		if err != nil {
			t.Fatal(err)
		}
		if a.Available > 0 {
			got++
		}
	}
	if got != 3 || e.c.get(ReasonTrialAddress) != 7 {
		t.Fatalf("one address, 10 databases: %d trials (want 3), %d refusals", got, e.c.get(ReasonTrialAddress))
	}
	// Global: 1 left.
	a, _ := e.l.Account(from("other1"), "sms", tok(100), storage.FirstSight{DBUUID: "dbA"})
	b, _ := e.l.Account(from("other2"), "sms", tok(101), storage.FirstSight{DBUUID: "dbB"})
	if a.Available == 0 || b.Available != 0 || e.c.get(ReasonTrialTotal) != 1 {
		t.Fatalf("global bound: %s %s", a.Available, b.Available)
	}
	e.now = e.now.Add(24 * time.Hour)
	if c, _ := e.l.Account(from("other2"), "sms", tok(102), storage.FirstSight{DBUUID: "dbB"}); c.Available == 0 {
		t.Fatal("a database refused by the global bound lost its trial for good")
	}
}

// TestCreationLimits: per address, per database and in total; an
// existing account is never refused; another address is not affected.
func TestCreationLimits(t *testing.T) {
	e := open(t, "", limit.Config{
		AccountsPerAddress:  limit.Rate{Burst: 5, Per: time.Hour},
		AccountsPerDatabase: limit.Rate{Burst: 3, Per: time.Hour},
		AccountsTotal:       limit.Rate{Burst: 12, Per: time.Hour},
	})
	ok, refused := 0, 0
	for i := range 10 {
		_, err := e.l.Account(from("bot"), "snailmail", tok(i), storage.FirstSight{DBUUID: fmt.Sprint("db", i)})
		switch {
		case err == nil:
			ok++
		case storage.Is(err, storage.Forbidden):
			refused++
		default:
			t.Fatal(err)
		}
	}
	if ok != 5 || refused != 5 || e.c.get(ReasonAccountAddress) != 5 {
		t.Fatalf("one address: %d created, %d refused", ok, refused)
	}
	if _, err := e.inner.LookupAccount(context.Background(), "snailmail", tok(7)); !storage.Is(err, storage.NotFound) {
		t.Fatalf("a refused account exists: %v", err)
	}
	// Existing accounts still answer, from the same address.
	if _, err := e.l.Account(from("bot"), "snailmail", tok(0), storage.FirstSight{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.l.Authorize(from("bot"), storage.AuthorizeRequest{Service: "snailmail", Account: tok(1), Amount: 0, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	// Authorize (the caller proved a service key: a provider, one
	// address for all its customers) creates past the address limit.
	if _, err := e.l.Authorize(from("bot"), storage.AuthorizeRequest{Service: "snailmail", Account: tok(50), Amount: 0, TTL: time.Minute}); err != nil {
		t.Fatalf("authorize creating past the address limit: %v", err)
	}
	// Per database, from many addresses.
	for i := range 4 {
		_, err := e.l.Account(from(fmt.Sprint("h", i)), "snailmail", tok(200+i), storage.FirstSight{DBUUID: "one-db"})
		if (i < 3) != (err == nil) {
			t.Fatalf("database account %d: %v", i, err)
		}
	}
	// Total: 5 + 3 created (authorize's takes nothing); 4 left for everyone.
	n := 0
	for i := range 10 {
		if _, err := e.l.Account(from(fmt.Sprint("g", i)), "snailmail", tok(300+i), storage.FirstSight{DBUUID: fmt.Sprint("g", i)}); err == nil {
			n++
		}
	}
	if n != 4 || e.c.get(ReasonAccountTotal) != 6 {
		t.Fatalf("global bound: %d created, want 4", n)
	}
	// Unknown service: NotFound, nothing spent.
	if _, err := e.l.Account(from("z"), "nope", tok(1), storage.FirstSight{}); !storage.Is(err, storage.NotFound) {
		t.Fatalf("unknown service: %v", err)
	}
}

// TestAuthorizeFirstSightTrial: an authorize that creates the account
// gets the trial once per database, whatever the address budget.
func TestAuthorizeFirstSightTrial(t *testing.T) {
	e := open(t, "", limit.Config{TrialsPerAddress: limit.Rate{Burst: 1, Per: time.Hour}})
	for i := range 3 { // three databases through one provider
		if _, err := e.l.Authorize(from("provider"), storage.AuthorizeRequest{Service: "sms", Account: tok(10 + i), Amount: storage.Scale, TTL: time.Minute,
			FirstSight: storage.FirstSight{DBUUID: fmt.Sprint("pdb", i)}}); err != nil {
			t.Fatalf("database %d: %v", i, err)
		}
	}
	if _, err := e.l.Authorize(from("a"), storage.AuthorizeRequest{Service: "sms", Account: tok(1), Amount: storage.Scale, TTL: time.Minute, FirstSight: storage.FirstSight{DBUUID: "db"}}); err != nil {
		t.Fatal(err)
	}
	_, err := e.l.Authorize(from("a"), storage.AuthorizeRequest{Service: "sms", Account: tok(2), Amount: storage.Scale, TTL: time.Minute, FirstSight: storage.FirstSight{DBUUID: "db"}})
	if !storage.Is(err, storage.InsufficientCredit) {
		t.Fatalf("second token of the database: %v", err)
	}
}

// TestTrialRefusalSpendsNoAddressBudget: tokens of a database that had
// its trial do not spend the address's trial budget.
func TestTrialRefusalSpendsNoAddressBudget(t *testing.T) {
	e := open(t, "", limit.Config{TrialsPerAddress: limit.Rate{Burst: 2, Per: 24 * time.Hour}})
	for i := range 50 {
		if _, err := e.l.Account(from("one"), "sms", tok(i), storage.FirstSight{DBUUID: "shared"}); err != nil {
			t.Fatal(err)
		}
	}
	a, err := e.l.Account(from("one"), "sms", tok(100), storage.FirstSight{DBUUID: "second"})
	if err != nil || a.Available != 10*storage.Scale || e.c.get(ReasonTrialAddress) != 0 {
		t.Fatalf("second database from the address: %+v %v (trial_address %d)", a, err, e.c.get(ReasonTrialAddress))
	}
}

// countLookups counts LookupAccount calls on the wrapped ledger.
type countLookups struct {
	storage.Ledger
	n atomic.Int64
}

func (c *countLookups) LookupAccount(ctx context.Context, svc storage.ServiceName, tok storage.AccountToken) (storage.Account, error) {
	c.n.Add(1)
	return c.Ledger.LookupAccount(ctx, svc, tok)
}

// TestAuthorizeLooksUpOnce: only the first authorize of an account looks
// it up (a lookup waits for the pending group commit); the hot path then
// goes straight to the ledger.
func TestAuthorizeLooksUpOnce(t *testing.T) {
	e := open(t, "", limit.Config{})
	c := &countLookups{Ledger: e.inner}
	l := New(limit.Config{AccountsPerAddress: limit.DefaultAccountsPerAddress, AccountsPerDatabase: limit.DefaultAccountsPerDatabase,
		AccountsTotal: limit.DefaultAccountsTotal, TrialsPerAddress: limit.DefaultTrialsPerAddress, TrialsTotal: limit.DefaultTrialsTotal},
		Deps{Ledger: c, Records: e.inner})
	for range 20 {
		if _, err := l.Authorize(from("a"), storage.AuthorizeRequest{Service: "snailmail", Account: tok(1), Amount: 0, TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.n.Load(); n > 2 {
		t.Fatalf("%d lookups for 20 authorizes of one account, want at most 2 (the first, and Account's on creation)", n)
	}
}

// failingCreate fails the next n creations without creating.
type failingCreate struct {
	storage.Ledger
	n int
}

func (f *failingCreate) Account(ctx context.Context, svc storage.ServiceName, tok storage.AccountToken, fs storage.FirstSight) (storage.Account, error) {
	if f.n > 0 {
		f.n--
		return storage.Account{}, storage.E("account", storage.Unavailable, "disk full")
	}
	return f.Ledger.Account(ctx, svc, tok, fs)
}

// TestFailedCreationKeepsTheTrial: a creation that failed (nothing
// created) gives the database's claim back; the claim stores no token.
func TestFailedCreationKeepsTheTrial(t *testing.T) {
	e := open(t, "", limit.Config{})
	f := &failingCreate{Ledger: e.inner, n: 1}
	l := New(limit.Config{AccountsPerAddress: limit.DefaultAccountsPerAddress, AccountsPerDatabase: limit.DefaultAccountsPerDatabase,
		AccountsTotal: limit.DefaultAccountsTotal, TrialsPerAddress: limit.DefaultTrialsPerAddress, TrialsTotal: limit.DefaultTrialsTotal},
		Deps{Ledger: f, Records: e.inner})
	if _, err := l.Account(from("a"), "sms", tok(1), storage.FirstSight{DBUUID: "db"}); !storage.Is(err, storage.Unavailable) {
		t.Fatalf("first creation: %v", err)
	}
	a, err := l.Account(from("a"), "sms", tok(2), storage.FirstSight{DBUUID: "db"})
	if err != nil || a.Available != 10*storage.Scale {
		t.Fatalf("after a failed creation, the database's next token: %+v %v", a, err)
	}
	v, err := e.inner.GetRecord(context.Background(), TrialNamespace, trialKey("sms", "db"))
	if err != nil || strings.Contains(string(v), string(tok(2))) || len(v) != 16 {
		t.Fatalf("claim %q %v", v, err)
	}
}

// TestAuthorizeClaims: claims and their hold go through the wrapped
// ledger's AuthorizeClaims, admitted as Authorize is (the trial once per
// database); a wrapped ledger without it refuses, Invalid.
func TestAuthorizeClaims(t *testing.T) {
	e := open(t, "", limit.Config{})
	claims := func(k string) []storage.Claim {
		return []storage.Claim{{NS: "sms-uuid", Key: k, Value: []byte("p"), Expires: time.Now().Add(time.Hour), Price: storage.Scale}}
	}
	req := func(i int) storage.AuthorizeRequest {
		return storage.AuthorizeRequest{Service: "sms", Account: tok(i), TTL: time.Minute, FirstSight: storage.FirstSight{DBUUID: "db"}}
	}
	txn, rs, err := e.l.AuthorizeClaims(from("a"), req(1), claims("k1"))
	if err != nil || txn.Amount != storage.Scale || len(rs) != 1 || !rs[0].Created {
		t.Fatalf("first account of the database: %+v %v %v", txn, rs, err)
	}
	if a, _ := e.inner.LookupAccount(context.Background(), "sms", tok(1)); a.Available != 9*storage.Scale {
		t.Fatalf("trial not granted to the first account: %+v", a)
	}
	// The second token of the database gets no trial: short of credit,
	// and its claim is not written.
	if _, _, err := e.l.AuthorizeClaims(from("a"), req(2), claims("k2")); !storage.Is(err, storage.InsufficientCredit) {
		t.Fatalf("second token of the database: %v", err)
	}
	if _, err := e.inner.GetRecord(context.Background(), "sms-uuid", "k2"); !storage.Is(err, storage.NotFound) {
		t.Fatalf("claim of a refused hold: %v", err)
	}
	plain := New(limit.Config{}, Deps{Ledger: &countLookups{Ledger: e.inner}, Records: e.inner})
	if _, _, err := plain.AuthorizeClaims(from("a"), req(1), claims("k3")); !storage.Is(err, storage.Invalid) {
		t.Fatalf("over a ledger without AuthorizeClaims: %v", err)
	}
	if plain.Unwrap() == nil || e.l.Unwrap() != storage.Ledger(e.inner) {
		t.Fatal("Unwrap does not return the wrapped ledger")
	}
}
