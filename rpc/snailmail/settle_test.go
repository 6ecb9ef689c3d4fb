package snailmail

import (
	"context"
	"strings"
	"testing"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/providertest"
	"github.com/iapd/iapd/rpc"
)

// stuckSender takes a letter and never answers (until release): the
// process serving the request is, for the ledger and the records, a
// process killed while the provider held the request.
type stuckSender struct {
	called  chan struct{}
	release chan struct{}
}

func (s *stuckSender) Name() string { return "fake" }
func (s *stuckSender) Type() string { return "fake" }
func (s *stuckSender) Close() error { return nil }
func (s *stuckSender) SendLetter(context.Context, providers.Letter) (providers.LetterResult, error) {
	close(s.called)
	<-s.release
	return providers.LetterResult{}, providers.Errorf("fake", providers.Unavailable, "gone")
}

// TestSettleLetterHandedOver: a letter handed to the provider without an
// answer when the process died is charged once by the next start's
// settlement, a second settlement finds nothing, and Odoo's retry is
// answered sent without reaching the provider again. (The kill -9 at
// every step, against a Pingen-shaped server, is cmd/iapd's
// TestAbuseSettleAfterCrash.)
func TestSettleLetterHandedOver(t *testing.T) {
	stuck := &stuckSender{called: make(chan struct{}), release: make(chan struct{})}
	done := make(chan struct{})
	// Registered first, so run last: the stuck request resumes only once
	// the ledger is closed, as if its process were gone.
	t.Cleanup(func() { close(stuck.release); <-done })
	e := newEnv(t, Settings{}, stuck)
	e.recharge(tok, "10")
	req := body(tok, true, nil, doc(1, 10, "BE", providertest.OnePagePDF))
	go func() {
		defer close(done)
		e.do(req)
	}()
	<-stuck.called
	e.want(tok, "9", "1", "0")

	// The next process: same ledger, a provider that answers.
	fresh := &fakeSender{name: "fake"}
	svc, err := New(Settings{Providers: []string{"fake"}}, Deps{Ledger: e.ledger, Records: e.ledger, Senders: map[string]providers.LetterSender{"fake": fresh}})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := svc.Settle(context.Background(), e.ledger)
	if err != nil || rep != (SettleReport{Indeterminate: 1}) {
		t.Fatalf("settlement %+v, %v", rep, err)
	}
	e.want(tok, "9", "0", "1")
	if rep, err := svc.Settle(context.Background(), e.ledger); err != nil || rep != (SettleReport{}) {
		t.Fatalf("second settlement %+v, %v", rep, err)
	}
	e.want(tok, "9", "0", "1")

	// Odoo's retry of the document, served by the new process.
	srv, err := rpc.New(rpc.Config{Ledger: e.ledger, PublicURL: "https://iap.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Register(ServiceName, svc, svc.Routes()); err != nil {
		t.Fatal(err)
	}
	r := (&env{t: t, ledger: e.ledger, svc: svc, h: srv.Handler()}).print(req)
	if !strings.HasPrefix(r.sendID(0), "iapd-unconfirmed-") || fresh.calls() != 0 {
		t.Fatalf("retry answered %s; provider calls %d", r.raw, fresh.calls())
	}
	e.want(tok, "9", "0", "1")
}
