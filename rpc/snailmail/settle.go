package snailmail

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/rpc/internal/failpoint"
	"github.com/iapd/iapd/storage"
)

// A letter in flight is traced in nsOpen (one record per letter, keyed by
// a random send id) so that a crash at any step leaves enough to settle
// it at the next start (Settle), exactly once. The trace is written
// before the document is claimed (the claim names the send, so that
// settlement frees only its own claim), then: the hold once authorized
// (its description names the send: a crash before the trace says so
// still finds it in the account's history), the provider before it is
// called, its answer after. The trace goes when the letter is decided.

// OpenNamespace is the records namespace of the traces of letters in
// flight, which Settle reads: the one a process owns alone (several
// processes sharing a ledger each keep theirs, cmd/iapd ledger_pg.go).
const OpenNamespace = nsOpen

const (
	nsOpen  = "snailmail-open"     // send id → a letter in flight
	openTTL = 400 * 24 * time.Hour // longer than any hold
)

// Steps of a letter's trace.
const (
	stepNew      = "new"      // claimed, perhaps held, nothing handed over
	stepHeld     = "held"     // the hold is Txn
	stepHanding  = "handing"  // handed to Provider, no answer recorded
	stepAnswered = "answered" // Provider accepted it as SendID
)

type openLetter struct {
	Step     string          `json:"s"`
	Key      string          `json:"k"`
	Tok      string          `json:"t"`
	At       int64           `json:"a"`
	Price    storage.Credits `json:"p"`
	Pages    int             `json:"n"`
	Ref      string          `json:"r"` // providers.Letter.ID, our reference
	Txn      string          `json:"x,omitempty"`
	Provider string          `json:"v,omitempty"`
	SendID   string          `json:"i,omitempty"`
}

// trace is the durable trace of one letter.
type trace struct {
	s  *Service
	id string
	v  openLetter
}

// step writes the trace at its next step.
func (t *trace) step(ctx context.Context, step string) error {
	t.v.Step = step
	b, _ := json.Marshal(t.v)
	return t.s.rec.PutRecord(context.WithoutCancel(ctx), nsOpen, t.id, b, t.s.now().Add(openTTL))
}

func (t *trace) close(ctx context.Context) {
	if err := t.s.rec.DeleteRecord(context.WithoutCancel(ctx), nsOpen, t.id); err != nil {
		t.s.log.Error("snailmail: deleting a letter's trace failed; it is settled again at the next start", "send", t.id, "err", err)
	}
}

// sentRef is the send_id answered for a letter charged as sent without
// the provider's id (handed over, no answer recorded before a crash).
func sentRef(ref string) string { return "iapd-unconfirmed-" + ref }

// SettleReport says what Settle did, in letters.
type SettleReport struct {
	Captured      int // accepted by a provider: charged, answered sent on a retry
	Indeterminate int // handed over without an answer recorded: charged as sent
	Released      int // never handed over: hold released, document free again
	Failed        int // letters whose settlement failed (retried at the next start)
}

// Settle settles the letters a crash interrupted, from their traces: a
// letter a provider accepted is charged and a retry answered sent with
// its send_id; a letter handed over without an answer recorded is
// charged as sent too (no provider here can be asked by our reference,
// and the operator pays the vendor for what it received) and answered
// sent with send_id "iapd-unconfirmed-…"; a letter never handed over has
// its hold released and its claim freed, so that Odoo's retry prints it.
// Every step is idempotent, so a crash during Settle is settled again by
// the next start, never twice. It must run before the service takes
// requests.
func (s *Service) Settle(ctx context.Context, ls storage.RecordLister) (SettleReport, error) {
	var rep SettleReport
	var errs []error
	after := ""
	for {
		rs, err := ls.ListRecords(ctx, nsOpen, after, 256)
		if err != nil {
			return rep, err
		}
		// Letters are independent: settled concurrently, so that the
		// ledger makes them durable in shared group syncs.
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		for _, r := range rs {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				var one SettleReport
				err := s.settleLetter(ctx, r, &one)
				mu.Lock()
				defer mu.Unlock()
				rep.Captured += one.Captured
				rep.Indeterminate += one.Indeterminate
				rep.Released += one.Released
				if err != nil {
					rep.Failed++
					errs = append(errs, err)
					s.log.Error("snailmail: settling an interrupted letter failed; it is tried again at the next start", "send", r.Key, "err", err)
				}
			}()
		}
		wg.Wait()
		if len(rs) < 256 {
			break
		}
		after = rs[len(rs)-1].Key
	}
	for k, n := range map[string]int{"captured": rep.Captured, "indeterminate_captured": rep.Indeterminate, "released": rep.Released} {
		s.m.settled.WithLabelValues(k).Add(float64(n))
	}
	return rep, errors.Join(errs...)
}

func (s *Service) settleLetter(ctx context.Context, r storage.Record, rep *SettleReport) error {
	var v openLetter
	if err := json.Unmarshal(r.Value, &v); err != nil {
		return err
	}
	id := r.Key
	tok := storage.AccountToken(v.Tok)
	charged := false
	switch v.Step {
	case stepNew, stepHeld:
		holds := []string{v.Txn}
		if v.Txn == "" {
			var err error
			if holds, err = rpc.SendHolds(ctx, s.ledger, storage.Snailmail, tok, id, time.Unix(v.At, 0)); err != nil {
				return err
			}
		}
		for _, h := range holds {
			if _, err := s.ledger.Cancel(ctx, storage.Snailmail, h); err != nil && !storage.Is(err, storage.Conflict) && !storage.Is(err, storage.NotFound) {
				return err
			}
		}
		rep.Released++
	case stepHanding, stepAnswered:
		t, err := s.ledger.Transaction(ctx, v.Txn)
		if err != nil && !storage.Is(err, storage.NotFound) {
			return err
		}
		if err == nil && t.State == storage.Held {
			_, err = s.ledger.Capture(ctx, storage.CaptureRequest{Service: storage.Snailmail, Transaction: v.Txn})
			if err != nil && !storage.Is(err, storage.Conflict) {
				return err
			}
			if err != nil { // expired while iapd was down: sent, never charged
				s.log.Error("snailmail: an interrupted letter's hold ended before it could be settled; it is not charged",
					"send", id, "transaction", v.Txn, "err", err)
			}
			charged = err == nil
		} else if err == nil && t.State == storage.Captured {
			charged = true // captured before the crash
		}
		if v.Step == stepAnswered {
			rep.Captured++
		} else if charged {
			rep.Indeterminate++
		}
	}

	failpoint.Hit("letter.settling") // the hold settled, the records not yet

	// The claim, if it is still this send's pending one.
	raw, err := s.rec.GetRecord(ctx, nsLetter, v.Key)
	switch {
	case storage.Is(err, storage.NotFound):
	case err != nil:
		return err
	default:
		var c letterRecord
		if json.Unmarshal(raw, &c) == nil && c.Send == id && c.State == "pending" {
			now := s.now()
			rec := letterRecord{ClaimedAt: v.At, DecidedAt: now.Unix(), LetterHash: c.LetterHash,
				Provider: v.Provider, Cost: v.Price.String(), Pages: v.Pages}
			switch {
			case v.Step == stepAnswered || v.Step == stepHanding && charged:
				rec.State, rec.SendID = "sent", v.SendID
				if rec.SendID == "" {
					rec.SendID = sentRef(v.Ref)
				}
			case v.Step == stepHanding:
				rec.State, rec.Txn = "indeterminate", v.Txn
			default:
				rec = letterRecord{}
			}
			if rec.State == "" {
				err = s.rec.DeleteRecord(ctx, nsLetter, v.Key)
			} else {
				b, _ := json.Marshal(rec)
				err = s.rec.PutRecord(ctx, nsLetter, v.Key, b, now.Add(s.cfg.DedupeTTL))
			}
			if err != nil {
				return err
			}
		}
	}
	s.log.Warn("snailmail: settled a letter interrupted by a crash", "send", id, "account", rpc.TokenRef(tok),
		"step", v.Step, "transaction", v.Txn, "charged", charged)
	return s.rec.DeleteRecord(ctx, nsOpen, id)
}

// randomID is a fresh send id (16 hex).
func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
