package storagetest

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
)

func code(s string) [32]byte { return storage.HashKey(s) }

func voucherRef(h [32]byte) string { return "voucher:" + hex.EncodeToString(h[:8]) }

func (e *xenv) listVouchers(f storage.VoucherFilter) []storage.Voucher {
	e.t.Helper()
	return res(e.x.ListVouchers(e.ctx, f)).must(e.t)
}

func (e *xenv) voucher(h [32]byte) (storage.Voucher, bool) {
	e.t.Helper()
	for _, v := range e.listVouchers(storage.VoucherFilter{Limit: 1000}) {
		if v.CodeHash == h {
			return v, true
		}
	}
	return storage.Voucher{}, false
}

func testVouchersCreate(t *testing.T, e *xenv) {
	ctx, x := e.ctx, e.x
	e.service("sms", true, 0)
	e.service("snailmail", false, 0)
	now := e.clock.Now()
	vs := []storage.Voucher{
		{CodeHash: code("A"), Service: "sms", Amount: cr(10), Batch: "b1"},
		{CodeHash: code("B"), Service: "snailmail", Amount: cr(5), ExpiresAt: now.Add(time.Hour)},
	}
	noErr(t, x.CreateVouchers(ctx, vs))
	noErr(t, x.CreateVouchers(ctx, nil))
	a, ok := e.voucher(code("A"))
	if !ok || a.Service != "sms" || a.Amount != cr(10) || a.Batch != "b1" || !a.CreatedAt.Equal(now) ||
		!a.ExpiresAt.IsZero() || a.Redeemed() || a.RedeemedBy != "" || a.Entry != 0 {
		t.Fatalf("voucher A: %+v (found %v)", a, ok)
	}
	if b, ok := e.voucher(code("B")); !ok || !b.ExpiresAt.Equal(now.Add(time.Hour)) || b.Service != "snailmail" {
		t.Fatalf("voucher B: %+v (found %v)", b, ok)
	}

	good := storage.Voucher{CodeHash: code("C"), Service: "sms", Amount: cr(1)}
	with := func(f func(*storage.Voucher)) []storage.Voucher {
		v := good
		f(&v)
		return []storage.Voucher{v}
	}
	for name, bad := range map[string][]storage.Voucher{
		"zero hash":        with(func(v *storage.Voucher) { v.CodeHash = [32]byte{} }),
		"bad service":      with(func(v *storage.Voucher) { v.Service = "Bad Name" }),
		"empty service":    with(func(v *storage.Voucher) { v.Service = "" }),
		"zero amount":      with(func(v *storage.Voucher) { v.Amount = 0 }),
		"negative amount":  with(func(v *storage.Voucher) { v.Amount = -1 }),
		"amount too big":   with(func(v *storage.Voucher) { v.Amount = storage.MaxCredits + 1 }),
		"redeemed":         with(func(v *storage.Voucher) { v.RedeemedAt = now; v.RedeemedBy = "tok"; v.Entry = 1 }),
		"batch too long":   with(func(v *storage.Voucher) { v.Batch = strings.Repeat("b", 257) }),
		"bad one of three": {good, {CodeHash: code("D"), Service: "sms", Amount: 0}, {CodeHash: code("E"), Service: "sms", Amount: 1}},
	} {
		wantKind(t, x.CreateVouchers(ctx, bad), storage.Invalid, "create vouchers: "+name)
	}
	wantKind(t, x.CreateVouchers(ctx, with(func(v *storage.Voucher) { v.Service = "nosuch" })), storage.NotFound, "create for an unknown service")
	wantKind(t, x.CreateVouchers(ctx, []storage.Voucher{good, {CodeHash: code("A"), Service: "sms", Amount: 1}}), storage.Exists, "create over an existing code")
	wantKind(t, x.CreateVouchers(ctx, []storage.Voucher{good, good}), storage.Exists, "create a code twice in one batch")
	wantKind(t, x.CreateVouchers(ctx, []storage.Voucher{good, {CodeHash: code("F"), Service: "nosuch", Amount: 1}}), storage.NotFound, "create with one unknown service")
	// All or none: nothing of the refused batches is stored.
	if all := e.listVouchers(storage.VoucherFilter{}); len(all) != 2 {
		t.Fatalf("%d vouchers after refused batches, want 2: %+v", len(all), all)
	}
	// The existing voucher is unchanged.
	if a2, _ := e.voucher(code("A")); a2 != a {
		t.Fatalf("voucher A changed: %+v", a2)
	}
	noErr(t, x.CreateVouchers(ctx, []storage.Voucher{good}))
	if len(e.listVouchers(storage.VoucherFilter{})) != 3 {
		t.Fatal("the good voucher was not stored after the refusals")
	}

	// A large batch is stored whole, or refused whole.
	big := make([]storage.Voucher, 300)
	for i := range big {
		big[i] = storage.Voucher{CodeHash: code(fmt.Sprintf("big-%d", i)), Service: "sms", Amount: cr(1), Batch: "big"}
	}
	if err := x.CreateVouchers(ctx, big); err != nil {
		wantKind(t, err, storage.Invalid, "a batch of 300")
		if n := len(e.listVouchers(storage.VoucherFilter{Batch: "big", Limit: 1000})); n != 0 {
			t.Fatalf("a refused batch left %d vouchers", n)
		}
	} else if n := len(e.listVouchers(storage.VoucherFilter{Batch: "big", Limit: 1000})); n != 300 {
		t.Fatalf("a batch of 300 stored %d vouchers", n)
	}
}

func testVouchersRedeem(t *testing.T, e *xenv) {
	ctx, x := e.ctx, e.x
	e.service("sms", true, cr(1))    // trial credit on first sight
	e.service("snailmail", false, 0) // no auto-registration
	now := e.clock.Now()
	noErr(t, x.CreateVouchers(ctx, []storage.Voucher{
		{CodeHash: code("sms10"), Service: "sms", Amount: cr(10), Batch: "b"},
		{CodeHash: code("sms-exp"), Service: "sms", Amount: cr(3), ExpiresAt: now.Add(time.Hour)},
		{CodeHash: code("mail5"), Service: "snailmail", Amount: cr(5)},
	}))

	// Unknown, or for another service: the same NotFound.
	_, _, err := x.RedeemVoucher(ctx, code("nosuch"), "sms", "tok", now)
	wantKind(t, err, storage.NotFound, "redeem an unknown voucher")
	_, _, err = x.RedeemVoucher(ctx, code("mail5"), "sms", "tok", now)
	wantKind(t, err, storage.NotFound, "redeem another service's voucher")
	_, _, err = x.RedeemVoucher(ctx, code("sms10"), "sms", "bad token", now)
	wantKind(t, err, storage.Invalid, "redeem with a bad token")
	_, _, err = x.RedeemVoucher(ctx, code("sms10"), "Bad", "tok", now)
	wantKind(t, err, storage.Invalid, "redeem with a bad service")
	if _, err := x.LookupAccount(ctx, "sms", "tok"); !storage.Is(err, storage.NotFound) {
		t.Fatalf("a refused redemption created the account: %v", err)
	}

	v, en, err := x.RedeemVoucher(ctx, code("sms10"), "sms", "tok", now)
	noErr(t, err)
	if en.Kind != storage.EntryRecharge || en.DRecharged != cr(10) || en.DAvailable != cr(10) || en.DHeld != 0 || en.DCaptured != 0 ||
		en.Ref != voucherRef(code("sms10")) || en.Service != "sms" || en.Account != "tok" {
		t.Fatalf("voucher entry: %+v", en)
	}
	if !v.Redeemed() || v.RedeemedBy != "tok" || v.Entry != en.Seq || !v.RedeemedAt.Equal(en.Time) || v.Amount != cr(10) || v.CodeHash != code("sms10") {
		t.Fatalf("redeemed voucher: %+v", v)
	}
	if stored, _ := e.voucher(code("sms10")); stored != v {
		t.Fatalf("stored voucher %+v, returned %+v", stored, v)
	}
	// First sight (trial) then the voucher, registered.
	if a := e.figures("sms", "tok", cr(11), cr(11), 0, 0); a.State != storage.Registered || a.Seq != 2 {
		t.Fatalf("account after redemption: %+v", a)
	}
	h := history(t, x, "sms", "tok")
	if h[0] != en {
		t.Fatalf("history %+v, want the voucher entry %+v first", h[0], en)
	}

	// Redeemed: Conflict, for this account and for another.
	_, _, err = x.RedeemVoucher(ctx, code("sms10"), "sms", "tok", now)
	wantKind(t, err, storage.Conflict, "redeem twice")
	_, _, err = x.RedeemVoucher(ctx, code("sms10"), "sms", "other", now)
	wantKind(t, err, storage.Conflict, "redeem another's voucher")
	if _, err := x.LookupAccount(ctx, "sms", "other"); !storage.Is(err, storage.NotFound) {
		t.Fatalf("a refused redemption created the account: %v", err)
	}
	e.figures("sms", "tok", cr(11), cr(11), 0, 0)

	// Expired at now (now >= ExpiresAt); the caller's now decides.
	_, _, err = x.RedeemVoucher(ctx, code("sms-exp"), "sms", "tok", now.Add(time.Hour))
	wantKind(t, err, storage.Conflict, "redeem an expired voucher")
	_, _, err = x.RedeemVoucher(ctx, code("sms-exp"), "sms", "tok", now.Add(2*time.Hour))
	wantKind(t, err, storage.Conflict, "redeem a long expired voucher")
	if _, _, err := x.RedeemVoucher(ctx, code("sms-exp"), "sms", "tok", now.Add(time.Hour-time.Nanosecond)); err != nil {
		t.Fatalf("redeem just before expiry: %v", err)
	}
	e.figures("sms", "tok", cr(14), cr(14), 0, 0)

	// Without auto-registration the account is still created registered;
	// an existing unregistered account keeps its state, as with Recharge.
	if _, _, err := x.RedeemVoucher(ctx, code("mail5"), "snailmail", "new", now); err != nil {
		t.Fatal(err)
	}
	if a := e.figures("snailmail", "new", cr(5), cr(5), 0, 0); a.State != storage.Registered {
		t.Fatalf("account created by a voucher: %+v", a)
	}
	res(x.Account(ctx, "snailmail", "seen", storage.FirstSight{})).must(t)
	noErr(t, x.CreateVouchers(ctx, []storage.Voucher{{CodeHash: code("mail2"), Service: "snailmail", Amount: cr(2)}}))
	if _, _, err := x.RedeemVoucher(ctx, code("mail2"), "snailmail", "seen", now); err != nil {
		t.Fatal(err)
	}
	if a := e.figures("snailmail", "seen", cr(2), cr(2), 0, 0); a.State != storage.Unregistered {
		t.Fatalf("existing account's state after a voucher: %+v", a)
	}
	audit(t, x, "sms", "tok")
	audit(t, x, "snailmail", "new")
	audit(t, x, "snailmail", "seen")

	// The voucher's ref is a recharge ref of the account: replaying it as
	// a recharge of the same amount returns the voucher's entry.
	replay := res(x.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "tok", Amount: cr(10), Kind: storage.EntryRecharge, Ref: voucherRef(code("sms10"))})).must(t)
	if replay != en {
		t.Fatalf("recharge with the voucher's ref: %+v, want %+v", replay, en)
	}
}

func testVouchersList(t *testing.T, e *xenv) {
	ctx, x := e.ctx, e.x
	e.service("sms", true, 0)
	e.service("reveal", true, 0)
	var vs []storage.Voucher
	for i := 0; i < 130; i++ {
		svc := storage.ServiceName("sms")
		if i%3 == 0 {
			svc = "reveal"
		}
		vs = append(vs, storage.Voucher{CodeHash: code(fmt.Sprintf("list-%d", i)), Service: svc, Amount: cr(int64(i%7 + 1)), Batch: fmt.Sprintf("batch-%d", i%2)})
	}
	noErr(t, x.CreateVouchers(ctx, vs))
	for i := 0; i < 130; i += 10 {
		v := vs[i]
		if _, _, err := x.RedeemVoucher(ctx, v.CodeHash, v.Service, "tok", e.clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.listVouchers(storage.VoucherFilter{})); n != 100 {
		t.Fatalf("default limit: %d vouchers", n)
	}
	// Pages in code hash order cover everything once.
	page := func(f storage.VoucherFilter) []storage.Voucher {
		var all []storage.Voucher
		for {
			p := e.listVouchers(f)
			for i := range p {
				if len(all) > 0 && bytes.Compare(all[len(all)-1].CodeHash[:], p[i].CodeHash[:]) >= 0 {
					t.Fatalf("vouchers out of order")
				}
				all = append(all, p[i])
			}
			if len(p) < f.Limit {
				return all
			}
			f.After = p[len(p)-1].CodeHash
		}
	}
	all := page(storage.VoucherFilter{Limit: 7})
	if len(all) != 130 {
		t.Fatalf("paged %d vouchers, want 130", len(all))
	}
	count := func(pred func(storage.Voucher) bool) int {
		n := 0
		for _, v := range all {
			if pred(v) {
				n++
			}
		}
		return n
	}
	yes, no := true, false
	for name, c := range map[string]struct {
		f    storage.VoucherFilter
		pred func(storage.Voucher) bool
	}{
		"service":            {storage.VoucherFilter{Service: "reveal"}, func(v storage.Voucher) bool { return v.Service == "reveal" }},
		"batch":              {storage.VoucherFilter{Batch: "batch-1"}, func(v storage.Voucher) bool { return v.Batch == "batch-1" }},
		"redeemed":           {storage.VoucherFilter{Redeemed: &yes}, func(v storage.Voucher) bool { return v.Redeemed() }},
		"not redeemed":       {storage.VoucherFilter{Redeemed: &no}, func(v storage.Voucher) bool { return !v.Redeemed() }},
		"sms batch-0 unused": {storage.VoucherFilter{Service: "sms", Batch: "batch-0", Redeemed: &no}, func(v storage.Voucher) bool { return v.Service == "sms" && v.Batch == "batch-0" && !v.Redeemed() }},
		"no such batch":      {storage.VoucherFilter{Batch: "nope"}, func(storage.Voucher) bool { return false }},
	} {
		c.f.Limit = 9
		got := page(c.f)
		if want := count(c.pred); len(got) != want || want == 0 && name != "no such batch" {
			t.Fatalf("%s: %d vouchers, want %d", name, len(got), want)
		}
		for _, v := range got {
			if !c.pred(v) {
				t.Fatalf("%s: listed %+v", name, v)
			}
		}
	}
	if got := count(func(v storage.Voucher) bool { return v.Redeemed() }); got != 13 {
		t.Fatalf("%d redeemed, want 13", got)
	}
	if p := e.listVouchers(storage.VoucherFilter{After: all[len(all)-1].CodeHash}); p == nil || len(p) != 0 {
		t.Fatalf("after the last: %v", p)
	}
	_, err := x.ListVouchers(ctx, storage.VoucherFilter{Service: "Bad Name"})
	wantKind(t, err, storage.Invalid, "list with a bad service")
}

// testVouchersConcurrent races 32 redemptions of each voucher, from 32
// accounts and from one: exactly one wins, the credit arrives once.
func testVouchersConcurrent(t *testing.T, e *xenv) {
	ctx, x := e.ctx, e.x
	e.service("sms", true, 0)
	const n, rounds = 32, 4
	var vs []storage.Voucher
	for r := 0; r < rounds; r++ {
		vs = append(vs, storage.Voucher{CodeHash: code(fmt.Sprintf("race-%d", r)), Service: "sms", Amount: cr(7)})
	}
	noErr(t, x.CreateVouchers(ctx, vs))
	for r, v := range vs {
		errs := make([]error, n)
		entries := make([]storage.Entry, n)
		toks := make([]storage.AccountToken, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			toks[i] = storage.AccountToken(fmt.Sprintf("acct%d", i))
			if r%2 == 1 {
				toks[i] = "same" // one account racing itself
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, entries[i], errs[i] = x.RedeemVoucher(ctx, v.CodeHash, "sms", toks[i], e.clock.Now())
			}()
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("round %d: callers %d and %d both redeemed", r, winner, i)
				}
				winner = i
			case storage.Is(err, storage.Conflict):
			default:
				t.Fatalf("round %d caller %d: %v", r, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: nobody redeemed", r)
		}
		got, _ := e.voucher(v.CodeHash)
		if got.RedeemedBy != toks[winner] || got.Entry != entries[winner].Seq {
			t.Fatalf("round %d: voucher %+v, winner %s entry %d", r, got, toks[winner], entries[winner].Seq)
		}
	}
	// The credit arrived once per voucher.
	var total storage.Credits
	accts := res(x.Accounts(ctx, storage.AccountFilter{Service: "sms", Limit: 1000})).must(t)
	for _, a := range accts {
		audit(t, x, "sms", a.Token)
		total += a.Recharged
	}
	if total != cr(7*rounds) {
		t.Fatalf("credit given %s, want %s", total, cr(7*rounds))
	}
}

func testVouchersReopen(t *testing.T, e *xenv) {
	ctx := e.ctx
	e.service("sms", true, 0)
	noErr(t, e.x.CreateVouchers(ctx, []storage.Voucher{
		{CodeHash: code("r1"), Service: "sms", Amount: cr(4), Batch: "reopen"},
		{CodeHash: code("r2"), Service: "sms", Amount: cr(6), Batch: "reopen"},
	}))
	v1, en1, err := e.x.RedeemVoucher(ctx, code("r1"), "sms", "tok", e.clock.Now())
	noErr(t, err)
	e.restart()
	if got, ok := e.voucher(code("r1")); !ok || got != v1 {
		t.Fatalf("redeemed voucher after restart: %+v, want %+v", got, v1)
	}
	if got, ok := e.voucher(code("r2")); !ok || got.Redeemed() || got.Amount != cr(6) {
		t.Fatalf("unused voucher after restart: %+v", got)
	}
	_, _, err = e.x.RedeemVoucher(ctx, code("r1"), "sms", "tok", e.clock.Now())
	wantKind(t, err, storage.Conflict, "redeem after restart")
	if _, _, err := e.x.RedeemVoucher(ctx, code("r2"), "sms", "tok", e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	e.figures("sms", "tok", cr(10), cr(10), 0, 0)
	if h := history(t, e.x, "sms", "tok"); h[len(h)-1] != en1 {
		t.Fatalf("first entry after restart: %+v, want %+v", h[len(h)-1], en1)
	}
	audit(t, e.x, "sms", "tok")
}
