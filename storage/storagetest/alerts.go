package storagetest

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
)

// far is a time every queued alert is due at.
func far() time.Time { return epoch().Add(100 * 365 * 24 * time.Hour) }

// alerts returns every queued alert (due or not), oldest first.
func (e *xenv) alerts() []storage.AlertNotice {
	e.t.Helper()
	return res(e.x.DueAlerts(e.ctx, far(), 10000)).must(e.t)
}

// wantNewAlerts asserts that exactly n alerts were queued since the
// previous call (seen is how many there were) and returns the new ones.
func (e *xenv) wantNewAlerts(seen *int, n int, what string) []storage.AlertNotice {
	e.t.Helper()
	all := e.alerts()
	if len(all)-*seen != n {
		e.t.Fatalf("%s: %d new alerts, want %d: %+v", what, len(all)-*seen, n, all[min(*seen, len(all)):])
	}
	got := all[*seen:]
	*seen = len(all)
	return got
}

func (e *xenv) setAlerts(svc storage.ServiceName, tok storage.AccountToken, al storage.Alerts) storage.Account {
	e.t.Helper()
	return res(e.x.UpdateAccount(e.ctx, svc, tok, storage.AccountUpdate{Alerts: &al})).must(e.t)
}

func (e *xenv) adjust(svc storage.ServiceName, tok storage.AccountToken, amount storage.Credits) {
	e.t.Helper()
	res(e.x.Recharge(e.ctx, storage.RechargeRequest{Service: svc, Account: tok, Amount: amount, Kind: storage.EntryAdjustment})).must(e.t)
}

func (e *xenv) capture(svc storage.ServiceName, txn string, amount *storage.Credits) {
	e.t.Helper()
	res(e.x.Capture(e.ctx, storage.CaptureRequest{Service: svc, Transaction: txn, Amount: amount})).must(e.t)
}

// testAlertsCrossing walks one account across its threshold with every
// kind of change: each crossing downwards queues one alert, in the same
// step; coming back re-arms.
func testAlertsCrossing(t *testing.T, e *xenv) {
	ctx, x := e.ctx, e.x
	e.service("sms", true, 0)
	e.recharge("sms", "tok", cr(100))
	rcp := []storage.Recipient{{Email: "ops@example.com", Lang: "fr_BE"}, {Email: "cfo@example.com"}}
	e.setAlerts("sms", "tok", storage.Alerts{Enabled: true, Threshold: cr(10), Recipients: rcp})
	seen := 0
	e.wantNewAlerts(&seen, 0, "alerts set above the threshold")

	// Down to exactly the threshold: no alert (below means <).
	e.capture("sms", e.authorize("sms", "tok", cr(90), time.Hour).Token, nil)
	e.wantNewAlerts(&seen, 0, "down to the threshold")

	// A hold lowers Available: crossing on authorize.
	e.clock.Advance(time.Minute)
	h1 := e.authorize("sms", "tok", cr(3), time.Hour)
	got := e.wantNewAlerts(&seen, 1, "authorize across the threshold")
	n := got[0]
	if n.Service != "sms" || n.Account != "tok" || n.Available != cr(7) || n.Threshold != cr(10) ||
		!reflect.DeepEqual(n.Recipients, rcp) || !n.At.Equal(e.clock.Now()) || n.Attempts != 0 ||
		n.NextTry.After(e.clock.Now()) || n.LastError != "" || n.ID == 0 {
		t.Fatalf("alert: %+v", n)
	}
	// Further down: disarmed, nothing more.
	e.capture("sms", h1.Token, nil)
	e.capture("sms", e.authorize("sms", "tok", cr(2), time.Hour).Token, nil)
	e.adjust("sms", "tok", -cr(1))
	e.wantNewAlerts(&seen, 0, "further down")

	// A recharge that stays below does not re-arm; one that reaches the
	// threshold does.
	e.recharge("sms", "tok", cr(2)) // 6
	e.wantNewAlerts(&seen, 0, "recharge still below")
	e.capture("sms", e.authorize("sms", "tok", cr(1), time.Hour).Token, nil) // 5
	e.wantNewAlerts(&seen, 0, "capture while disarmed")
	e.recharge("sms", "tok", cr(5)) // 10: re-armed
	e.wantNewAlerts(&seen, 0, "recharge to the threshold")

	// Capture for more than the hold, crossing on the capture.
	over := cr(4)
	h2 := e.authorize("sms", "tok", 0, time.Hour) // 10
	e.wantNewAlerts(&seen, 0, "a zero hold")
	e.capture("sms", h2.Token, &over) // 6
	if got := e.wantNewAlerts(&seen, 1, "over-capture across"); got[0].Available != cr(6) {
		t.Fatalf("over-capture alert: %+v", got[0])
	}

	// Cancel re-arms when it brings Available back; then a negative
	// adjustment crosses.
	e.recharge("sms", "tok", cr(2)) // 8
	h3 := e.authorize("sms", "tok", cr(1), time.Hour)
	res(x.Cancel(ctx, "sms", h3.Token)).must(t) // 8
	e.wantNewAlerts(&seen, 0, "cancel below")
	e.recharge("sms", "tok", cr(4)) // 12: re-armed
	h4 := e.authorize("sms", "tok", cr(5), time.Hour)
	e.wantNewAlerts(&seen, 1, "authorize across again") // 7
	res(x.Cancel(ctx, "sms", h4.Token)).must(t)         // 12: re-armed by the cancel
	e.wantNewAlerts(&seen, 0, "cancel back above")
	e.adjust("sms", "tok", -cr(3)) // 9
	if got := e.wantNewAlerts(&seen, 1, "negative adjustment across"); got[0].Available != cr(9) {
		t.Fatalf("adjustment alert: %+v", got[0])
	}

	// Expiry gives credit back and re-arms.
	e.recharge("sms", "tok", cr(6))                     // 15
	h5 := e.authorize("sms", "tok", cr(8), time.Minute) // 7
	e.wantNewAlerts(&seen, 1, "authorize across before expiry")
	e.clock.Advance(time.Minute)
	if n := res(x.ExpireDue(ctx, e.clock.Now(), 10)).must(t); n != 1 {
		t.Fatalf("expired %d", n)
	}
	if tx := res(x.Transaction(ctx, h5.Token)).must(t); tx.State != storage.Expired {
		t.Fatalf("hold %+v", tx)
	}
	e.figures("sms", "tok", cr(115), cr(15), 0, cr(100))
	e.capture("sms", e.authorize("sms", "tok", cr(6), time.Hour).Token, nil) // 9
	e.wantNewAlerts(&seen, 1, "capture across after expiry re-armed")

	// A voucher re-arms.
	noErr(t, x.CreateVouchers(ctx, []storage.Voucher{{CodeHash: code("v"), Service: "sms", Amount: cr(20)}}))
	res2 := func(_ storage.Voucher, _ storage.Entry, err error) error { return err }
	noErr(t, res2(x.RedeemVoucher(ctx, code("v"), "sms", "tok", e.clock.Now()))) // 29
	e.adjust("sms", "tok", -cr(25))                                              // 4
	e.wantNewAlerts(&seen, 1, "adjustment across after a voucher")

	// Alerts are oldest first with increasing ids.
	all := e.alerts()
	for i := 1; i < len(all); i++ {
		if all[i].ID <= all[i-1].ID || all[i].At.Before(all[i-1].At) {
			t.Fatalf("alerts out of order: %+v then %+v", all[i-1], all[i])
		}
	}
	audit(t, x, "sms", "tok")
}

// testAlertsSettings: threshold 0, disabled alerts, account states, and
// what UpdateAccount does.
func testAlertsSettings(t *testing.T, e *xenv) {
	ctx, x := e.ctx, e.x
	e.service("sms", true, 0)
	seen := 0

	// Threshold 0 never alerts: Available is never below 0.
	e.recharge("sms", "zero", cr(5))
	e.setAlerts("sms", "zero", storage.Alerts{Enabled: true, Threshold: 0, Recipients: []storage.Recipient{{Email: "a@b"}}})
	e.capture("sms", e.authorize("sms", "zero", cr(5), time.Hour).Token, nil)
	e.figures("sms", "zero", cr(5), 0, 0, cr(5))
	e.wantNewAlerts(&seen, 0, "threshold 0 drained to 0")

	// A settings change never queues an alert (issue 13: toggling a
	// threshold must not be a way to send mail); it re-arms, and the next
	// change of credit that leaves the account below queues one.
	// Disabled: no alert while below; enabling while below queues
	// nothing until the next debit.
	e.recharge("sms", "off", cr(20))
	e.setAlerts("sms", "off", storage.Alerts{Enabled: false, Threshold: cr(10)})
	e.adjust("sms", "off", -cr(15)) // 5
	e.wantNewAlerts(&seen, 0, "disabled alerts")
	e.setAlerts("sms", "off", storage.Alerts{Enabled: true, Threshold: cr(10)}) // no recipients: queued all the same
	e.wantNewAlerts(&seen, 0, "alerts enabled below the threshold")
	e.adjust("sms", "off", -cr(1)) // 4
	if got := e.wantNewAlerts(&seen, 1, "debit after alerts were enabled below"); got[0].Available != cr(4) || len(got[0].Recipients) != 0 {
		t.Fatalf("alert: %+v", got[0])
	}
	e.adjust("sms", "off", -cr(1)) // 3
	e.wantNewAlerts(&seen, 0, "still below")
	// Recipients alone: neither re-armed nor queued.
	e.setAlerts("sms", "off", storage.Alerts{Enabled: true, Threshold: cr(10), Recipients: []storage.Recipient{{Email: "new@example.com"}}})
	e.adjust("sms", "off", cr(1)) // 4
	e.wantNewAlerts(&seen, 0, "recipients changed")
	// The same settings again: nothing.
	e.setAlerts("sms", "off", storage.Alerts{Enabled: true, Threshold: cr(10), Recipients: []storage.Recipient{{Email: "new@example.com"}}})
	e.adjust("sms", "off", -cr(1)) // 3
	e.wantNewAlerts(&seen, 0, "same settings again")
	// A new threshold re-arms, queues nothing; the next debit alerts.
	for _, th := range []int64{8, 1, 8, 0, 8} { // a toggle: nothing
		e.setAlerts("sms", "off", storage.Alerts{Enabled: true, Threshold: cr(th), Recipients: []storage.Recipient{{Email: "new@example.com"}}})
	}
	e.wantNewAlerts(&seen, 0, "threshold toggled")
	e.adjust("sms", "off", -cr(1)) // 2
	if got := e.wantNewAlerts(&seen, 1, "debit after a new threshold"); got[0].Threshold != cr(8) || got[0].Recipients[0].Email != "new@example.com" {
		t.Fatalf("alert: %+v", got[0])
	}
	// A threshold raised above the balance: nothing until a debit.
	e.setAlerts("sms", "off", storage.Alerts{Enabled: true, Threshold: cr(2)})
	e.setAlerts("sms", "off", storage.Alerts{Enabled: true, Threshold: cr(3)})
	e.wantNewAlerts(&seen, 0, "threshold raised above the balance")
	// Other settings (sender name) change nothing.
	res(x.UpdateAccount(ctx, "sms", "off", storage.AccountUpdate{SenderName: ptr("ACME")})).must(t)
	e.wantNewAlerts(&seen, 0, "sender name")
	e.capture("sms", e.authorize("sms", "off", cr(1), time.Hour).Token, nil) // 1
	e.wantNewAlerts(&seen, 1, "capture after the threshold was raised")
	// Disabling and enabling again re-arms, queues nothing.
	e.setAlerts("sms", "off", storage.Alerts{Enabled: false, Threshold: cr(3)})
	e.setAlerts("sms", "off", storage.Alerts{Enabled: true, Threshold: cr(3)})
	e.wantNewAlerts(&seen, 0, "disabled and enabled again while below")

	// Accounts that are not registered get no alert; registering one that
	// is below its threshold queues nothing until its next debit.
	e.recharge("sms", "banned", cr(20))
	e.setAlerts("sms", "banned", storage.Alerts{Enabled: true, Threshold: cr(10)})
	res(x.UpdateAccount(ctx, "sms", "banned", storage.AccountUpdate{State: ptr(storage.Banned)})).must(t)
	e.adjust("sms", "banned", -cr(15))
	e.wantNewAlerts(&seen, 0, "banned account below")
	res(x.UpdateAccount(ctx, "sms", "banned", storage.AccountUpdate{State: ptr(storage.Registered)})).must(t)
	e.wantNewAlerts(&seen, 0, "account registered again below its threshold")
	e.adjust("sms", "banned", -cr(1))
	e.wantNewAlerts(&seen, 1, "debit of an account registered again below its threshold")

	// The alert carries the settings at the time of the crossing.
	e.recharge("sms", "late", cr(20))
	e.setAlerts("sms", "late", storage.Alerts{Enabled: true, Threshold: cr(10), Recipients: []storage.Recipient{{Email: "first@example.com"}}})
	e.adjust("sms", "late", -cr(15))
	got := e.wantNewAlerts(&seen, 1, "late")
	e.setAlerts("sms", "late", storage.Alerts{Enabled: true, Threshold: cr(10), Recipients: []storage.Recipient{{Email: "second@example.com"}}})
	if again := e.alerts(); again[len(again)-1].ID != got[0].ID || again[len(again)-1].Recipients[0].Email != "first@example.com" {
		t.Fatalf("queued alert changed: %+v", again[len(again)-1])
	}
}

func testAlertsOutbox(t *testing.T, e *xenv) {
	ctx, x := e.ctx, e.x
	e.service("sms", true, 0)
	t0 := e.clock.Now()
	for i := 0; i < 3; i++ {
		tok := storage.AccountToken(fmt.Sprintf("acct%d", i))
		e.recharge("sms", tok, cr(10))
		e.setAlerts("sms", tok, storage.Alerts{Enabled: true, Threshold: cr(5)})
		e.clock.Advance(time.Second)
		e.adjust("sms", tok, -cr(6))
	}
	_, err := x.DueAlerts(ctx, t0, 0)
	wantKind(t, err, storage.Invalid, "due alerts with max 0")
	due := res(x.DueAlerts(ctx, e.clock.Now(), 10)).must(t)
	if len(due) != 3 || due[0].Account != "acct0" || due[1].Account != "acct1" || due[2].Account != "acct2" {
		t.Fatalf("due: %+v", due)
	}
	if d := res(x.DueAlerts(ctx, e.clock.Now(), 2)).must(t); len(d) != 2 || d[0].ID != due[0].ID || d[1].ID != due[1].ID {
		t.Fatalf("due, max 2: %+v", d)
	}
	if d := res(x.DueAlerts(ctx, t0, 10)).must(t); len(d) != 0 {
		t.Fatalf("due before any crossing: %+v", d)
	}

	// A failed delivery waits until NextTry.
	retry := e.clock.Now().Add(time.Minute)
	reason := "smtp: 451 try again " + strings.Repeat("x", 2000)
	noErr(t, x.AlertFailed(ctx, due[0].ID, retry, reason))
	d := res(x.DueAlerts(ctx, e.clock.Now(), 10)).must(t)
	if len(d) != 2 || d[0].ID != due[1].ID || d[1].ID != due[2].ID {
		t.Fatalf("due after a failure: %+v", d)
	}
	d = res(x.DueAlerts(ctx, retry, 10)).must(t)
	if len(d) != 3 || d[0].ID != due[0].ID || d[0].Attempts != 1 || !d[0].NextTry.Equal(retry) ||
		!strings.HasPrefix(d[0].LastError, "smtp: 451 try again") || len(d[0].LastError) > len(reason) {
		t.Fatalf("failed alert: %+v", d[0])
	}
	noErr(t, x.AlertFailed(ctx, due[0].ID, retry.Add(time.Minute), "again"))
	if d := res(x.DueAlerts(ctx, retry.Add(time.Minute), 1)).must(t); d[0].Attempts != 2 || d[0].LastError != "again" {
		t.Fatalf("failed twice: %+v", d[0])
	}

	// Sent: gone, idempotently; a failure report for it is NotFound.
	noErr(t, x.AlertSent(ctx, due[1].ID))
	noErr(t, x.AlertSent(ctx, due[1].ID))
	noErr(t, x.AlertSent(ctx, 1)) // never queued
	wantKind(t, x.AlertFailed(ctx, due[1].ID, retry, "late"), storage.NotFound, "failure of a sent alert")
	left := e.alerts()
	if len(left) != 2 || left[0].ID != due[0].ID || left[1].ID != due[2].ID {
		t.Fatalf("left: %+v", left)
	}
	noErr(t, x.AlertSent(ctx, due[0].ID))
	noErr(t, x.AlertSent(ctx, due[2].ID))
	if left := e.alerts(); len(left) != 0 {
		t.Fatalf("left after all sent: %+v", left)
	}
	// Sending does not re-arm: the accounts are still below.
	e.adjust("sms", "acct0", -cr(1))
	if left := e.alerts(); len(left) != 0 {
		t.Fatalf("an alert after sending, still below: %+v", left)
	}
}

// testAlertsConcurrent: 32 concurrent authorizes take an account across
// its threshold once, 32 concurrent cancels bring it back, and again:
// one alert per crossing, whatever the interleaving.
func testAlertsConcurrent(t *testing.T, e *xenv) {
	ctx, x := e.ctx, e.x
	e.service("sms", true, 0)
	e.recharge("sms", "hot", cr(40))
	e.setAlerts("sms", "hot", storage.Alerts{Enabled: true, Threshold: cr(20)})
	// Other accounts cross at the same time, each once.
	const others = 8
	for i := 0; i < others; i++ {
		tok := storage.AccountToken(fmt.Sprintf("other%d", i))
		e.recharge("sms", tok, cr(10))
		e.setAlerts("sms", tok, storage.Alerts{Enabled: true, Threshold: cr(5)})
	}
	const n = 32
	run := func(f func(i int) error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, n+others)
		start := make(chan struct{})
		for i := 0; i < n+others; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = f(i)
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("goroutine %d: %v", i, err)
			}
		}
	}
	for round := 1; round <= 2; round++ {
		holds := make([]string, n)
		run(func(i int) error {
			if i >= n {
				tok := storage.AccountToken(fmt.Sprintf("other%d", i-n))
				amount := -cr(3)
				if round == 2 {
					amount = cr(3) // back to 10: no crossing
				}
				_, err := x.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: tok, Amount: amount, Kind: storage.EntryAdjustment})
				if err == nil && round == 1 {
					_, err = x.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: tok, Amount: -cr(3), Kind: storage.EntryAdjustment})
				}
				return err
			}
			tx, err := x.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: "hot", Amount: cr(1), TTL: time.Hour})
			holds[i] = tx.Token
			return err
		})
		e.figures("sms", "hot", cr(40), cr(8), cr(32), 0)
		byAcct := map[storage.AccountToken]int{}
		for _, a := range e.alerts() {
			byAcct[a.Account]++
		}
		if byAcct["hot"] != round {
			t.Fatalf("round %d: %d alerts for the hot account, want %d", round, byAcct["hot"], round)
		}
		for i := 0; i < others; i++ {
			if c := byAcct[storage.AccountToken(fmt.Sprintf("other%d", i))]; c != 1 {
				t.Fatalf("round %d: %d alerts for other%d, want 1", round, c, i)
			}
		}
		run(func(i int) error {
			if i >= n {
				return nil
			}
			_, err := x.Cancel(ctx, "sms", holds[i])
			return err
		})
		e.figures("sms", "hot", cr(40), cr(40), 0, 0)
	}
	audit(t, x, "sms", "hot")
}

func testAlertsReopen(t *testing.T, e *xenv) {
	e.service("sms", true, 0)
	e.recharge("sms", "tok", cr(20))
	e.setAlerts("sms", "tok", storage.Alerts{Enabled: true, Threshold: cr(10), Recipients: []storage.Recipient{{Email: "a@example.com", Lang: "de_DE"}}})
	e.adjust("sms", "tok", -cr(15))
	seen := 0
	before := e.wantNewAlerts(&seen, 1, "crossing before the restart")
	noErr(t, e.x.AlertFailed(e.ctx, before[0].ID, e.clock.Now().Add(time.Minute), "down"))
	e.restart()
	after := e.alerts()
	if len(after) != 1 || after[0].ID != before[0].ID || after[0].Attempts != 1 || after[0].LastError != "down" ||
		!reflect.DeepEqual(after[0].Recipients, before[0].Recipients) || after[0].Available != cr(5) {
		t.Fatalf("alert after restart: %+v, before %+v", after, before)
	}
	// Still disarmed after the restart.
	e.adjust("sms", "tok", -cr(1))
	e.wantNewAlerts(&seen, 0, "further down after the restart")
	// Re-armed, crossing again: a new id above the old one.
	e.recharge("sms", "tok", cr(10))
	e.adjust("sms", "tok", -cr(10))
	got := e.wantNewAlerts(&seen, 1, "crossing after the restart")
	if got[0].ID <= before[0].ID {
		t.Fatalf("id %d after the restart, %d before", got[0].ID, before[0].ID)
	}
	noErr(t, e.x.AlertSent(e.ctx, before[0].ID))
	e.restart()
	if left := e.alerts(); len(left) != 1 || left[0].ID != got[0].ID {
		t.Fatalf("after sending and restarting: %+v", left)
	}
}
