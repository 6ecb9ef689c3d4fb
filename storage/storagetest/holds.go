package storagetest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
)

func isTxnToken(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// lastEntries returns the n newest entries of an account.
func (e *env) lastEntries(svc storage.ServiceName, tok storage.AccountToken, n int) []storage.Entry {
	e.t.Helper()
	h := res(e.l.History(e.ctx, svc, tok, storage.HistoryQuery{Limit: n})).must(e.t)
	if len(h) != n {
		e.t.Fatalf("%d entries, want %d", len(h), n)
	}
	return h
}

func wantEntry(t *testing.T, en storage.Entry, kind storage.EntryKind, txn string, dRech, dAvail, dHeld, dCapt storage.Credits) {
	t.Helper()
	if en.Kind != kind || en.Transaction != txn || en.DRecharged != dRech || en.DAvailable != dAvail ||
		en.DHeld != dHeld || en.DCaptured != dCapt {
		t.Fatalf("entry %+v, want %s txn %s deltas %s/%s/%s/%s", en, kind, txn, dRech, dAvail, dHeld, dCapt)
	}
}

func testAuthorize(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", true, 0)
	e.recharge("sms", "tok", cr(10))
	now := e.clock.Now()
	tx := e.authorize("sms", "tok", cr(3), 2*time.Hour)
	if !isTxnToken(tx.Token) || tx.State != storage.Held || tx.Amount != cr(3) || tx.Captured != 0 ||
		tx.Service != "sms" || tx.Account != "tok" || tx.Description != "test hold" ||
		!tx.CreatedAt.Equal(now) || !tx.ExpiresAt.Equal(now.Add(2*time.Hour)) || !tx.EndedAt.IsZero() {
		t.Fatalf("authorize: %+v", tx)
	}
	got := res(l.Transaction(ctx, tx.Token)).must(t)
	if got.Token != tx.Token || got.State != storage.Held || got.Amount != cr(3) || got.Service != "sms" ||
		got.Account != "tok" || got.Description != "test hold" || !got.ExpiresAt.Equal(tx.ExpiresAt) || !got.CreatedAt.Equal(now) {
		t.Fatalf("Transaction = %+v, want %+v", got, tx)
	}
	e.figures("sms", "tok", cr(10), cr(7), cr(3), 0)
	h := e.lastEntries("sms", "tok", 1)
	wantEntry(t, h[0], storage.EntryHold, tx.Token, 0, -cr(3), cr(3), 0)
	if h[0].Amount() != -cr(3) || h[0].Description != "test hold" {
		t.Fatalf("hold entry: %+v", h[0])
	}

	seen := map[string]bool{tx.Token: true}
	for i := 0; i < 20; i++ {
		tx := e.authorize("sms", "tok", storage.Credits(i), time.Minute)
		if !isTxnToken(tx.Token) || seen[tx.Token] {
			t.Fatalf("token %q malformed or reused", tx.Token)
		}
		seen[tx.Token] = true
	}
	e.figures("sms", "tok", cr(10), cr(7)-190, cr(3)+190, 0)
	zero := e.authorize("sms", "tok", 0, time.Hour)
	if zero.Amount != 0 || zero.State != storage.Held {
		t.Fatalf("zero hold: %+v", zero)
	}
	e.figures("sms", "tok", cr(10), cr(7)-190, cr(3)+190, 0)
	audit(t, l, "sms", "tok")
}

func testAuthorizeRefused(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", true, 0)
	e.service("manual", false, 0)
	e.recharge("sms", "tok", cr(10))
	req := func(amount storage.Credits, ttl time.Duration) storage.AuthorizeRequest {
		return storage.AuthorizeRequest{Service: "sms", Account: "tok", Amount: amount, TTL: ttl}
	}
	_, err := l.Authorize(ctx, req(cr(10)+1, time.Hour))
	wantKind(t, err, storage.InsufficientCredit, "authorize above available")
	var se *storage.Error
	if !errors.As(err, &se) || se.Service != "sms" || se.Credit != cr(10)+1 {
		t.Fatalf("InsufficientCredit details: %+v", se)
	}
	if a := e.figures("sms", "tok", cr(10), cr(10), 0, 0); a.Seq != 1 {
		t.Fatalf("refused authorize wrote entries: Seq %d", a.Seq)
	}

	for _, r := range []storage.AuthorizeRequest{
		req(-1, time.Hour), req(storage.MaxCredits+1, time.Hour),
		req(cr(1), 0), req(cr(1), -time.Second), req(cr(1), 101*365*24*time.Hour),
		{Service: "sms", Account: "tok", Amount: cr(1), TTL: time.Hour, Description: strings.Repeat("d", 5000)},
	} {
		_, err := l.Authorize(ctx, r)
		wantKind(t, err, storage.Invalid, "authorize "+r.Amount.String()+" "+r.TTL.String())
	}
	long := e.authorize("sms", "tok", cr(1), 99*365*24*time.Hour)
	if !long.ExpiresAt.Equal(e.clock.Now().Add(99 * 365 * 24 * time.Hour)) {
		t.Fatalf("99-year hold expires %v", long.ExpiresAt)
	}

	_, err = l.Authorize(ctx, storage.AuthorizeRequest{Service: "nope", Account: "tok", Amount: cr(1), TTL: time.Hour})
	wantKind(t, err, storage.NotFound, "authorize on unknown service")
	res(l.Account(ctx, "manual", "tok", storage.FirstSight{})).must(t)
	e.recharge("manual", "tok", cr(5)) // credit does not register it
	_, err = l.Authorize(ctx, storage.AuthorizeRequest{Service: "manual", Account: "tok", Amount: cr(1), TTL: time.Hour})
	wantKind(t, err, storage.Forbidden, "authorize on unregistered account")
	res(l.UpdateAccount(ctx, "manual", "tok", storage.AccountUpdate{State: ptr(storage.Banned)})).must(t)
	_, err = l.Authorize(ctx, storage.AuthorizeRequest{Service: "manual", Account: "tok", Amount: 0, TTL: time.Hour})
	wantKind(t, err, storage.Forbidden, "authorize on banned account")
	e.figures("manual", "tok", cr(5), cr(5), 0, 0)

	// Everything available may be held, not a unit more.
	e.authorize("sms", "tok", cr(9), time.Hour)
	_, err = l.Authorize(ctx, req(1, time.Hour))
	wantKind(t, err, storage.InsufficientCredit, "authorize at zero")
	e.figures("sms", "tok", cr(10), 0, cr(10), 0)

	for _, bad := range []string{"", "nope", strings.Repeat("0", 32), strings.ToUpper(long.Token), long.Token + "0"} {
		_, err := l.Transaction(ctx, bad)
		wantKind(t, err, storage.NotFound, "Transaction("+bad+")")
	}
	audit(t, l, "sms", "tok")
}

func testCaptureExact(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", true, 0)
	e.recharge("sms", "tok", cr(10))
	tx := e.authorize("sms", "tok", cr(4), time.Hour)
	e.clock.Advance(time.Minute)
	got := res(l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: tx.Token})).must(t)
	if got.State != storage.Captured || got.Captured != cr(4) || got.Amount != cr(4) || got.Token != tx.Token ||
		!got.EndedAt.Equal(e.clock.Now()) {
		t.Fatalf("capture: %+v", got)
	}
	if st := res(l.Transaction(ctx, tx.Token)).must(t); st.State != storage.Captured || st.Captured != cr(4) || !st.EndedAt.Equal(got.EndedAt) {
		t.Fatalf("stored: %+v", st)
	}
	e.figures("sms", "tok", cr(10), cr(6), 0, cr(4))
	h := e.lastEntries("sms", "tok", 1)
	wantEntry(t, h[0], storage.EntryCapture, tx.Token, 0, 0, -cr(4), cr(4))
	if h[0].Amount() != -cr(4) {
		t.Fatalf("capture Amount() = %s", h[0].Amount())
	}

	tx2 := e.authorize("sms", "tok", cr(2), time.Hour)
	got = res(l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: tx2.Token, Amount: ptr(cr(2))})).must(t)
	if got.State != storage.Captured || got.Captured != cr(2) {
		t.Fatalf("explicit capture: %+v", got)
	}
	e.figures("sms", "tok", cr(10), cr(4), 0, cr(6))
	audit(t, l, "sms", "tok")
}

func testCapturePartial(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", true, 0)
	e.recharge("sms", "tok", cr(10))
	tx := e.authorize("sms", "tok", cr(5), time.Hour)
	got := res(l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: tx.Token, Amount: ptr(cr(2))})).must(t)
	if got.State != storage.Captured || got.Captured != cr(2) || got.Amount != cr(5) {
		t.Fatalf("partial capture: %+v", got)
	}
	e.figures("sms", "tok", cr(10), cr(8), 0, cr(2))
	h := e.lastEntries("sms", "tok", 2)
	wantEntry(t, h[1], storage.EntryCapture, tx.Token, 0, 0, -cr(2), cr(2))
	wantEntry(t, h[0], storage.EntryRelease, tx.Token, 0, cr(3), -cr(3), 0)
	if h[0].Amount() != cr(3) || h[1].Amount() != -cr(2) {
		t.Fatalf("Amount(): release %s capture %s", h[0].Amount(), h[1].Amount())
	}

	// Capturing nothing releases everything but still captures.
	tx = e.authorize("sms", "tok", cr(1), time.Hour)
	got = res(l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: tx.Token, Amount: ptr(storage.Credits(0))})).must(t)
	if got.State != storage.Captured || got.Captured != 0 {
		t.Fatalf("zero capture: %+v", got)
	}
	e.figures("sms", "tok", cr(10), cr(8), 0, cr(2))
	audit(t, l, "sms", "tok")
}

func testCaptureOver(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", true, 0)
	e.recharge("sms", "tok", cr(10))
	tx := e.authorize("sms", "tok", cr(5), time.Hour)
	got := res(l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: tx.Token, Amount: ptr(cr(8))})).must(t)
	if got.State != storage.Captured || got.Captured != cr(8) {
		t.Fatalf("over-capture: %+v", got)
	}
	e.figures("sms", "tok", cr(10), cr(2), 0, cr(8))
	wantEntry(t, e.lastEntries("sms", "tok", 1)[0], storage.EntryCapture, tx.Token, 0, -cr(3), -cr(5), cr(8))

	tx = e.authorize("sms", "tok", cr(1), time.Hour) // available 1
	_, err := l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: tx.Token, Amount: ptr(cr(3))})
	wantKind(t, err, storage.InsufficientCredit, "over-capture beyond available")
	var se *storage.Error
	if !errors.As(err, &se) || se.Service != "sms" || se.Credit != cr(3) {
		t.Fatalf("InsufficientCredit details: %+v", se)
	}
	if st := res(l.Transaction(ctx, tx.Token)).must(t); st.State != storage.Held || st.Captured != 0 {
		t.Fatalf("hold after refused capture: %+v", st)
	}
	e.figures("sms", "tok", cr(10), cr(1), cr(1), cr(8))
	got = res(l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: tx.Token, Amount: ptr(cr(2))})).must(t)
	if got.Captured != cr(2) {
		t.Fatalf("capture of hold + all available: %+v", got)
	}
	e.figures("sms", "tok", cr(10), 0, 0, cr(10))
	audit(t, l, "sms", "tok")
}

// testCaptureNotRegistered: an account banned (or unregistered) after an
// authorize may settle what was held — a capture up to the hold, or of
// the held amount — but not capture more: the excess would be new
// spending, which Authorize refuses such an account. The refusal is
// Forbidden and leaves the hold as it was, so the provider can still
// capture up to the hold or cancel.
func testCaptureNotRegistered(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", true, 0)
	for _, state := range []storage.AccountState{storage.Banned, storage.Unregistered} {
		tok := storage.AccountToken("tok-" + string(state))
		e.recharge("sms", tok, cr(10))
		over := e.authorize("sms", tok, cr(2), time.Hour)
		exact := e.authorize("sms", tok, cr(2), time.Hour)
		partial := e.authorize("sms", tok, cr(2), time.Hour)
		res(l.UpdateAccount(ctx, "sms", tok, storage.AccountUpdate{State: ptr(state)})).must(t)
		seq := e.figures("sms", tok, cr(10), cr(4), cr(6), 0).Seq

		for _, amount := range []storage.Credits{cr(2) + 1, cr(3), cr(4)} {
			_, err := l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: over.Token, Amount: ptr(amount)})
			wantKind(t, err, storage.Forbidden, string(state)+" account capturing "+amount.String()+" over a hold of 2")
		}
		if st := res(l.Transaction(ctx, over.Token)).must(t); st.State != storage.Held || st.Captured != 0 {
			t.Fatalf("%s: hold after a refused over-capture: %+v", state, st)
		}
		if a := e.figures("sms", tok, cr(10), cr(4), cr(6), 0); a.Seq != seq {
			t.Fatalf("%s: refused over-captures wrote entries: Seq %d, want %d", state, a.Seq, seq)
		}

		// Up to the hold is allowed: the held amount (nil and explicit),
		// and less (the rest released).
		if got := res(l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: over.Token})).must(t); got.State != storage.Captured || got.Captured != cr(2) {
			t.Fatalf("%s: capture of the held amount: %+v", state, got)
		}
		if got := res(l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: exact.Token, Amount: ptr(cr(2))})).must(t); got.Captured != cr(2) {
			t.Fatalf("%s: explicit capture of the held amount: %+v", state, got)
		}
		if got := res(l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: partial.Token, Amount: ptr(cr(1))})).must(t); got.Captured != cr(1) {
			t.Fatalf("%s: partial capture: %+v", state, got)
		}
		// Retries of what was captured stay idempotent; more stays refused.
		res(l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: over.Token, Amount: ptr(cr(2))})).must(t)
		_, err := l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: over.Token, Amount: ptr(cr(3))})
		wantKind(t, err, storage.Conflict, string(state)+" account capturing a captured hold for more")
		e.figures("sms", tok, cr(10), cr(5), 0, cr(5))
		audit(t, l, "sms", tok)
	}
}

func testCaptureIdempotent(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", true, 0)
	e.recharge("sms", "tok", cr(10))
	tx := e.authorize("sms", "tok", cr(5), time.Hour)
	first := res(l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: tx.Token, Amount: ptr(cr(3))})).must(t)
	seq := e.lookup("sms", "tok").Seq
	e.clock.Advance(time.Minute)
	for _, amount := range []*storage.Credits{ptr(cr(3)), nil, ptr(cr(3))} {
		again := res(l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: tx.Token, Amount: amount})).must(t)
		if again.State != storage.Captured || again.Captured != cr(3) || !again.EndedAt.Equal(first.EndedAt) {
			t.Fatalf("retry: %+v, first %+v", again, first)
		}
	}
	_, err := l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: tx.Token, Amount: ptr(cr(4))})
	wantKind(t, err, storage.Conflict, "capture again with another amount")
	_, err = l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: tx.Token, Amount: ptr(cr(5))})
	wantKind(t, err, storage.Conflict, "capture again with the held amount")
	_, err = l.Cancel(ctx, "sms", tx.Token)
	wantKind(t, err, storage.Conflict, "cancel after capture")
	if a := e.figures("sms", "tok", cr(10), cr(7), 0, cr(3)); a.Seq != seq {
		t.Fatalf("retries wrote entries: Seq %d, want %d", a.Seq, seq)
	}
	audit(t, l, "sms", "tok")
}

func testCaptureRefused(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", true, 0)
	e.service("reveal", true, 0)
	e.recharge("sms", "tok", cr(10))
	tx := e.authorize("sms", "tok", cr(4), time.Hour)

	_, err := l.Capture(ctx, storage.CaptureRequest{Service: "reveal", Transaction: tx.Token})
	wantKind(t, err, storage.NotFound, "capture by another service")
	_, err = l.Cancel(ctx, "reveal", tx.Token)
	wantKind(t, err, storage.NotFound, "cancel by another service")
	for _, bad := range []string{"", "xyz", strings.Repeat("0", 32), strings.ToUpper(tx.Token), tx.Token + "0", tx.Token[:31]} {
		_, err = l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: bad})
		wantKind(t, err, storage.NotFound, "capture of "+bad)
		_, err = l.Cancel(ctx, "sms", bad)
		wantKind(t, err, storage.NotFound, "cancel of "+bad)
	}
	for _, amount := range []storage.Credits{-1, storage.MaxCredits + 1} {
		_, err = l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: tx.Token, Amount: &amount})
		wantKind(t, err, storage.Invalid, "capture of "+amount.String())
	}
	if st := res(l.Transaction(ctx, tx.Token)).must(t); st.State != storage.Held {
		t.Fatalf("refusals changed the hold: %+v", st)
	}
	e.figures("sms", "tok", cr(10), cr(6), cr(4), 0)

	res(l.Cancel(ctx, "sms", tx.Token)).must(t)
	_, err = l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: tx.Token})
	wantKind(t, err, storage.Conflict, "capture after cancel")
	e.figures("sms", "tok", cr(10), cr(10), 0, 0)
	audit(t, l, "sms", "tok")
}

func testCaptureExpired(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", true, 0)
	e.recharge("sms", "tok", cr(10))
	early := e.authorize("sms", "tok", cr(1), time.Hour)
	tx := e.authorize("sms", "tok", cr(4), time.Hour)
	e.clock.Advance(time.Hour - time.Nanosecond)
	res(l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: early.Token})).must(t) // just in time
	e.clock.Advance(time.Nanosecond)                                                              // now == ExpiresAt: expired
	_, err := l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: tx.Token})
	wantKind(t, err, storage.Conflict, "capture at ExpiresAt")
	st := res(l.Transaction(ctx, tx.Token)).must(t)
	if st.State != storage.Expired || !st.EndedAt.Equal(st.ExpiresAt) || st.Captured != 0 {
		t.Fatalf("lazily expired: %+v", st)
	}
	e.figures("sms", "tok", cr(10), cr(9), 0, cr(1))
	wantEntry(t, e.lastEntries("sms", "tok", 1)[0], storage.EntryExpiry, tx.Token, 0, cr(4), -cr(4), 0)

	_, err = l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: tx.Token, Amount: ptr(cr(4))})
	wantKind(t, err, storage.Conflict, "capture of an expired hold")
	if c := res(l.Cancel(ctx, "sms", tx.Token)).must(t); c.State != storage.Expired {
		t.Fatalf("cancel of expired: %+v", c)
	}
	if n := res(l.ExpireDue(ctx, e.clock.Now().Add(time.Hour), 10)).must(t); n != 0 {
		t.Fatalf("ExpireDue found %d holds already expired", n)
	}
	e.figures("sms", "tok", cr(10), cr(9), 0, cr(1))
	audit(t, l, "sms", "tok")
}

func testCancel(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", true, 0)
	e.recharge("sms", "tok", cr(10))
	tx := e.authorize("sms", "tok", cr(4), time.Hour)
	e.clock.Advance(time.Minute)
	got := res(l.Cancel(ctx, "sms", tx.Token)).must(t)
	if got.State != storage.Cancelled || got.Captured != 0 || !got.EndedAt.Equal(e.clock.Now()) || got.Token != tx.Token {
		t.Fatalf("cancel: %+v", got)
	}
	e.figures("sms", "tok", cr(10), cr(10), 0, 0)
	h := e.lastEntries("sms", "tok", 1)
	wantEntry(t, h[0], storage.EntryRelease, tx.Token, 0, cr(4), -cr(4), 0)
	if h[0].Amount() != cr(4) {
		t.Fatalf("release Amount() = %s", h[0].Amount())
	}
	seq := e.lookup("sms", "tok").Seq
	e.clock.Advance(time.Minute)
	again := res(l.Cancel(ctx, "sms", tx.Token)).must(t)
	if again.State != storage.Cancelled || !again.EndedAt.Equal(got.EndedAt) {
		t.Fatalf("cancel retry: %+v", again)
	}
	if a := e.lookup("sms", "tok"); a.Seq != seq {
		t.Fatalf("cancel retry wrote an entry")
	}

	// A hold past its ExpiresAt is expired, not cancelled, without error.
	tx = e.authorize("sms", "tok", cr(3), time.Minute)
	e.clock.Advance(2 * time.Minute)
	got = res(l.Cancel(ctx, "sms", tx.Token)).must(t)
	if got.State != storage.Expired || !got.EndedAt.Equal(tx.ExpiresAt) {
		t.Fatalf("cancel of expired hold: %+v", got)
	}
	wantEntry(t, e.lastEntries("sms", "tok", 1)[0], storage.EntryExpiry, tx.Token, 0, cr(3), -cr(3), 0)
	e.figures("sms", "tok", cr(10), cr(10), 0, 0)
	if n := res(l.ExpireDue(ctx, e.clock.Now(), 10)).must(t); n != 0 {
		t.Fatalf("ExpireDue after cancel: %d", n)
	}
	audit(t, l, "sms", "tok")
}

func testExpireDue(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", true, 0)
	e.recharge("sms", "tok", cr(100))
	e.recharge("sms", "tok2", cr(100))
	t0 := e.clock.Now()
	h1 := e.authorize("sms", "tok", cr(4), time.Hour)
	h2 := e.authorize("sms", "tok", cr(5), time.Hour)
	res(l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: h2.Token})).must(t)
	h3 := e.authorize("sms", "tok2", cr(6), 2*time.Hour)
	h4 := e.authorize("sms", "tok", cr(7), 3*time.Hour)
	h5 := e.authorize("sms", "tok2", cr(8), 3*time.Hour)
	h6 := e.authorize("sms", "tok", cr(9), 3*time.Hour)
	res(l.Cancel(ctx, "sms", h6.Token)).must(t)

	_, err := l.ExpireDue(ctx, t0.Add(time.Hour), 0)
	wantKind(t, err, storage.Invalid, "ExpireDue max 0")
	if n := res(l.ExpireDue(ctx, t0.Add(30*time.Minute), 10)).must(t); n != 0 {
		t.Fatalf("nothing due yet, expired %d", n)
	}
	if n := res(l.ExpireDue(ctx, t0.Add(time.Hour), 10)).must(t); n != 1 { // ExpiresAt == now is due
		t.Fatalf("expired %d at +1h, want 1", n)
	}
	st := res(l.Transaction(ctx, h1.Token)).must(t)
	if st.State != storage.Expired || !st.EndedAt.Equal(h1.ExpiresAt) {
		t.Fatalf("h1: %+v", st)
	}
	if st := res(l.Transaction(ctx, h2.Token)).must(t); st.State != storage.Captured {
		t.Fatalf("captured hold changed by expiry: %+v", st)
	}
	wantEntry(t, e.lastEntries("sms", "tok", 1)[0], storage.EntryExpiry, h1.Token, 0, cr(4), -cr(4), 0)
	e.figures("sms", "tok", cr(100), cr(88), cr(7), cr(5))
	if n := res(l.ExpireDue(ctx, t0.Add(time.Hour), 10)).must(t); n != 0 {
		t.Fatalf("expired %d twice", n)
	}

	if n := res(l.ExpireDue(ctx, t0.Add(5*time.Hour), 1)).must(t); n != 1 {
		t.Fatalf("max 1: expired %d", n)
	}
	if st := res(l.Transaction(ctx, h3.Token)).must(t); st.State != storage.Expired { // oldest first
		t.Fatalf("h3 not expired first: %+v", st)
	}
	for _, h := range []storage.Transaction{h4, h5} {
		if st := res(l.Transaction(ctx, h.Token)).must(t); st.State != storage.Held {
			t.Fatalf("expired beyond max: %+v", st)
		}
	}
	if n := res(l.ExpireDue(ctx, t0.Add(5*time.Hour), 10)).must(t); n != 2 {
		t.Fatalf("expired %d, want 2", n)
	}
	if n := res(l.ExpireDue(ctx, t0.Add(50*time.Hour), 10)).must(t); n != 0 {
		t.Fatalf("expired %d, want 0", n)
	}
	for _, h := range []storage.Transaction{h4, h5, h6} {
		st := res(l.Transaction(ctx, h.Token)).must(t)
		if h.Token == h6.Token {
			if st.State != storage.Cancelled {
				t.Fatalf("cancelled hold expired: %+v", st)
			}
			continue
		}
		if st.State != storage.Expired || !st.EndedAt.Equal(h.ExpiresAt) {
			t.Fatalf("%+v", st)
		}
	}
	e.figures("sms", "tok", cr(100), cr(95), 0, cr(5))
	e.figures("sms", "tok2", cr(100), cr(100), 0, 0)
	audit(t, l, "sms", "tok")
	audit(t, l, "sms", "tok2")
}

func testHistory(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", true, 0)
	t0 := e.clock.Now()
	step := func() { e.clock.Advance(time.Minute) }
	e.recharge("sms", "tok", cr(10)) // 1 at t0
	step()
	tx := e.authorize("sms", "tok", cr(1), time.Hour) // 2 at +1m
	step()
	res(l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: tx.Token})).must(t) // 3 at +2m
	step()
	tx = e.authorize("sms", "tok", cr(2), time.Hour) // 4 at +3m
	step()
	res(l.Cancel(ctx, "sms", tx.Token)).must(t) // 5 at +4m
	step()
	e.recharge("sms", "tok", cr(1)) // 6 at +5m
	step()
	res(l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "tok", Amount: -cr(1), Kind: storage.EntryAdjustment})).must(t) // 7 at +6m
	e.recharge("sms", "other", cr(1))

	seqs := func(h []storage.Entry) string {
		var b strings.Builder
		for _, en := range h {
			b.WriteByte(byte('0' + en.Seq))
		}
		return b.String()
	}
	all := res(l.History(ctx, "sms", "tok", storage.HistoryQuery{})).must(t)
	if seqs(all) != "7654321" {
		t.Fatalf("history order %s", seqs(all))
	}
	kinds := []storage.EntryKind{storage.EntryAdjustment, storage.EntryRecharge, storage.EntryRelease, storage.EntryHold,
		storage.EntryCapture, storage.EntryHold, storage.EntryRecharge}
	amounts := []storage.Credits{-cr(1), cr(1), cr(2), -cr(2), -cr(1), -cr(1), cr(10)}
	for i, en := range all {
		if en.Kind != kinds[i] || en.Amount() != amounts[i] || !en.Time.Equal(t0.Add(time.Duration(6-i)*time.Minute)) {
			t.Fatalf("entry %d: %+v", en.Seq, en)
		}
	}
	for _, c := range []struct {
		q    storage.HistoryQuery
		want string
	}{
		{storage.HistoryQuery{Limit: 3}, "765"},
		{storage.HistoryQuery{Before: 5, Limit: 3}, "432"},
		{storage.HistoryQuery{Before: 2, Limit: 3}, "1"},
		{storage.HistoryQuery{Before: 1}, ""},
		{storage.HistoryQuery{Before: 100}, "7654321"},
		{storage.HistoryQuery{Since: t0.Add(3 * time.Minute)}, "7654"},
		{storage.HistoryQuery{Until: t0.Add(3 * time.Minute)}, "321"},
		{storage.HistoryQuery{Since: t0.Add(2 * time.Minute), Until: t0.Add(4 * time.Minute)}, "43"},
		{storage.HistoryQuery{Since: t0.Add(90 * time.Second), Limit: 2}, "76"},
		{storage.HistoryQuery{Since: t0.Add(time.Hour)}, ""},
	} {
		got := res(l.History(ctx, "sms", "tok", c.q)).must(t)
		if seqs(got) != c.want {
			t.Fatalf("History(%+v) = %s, want %s", c.q, seqs(got), c.want)
		}
	}
	_, err := l.History(ctx, "sms", "nobody", storage.HistoryQuery{})
	wantKind(t, err, storage.NotFound, "history of absent account")
	_, err = l.History(ctx, "nope", "tok", storage.HistoryQuery{})
	wantKind(t, err, storage.NotFound, "history on unknown service")
	audit(t, l, "sms", "tok")
}

func testHistoryMonotonic(t *testing.T, e *env) {
	e.service("sms", true, 0)
	t0 := e.clock.Now()
	e.clock.Set(t0.Add(time.Hour))
	first := e.recharge("sms", "tok", cr(1))
	e.clock.Set(t0) // the clock steps back
	second := e.recharge("sms", "tok", cr(1))
	if second.Time.Before(first.Time) {
		t.Fatalf("entry times go back: %v then %v", first.Time, second.Time)
	}
	audit(t, e.l, "sms", "tok")
}

func testContextCancelled(t *testing.T, e *env) {
	l := e.l
	e.service("sms", true, 0)
	e.recharge("sms", "tok", cr(10))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: "tok", Amount: cr(1), TTL: time.Hour}); err == nil {
		t.Fatal("authorize with a cancelled context succeeded")
	}
	if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "tok", Amount: cr(1), Kind: storage.EntryRecharge}); err == nil {
		t.Fatal("recharge with a cancelled context succeeded")
	}
	if a := e.figures("sms", "tok", cr(10), cr(10), 0, 0); a.Seq != 1 {
		t.Fatalf("cancelled calls wrote entries: Seq %d", a.Seq)
	}
}

func testClose(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", true, 0)
	e.recharge("sms", "tok", cr(1))
	noErr(t, l.Close())
	_, err := l.LookupAccount(ctx, "sms", "tok")
	wantKind(t, err, storage.Unavailable, "lookup after close")
	_, err = l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: "tok", Amount: 1, TTL: time.Hour})
	wantKind(t, err, storage.Unavailable, "authorize after close")
	_, err = l.Services(ctx)
	wantKind(t, err, storage.Unavailable, "services after close")
	_, err = l.ExpireDue(ctx, e.clock.Now(), 1)
	wantKind(t, err, storage.Unavailable, "expire after close")
	wantKind(t, l.Close(), storage.Unavailable, "second close")
}

// testLastCredits races 64 authorizes of 1 credit for the 10 credits of an
// account: exactly 10 may win.
func testLastCredits(t *testing.T, e *env) {
	ctx, l := e.ctx, e.l
	e.service("sms", true, 0)
	e.recharge("sms", "tok", cr(10))
	const n = 64
	var wg sync.WaitGroup
	errs := make([]error, n)
	toks := make([]string, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			tx, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: "tok", Amount: cr(1), TTL: time.Hour})
			errs[i], toks[i] = err, tx.Token
		}()
	}
	close(start)
	wg.Wait()
	won := map[string]bool{}
	for i, err := range errs {
		switch {
		case err == nil:
			if won[toks[i]] {
				t.Fatalf("token %s given twice", toks[i])
			}
			won[toks[i]] = true
		case storage.Is(err, storage.InsufficientCredit):
		default:
			t.Fatalf("authorize %d: %v", i, err)
		}
	}
	if len(won) != 10 {
		t.Fatalf("%d authorizes succeeded, want 10", len(won))
	}
	e.figures("sms", "tok", cr(10), 0, cr(10), 0)
	for tok := range won {
		if st := res(l.Transaction(ctx, tok)).must(t); st.State != storage.Held || st.Amount != cr(1) {
			t.Fatalf("hold %+v", st)
		}
	}
	audit(t, l, "sms", "tok")
}
