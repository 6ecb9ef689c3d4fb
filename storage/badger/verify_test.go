package badger

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
)

// verifyAt runs Verify at the time t and fails the test on a walk error.
func verifyAt(t testing.TB, l *Ledger, at time.Time, grace time.Duration) Report {
	t.Helper()
	r, err := l.Verify(context.Background(), VerifyOptions{Now: at, Grace: grace})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return r
}

func problemsString(r Report) string {
	var b strings.Builder
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "  %s %s %s/%s txn=%s: %s\n", p.Severity, p.Check, p.Service, p.Account, p.Transaction, p.Detail)
	}
	return b.String()
}

// findProblem returns the problem of check on the account, failing if none.
func findProblem(t testing.TB, r Report, check string, svc storage.ServiceName, tok storage.AccountToken, detail string) Problem {
	t.Helper()
	for _, p := range r.Problems {
		if p.Check == check && p.Service == svc && p.Account == tok && strings.Contains(p.Detail, detail) {
			return p
		}
	}
	t.Fatalf("no %s problem on %s/%s with %q; report:\n%s", check, svc, tok, detail, problemsString(r))
	return Problem{}
}

func TestVerifyClean(t *testing.T) {
	clock := newFakeClock()
	l := openTemp(t, t.TempDir(), clock.now, nil)
	p := populate(t, l, clock)
	r := verifyAt(t, l, p.ended, 0)
	if !r.Clean() || r.Warnings != 0 || len(r.Problems) != 0 {
		t.Fatalf("populated ledger not clean: %d errors, %d warnings\n%s", r.Errors, r.Warnings, problemsString(r))
	}
	if r.Services != 3 || r.Accounts != 5 || r.Transactions != 6 || r.OpenHolds != 1 || r.Format != FormatVersion {
		t.Fatalf("counts: %+v", r)
	}
	if r.Entries < 15 {
		t.Fatalf("only %d entries walked", r.Entries)
	}
}

// TestVerifyDetectsCorruption damages the ledger one way at a time and
// checks that Verify names the account and the discrepancy.
func TestVerifyDetectsCorruption(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, l *Ledger, p populated)
		want   []Problem // Check, Service, Account, and a part of Detail
	}{
		{"available flipped", func(t *testing.T, l *Ledger, p populated) {
			corruptAccount(t, l, "sms", tokA, func(a *storage.Account) { a.Available += 5 * storage.Scale })
		}, []Problem{
			{Check: CheckInvariant, Service: "sms", Account: tokA, Detail: "recharged 99.5 ≠ available 85.5 + held 7 + captured 12 (sum 104.5, difference -5)"},
			{Check: CheckEntrySum, Service: "sms", Account: tokA, Detail: "available is 85.5 but its entries sum to 80.5 (difference 5)"},
		}},
		{"recharged and available raised together", func(t *testing.T, l *Ledger, p populated) {
			// The invariant still holds: only the entries tell.
			corruptAccount(t, l, "geocoding", tokB, func(a *storage.Account) { a.Recharged += 1000; a.Available += 1000 })
		}, []Problem{
			{Check: CheckEntrySum, Service: "geocoding", Account: tokB, Detail: "recharged is 2.6 but its entries sum to 2.5 (difference 0.1)"},
			{Check: CheckEntrySum, Service: "geocoding", Account: tokB, Detail: "available is 1.1"},
		}},
		{"negative available", func(t *testing.T, l *Ledger, p populated) {
			corruptAccount(t, l, "geocoding", tokB, func(a *storage.Account) { a.Available -= 20000; a.Captured += 20000 })
		}, []Problem{
			{Check: CheckNegative, Service: "geocoding", Account: tokB, Detail: "available is negative: -1"},
		}},
		{"entry amount flipped", func(t *testing.T, l *Ledger, p populated) {
			corruptEntry(t, l, "sms", tokA, 1, func(e *storage.Entry) { e.DRecharged, e.DAvailable = 1000*storage.Scale, 1000*storage.Scale })
		}, []Problem{
			{Check: CheckEntrySum, Service: "sms", Account: tokA, Detail: "recharged is 99.5 but its entries sum to 999.5"},
		}},
		{"entry unbalanced", func(t *testing.T, l *Ledger, p populated) {
			corruptEntry(t, l, "sms", tokA, 1, func(e *storage.Entry) { e.DAvailable-- })
		}, []Problem{
			{Check: CheckEntryBalance, Service: "sms", Account: tokA, Detail: "entry 1 (recharge)"},
		}},
		{"entry missing", func(t *testing.T, l *Ledger, p populated) {
			rawDelete(t, l, entryKey("sms", tokA, 2))
		}, []Problem{
			{Check: CheckEntrySeq, Service: "sms", Account: tokA, Detail: "entry seqs jump from 1 to 3"},
		}},
		{"hold amount changed", func(t *testing.T, l *Ledger, p populated) {
			corruptTxn(t, l, p.open.Token, func(tr *storage.Transaction) { tr.Amount = 8 * storage.Scale })
		}, []Problem{
			{Check: CheckHeld, Service: "sms", Account: tokA, Detail: "held 7, but the account's 1 open holds sum to 8 (difference -1)"},
		}},
		{"expiry index lost", func(t *testing.T, l *Ledger, p populated) {
			id, _ := parseTxnToken(p.open.Token)
			rawDelete(t, l, expiryKey(p.open.ExpiresAt, id))
		}, []Problem{
			{Check: CheckExpiryIndex, Service: "sms", Account: tokA, Transaction: "open", Detail: "missing from the expiry index"},
		}},
		{"stale expiry index", func(t *testing.T, l *Ledger, p populated) {
			id, _ := parseTxnToken(p.expired.Token)
			rawSet(t, l, expiryKey(p.expired.ExpiresAt, id), nil)
		}, []Problem{
			{Check: CheckExpiryIndex, Service: "sms", Account: tokA, Transaction: "expired", Detail: "of a expired transaction"},
		}},
		{"token index lost", func(t *testing.T, l *Ledger, p populated) {
			rawDelete(t, l, tokenIdxKey(tokC, "snailmail"))
		}, []Problem{
			{Check: CheckTokenIndex, Service: "snailmail", Account: tokC, Detail: "missing from the token index"},
		}},
		{"orphan entries", func(t *testing.T, l *Ledger, p populated) {
			e := storage.Entry{Kind: storage.EntryRecharge, DRecharged: 1, DAvailable: 1, Time: p.ended}
			rawSet(t, l, entryKey("sms", "ghost", 1), encodeEntry(&e))
		}, []Problem{
			{Check: CheckOrphanEntry, Service: "sms", Account: "ghost", Detail: "does not exist"},
		}},
		{"undecodable account", func(t *testing.T, l *Ledger, p populated) {
			rawSet(t, l, accountKey("snailmail", tokC), []byte{formatV1, 0xff})
		}, []Problem{
			{Check: CheckRecord, Service: "snailmail", Account: tokC, Detail: "account record"},
		}},
		{"ref index wrong", func(t *testing.T, l *Ledger, p populated) {
			rawSet(t, l, refKey("sms", tokA, "invoice-1"), encodeSeq(2))
		}, []Problem{
			{Check: CheckRefIndex, Service: "sms", Account: tokA, Detail: "entry 2, which has another ref"},
		}},
		{"format marker lost", func(t *testing.T, l *Ledger, p populated) {
			rawDelete(t, l, metaKey())
		}, []Problem{
			{Check: CheckFormat, Detail: "no format marker"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clock := newFakeClock()
			l := openTemp(t, t.TempDir(), clock.now, nil)
			p := populate(t, l, clock)
			c.damage(t, l, p)
			r := verifyAt(t, l, p.ended, 0)
			if r.Clean() {
				t.Fatalf("damage not detected:\n%s", problemsString(r))
			}
			for _, w := range c.want {
				got := findProblem(t, r, w.Check, w.Service, w.Account, w.Detail)
				if got.Severity != SeverityError {
					t.Errorf("%s: severity %s", w.Check, got.Severity)
				}
				switch w.Transaction {
				case "open":
					if got.Transaction != p.open.Token {
						t.Errorf("%s: transaction %q, want the open hold", w.Check, got.Transaction)
					}
				case "expired":
					if got.Transaction != p.expired.Token {
						t.Errorf("%s: transaction %q, want the expired hold", w.Check, got.Transaction)
					}
				}
				for _, tok := range []storage.AccountToken{tokA, tokB, tokC} {
					if strings.Contains(got.Detail, string(tok)) {
						t.Errorf("detail holds a token: %s", got.Detail)
					}
				}
			}
		})
	}
}

func TestVerifyOverdueHolds(t *testing.T) {
	clock := newFakeClock()
	l := openTemp(t, t.TempDir(), clock.now, nil)
	p := populate(t, l, clock)
	due := p.open.ExpiresAt
	for _, c := range []struct {
		at     time.Time
		grace  time.Duration
		errors int
		warns  int
	}{
		{due.Add(-time.Second), 0, 0, 0},
		{due, 0, 0, 1},
		{due.Add(59 * time.Minute), 0, 0, 1},
		{due.Add(61 * time.Minute), 0, 1, 0},
		{due.Add(61 * time.Minute), 2 * time.Hour, 0, 1},
		{due.Add(1000 * time.Hour), -1, 0, 1},
	} {
		r := verifyAt(t, l, c.at, c.grace)
		if r.Errors != c.errors || r.Warnings != c.warns {
			t.Fatalf("at expiry%+v, grace %v: %d errors, %d warnings, want %d, %d\n%s",
				c.at.Sub(due), c.grace, r.Errors, r.Warnings, c.errors, c.warns, problemsString(r))
		}
		if c.errors+c.warns > 0 {
			findProblem(t, r, CheckOverdueHold, "sms", tokA, "open hold of 7 expired at")
		}
	}
}

func TestVerifyCapsProblems(t *testing.T) {
	clock := newFakeClock()
	l := openTemp(t, t.TempDir(), clock.now, nil)
	populate(t, l, clock)
	for i := 0; i < 30; i++ {
		e := storage.Entry{Kind: storage.EntryRecharge, DRecharged: 1, DAvailable: 1}
		rawSet(t, l, entryKey("sms", storage.AccountToken(fmt.Sprintf("ghost%02d", i)), 1), encodeEntry(&e))
	}
	r, err := l.Verify(context.Background(), VerifyOptions{MaxProblems: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Problems) != 10 || r.Errors != 30 || r.Omitted != 20 {
		t.Fatalf("%d problems listed, %d errors, %d omitted", len(r.Problems), r.Errors, r.Omitted)
	}
}

// TestVerifyUnderLoad runs Verify again and again while workers authorize,
// capture, cancel and recharge: every report, one snapshot each, must be
// clean.
func TestVerifyUnderLoad(t *testing.T) {
	ctx := context.Background()
	l := openTemp(t, t.TempDir(), nil, nil)
	if _, err := l.EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true}); err != nil {
		t.Fatal(err)
	}
	const nAccts = 8
	for i := 0; i < nAccts; i++ {
		if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: storage.AccountToken(fmt.Sprintf("acct%d", i)),
			Amount: 1000 * storage.Scale, Kind: storage.EntryRecharge}); err != nil {
			t.Fatal(err)
		}
	}
	var stop atomic.Bool
	var ops atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for !stop.Load() {
				tok := storage.AccountToken(fmt.Sprintf("acct%d", rng.IntN(nAccts)))
				tr, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: tok, Amount: storage.Credits(1 + rng.IntN(20000)), TTL: time.Hour})
				if storage.Is(err, storage.InsufficientCredit) {
					_, err = l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: tok, Amount: 100 * storage.Scale, Kind: storage.EntryRecharge})
				} else if err == nil {
					switch rng.IntN(3) {
					case 0:
						_, err = l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: tr.Token})
					case 1:
						half := tr.Amount / 2
						_, err = l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: tr.Token, Amount: &half})
					default:
						_, err = l.Cancel(ctx, "sms", tr.Token)
					}
				}
				if err != nil {
					errs <- err
					return
				}
				ops.Add(1)
			}
		}()
	}
	// Verify for 1.5 s, and on until there were 2 verifications and 100
	// operations (a minute at most: a shared CPU makes them slow, not
	// absent).
	began := time.Now()
	enough := func(n int) bool {
		d := time.Since(began)
		return d > time.Minute || d > 1500*time.Millisecond && n >= 2 && ops.Load() >= 100 || len(errs) > 0
	}
	n := 0
	for ; !enough(n); n++ {
		r, err := l.Verify(ctx, VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !r.Clean() || r.Warnings != 0 {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("verify %d under load: %d errors\n%s", n, r.Errors, problemsString(r))
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d clean verifications during %d operations", n, ops.Load())
	if n < 2 || ops.Load() < 100 {
		t.Fatalf("%d verifications, %d operations: the load did not run", n, ops.Load())
	}
}
