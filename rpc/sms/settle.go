package sms

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/rpc/internal/failpoint"
	"github.com/iapd/iapd/rpc/sendflow"
	"github.com/iapd/iapd/storage"
)

// A send in flight is recorded in nsOpen so that a crash at any step
// leaves enough to settle it on the next start (Settle), exactly once:
//
//	<send>/h   the header: account, database, the hold once authorized
//	<send>/m<p> the messages, 50 a part: dedupe key, fingerprint, price
//	<send>/c<j> a provider call: per message, handed to which provider
//	           (written before the call) or what the provider answered
//	           (written after it)
//
// The header and parts are written before any uuid is claimed; a claim
// names its send, so that settlement releases only its own claims. The
// hold's description names the send too: a crash between the ledger's
// acknowledgement of the hold and the header's update still finds it
// (in the account's history). The records go when the send is over.

// OpenNamespace is the records namespace of the traces of sends in
// flight, which Settle reads: the one a process owns alone (several
// processes sharing a ledger each keep theirs, cmd/iapd ledger_pg.go).
const OpenNamespace = nsOpen

const (
	nsOpen       = "sms-open"
	openPartSize = 50
	// openTTL bounds an open send's records should every settlement fail;
	// longer than any hold, so that a hold never outlives its record.
	openTTL = 400 * 24 * time.Hour
)

// The per-message states of a provider call record.
const (
	openAccepted      = "a"
	openInvalid       = "x"
	openUnavailable   = "u"
	openIndeterminate = "?"
	openHanding       = "h" // handed over, no answer recorded
)

type openHeader struct {
	Tok string `json:"k"`
	DB  string `json:"d,omitempty"`
	At  int64  `json:"a"`
	N   int    `json:"n"`
	Txn string `json:"t,omitempty"`
	Web string `json:"w,omitempty"` // the webhook delivery reports go to
}

type openMsg struct {
	Key   string          `json:"k,omitempty"`
	UUID  string          `json:"u,omitempty"`
	FP    string          `json:"f"`
	Price storage.Credits `json:"p"`
	Segs  int             `json:"s"`
}

type openCall struct {
	Provider string   `json:"p"`
	I        []int    `json:"i"`
	O        []string `json:"o"`
	IDs      []string `json:"d,omitempty"` // the provider's ids of the accepted ones
}

// openSend is the durable trace of one send.
type openSend struct {
	s     *Service
	id    string
	hdr   openHeader
	parts int
	calls int // provider call records: one per chunk (dispatch)
}

func (o *openSend) put(ctx context.Context, key string, v any) error {
	b, _ := json.Marshal(v)
	return o.s.rec.PutRecord(context.WithoutCancel(ctx), nsOpen, o.id+"/"+key, b, o.s.now().Add(openTTL))
}

// open writes the trace of a send of todo (header and messages) before
// any of them is claimed; it numbers the messages.
func (s *Service) open(ctx context.Context, b batch, now time.Time, todo []*message) (*openSend, error) {
	o := &openSend{s: s, id: randomID()[:16], hdr: openHeader{Tok: string(b.tok), DB: b.dbuuid, At: now.Unix(), N: len(todo), Web: b.webhook}}
	var parts [][]openMsg
	for i, m := range todo {
		m.idx = i
		if i%openPartSize == 0 {
			parts = append(parts, nil)
		}
		parts[len(parts)-1] = append(parts[len(parts)-1], openMsg{Key: m.Key, UUID: m.uuid, FP: m.fp, Price: m.Price, Segs: m.segments})
	}
	o.parts = len(parts)
	errs := make([]error, len(parts)+1)
	sendflow.Parallel(len(parts)+1, func(i int) {
		if i == len(parts) {
			errs[i] = o.put(ctx, "h", o.hdr)
			return
		}
		errs[i] = o.put(ctx, "m"+strconv.Itoa(i), parts[i])
	})
	if err := errors.Join(errs...); err != nil {
		o.close(ctx)
		return nil, err
	}
	return o, nil
}

// held records the hold of the send.
func (o *openSend) held(ctx context.Context, txn string) error {
	o.hdr.Txn = txn
	return o.put(ctx, "h", o.hdr)
}

// mark writes the state of the messages of provider call j (nothing for
// a nil o: a free message, without hold).
func (o *openSend) mark(ctx context.Context, j int, provider string, ms []*message, state func(*message) string) error {
	if o == nil {
		return nil
	}
	c := openCall{Provider: provider, I: make([]int, len(ms)), O: make([]string, len(ms)), IDs: make([]string, len(ms))}
	for i, m := range ms {
		c.I[i], c.O[i] = m.idx, state(m)
		if c.O[i] == openAccepted {
			c.IDs[i] = m.providerID
		}
	}
	return o.put(ctx, "c"+strconv.Itoa(j), c)
}

// outState is the call record state of a decided message.
func outState(m *message) string {
	switch m.State {
	case sendflow.Accepted:
		return openAccepted
	case sendflow.Invalid:
		return openInvalid
	case sendflow.Indeterminate:
		return openIndeterminate
	}
	return openUnavailable
}

// close deletes the trace, all records at once (one group sync). It runs
// after the send settled its hold and recorded its uuids, so a crash
// halfway leaves a partial trace whose claims are decided and whose hold
// is no longer open: Settle then only deletes it.
func (o *openSend) close(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	keys := make([]string, 0, 1+o.parts+o.calls)
	keys = append(keys, "h")
	for i := 0; i < o.parts; i++ {
		keys = append(keys, "m"+strconv.Itoa(i))
	}
	for j := 0; j < o.calls; j++ {
		keys = append(keys, "c"+strconv.Itoa(j))
	}
	sendflow.Parallel(len(keys), func(i int) {
		if err := o.s.rec.DeleteRecord(ctx, nsOpen, o.id+"/"+keys[i]); err != nil {
			o.s.log.Error("sms: deleting a send's trace failed; it is deleted at the next start", "send", o.id, "err", err)
		}
	})
}

// holdDescription is the description of a send's hold: it names the send.
func holdDescription(n int, send string) string {
	return "SMS: " + strconv.Itoa(n) + " message(s), send " + send
}

// SettleReport says what Settle did, in messages.
type SettleReport struct {
	Sends         int // interrupted sends found
	Captured      int // accepted by a provider: charged, answered success on a retry
	Indeterminate int // handed over without an answer recorded: charged as sent
	Released      int // never handed over (or refused): hold released, uuid free again
	Failed        int // sends whose settlement failed (retried at the next start)
}

// Settle settles the sends a crash interrupted, from their traces: per
// send, the price of the messages a provider accepted is captured, and of
// those handed over without an answer recorded too (they may have been
// sent; no provider API here can say by our reference, and the operator
// pays the vendor for what it received); the rest of the hold is
// released and the uuids never handed over are freed, so that Odoo's
// retry sends them. A retry of a charged uuid is answered success with
// its credit. Every step is idempotent (capture and cancel in the
// ledger, records put or deleted), so a crash during Settle is settled
// again by the next start, never twice. It must run before the service
// takes requests.
func (s *Service) Settle(ctx context.Context, ls storage.RecordLister) (SettleReport, error) {
	var rep SettleReport
	groups := map[string][]storage.Record{}
	var order []string
	after := ""
	for {
		rs, err := ls.ListRecords(ctx, nsOpen, after, 256)
		if err != nil {
			return rep, err
		}
		for _, r := range rs {
			id, _, _ := strings.Cut(r.Key, "/")
			if _, ok := groups[id]; !ok {
				order = append(order, id)
			}
			groups[id] = append(groups[id], r)
		}
		if len(rs) < 256 {
			break
		}
		after = rs[len(rs)-1].Key
	}
	// Sends are independent: settled concurrently, so that the ledger
	// makes them durable in shared group syncs.
	reps := make([]SettleReport, len(order))
	errs := make([]error, len(order))
	sendflow.Parallel(len(order), func(i int) {
		if errs[i] = s.settleSend(ctx, order[i], groups[order[i]], &reps[i]); errs[i] != nil {
			reps[i].Failed++
			s.log.Error("sms: settling an interrupted send failed; it is tried again at the next start", "send", order[i], "err", errs[i])
		}
	})
	for _, r := range reps {
		rep.Sends += r.Sends
		rep.Captured += r.Captured
		rep.Indeterminate += r.Indeterminate
		rep.Released += r.Released
		rep.Failed += r.Failed
	}
	for k, n := range map[string]int{"captured": rep.Captured, "indeterminate_captured": rep.Indeterminate, "released": rep.Released} {
		s.m.settled.WithLabelValues(k).Add(float64(n))
	}
	return rep, errors.Join(errs...)
}

func (s *Service) settleSend(ctx context.Context, id string, rs []storage.Record, rep *SettleReport) error {
	var hdr *openHeader
	parts := map[int][]openMsg{}
	var calls []openCall
	for _, r := range rs {
		_, k, _ := strings.Cut(r.Key, "/")
		switch {
		case k == "h":
			hdr = new(openHeader)
			if err := json.Unmarshal(r.Value, hdr); err != nil {
				return err
			}
		case strings.HasPrefix(k, "m"):
			n, _ := strconv.Atoi(k[1:])
			var p []openMsg
			if err := json.Unmarshal(r.Value, &p); err != nil {
				return err
			}
			parts[n] = p
		case strings.HasPrefix(k, "c"):
			var c openCall
			if err := json.Unmarshal(r.Value, &c); err != nil {
				return err
			}
			calls = append(calls, c)
		}
	}
	del := func() error {
		// The header first (close's order).
		slices.SortFunc(rs, func(a, b storage.Record) int {
			return bool2int(!strings.HasSuffix(a.Key, "/h")) - bool2int(!strings.HasSuffix(b.Key, "/h"))
		})
		for _, r := range rs {
			if err := s.rec.DeleteRecord(ctx, nsOpen, r.Key); err != nil {
				return err
			}
		}
		return nil
	}
	if hdr == nil {
		return del() // the rest of a trace whose send was over
	}
	rep.Sends++
	var msgs []openMsg
	idx := make([]int, 0, len(parts))
	for n := range parts {
		idx = append(idx, n)
	}
	sort.Ints(idx)
	for _, n := range idx {
		msgs = append(msgs, parts[n]...)
	}
	state := make([]string, len(msgs))
	dlr := make([]string, len(msgs)) // provider/provider id of an accepted one
	for _, c := range calls {
		for i, m := range c.I {
			if m >= 0 && m < len(state) && i < len(c.O) {
				state[m] = c.O[i]
				if i < len(c.IDs) && c.IDs[i] != "" {
					dlr[m] = c.Provider + "/" + c.IDs[i]
				}
			}
		}
	}
	tok := storage.AccountToken(hdr.Tok)
	txn := hdr.Txn
	charge := false // the hold was open and is captured by this settlement
	if txn == "" {
		// Crashed between the hold and its record: nothing was handed
		// over; find the hold by its description and release it.
		holds, err := rpc.SendHolds(ctx, s.ledger, storage.SMS, tok, id, time.Unix(hdr.At, 0))
		if err != nil {
			return err
		}
		for _, h := range holds {
			if _, err := s.ledger.Cancel(ctx, storage.SMS, h); err != nil && !storage.Is(err, storage.Conflict) {
				return err
			}
		}
		for i := range state {
			state[i] = ""
		}
	} else {
		t, err := s.ledger.Transaction(ctx, txn)
		if err != nil && !storage.Is(err, storage.NotFound) {
			return err
		}
		var amount storage.Credits
		for i, m := range msgs {
			switch state[i] {
			case openAccepted, openIndeterminate, openHanding:
				amount += m.Price
			}
		}
		switch {
		case err == nil && t.State == storage.Captured && t.Captured == amount:
			// Captured for all that may have been sent: by an earlier
			// settlement that died before its records (or by the send,
			// when nothing was indeterminate).
			charge = true
		case err == nil && t.State == storage.Held:
			if amount == 0 {
				_, err = s.ledger.Cancel(ctx, storage.SMS, txn)
			} else {
				_, err = s.ledger.Capture(ctx, storage.CaptureRequest{Service: storage.SMS, Transaction: txn, Amount: &amount})
			}
			if err != nil && !storage.Is(err, storage.Conflict) {
				return err
			}
			if err != nil { // expired while iapd was down: sent, never charged
				s.log.Error("sms: an interrupted send's hold ended before it could be settled; its messages are not charged",
					"send", id, "transaction", txn, "amount", amount.String(), "err", err)
			}
			charge = err == nil
		}
	}
	failpoint.Hit("sms.settling") // the hold settled, the records not yet
	now := s.now()
	for i, m := range msgs {
		st := state[i]
		switch st {
		case openAccepted:
			rep.Captured++
			// Its delivery reports, as record would have mapped them.
			if prov, _, _ := strings.Cut(dlr[i], "/"); dlr[i] != "" && hdr.Web != "" && isOdooUUID(m.UUID) {
				if _, ok := s.senders[prov].(providers.DeliveryReporter); ok {
					v, _ := json.Marshal(dlrRecord{UUID: m.UUID, Webhook: hdr.Web, DBUUID: hdr.DB})
					if err := s.rec.PutRecord(ctx, nsDLR, dlr[i], v, now.Add(dlrTTL)); err != nil {
						return err
					}
				}
			}
		case openIndeterminate, openHanding:
			if charge {
				rep.Indeterminate++
			}
		default:
			rep.Released++
		}
		if m.Key == "" {
			continue
		}
		raw, err := s.rec.GetRecord(ctx, nsDedupe, m.Key)
		if storage.Is(err, storage.NotFound) {
			continue
		}
		if err != nil {
			return err
		}
		var d dedupeRecord
		if json.Unmarshal(raw, &d) != nil || d.Send != id || d.State != "pending" {
			continue // another send's claim, or already decided
		}
		var v []byte
		switch {
		case st == openAccepted || charge && (st == openIndeterminate || st == openHanding):
			c := m.Price
			v, _ = json.Marshal(dedupeRecord{State: "success", FP: m.FP, Credit: &c, At: now.Unix()})
		case st == openIndeterminate || st == openHanding:
			// The hold was settled before the crash (the indeterminate
			// part then has a hold of its own): as the send recorded it.
			v, _ = json.Marshal(dedupeRecord{State: "indeterminate", FP: m.FP, At: now.Unix()})
		default:
			if err := s.rec.DeleteRecord(ctx, nsDedupe, m.Key); err != nil {
				return err
			}
			continue
		}
		if err := s.rec.PutRecord(ctx, nsDedupe, m.Key, v, now.Add(s.cfg.DedupeTTL)); err != nil {
			return err
		}
	}
	s.log.Warn("sms: settled a send interrupted by a crash", "send", id, "account", rpc.TokenRef(tok),
		"transaction", txn, "messages", len(msgs))
	return del()
}

func bool2int(b bool) int {
	if b {
		return 1
	}
	return 0
}
