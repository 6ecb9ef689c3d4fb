package sms

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

// interrupted runs the steps of a send up to where a crash stops it (the
// real kill -9 at each step is cmd/iapd's TestAbuseSettleAfterCrash):
// trace, claims, hold, and — with record — the hold's record and one
// provider call record per message, in the state that call gives.
func interrupted(t testing.TB, e *env, tok storage.AccountToken, uuids []string, record bool, call func(i int) string) {
	t.Helper()
	ctx := context.Background()
	s := e.svc
	now := s.now()
	b := batch{tok: tok, dbuuid: "db-1"}
	var ms []*message
	for i, u := range uuids {
		m := &message{uuid: u, raw: "+3247000000" + string(rune('0'+i)), content: "hello"}
		m.number, _ = normalizeNumber(m.raw)
		m.segments, _ = Segments(m.content)
		m.Price = s.price(m.number) * storage.Credits(m.segments)
		m.chain, m.fp, m.id = s.chain(m.number), fingerprint(m.number, m.content), u
		m.Key = s.dedupeKey(b, m)
		ms = append(ms, m)
	}
	o, err := s.open(ctx, b, now, ms)
	if err != nil {
		t.Fatal(err)
	}
	txn, held, err := s.flow.Reserve(ctx, s.sendOf(b, o.id), s.items(now, ms, o.id))
	if err != nil || txn == nil || len(held) != len(ms) {
		t.Fatalf("claim and hold: %d of %d held, %v", len(held), len(ms), err)
	}
	todo := ms
	if !record {
		return
	}
	if err := o.held(ctx, txn.Token); err != nil {
		t.Fatal(err)
	}
	o.calls = len(todo)
	for i, m := range todo {
		if err := o.mark(ctx, i, "f", []*message{m}, func(*message) string { return call(i) }); err != nil {
			t.Fatal(err)
		}
	}
}

// restart is the service of a new process on the same ledger: it settles.
func restart(t *testing.T, e *env, f *fakeSender) (*env, SettleReport) {
	t.Helper()
	e2 := newEnvOn(t, e.ledger, Settings{}, f)
	rep, err := e2.svc.Settle(context.Background(), e.ledger)
	if err != nil {
		t.Fatal(err)
	}
	return e2, rep
}

func TestSettleInterruptedSends(t *testing.T) {
	u1, u2 := strings.Repeat("a", 32), strings.Repeat("b", 32)
	nums := []num{{u1, "+32470000000"}, {u2, "+32470000001"}}
	cases := []struct {
		name     string
		record   bool
		call     func(i int) string
		want     SettleReport
		captured string // after settlement
		sent     int    // by the retry
	}{
		{"hold not recorded", false, nil, SettleReport{Sends: 1, Released: 2}, "0", 2},
		{"handed, no answer", true, func(int) string { return openHanding }, SettleReport{Sends: 1, Indeterminate: 2}, "2", 0},
		{"one accepted, one unavailable", true, func(i int) string { return []string{openAccepted, openUnavailable}[i] },
			SettleReport{Sends: 1, Captured: 1, Released: 1}, "1", 1},
		{"refused", true, func(int) string { return openInvalid }, SettleReport{Sends: 1, Released: 2}, "0", 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeSender{name: "f"}
			e := newEnv(t, Settings{}, f)
			const tok = "0123456789abcdef0123456789abcdef"
			e.recharge(tok, "10")
			interrupted(t, e, tok, []string{u1, u2}, tc.record, tc.call)
			if a := e.account(tok); a.Held != credits(t, "2") {
				t.Fatalf("before settlement: held %s", a.Held)
			}
			e2, rep := restart(t, e, f)
			if rep != tc.want {
				t.Errorf("settlement %+v, want %+v", rep, tc.want)
			}
			a := e2.account(tok)
			if a.Held != 0 || a.Captured != credits(t, tc.captured) {
				t.Errorf("after settlement: held %s captured %s, want 0 and %s", a.Held, a.Captured, tc.captured)
			}
			// Settled once: a second start finds nothing.
			e3, rep := restart(t, e2, f)
			if a3 := e3.account(tok); rep != (SettleReport{}) || a3.Seq != a.Seq || a3.Available != a.Available {
				t.Errorf("a second settlement %+v changed the account: %+v", rep, a3)
			}
			if got := testCounter(t, e2.reg, "iap_sms_settled_messages_total"); got != float64(tc.want.Captured+tc.want.Indeterminate+tc.want.Released) {
				t.Errorf("settled messages counted %v", got)
			}
			// Odoo's retry of the same uuids: charged ones answered
			// success, the others sent now; 2 credits in all.
			got := e3.send3(tok, "", map[string][]num{"hello": nums})
			if got[u1].State != "success" || got[u2].State != "success" || got[u1].Credit != "1" || got[u2].Credit != "1" {
				t.Errorf("retry: %+v", got)
			}
			if f.count() != tc.sent {
				t.Errorf("the retry sent %d messages, want %d", f.count(), tc.sent)
			}
			if a := e3.account(tok); a.Held != 0 || a.Captured != credits(t, "2") {
				t.Errorf("after the retry: held %s captured %s, want 0 and 2", a.Held, a.Captured)
			}
		})
	}
}

func testCounter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// BenchmarkSettle measures the start-up settlement: 100 sends of 2
// messages interrupted while handed to the provider, settled (captured,
// uuids recorded, traces deleted) on a disk ledger; ns/op is per send.
func BenchmarkSettle(b *testing.B) {
	f := &fakeSender{name: "f"}
	e := newEnvOn(b, openLedgerWith(b, true, badger.Options{Dir: b.TempDir()}), Settings{}, f)
	const tok = "0123456789abcdef0123456789abcdef"
	e.recharge(tok, "1000000")
	handing := func(int) string { return openHanding }
	b.ResetTimer()
	for i := 0; i < b.N; i += 100 {
		b.StopTimer()
		for j := 0; j < 100; j++ {
			interrupted(b, e, tok, []string{fmt.Sprintf("%016x%08x%08x", i, j, 0), fmt.Sprintf("%016x%08x%08x", i, j, 1)}, true, handing)
		}
		b.StartTimer()
		rep, err := e.svc.Settle(context.Background(), e.ledger)
		if err != nil || rep.Sends != 100 {
			b.Fatalf("settled %+v, %v", rep, err)
		}
	}
}
