package sms

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/rpc/internal/failpoint"
	"github.com/iapd/iapd/rpc/sendflow"
	"github.com/iapd/iapd/storage"
)

// The states answered per number (PROTOCOL §6.1, §6.2).
const (
	stateSuccess      = "success"
	stateProcessing   = "processing"
	stateNoCredit     = "insufficient_credit"
	stateBadNumber    = "wrong_number_format"
	stateCountry      = "country_not_supported"
	stateServerError  = "server_error"
	stateUnregistered = "unregistered"
	stateDuplicate    = "duplicate_message"
	stateContent      = "incompatible_content"
)

// maxSegments is the most parts a concatenated SMS can have (the 8-bit
// part counter of TS 23.040); a longer text cannot be sent as one SMS.
const maxSegments = 255

// Send2Args are the params of /iap/sms/2/send (§6.1, 16.0).
type Send2Args struct {
	AccountToken string        `json:"account_token"`
	Messages     []FlatMessage `json:"messages"`
}

// FlatMessage is one 16.0 message.
type FlatMessage struct {
	ResID   rpc.Number `json:"res_id"`
	Number  rpc.Text   `json:"number"`
	Content rpc.Text   `json:"content"`
}

// Result2 is one 16.0 result: res_id, state and credit, always.
type Result2 struct {
	ResID  json.RawMessage `json:"res_id"`
	State  string          `json:"state"`
	Credit storage.Credits `json:"credit"`
}

// MessageSendArgs are the params of /iap/message_send (16.0's
// sms.api._send_sms: one text to several numbers, §6.1).
type MessageSendArgs struct {
	AccountToken string     `json:"account_token"`
	Numbers      []rpc.Text `json:"numbers"`
	Message      rpc.Text   `json:"message"`
}

// NumberResult is the result of /iap/message_send for one number: the
// number as sent, its state (those of §6.1) and the credit it cost.
type NumberResult struct {
	Number string          `json:"number"`
	State  string          `json:"state"`
	Credit storage.Credits `json:"credit"`
}

// Send3Args are the params of /iap/sms/3/send and /api/sms/3/send (§6.2).
type Send3Args struct {
	AccountToken string           `json:"account_token"`
	Messages     []GroupedMessage `json:"messages"`
	WebhookURL   rpc.Text         `json:"webhook_url"` // false when the caller wants no reports
	DBUUID       rpc.Text         `json:"dbuuid"`
}

// GroupedMessage is one body and its numbers (17.0+).
type GroupedMessage struct {
	Content rpc.Text     `json:"content"`
	Numbers []UUIDNumber `json:"numbers"`
}

// UUIDNumber is one number of a GroupedMessage.
type UUIDNumber struct {
	UUID   rpc.Text `json:"uuid"`
	Number rpc.Text `json:"number"`
}

// Result3 is one 17.0+ result: uuid and state, credit when charged.
type Result3 struct {
	UUID   string           `json:"uuid"`
	State  string           `json:"state"`
	Credit *storage.Credits `json:"credit,omitempty"`
}

// Send2 serves /iap/sms/2/send: one result per message that was decided
// (a message left out stays queued in Odoo and is sent again later).
func (s *Service) Send2(r *http.Request, args *Send2Args, reply *[]Result2) error {
	const op = "sms.send"
	if len(args.Messages) > s.cfg.MaxBatch {
		return storage.Ef(op, storage.Invalid, "Too many messages in one call (at most %d).", s.cfg.MaxBatch)
	}
	tok, disabled, err := rpc.ParseAccountToken(op, "account_token", args.AccountToken)
	if err != nil {
		return err
	}
	ms := make([]*message, 0, len(args.Messages))
	for _, m := range args.Messages {
		res := m.ResID.Lit
		if res == "" {
			res = "0"
		}
		ms = append(ms, &message{resID: json.RawMessage(res), raw: m.Number.S, content: m.Content.S})
	}
	if err := s.send(r.Context(), batch{v16: true, tok: tok, disabled: disabled}, ms); err != nil {
		return err
	}
	out := make([]Result2, 0, len(ms))
	for _, m := range ms {
		if st := m.answer(true); st != "" {
			out = append(out, Result2{ResID: m.resID, State: st, Credit: m.credit})
		}
	}
	*reply = out
	return nil
}

// MessageSend serves /iap/message_send: the text to every number, through
// the same send as Send2 (price, hold, providers, settlement), but whole:
// when the credit does not cover every number, nothing is sent and the
// answer is InsufficientCreditError (credit: the price of the call), which
// 16.0's _send_sms raises to its caller as every IAP client does (§1.4,
// §1.5). Otherwise one result per number, in order; a number not sent for
// another reason says why in its state (wrong_number_format,
// unregistered, server_error), as on /iap/sms/2/send.
func (s *Service) MessageSend(r *http.Request, args *MessageSendArgs, reply *[]NumberResult) error {
	const op = "sms.message_send"
	if len(args.Numbers) > s.cfg.MaxBatch {
		return storage.Ef(op, storage.Invalid, "Too many numbers in one call (at most %d).", s.cfg.MaxBatch)
	}
	tok, disabled, err := rpc.ParseAccountToken(op, "account_token", args.AccountToken)
	if err != nil {
		return err
	}
	ms := make([]*message, 0, len(args.Numbers))
	for _, n := range args.Numbers {
		// res_id 0: no dedupe record (16.0's call carries no id to
		// recognise a retry by, like the composer's res_id 0).
		ms = append(ms, &message{resID: json.RawMessage("0"), raw: n.S, content: args.Message.S})
	}
	if err := s.send(r.Context(), batch{v16: true, whole: true, tok: tok, disabled: disabled}, ms); err != nil {
		return err
	}
	var short storage.Credits
	out := make([]NumberResult, 0, len(ms))
	for _, m := range ms {
		st := m.answer(true)
		switch st {
		case stateNoCredit:
			short += m.Price
		case "": // not attempted in time: not sent, not charged
			st = stateServerError
		}
		out = append(out, NumberResult{Number: m.raw, State: st, Credit: m.credit})
	}
	if short > 0 {
		return &storage.Error{Op: op, Kind: storage.InsufficientCredit, Service: storage.SMS, Credit: short}
	}
	*reply = out
	return nil
}

// Send3 serves /iap/sms/3/send and /api/sms/3/send: one result per uuid
// that was decided; a uuid left out stays queued in Odoo.
func (s *Service) Send3(r *http.Request, args *Send3Args, reply *[]Result3) error {
	const op = "sms.send"
	n := 0
	for _, g := range args.Messages {
		n += len(g.Numbers)
	}
	if n > s.cfg.MaxBatch {
		return storage.Ef(op, storage.Invalid, "Too many numbers in one call (at most %d).", s.cfg.MaxBatch)
	}
	tok, disabled, err := rpc.ParseAccountToken(op, "account_token", args.AccountToken)
	if err != nil {
		return err
	}
	b := batch{tok: tok, disabled: disabled, dbuuid: args.DBUUID.S}
	if len(b.dbuuid) > 64 {
		b.dbuuid = ""
	}
	if u := args.WebhookURL.S; validWebhook(u) {
		b.webhook = u
	}
	ms := make([]*message, 0, n)
	seen := make(map[string]bool, n)
	for _, g := range args.Messages {
		for _, num := range g.Numbers {
			u := num.UUID.S
			if u == "" || len(u) > 64 || seen[u] {
				continue // cannot be answered (or answered once already)
			}
			seen[u] = true
			ms = append(ms, &message{uuid: u, raw: num.Number.S, content: g.Content.S})
		}
	}
	if err := s.send(r.Context(), b, ms); err != nil {
		return err
	}
	out := make([]Result3, 0, len(ms))
	for _, m := range ms {
		if st := m.answer(false); st != "" {
			res := Result3{UUID: m.uuid, State: st}
			if st == stateSuccess {
				c := m.credit
				res.Credit = &c
			}
			out = append(out, res)
		}
	}
	*reply = out
	return nil
}

// validWebhook: an absolute http(s) URL of sane length. Where it points
// is checked when dialling.
func validWebhook(u string) bool {
	if u == "" || len(u) > 2048 {
		return false
	}
	p, err := url.Parse(u)
	return err == nil && (p.Scheme == "http" || p.Scheme == "https") && p.Host != "" && p.User == nil
}

// batch is what one send request says besides its messages.
type batch struct {
	v16      bool
	whole    bool // all messages or none: no partial hold (MessageSend)
	tok      storage.AccountToken
	disabled bool
	dbuuid   string
	webhook  string // "" when no delivery report is wanted (or 16.0)
}

// message is one number of a request: a sendflow.Item (claim key, price,
// state) once it passed the checks.
type message struct {
	sendflow.Item
	uuid    string          // 17.0+
	resID   json.RawMessage // 16.0
	raw     string
	content string

	number   string // E.164
	id       string // providers.SMS.ID
	fp       string
	segments int
	chain    []string
	idx      int // its number in the send's trace (settle.go)

	state      string // the answer when refused before the send, or a retry's
	credit     storage.Credits
	provider   string
	providerID string
	status     providers.SMSStatus
}

// answer is the state told to Odoo ("" leaves the message out).
func (m *message) answer(v16 bool) string {
	var st string
	switch m.State {
	case sendflow.Accepted:
		st = stateSuccess
	case sendflow.Invalid:
		st = stateBadNumber
	case sendflow.Unavailable, sendflow.Indeterminate:
		st = stateServerError
	case sendflow.Deferred, sendflow.Held:
		return ""
	case sendflow.Refused:
		st = stateUnregistered
		if m.Refusal == storage.InsufficientCredit {
			st = stateNoCredit
		}
	default: // pending (refused before the send) or replayed
		st = m.state
	}
	if !v16 {
		return st
	}
	// 16.0 knows five states; anything else leaves the SMS queued to be
	// sent again (§6.1), which is what processing needs and what must not
	// happen to the others.
	switch st {
	case stateCountry:
		return stateBadNumber
	case stateDuplicate, stateContent:
		return stateServerError
	case stateProcessing:
		return ""
	}
	return st
}

// dedupeRecord is the value of a nsDedupe record.
type dedupeRecord struct {
	State  string           `json:"s"` // pending, success, indeterminate
	FP     string           `json:"f"`
	Credit *storage.Credits `json:"c,omitempty"`
	Txn    string           `json:"t,omitempty"` // the hold kept for an indeterminate send
	At     int64            `json:"a"`           // unix seconds of the claim
	Send   string           `json:"x,omitempty"` // the send that claimed it (pending only; settle.go)
}

// staleClaim: a pending claim older than this is a send that never
// finished and that start-up settlement could not decide (Settle logged
// why): its fate is unknown.
const staleClaim = time.Minute

// send decides the fate of every message: the checks, then the send
// through s.flow (dedupe claims, hold, the providers, settlement,
// records). A non-nil error (the ledger or the records failed before
// anything was sent) fails the whole request, which Odoo answers by
// marking the batch server_error.
func (s *Service) send(ctx context.Context, b batch, ms []*message) error {
	now := s.now()
	defer func() {
		for _, m := range ms {
			if st := m.answer(b.v16); st != "" {
				s.m.messages.WithLabelValues(st).Inc()
			} else {
				s.m.messages.WithLabelValues("deferred").Inc()
			}
		}
	}()
	if b.disabled {
		// A neutralised database: refused, the ledger not even touched.
		for _, m := range ms {
			m.state = stateUnregistered
		}
		return nil
	}
	var todo []*message
	for _, m := range ms {
		num, ok := normalizeNumber(m.raw)
		switch {
		case !ok:
			m.state = stateBadNumber
		case s.isUnsupported(num):
			m.state = stateCountry
		default:
			m.segments, _ = Segments(m.content)
			if m.segments > maxSegments {
				m.state = stateContent
				continue
			}
			m.number = num
			m.Price = s.price(num) * storage.Credits(m.segments)
			m.chain = s.chain(num)
			m.fp = fingerprint(num, m.content)
			m.id = m.uuid
			if m.id == "" {
				m.id = randomID()
			}
			m.Key = s.dedupeKey(b, m)
			todo = append(todo, m)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	acct, err := s.ledger.Account(ctx, storage.SMS, b.tok, storage.FirstSight{DBUUID: b.dbuuid})
	if err != nil {
		return err
	}
	if acct.State != storage.Registered {
		for _, m := range ms {
			m.State, m.state = sendflow.Pending, stateUnregistered
		}
		return nil
	}

	// The send's trace, so that a crash at any later step is settled at
	// the next start (settle.go).
	o, err := s.open(ctx, b, now, todo)
	if err != nil {
		return err
	}
	defer o.close(ctx)
	failpoint.Hit("sms.opened")
	err = s.flow.Run(ctx, s.sendOf(b, o.id), s.items(now, todo, o.id), &smsSteps{s: s, b: b, acct: acct, o: o, now: now, ms: todo})
	s.replayed(now, todo)
	return err
}

// sendOf is the sendflow request of a batch traced as send.
func (s *Service) sendOf(b batch, send string) sendflow.Send {
	return sendflow.Send{Account: b.tok, DBUUID: b.dbuuid, Whole: b.whole,
		Describe:     func(n int) string { return holdDescription(n, send) },
		DescribeKept: func(n int) string { return "SMS: " + strconv.Itoa(n) + " message(s) of indeterminate fate" },
	}
}

// items are the flow items of todo, each with its pending claim, which
// names the send.
func (s *Service) items(now time.Time, todo []*message, send string) []*sendflow.Item {
	out := make([]*sendflow.Item, len(todo))
	for i, m := range todo {
		m.Ref = i
		if m.Key != "" {
			m.Claim, _ = json.Marshal(dedupeRecord{State: "pending", FP: m.fp, At: now.Unix(), Send: send})
		}
		out[i] = &m.Item
	}
	return out
}

// replayed gives the retries their answer, from the claim found.
func (s *Service) replayed(now time.Time, todo []*message) {
	for _, m := range todo {
		if m.State != sendflow.Replayed {
			continue
		}
		var d dedupeRecord
		_ = json.Unmarshal(m.Stored, &d)
		switch {
		case d.FP != m.fp:
			m.state = stateDuplicate // the uuid of another message
		case d.State == "success":
			m.state = stateSuccess
			if d.Credit != nil {
				m.credit = *d.Credit
			}
		case d.State == "pending" && now.Sub(time.Unix(d.At, 0)) < staleClaim:
			m.state = stateProcessing // the first request is still sending it
		default:
			m.state = stateDuplicate // it may have been sent: never twice
		}
	}
}

// smsSteps are the SMS service's steps of a send (sendflow.Steps).
type smsSteps struct {
	s    *Service
	b    batch
	acct storage.Account
	o    *openSend
	now  time.Time
	ms   []*message // by Item.Ref
}

func (st *smsSteps) msgs(items []*sendflow.Item) []*message {
	out := make([]*message, len(items))
	for i, it := range items {
		out[i] = st.ms[it.Ref]
	}
	return out
}

func (st *smsSteps) Held(ctx context.Context, txn string) error { return st.o.held(ctx, txn) }

func (st *smsSteps) Dispatch(ctx context.Context, held []*sendflow.Item) error {
	st.s.dispatch(ctx, st.b, st.acct, st.msgs(held), st.o)
	return nil
}

func (st *smsSteps) Record(ctx context.Context, held []*sendflow.Item) {
	ms := st.msgs(held)
	unheld := false
	for _, m := range ms {
		switch m.State {
		case sendflow.Accepted:
			m.credit = m.Price
			st.s.m.segments.Add(float64(m.segments))
		case sendflow.Indeterminate:
			m.providerID = m.Kept // recorded for reconciliation
			unheld = unheld || m.Kept == ""
		}
	}
	if unheld {
		st.s.m.unheldErr.Inc()
	}
	st.s.record(ctx, st.b, st.now, ms)
}

func (s *Service) isUnsupported(num string) bool {
	_, ok := s.unsupported.lookup(num)
	return ok
}

func fingerprint(number, content string) string {
	h := sha256.New()
	h.Write([]byte(number))
	h.Write([]byte{0})
	h.Write([]byte(content))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// dedupeKey is the record key of a message: dbuuid/uuid (the account
// stands in for a missing dbuuid); for 16.0, which has no uuid, the
// account, res_id and content (res_id 0, the composer's, is not
// deduplicated).
func (s *Service) dedupeKey(b batch, m *message) string {
	if b.v16 {
		if string(m.resID) == "0" || len(m.resID) > 32 {
			return ""
		}
		return "t:" + rpc.TokenRef(b.tok) + "/r:" + string(m.resID) + "/" + m.fp
	}
	db := b.dbuuid
	if db == "" {
		db = "t:" + rpc.TokenRef(b.tok)
	}
	return db + "/" + m.uuid
}

// dispatch hands the messages to their providers: grouped by provider
// chain, in chunks, a few calls at once, failing over to the next
// provider of the chain only for what was unavailable. A chunk not
// started while time remains, or once ctx (the request's) is done, is
// deferred; a provider call is not cancelled with the request (its
// outcome would be unknown), only bounded by SendTimeout.
func (s *Service) dispatch(ctx context.Context, b batch, acct storage.Account, todo []*message, o *openSend) {
	deadline := time.Now().Add(s.cfg.SendTimeout)
	sendCtx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	minCall := min(2*time.Second, s.cfg.SendTimeout/3)

	groups := map[string][]*message{}
	var order []string
	for _, m := range todo {
		k := chainKey(m.chain)
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], m)
	}
	var jobs [][]*message
	for _, k := range order {
		g := groups[k]
		for len(g) > 0 {
			n := min(len(g), s.cfg.ChunkSize)
			jobs = append(jobs, g[:n])
			g = g[n:]
		}
	}
	o.calls = len(jobs)
	sem := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	for j, job := range jobs {
		sem <- struct{}{}
		if ctx.Err() != nil {
			// The request is over (client gone, deadline, shutdown): the
			// chunks not started are deferred, as when time runs out; the
			// calls in flight finish on sendCtx.
			<-sem
			for _, left := range jobs[j:] {
				for _, m := range left {
					m.State = sendflow.Deferred
				}
			}
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			s.sendChunk(sendCtx, deadline, minCall, b, acct, job, o, j)
		}()
	}
	wg.Wait()
}

func chainKey(c []string) string {
	k := ""
	for _, n := range c {
		k += n + "\x00"
	}
	return k
}

// sendChunk sends one chunk through its chain.
// Before each provider call the chunk's trace says which messages are
// handed over, after it what the provider answered; a message whose
// trace cannot be written is not handed over (unavailable).
func (s *Service) sendChunk(ctx context.Context, deadline time.Time, minCall time.Duration, b batch, acct storage.Account, chunk []*message, o *openSend, j int) {
	remaining := chunk
	for _, name := range chunk[0].chain {
		if len(remaining) == 0 {
			return
		}
		if time.Until(deadline) < minCall {
			break
		}
		sender := s.senders[name]
		statusURL := ""
		if rep, ok := sender.(providers.DeliveryReporter); ok && b.webhook != "" {
			if cbs := rep.CallbackRoutes(); len(cbs) > 0 {
				statusURL = s.pub + cbs[0].Path
			}
		}
		batch := make([]providers.SMS, len(remaining))
		handing := make(map[*message]bool, len(remaining))
		for i, m := range remaining {
			batch[i] = providers.SMS{ID: m.id, To: m.number, Body: m.content, Sender: acct.SenderName, StatusURL: statusURL}
			handing[m] = true
		}
		if err := o.mark(ctx, j, name, chunk, func(m *message) string {
			if handing[m] {
				return openHanding
			}
			return outState(m)
		}); err != nil {
			s.log.Error("sms: recording a provider call failed; its messages are not sent", "provider", name, "err", err)
			break
		}
		failpoint.Hit("sms.handed")
		results, err := sender.SendSMS(ctx, batch)
		failpoint.Hit("sms.answered")
		if err == nil && len(results) != len(batch) {
			err = providers.Errorf(name, providers.Indeterminate, "answered %d results for %d messages", len(results), len(batch))
		}
		var next []*message
		for i, m := range remaining {
			kind := providers.Kind(0)
			if err != nil {
				kind = providers.KindOf(err)
			} else if results[i].Err != nil {
				kind = results[i].Err.Kind
			}
			switch kind {
			case 0:
				m.State, m.provider = sendflow.Accepted, name
				m.providerID, m.status = results[i].ProviderID, results[i].Status
				s.m.calls.WithLabelValues(name, "accepted").Inc()
				continue
			case providers.Invalid:
				m.State = sendflow.Invalid
			case providers.Unavailable:
				next = append(next, m)
			default:
				m.State, m.provider = sendflow.Indeterminate, name
			}
			s.m.calls.WithLabelValues(name, kind.String()).Inc()
		}
		if err != nil {
			s.log.Warn("sms: provider failed", "provider", name, "kind", providers.KindOf(err).String(), "messages", len(remaining), "err", err)
		}
		if merr := o.mark(ctx, j, name, chunk, outState); merr != nil {
			// Settled as handed over should the process die before the
			// hold is: charged as it would be.
			s.log.Error("sms: recording a provider's answer failed", "provider", name, "err", merr)
		}
		failpoint.Hit("sms.answer-recorded")
		remaining = next
	}
	for _, m := range remaining {
		if m.State == sendflow.Held && time.Until(deadline) < minCall {
			m.State = sendflow.Deferred
		} else {
			m.State = sendflow.Unavailable
		}
	}
}

// record stores what became of each claimed message and the
// delivery-report mapping of the accepted ones, and queues the reports a
// provider gave at once (the flow then releases the claims of the rest).
func (s *Service) record(ctx context.Context, b batch, now time.Time, todo []*message) {
	ctx = context.WithoutCancel(ctx)
	var mu sync.Mutex
	var immediate []queued
	sendflow.Parallel(len(todo), func(i int) {
		m := todo[i]
		switch m.State {
		case sendflow.Accepted:
			if m.Claimed() {
				c := m.credit
				v, _ := json.Marshal(dedupeRecord{State: "success", FP: m.fp, Credit: &c, At: now.Unix()})
				s.putRecord(ctx, nsDedupe, m.Key, v, now.Add(s.cfg.DedupeTTL))
			}
			if b.webhook == "" || !isOdooUUID(m.uuid) {
				return
			}
			if final, st := odooStatus(m.status); final {
				// The provider knew the outcome at once.
				mu.Lock()
				immediate = append(immediate, queued{UUID: m.uuid, Status: st, URL: b.webhook})
				mu.Unlock()
				return
			}
			if _, ok := s.senders[m.provider].(providers.DeliveryReporter); ok && m.providerID != "" {
				v, _ := json.Marshal(dlrRecord{UUID: m.uuid, Webhook: b.webhook, DBUUID: b.dbuuid})
				s.putRecord(ctx, nsDLR, m.provider+"/"+m.providerID, v, now.Add(dlrTTL))
			}
		case sendflow.Indeterminate:
			if m.Claimed() {
				v, _ := json.Marshal(dedupeRecord{State: "indeterminate", FP: m.fp, Txn: m.providerID, At: now.Unix()})
				s.putRecord(ctx, nsDedupe, m.Key, v, now.Add(s.cfg.DedupeTTL))
			}
			s.log.Warn("sms: send indeterminate, hold kept for reconciliation", "provider", m.provider, "transaction", m.providerID, "to", redactNumber(m.number))
		}
	})
	if len(immediate) > 0 {
		s.relay.enqueue(ctx, immediate)
	}
	s.relay.kick() // reports that came before their mapping: look again
}

// dlrTTL is how long a provider message id is mapped back to its uuid.
const dlrTTL = 7 * 24 * time.Hour

// dlrRecord is the value of a nsDLR record.
type dlrRecord struct {
	UUID    string `json:"u"`
	Webhook string `json:"w"`
	DBUUID  string `json:"d,omitempty"`
}

func (s *Service) putRecord(ctx context.Context, ns, key string, v []byte, exp time.Time) {
	if err := s.rec.PutRecord(ctx, ns, key, v, exp); err != nil {
		s.log.Error("sms: writing a record failed", "namespace", ns, "err", err)
	}
}
