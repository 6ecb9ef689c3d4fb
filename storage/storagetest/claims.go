package storagetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
)

// ClaimHolder is the optional operation that writes claims and their hold
// as one change (storage.Claim; rpc/sendflow uses it when the ledger has
// it). A store that implements it runs the Claims subtests of RunExtras.
type ClaimHolder interface {
	AuthorizeClaims(ctx context.Context, r storage.AuthorizeRequest, claims []storage.Claim) (storage.Transaction, []storage.ClaimResult, error)
}

func (e *xenv) claimHolder() ClaimHolder {
	e.t.Helper()
	ch, ok := e.x.(ClaimHolder)
	if !ok {
		e.t.Skip("the store has no AuthorizeClaims: senders claim, then hold")
	}
	return ch
}

func (e *xenv) claimReq(tok storage.AccountToken, amount storage.Credits) storage.AuthorizeRequest {
	return storage.AuthorizeRequest{Service: storage.SMS, Account: tok, Amount: amount, TTL: time.Hour, Description: "claims, send s1"}
}

func (e *xenv) claim(key, value string, price storage.Credits) storage.Claim {
	return storage.Claim{NS: "claims", Key: key, Value: []byte(value), Expires: e.clock.Now().Add(time.Hour), Price: price}
}

// wantClaims checks which claims a call created and what each found.
func wantClaims(t *testing.T, got []storage.ClaimResult, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d results, want %d", len(got), len(want))
	}
	for i, w := range want {
		created := w[0] == '+'
		if got[i].Created != created || string(got[i].Stored) != w[1:] {
			t.Fatalf("claim %d: created %v stored %q, want %q (+ created, = found)", i, got[i].Created, got[i].Stored, w)
		}
	}
}

// testClaims: the absent claims are created and their prices held with
// r.Amount, as one change; found ones are answered from the record.
func testClaims(t *testing.T, e *xenv) {
	ch := e.claimHolder()
	const tok = "claims-token-0001"
	e.service(storage.SMS, true, 0)
	e.recharge(storage.SMS, tok, cr(10))

	txn, rs, err := ch.AuthorizeClaims(e.ctx, e.claimReq(tok, cr(1)), []storage.Claim{
		e.claim("a", "va", cr(2)), e.claim("b", "vb", cr(3)), e.claim("a", "again", cr(4)),
	})
	noErr(t, err)
	wantClaims(t, rs, "+va", "+vb", "=va") // a repeated key is claimed once, priced once
	if txn.Token == "" || txn.State != storage.Held || txn.Amount != cr(6) || txn.Description != "claims, send s1" {
		t.Fatalf("hold %+v, want 6 credits held", txn)
	}
	e.figures(storage.SMS, tok, cr(10), cr(4), cr(6), 0)
	e.wantRecord("claims", "a", []byte("va"))
	e.wantRecord("claims", "b", []byte("vb"))
	if got := res(e.l.Transaction(e.ctx, txn.Token)).must(t); got.Amount != cr(6) || got.State != storage.Held {
		t.Fatalf("stored hold %+v", got)
	}

	// A retry: the claims found cost nothing; the new one is held alone.
	txn2, rs, err := ch.AuthorizeClaims(e.ctx, e.claimReq(tok, 0), []storage.Claim{
		e.claim("a", "x", cr(2)), e.claim("c", "vc", cr(1)),
	})
	noErr(t, err)
	wantClaims(t, rs, "=va", "+vc")
	if txn2.Amount != cr(1) || txn2.Token == txn.Token {
		t.Fatalf("second hold %+v, want 1 credit, a new transaction", txn2)
	}
	e.figures(storage.SMS, tok, cr(10), cr(3), cr(7), 0)

	// Nothing created and no amount: nothing written, no hold.
	seq := e.lookup(storage.SMS, tok).Seq
	txn3, rs, err := ch.AuthorizeClaims(e.ctx, e.claimReq(tok, 0), []storage.Claim{e.claim("b", "y", cr(1))})
	noErr(t, err)
	wantClaims(t, rs, "=vb")
	if txn3.Token != "" {
		t.Fatalf("a hold %+v for claims that were all there", txn3)
	}
	if a := e.lookup(storage.SMS, tok); a.Seq != seq {
		t.Fatalf("account changed (seq %d → %d) by a call that created nothing", seq, a.Seq)
	}

	// No claims: a plain hold of r.Amount.
	txn4, rs, err := ch.AuthorizeClaims(e.ctx, e.claimReq(tok, cr(1)), nil)
	noErr(t, err)
	if len(rs) != 0 || txn4.Amount != cr(1) || txn4.State != storage.Held {
		t.Fatalf("no claims: %+v %v", txn4, rs)
	}

	// An expired claim counts as absent and is claimed again.
	e.clock.Advance(2 * time.Hour)
	_, rs, err = ch.AuthorizeClaims(e.ctx, e.claimReq(tok, 0), []storage.Claim{e.claim("a", "va2", cr(1))})
	noErr(t, err)
	wantClaims(t, rs, "+va2")
	e.wantRecord("claims", "a", []byte("va2"))
	audit(t, e.l, storage.SMS, tok)
}

// testClaimsRefused: a refused hold writes no claim.
func testClaimsRefused(t *testing.T, e *xenv) {
	ch := e.claimHolder()
	const tok = "claims-token-0002"
	e.service(storage.SMS, true, 0)
	e.recharge(storage.SMS, tok, cr(2))
	e.putIfAbsent("claims", "old", []byte("vo"), time.Time{})

	_, rs, err := ch.AuthorizeClaims(e.ctx, e.claimReq(tok, cr(1)), []storage.Claim{
		e.claim("n1", "v1", cr(1)), e.claim("old", "x", cr(5)), e.claim("n2", "v2", cr(1)),
	})
	wantKind(t, err, storage.InsufficientCredit, "3 credits on 2")
	var se *storage.Error
	if !errors.As(err, &se) || se.Credit != cr(3) || se.Service != storage.SMS {
		t.Fatalf("refusal %+v, want Credit 3 (the amount to hold), service sms", se)
	}
	if rs != nil {
		t.Fatalf("results %v with a refusal", rs)
	}
	e.wantNoRecord("claims", "n1")
	e.wantNoRecord("claims", "n2")
	e.wantRecord("claims", "old", []byte("vo"))
	e.figures(storage.SMS, tok, cr(2), cr(2), 0, 0)

	// Not registered: Forbidden, nothing claimed, the first sight kept.
	e.service(storage.Snailmail, false, 0)
	const fresh = "claims-token-0003"
	_, _, err = ch.AuthorizeClaims(e.ctx, storage.AuthorizeRequest{Service: storage.Snailmail, Account: fresh, TTL: time.Hour,
		FirstSight: storage.FirstSight{DBUUID: "db-1"}}, []storage.Claim{e.claim("n3", "v3", 0)})
	wantKind(t, err, storage.Forbidden, "unregistered account")
	e.wantNoRecord("claims", "n3")
	if a := res(e.l.LookupAccount(e.ctx, storage.Snailmail, fresh)).must(t); a.State != storage.Unregistered || a.DBUUID != "db-1" {
		t.Fatalf("first sight not kept: %+v", a)
	}

	// Invalid claims: nothing written.
	for name, c := range map[string]storage.Claim{
		"namespace": {NS: "bad ns", Key: "k"},
		"key":       {NS: "claims", Key: ""},
		"expiry":    {NS: "claims", Key: "k", Expires: e.clock.Now()},
		"price":     {NS: "claims", Key: "k", Price: -1},
	} {
		_, _, err := ch.AuthorizeClaims(e.ctx, e.claimReq(tok, 0), []storage.Claim{e.claim("n4", "v4", 0), c})
		wantKind(t, err, storage.Invalid, "bad "+name)
	}
	e.wantNoRecord("claims", "n4")
	e.figures(storage.SMS, tok, cr(2), cr(2), 0, 0)
	audit(t, e.l, storage.SMS, tok)
}

// testClaimsReopen: claims and hold survive a restart together.
func testClaimsReopen(t *testing.T, e *xenv) {
	ch := e.claimHolder()
	const tok = "claims-token-0004"
	e.service(storage.SMS, true, 0)
	e.recharge(storage.SMS, tok, cr(5))
	txn, _, err := ch.AuthorizeClaims(e.ctx, e.claimReq(tok, 0), []storage.Claim{e.claim("r1", "v1", cr(1)), e.claim("r2", "v2", cr(2))})
	noErr(t, err)
	e.restart()
	e.wantRecord("claims", "r1", []byte("v1"))
	e.wantRecord("claims", "r2", []byte("v2"))
	if got := res(e.l.Transaction(e.ctx, txn.Token)).must(t); got.State != storage.Held || got.Amount != cr(3) {
		t.Fatalf("hold after restart %+v", got)
	}
	e.figures(storage.SMS, tok, cr(5), cr(2), cr(3), 0)
	audit(t, e.l, storage.SMS, tok)
}

// testClaimsConcurrent: of callers claiming the same key at once, through
// AuthorizeClaims or PutRecordIfAbsent, exactly one creates it, and only
// the creators' prices are held.
func testClaimsConcurrent(t *testing.T, e *xenv) {
	ch := e.claimHolder()
	e.service(storage.SMS, true, 0)
	const n = 16
	toks := make([]storage.AccountToken, n)
	for i := range toks {
		toks[i] = storage.AccountToken(fmt.Sprintf("claims-race-%04d", i))
		e.recharge(storage.SMS, toks[i], cr(100))
	}
	claimWins := 0
	for round := 0; round < 3; round++ {
		key := fmt.Sprintf("k%d", round)
		created := make([]bool, 2*n)
		errs := make([]error, 2*n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(2)
			go func() {
				defer wg.Done()
				<-start
				// Each caller also claims a key of its own, held with it.
				_, rs, err := ch.AuthorizeClaims(e.ctx, e.claimReq(toks[i], 0), []storage.Claim{
					e.claim(key, fmt.Sprintf("h%d", i), cr(1)), e.claim(fmt.Sprintf("own-%d-%d", round, i), "o", cr(1)),
				})
				errs[i] = err
				if err == nil {
					created[i] = rs[0].Created
				}
			}()
			go func() {
				defer wg.Done()
				<-start
				_, c, err := e.x.PutRecordIfAbsent(e.ctx, "claims", key, []byte(fmt.Sprintf("p%d", i)), e.clock.Now().Add(time.Hour))
				created[n+i], errs[n+i] = c, err
			}()
		}
		close(start)
		wg.Wait()
		winners := 0
		for i := range created {
			noErr(t, errs[i])
			if created[i] {
				winners++
				if i < n {
					claimWins++
				}
			}
		}
		if winners != 1 {
			t.Fatalf("round %d: %d callers created %q, want 1", round, winners, key)
		}
	}
	var held storage.Credits
	for _, tok := range toks {
		held += audit(t, e.l, storage.SMS, tok).Held
	}
	if want := cr(int64(3*n + claimWins)); held != want {
		t.Fatalf("%s held in all, want %s: each caller's own keys and the shared keys AuthorizeClaims created (%d)", held, want, claimWins)
	}
}
