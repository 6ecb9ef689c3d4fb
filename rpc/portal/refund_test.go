package portal

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/iapd/iapd/providers/payments"
	"github.com/iapd/iapd/providers/payments/stripe/stripetest"
	"github.com/iapd/iapd/storage"
)

// Refunds and lost disputes (issue 17) against the real Badger ledger, the
// real stripe adapter and stripetest (signed charge.refunded and
// charge.dispute.closed events, refunds listed through GET /v1/refunds).
// Pack 1 is 100 credits for 10.00 EUR (1000 cents), pack 2 1000 credits
// for 79.90 EUR (7990 cents); the account starts with 5 credits.

// paid buys and pays pack for tokA (the completion delivered) and returns
// the session as stripetest has it.
func (e *payEnv) paid(pack int) stripetest.Session {
	e.t.Helper()
	s := e.buy(tokA, pack)
	if st := e.deliver(e.fake.Pay(s.ID)); st != http.StatusOK {
		e.t.Fatalf("completion: %d", st)
	}
	s, _ = e.fake.Session(s.ID)
	return s
}

// refund makes a refund of amount cents and returns its charge.refunded
// event and the refund's id.
func (e *payEnv) refund(s stripetest.Session, amount int64) ([]byte, string) {
	e.t.Helper()
	ev, err := e.fake.Refund(s.ID, amount)
	if err != nil {
		e.t.Fatal(err)
	}
	rs := e.fake.Refunds(s.PaymentIntent)
	return ev, rs[len(rs)-1].ID
}

// mustDeliver delivers payload and wants 200.
func (e *payEnv) mustDeliver(what string, payload []byte) {
	e.t.Helper()
	if st := e.deliver(payload, nil); st != http.StatusOK {
		e.t.Fatalf("%s: %d", what, st)
	}
}

// adjustments returns the account's adjustment entries as ref → amount
// (each ref at most once), and fails on anything but the initial credit,
// the payments' credits and adjustments.
func (e *payEnv) adjustments(tok string) map[string]storage.Credits {
	e.t.Helper()
	hist, err := e.ledger.History(context.Background(), storage.SMS, storage.AccountToken(tok), storage.HistoryQuery{Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]storage.Credits{}
	for _, h := range hist {
		if h.Kind != storage.EntryAdjustment {
			continue
		}
		if _, dup := out[h.Ref]; dup || h.Ref == "" {
			e.t.Fatalf("adjustment ref %q twice or empty: %+v", h.Ref, hist)
		}
		out[h.Ref] = h.DRecharged
	}
	return out
}

// wantLedger checks the balance and the adjustments exactly.
func (e *payEnv) wantLedger(what string, available string, adj map[string]string) {
	e.t.Helper()
	got := e.adjustments(tokA)
	want := map[string]storage.Credits{}
	for ref, c := range adj {
		want[ref] = -credits(c)
	}
	if a := e.available(tokA); a != credits(available) || fmt.Sprint(got) != fmt.Sprint(want) {
		e.t.Fatalf("%s: available %s, adjustments %v; want %s, %v", what, a, got, available, want)
	}
}

// Two partial refunds debit their shares (30% and 20% of the pack's 100
// credits), each once: re-delivering both events, and a won dispute,
// change nothing.
func TestPartialRefundsDebitTheirShareOnce(t *testing.T) {
	e := newPayEnv(t)
	s := e.paid(1)
	ev1, re1 := e.refund(s, 300)
	e.mustDeliver("first refund", ev1)
	e.wantLedger("first refund", "75", map[string]string{"stripe:" + re1: "30"})
	ev2, re2 := e.refund(s, 200)
	e.mustDeliver("second refund", ev2)
	want := map[string]string{"stripe:" + re1: "30", "stripe:" + re2: "20"}
	e.wantLedger("second refund", "55", want)
	e.mustDeliver("first again", ev1)
	e.mustDeliver("second again", ev2)
	e.deliver(e.fake.Dispute(s.ID, "won"))
	e.wantLedger("re-delivered", "55", want)
	if e.outcome(PayPartialRefund) != 2 || e.outcome(PayDuplicate) != 2 || e.outcome(PayReversed) != 0 {
		t.Fatalf("outcomes: partial %v duplicate %v reversed %v", e.outcome(PayPartialRefund), e.outcome(PayDuplicate), e.outcome(PayReversed))
	}
	e.logMu.Lock()
	logged := strings.Contains(e.logs.String(), "stripe:"+re2)
	e.logMu.Unlock()
	if !logged {
		t.Fatal("the share's debit is not logged with its ref")
	}
	e.noSecretsLogged()
}

// A full refund after partial ones brings the debit to exactly the pack:
// 1000 credits for 79.90 EUR refunded as 10.00 + 3.33 + 66.57 EUR debit
// floor(1000×1000/7990) = 125.1564, 41.6770 and 833.1664, and the last
// 0.0002 (rounding) under the reversal ref. A lost dispute after it, and
// re-deliveries, change nothing. A single full refund debits the pack
// under the reversal ref.
func TestFullRefundAfterPartialTakesTheRest(t *testing.T) {
	e := newPayEnv(t)
	s := e.paid(2)
	ev1, re1 := e.refund(s, 1000)
	e.mustDeliver("refund 1", ev1)
	_, re2 := e.refund(s, 333)
	ev3, re3 := e.refund(s, 7990-1333)
	e.mustDeliver("refund 3, with refund 2 in the list", ev3)
	want := map[string]string{"stripe:" + re1: "125.1564", "stripe:" + re2: "41.677", "stripe:" + re3: "833.1664",
		"stripe:" + s.ID + ":reversal": "0.0002"}
	e.wantLedger("full after partial", "5", want)
	if e.outcome(PayReversed) != 1 || e.outcome(PayPartialRefund) != 1 {
		t.Fatalf("reversed %v partial %v", e.outcome(PayReversed), e.outcome(PayPartialRefund))
	}
	e.deliver(e.fake.Dispute(s.ID, "lost"))
	for _, ev := range [][]byte{ev3, ev1} {
		e.mustDeliver("again", ev)
	}
	e.wantLedger("dispute lost and re-delivered", "5", want)
	if e.outcome(PayReversed) != 1 || e.outcome(PayDuplicate) != 3 {
		t.Fatalf("reversed %v duplicate %v", e.outcome(PayReversed), e.outcome(PayDuplicate))
	}

	s2 := e.paid(1)
	full, _ := e.refund(s2, 1000)
	e.mustDeliver("single full refund", full)
	e.mustDeliver("single full refund again", full)
	want["stripe:"+s2.ID+":reversal"] = "100"
	e.wantLedger("single full refund", "5", want)
}

// Events out of order: the second refund's event first debits both shares
// (the refunds are read from Stripe, not from the event), the first's
// then nothing; a refund's event before the completion credits then
// debits, and the late completion changes nothing; the full refund's
// event delivered before the partial ones' takes everything once.
func TestRefundEventsOutOfOrder(t *testing.T) {
	e := newPayEnv(t)
	s := e.paid(1)
	ev1, re1 := e.refund(s, 100)
	ev2, re2 := e.refund(s, 450)
	e.mustDeliver("second", ev2)
	want := map[string]string{"stripe:" + re1: "10", "stripe:" + re2: "45"}
	e.wantLedger("second before first", "50", want)
	e.mustDeliver("first", ev1)
	e.wantLedger("first after second", "50", want)

	s2 := e.buy(tokA, 1)
	completed, err := e.fake.Pay(s2.ID)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ = e.fake.Session(s2.ID)
	a1, ra1 := e.refund(s2, 250)
	a2, ra2 := e.refund(s2, 750)
	e.mustDeliver("full refund before anything", a2)
	want["stripe:"+ra1] = "25"
	want["stripe:"+ra2] = "75"
	e.wantLedger("full refund before completion", "50", want)
	e.mustDeliver("partial refund after the full", a1)
	e.mustDeliver("late completion", completed)
	e.wantLedger("late events", "50", want)
	if got := e.adjustments(tokA); len(got) != 4 {
		t.Fatalf("adjustments %v", got)
	}
}

// Eight deliveries at once — three refunds' events (the last completing
// the payment), a lost dispute, and re-deliveries of them — write each
// debit once: the balance and the entries are those of one delivery each.
// A 503 (the ledger busy) is delivered again, as Stripe does.
func TestConcurrentRefundDeliveries(t *testing.T) {
	e := newPayEnv(t)
	for round := range 3 {
		s := e.paid(2)
		ev1, re1 := e.refund(s, 1000)
		ev2, re2 := e.refund(s, 333)
		ev3, re3 := e.refund(s, 7990-1333)
		lost, err := e.fake.Dispute(s.ID, "lost")
		if err != nil {
			t.Fatal(err)
		}
		events := [][]byte{ev1, ev2, ev3, lost, ev3, ev1, ev2, ev3}
		var wg sync.WaitGroup
		errs := make(chan error, len(events))
		for i, ev := range events {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for try := 0; ; try++ {
					st, err := e.fake.Deliver(ev)
					switch {
					case err != nil:
						errs <- err
						return
					case st == http.StatusOK:
						return
					case st != http.StatusServiceUnavailable || try == 20:
						errs <- fmt.Errorf("delivery %d: %d after %d tries", i, st, try+1)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		got := e.adjustments(tokA)
		for ref, c := range map[string]string{"stripe:" + re1: "125.1564", "stripe:" + re2: "41.677", "stripe:" + re3: "833.1664",
			"stripe:" + s.ID + ":reversal": "0.0002"} {
			if got[ref] != -credits(c) {
				t.Fatalf("round %d: %s debited %s, want %s (all: %v)", round, ref, -got[ref], c, got)
			}
		}
		if a := e.available(tokA); a != credits("5") || len(got) != 4*(round+1) {
			t.Fatalf("round %d: available %s, %d adjustments", round, a, len(got))
		}
	}
	if e.outcome(PayReversed) != 3 {
		t.Fatalf("reversed %v (one a round)", e.outcome(PayReversed))
	}
	t.Logf("24 concurrent deliveries: %v answered 503 and delivered again", e.outcome(PayFailed))
}

// A lost dispute after a partial refund debits only what is left of the
// pack; delivered in the other order, the same.
func TestDisputeLostAfterPartialRefund(t *testing.T) {
	e := newPayEnv(t)
	s := e.paid(1)
	ev, re := e.refund(s, 250)
	e.mustDeliver("refund", ev)
	lost, err := e.fake.Dispute(s.ID, "lost")
	if err != nil {
		t.Fatal(err)
	}
	e.mustDeliver("dispute lost", lost)
	want := map[string]string{"stripe:" + re: "25", "stripe:" + s.ID + ":reversal": "75"}
	e.wantLedger("dispute after refund", "5", want)
	e.mustDeliver("dispute again", lost)
	e.mustDeliver("refund again", ev)
	e.wantLedger("re-delivered", "5", want)

	s2 := e.paid(1)
	ev2, re2 := e.refund(s2, 400)
	lost2, err := e.fake.Dispute(s2.ID, "lost")
	if err != nil {
		t.Fatal(err)
	}
	e.mustDeliver("dispute before the refund's event", lost2)
	e.mustDeliver("refund after", ev2)
	want["stripe:"+re2] = "40"
	want["stripe:"+s2.ID+":reversal"] = "60"
	e.wantLedger("dispute first", "5", want)
}

// Credit already spent: each debit takes what is left, the shortfall is
// logged and counted reversal_short, and a re-delivery after the account
// was credited again takes nothing more (the refs are written).
func TestRefundOfSpentCredit(t *testing.T) {
	e := newPayEnv(t)
	s := e.paid(1)
	e.consume(storage.SMS, tokA, "65", "SMS") // 40 left
	ev1, re1 := e.refund(s, 300)
	e.mustDeliver("partial", ev1)
	ev2, re2 := e.refund(s, 700)
	e.mustDeliver("the rest", ev2)
	want := map[string]string{"stripe:" + re1: "30", "stripe:" + re2: "10"}
	e.wantLedger("spent", "0", want)
	if e.outcome(PayPartialRefund) != 1 || e.outcome(PayReversalShort) != 1 {
		t.Fatalf("partial %v short %v", e.outcome(PayPartialRefund), e.outcome(PayReversalShort))
	}
	e.logMu.Lock()
	logged := strings.Contains(e.logs.String(), "short=60")
	e.logMu.Unlock()
	if !logged {
		t.Fatal("the shortfall of 60 is not logged")
	}
	if _, err := e.ledger.Recharge(context.Background(), storage.RechargeRequest{Service: storage.SMS, Account: tokA,
		Amount: credits("50"), Kind: storage.EntryRecharge, Description: "operator"}); err != nil {
		t.Fatal(err)
	}
	e.mustDeliver("partial again", ev1)
	e.mustDeliver("the rest again", ev2)
	e.wantLedger("re-delivered after a recharge", "50", want)
	if e.outcome(PayDuplicate) != 2 {
		t.Fatalf("duplicate %v", e.outcome(PayDuplicate))
	}
	e.noSecretsLogged()
}

// A refund that failed before its event was handled takes nothing back
// (outcome ignored); the next refund takes its own share only.
func TestFailedRefundTakesNothing(t *testing.T) {
	e := newPayEnv(t)
	s := e.paid(1)
	ev, re := e.refund(s, 300)
	if !e.fake.SetRefundStatus(re, "failed") {
		t.Fatal("no refund to fail")
	}
	e.mustDeliver("failed refund", ev)
	e.wantLedger("failed refund", "105", nil)
	if e.outcome(PayIgnored) != 1 {
		t.Fatalf("ignored %v", e.outcome(PayIgnored))
	}
	ev2, re2 := e.refund(s, 500)
	e.mustDeliver("next refund", ev2)
	e.wantLedger("next refund", "55", map[string]string{"stripe:" + re2: "50"})
}

// A charge.refunded event whose total is more than the refunds Stripe
// lists (the list behind the event) answers 503 and debits nothing: Stripe
// delivers it again, and then, the list caught up, the share is debited.
func TestRefundListBehindTheEvent(t *testing.T) {
	e := newPayEnv(t)
	s := e.paid(1)
	ahead, err := e.fake.ChargeRefunded(s.ID)
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	if err := json.Unmarshal(ahead, &ev); err != nil {
		t.Fatal(err)
	}
	ev["data"].(map[string]any)["object"].(map[string]any)["amount_refunded"] = 400
	ahead, _ = json.Marshal(ev)
	if st := e.deliver(ahead, nil); st != http.StatusServiceUnavailable {
		t.Fatalf("a list behind the event: %d", st)
	}
	e.wantLedger("list behind", "105", nil)
	_, re := e.refund(s, 400)
	e.mustDeliver("delivered again", ahead)
	e.wantLedger("list caught up", "65", map[string]string{"stripe:" + re: "40"})
}

// A failed refund takes nothing back; a refund list that adds up to more
// than was paid (Stripe allows none) takes nothing and says so.
func TestTakeBackPlanRefusesNonsense(t *testing.T) {
	ps := &payState{prov: fakeName("stripe")}
	eur := func(cents int64) payments.Money { return payments.Money{Value: cents * 100, Currency: "EUR"} }
	plan, err := takeBackPlan(ps, "cs_1", credits("100"), eur(1000), []payments.Refund{
		{ID: "re_f", Amount: eur(1000), Status: "failed"}, {ID: "re_1", Amount: eur(100), Returned: true}}, false)
	if err != nil || len(plan) != 1 || plan[0].ref != "stripe:re_1" || plan[0].amount != credits("10") {
		t.Fatalf("a failed refund: %+v %v", plan, err)
	}
	for name, rs := range map[string][]payments.Refund{
		"over":     {{ID: "re_1", Amount: eur(600), Returned: true}, {ID: "re_2", Amount: eur(600), Returned: true}},
		"currency": {{ID: "re_1", Amount: payments.Money{Value: 100, Currency: "USD"}, Returned: true}},
		"zero":     {{ID: "re_1", Amount: eur(0), Returned: true}},
	} {
		if plan, err := takeBackPlan(ps, "cs_1", credits("100"), eur(1000), rs, false); err == nil {
			t.Errorf("%s: %+v", name, plan)
		}
	}
}

// takeBackPlan is a pure function of the refund list whose debits never
// add up to more than the credit, and to exactly the credit once the
// refunds cover the payment or a dispute is lost: over random payments
// and refund histories, every prefix of the history (what a delivery may
// see) and every order of the list give each ref the same amount (a lost
// dispute closes the history: Stripe refunds no disputed charge).
func TestTakeBackPlanProperties(t *testing.T) {
	ps := &payState{prov: fakeName("stripe")}
	rng := rand.New(rand.NewPCG(17, 42))
	for n := range 2000 {
		paidCents := 1 + rng.Int64N(1_000_000)
		if n%10 == 0 {
			paidCents = 1 + rng.Int64N(3)
		}
		paid := payments.Money{Value: paidCents * 100, Currency: "EUR"}
		credit := storage.Credits(1 + rng.Int64N(int64(storage.MaxCredits)))
		if n%3 == 0 {
			credit = storage.Credits(1 + rng.Int64N(1_000_000))
		}
		var history []payments.Refund
		for left := paidCents; left > 0 && len(history) < 12; {
			a := 1 + rng.Int64N(left)
			if rng.IntN(4) == 0 {
				a = left
			}
			history = append(history, payments.Refund{ID: fmt.Sprintf("re_%d_%d", n, len(history)),
				Amount: payments.Money{Value: a * 100, Currency: "EUR"}, Returned: true})
			left -= a
		}
		amounts := map[string]storage.Credits{}
		for k := 0; k <= len(history); k++ {
			for _, lost := range []bool{false, k == len(history)} { // no refund after a lost dispute (Stripe refuses)
				list := append([]payments.Refund(nil), history[:k]...)
				rng.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
				plan, err := takeBackPlan(ps, "cs_x", credit, paid, list, lost)
				if err != nil {
					t.Fatalf("case %d: %v", n, err)
				}
				var sum, refunded int64
				for _, r := range list {
					refunded += r.Amount.Value
				}
				for _, d := range plan {
					if d.amount <= 0 {
						t.Fatalf("case %d: debit %+v", n, d)
					}
					if a, ok := amounts[d.ref]; ok && a != d.amount {
						t.Fatalf("case %d: %s is %s in one list, %s in another", n, d.ref, a, d.amount)
					}
					amounts[d.ref] = d.amount
					sum += int64(d.amount)
				}
				full := lost || refunded == paid.Value
				if sum > int64(credit) || (full && sum != int64(credit)) {
					t.Fatalf("case %d: %d of %d refunded (lost %v): debits %d of %d", n, refunded, paid.Value, lost, sum, credit)
				}
			}
		}
	}
}
