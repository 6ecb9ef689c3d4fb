package badger

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger/internal/journal"
)

// aggregatesMatch fails t unless the aggregate figures equal a full walk
// of the ledger (what Verify's aggregate check compares) for every service.
func aggregatesMatch(t *testing.T, l *Ledger, when string) {
	t.Helper()
	if err := l.drain(); err != nil {
		t.Fatal(err)
	}
	txn := l.db.NewTransaction(false)
	defer txn.Discard()
	agg, err := readAggregates(txn)
	if err != nil {
		t.Fatal(err)
	}
	full, err := fullFigures(context.Background(), txn)
	if err != nil {
		t.Fatal(err)
	}
	if len(full) == 0 {
		t.Fatalf("%s: nothing walked", when)
	}
	for svc, f := range full {
		if a := agg[svc]; a == nil || *a != *f {
			t.Fatalf("%s: service %s: aggregates %s, walk %s", when, svc, figString(a), figString(f))
		}
	}
	for svc, a := range agg {
		if _, ok := full[svc]; !ok && !a.zero() {
			t.Fatalf("%s: service %s without accounts has aggregates %s", when, svc, figString(a))
		}
	}
}

// TestAggregatesEqualAWalk runs random operations of every kind from
// several goroutines (authorize, capture for less, as much and more than
// held, cancel, expiry by the sweep and by a late capture, recharge,
// adjustment, alerts, bans, accounts created by each route) and checks
// that the aggregates equal a full walk: after the operations, after a
// reopen (the journal replayed), and after more operations under the new
// process's stripe seed.
func TestAggregatesEqualAWalk(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	l := openTemp(t, dir, clock.now, nil)
	ctx := context.Background()
	for _, s := range []storage.Service{
		{Name: "sms", AutoRegister: true, TrialCredits: 3 * storage.Scale},
		{Name: "reveal", AutoRegister: false},
	} {
		if _, err := l.EnsureService(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	run := func(l *Ledger, seed uint64) {
		var wg sync.WaitGroup
		for g := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed, uint64(g)))
				var open []storage.Transaction
				for range 300 {
					svc := []storage.ServiceName{"sms", "reveal"}[rng.IntN(2)]
					tok := storage.AccountToken(fmt.Sprintf("tok%03d", rng.IntN(60)))
					amt := storage.Credits(rng.IntN(4)) * storage.Scale
					switch op := rng.IntN(10); {
					case op < 3:
						txn, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: svc, Account: tok, Amount: amt, TTL: time.Duration(1+rng.IntN(3)) * time.Second})
						if err == nil {
							open = append(open, txn)
						}
					case op < 5 && len(open) > 0:
						i := rng.IntN(len(open))
						c := open[i].Amount + storage.Credits(rng.IntN(3)-1)*storage.Scale
						if c < 0 {
							c = 0
						}
						_, _ = l.Capture(ctx, storage.CaptureRequest{Service: open[i].Service, Transaction: open[i].Token, Amount: &c})
						open = append(open[:i], open[i+1:]...)
					case op < 6 && len(open) > 0:
						i := rng.IntN(len(open))
						_, _ = l.Cancel(ctx, open[i].Service, open[i].Token)
						open = append(open[:i], open[i+1:]...)
					case op < 7:
						kind := storage.EntryRecharge
						if rng.IntN(3) == 0 {
							kind, amt = storage.EntryAdjustment, -amt
						}
						if amt == 0 {
							amt = storage.Scale
						}
						_, _ = l.Recharge(ctx, storage.RechargeRequest{Service: svc, Account: tok, Amount: amt, Kind: kind})
					case op < 8:
						al := storage.Alerts{Enabled: rng.IntN(2) == 0, Threshold: storage.Credits(rng.IntN(6)) * storage.Scale,
							Recipients: []storage.Recipient{{Email: "a@example.com"}}}
						_, _ = l.UpdateAccount(ctx, svc, tok, storage.AccountUpdate{Alerts: &al})
					case op < 9:
						st := []storage.AccountState{storage.Registered, storage.Unregistered, storage.Banned}[rng.IntN(3)]
						_, _ = l.UpdateAccount(ctx, svc, tok, storage.AccountUpdate{State: &st})
					default:
						_, _ = l.Account(ctx, svc, tok, storage.FirstSight{})
					}
				}
			}()
		}
		wg.Wait()
	}
	run(l, 1)
	aggregatesMatch(t, l, "after the operations")
	clock.advance(2 * time.Second)
	if _, err := l.ExpireDue(ctx, clock.now(), 50); err != nil {
		t.Fatal(err)
	}
	aggregatesMatch(t, l, "after a partial sweep")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTemp(t, dir, clock.now, nil)
	aggregatesMatch(t, l, "after a reopen")
	run(l, 2)
	clock.advance(10 * time.Second)
	if _, err := l.ExpireDue(ctx, clock.now(), 1000); err != nil {
		t.Fatal(err)
	}
	aggregatesMatch(t, l, "after more operations and the sweep")
	st, err := NewStatsReader(l).Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Services["sms"]; s.Holds != 0 || s.Held != 0 || s.Accounts[storage.Registered]+s.Accounts[storage.Unregistered]+s.Accounts[storage.Banned] == 0 {
		t.Fatalf("sms after every hold ended: %+v", s)
	}
	r, err := l.Verify(ctx, VerifyOptions{})
	if err != nil || !r.Clean() {
		t.Fatalf("verify: %+v %v", r, err)
	}
}

// TestMigrationToFormat4IsIdempotent: the step from format 3, run again
// (as after a crash before its marker), leaves the same figures and index.
func TestMigrationToFormat4IsIdempotent(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	l := openTemp(t, dir, clock.now, nil)
	ctx := context.Background()
	if _, err := l.EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true, TrialCredits: storage.Scale}); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := l.Account(ctx, "sms", storage.AccountToken(fmt.Sprintf("t%02d", i)), storage.FirstSight{}); err != nil {
			t.Fatal(err)
		}
	}
	// Run the step twice more, as after crashes before its marker: the
	// figures and the index stay exact.
	for range 2 {
		if err := l.migrateFlat(); err != nil {
			t.Fatal(err)
		}
		aggregatesMatch(t, l, "after the migration step")
	}
	for i := range 10 { // and writes after it keep them exact
		if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: storage.AccountToken(fmt.Sprintf("t%02d", i)), Amount: storage.Scale, Kind: storage.EntryRecharge}); err != nil {
			t.Fatal(err)
		}
	}
	aggregatesMatch(t, l, "after writes")
	r, err := l.Verify(ctx, VerifyOptions{})
	if err != nil || !r.Clean() || r.Warnings != 0 {
		t.Fatalf("verify: %+v %v", r, err)
	}
	for i := range 50 {
		tok := storage.AccountToken(fmt.Sprintf("t%02d", i))
		if got, err := l.TokenByHash(ctx, storage.HashToken(tok)); err != nil || got != tok {
			t.Fatalf("TokenByHash(%s) = %q, %v", tok, got, err)
		}
	}
}

// TestOpenFormat3WithJournal opens a format-3 directory whose journal
// holds a hold not yet checkpointed (as an iapd of format 3 leaves it
// after a crash): the migration runs after the replay, so the hold is in
// the figures, logs its cost, and leaves a clean ledger.
func TestOpenFormat3WithJournal(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return at }
	l := openTemp(t, dir, clock, nil)
	ctx := context.Background()
	if _, err := l.EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true, TrialCredits: 10 * storage.Scale}); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []storage.AccountToken{"a", "b"} {
		if _, err := l.Account(ctx, "sms", tok, storage.FirstSight{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// What a format-3 iapd leaves: no 'g' nor 'h' keys, marker 3.
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	var mark uint64
	var a acct
	err = db.Update(func(txn *badger.Txn) error {
		if _, err := get(txn, journalMarkKey(), func(b []byte) error {
			v, n := binary.Uvarint(b)
			if n <= 0 {
				return fmt.Errorf("mark %x", b)
			}
			mark = v
			return nil
		}); err != nil {
			return err
		}
		var found bool
		if a, found, err = getAccount(txn, "sms", "a"); err != nil || !found {
			return fmt.Errorf("account a: %v %v", found, err)
		}
		it := txn.NewIterator(badger.IteratorOptions{})
		var dels [][]byte
		for it.Rewind(); it.Valid(); it.Next() {
			if k := it.Item().Key(); k[0] == pAggregate || k[0] == pTokenHash {
				dels = append(dels, it.Item().KeyCopy(nil))
			}
		}
		it.Close()
		if len(dels) == 0 {
			return errors.New("no 'g' nor 'h' key to remove")
		}
		for _, k := range dels {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return txn.Set(metaKey(), encodeMarker(3, at))
	})
	if err == nil {
		err = db.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	// A hold of 4 on a, journaled and never checkpointed.
	id := newTxnID(at)
	tr := storage.Transaction{Token: hex.EncodeToString(id[:]), Service: "sms", Account: "a", State: storage.Held,
		Amount: 4 * storage.Scale, CreatedAt: at, ExpiresAt: at.Add(time.Hour)}
	a.Seq++
	a.Available -= 4 * storage.Scale
	a.Held += 4 * storage.Scale
	e := storage.Entry{Seq: a.Seq, Time: at, Service: "sms", Account: "a", Kind: storage.EntryHold,
		DAvailable: -4 * storage.Scale, DHeld: 4 * storage.Scale, Transaction: tr.Token}
	rec := journal.AppendRecord(nil, mark+1, []journal.Write{
		{Key: entryKey("sms", "a", a.Seq), Value: encodeEntry(&e)},
		{Key: txnKey(id), Value: encodeTxn(&tr)},
		{Key: expiryKey(tr.ExpiresAt, id), Value: nil},
		{Key: accountKey("sms", "a"), Value: encodeAccount(&a)},
	})
	if err := os.WriteFile(filepath.Join(dir, journal.FileName(mark+1)), rec, 0o600); err != nil {
		t.Fatal(err)
	}

	var logs bytes.Buffer
	l, err = Open(Options{Dir: dir, Now: clock, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if !strings.Contains(logs.String(), "from=3 to=4") || !strings.Contains(logs.String(), "duration=") {
		t.Fatalf("migration not logged with its cost:\n%s", logs.String())
	}
	aggregatesMatch(t, l, "after the migration")
	st, err := NewStatsReader(l).Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Services["sms"]; s.Holds != 1 || s.Held != 4*storage.Scale || s.Authorized != 4*storage.Scale ||
		s.Available != 16*storage.Scale || s.Accounts[storage.Registered] != 2 || s.Recharged != 20*storage.Scale {
		t.Fatalf("figures after the migration: %+v", s)
	}
	for _, tok := range []storage.AccountToken{"a", "b"} {
		if got, err := l.TokenByHash(ctx, storage.HashToken(tok)); err != nil || got != tok {
			t.Fatalf("TokenByHash(%s) = %q, %v", tok, got, err)
		}
	}
	r, err := l.Verify(ctx, VerifyOptions{Now: at})
	if err != nil || !r.Clean() || r.Warnings != 0 {
		t.Fatalf("verify: %+v %v", r, err)
	}
}

// TestVerifyFindsFlatDamage: a missing hashed-token key, one of a token
// without an account (one error: the index and the accounts disagree),
// a key under another token's hash, and a share off by one are reported.
func TestVerifyFindsFlatDamage(t *testing.T) {
	clock := newFakeClock()
	l := openTemp(t, t.TempDir(), clock.now, nil)
	ctx := context.Background()
	if _, err := l.EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true}); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []storage.AccountToken{"a", "b"} {
		if _, err := l.Account(ctx, "sms", tok, storage.FirstSight{}); err != nil {
			t.Fatal(err)
		}
	}
	rawDelete(t, l, tokenHashKey("a"))
	rawSet(t, l, tokenHashKey("ghost"), nil)
	f := aggFig{registered: 1}
	r, err := l.Verify(ctx, VerifyOptions{})
	if err != nil || r.Errors != 1 || r.Problems[0].Check != CheckTokenHash {
		t.Fatalf("verify, index damaged: %+v %v", r, err)
	}
	rawDelete(t, l, tokenHashKey("ghost"))
	rawSet(t, l, tokenHashKey("a"), nil)
	rawSet(t, l, append(tokenHashPrefix(storage.HashToken("b")), "x"...), nil)
	rawSet(t, l, aggKey("sms", nStripes-1+1), encodeAgg(&f)) // a share no stripe writes
	r, err = l.Verify(ctx, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, p := range r.Problems {
		n[p.Check]++
	}
	if n[CheckTokenHash] != 1 || n[CheckAggregate] != 1 || r.Errors != 2 {
		t.Fatalf("verify: %+v", r)
	}
}
