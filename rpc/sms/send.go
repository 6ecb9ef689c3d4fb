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
			short += m.price
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

// outcome is what became of one message.
type outcome int

const (
	outNone          outcome = iota // refused before sending (state says why)
	outSend                         // to be sent
	outAccepted                     // a provider accepted it: charged
	outInvalid                      // a provider refused it for good
	outUnavailable                  // no provider could take it
	outIndeterminate                // may have been sent: its price stays held
	outDeferred                     // not attempted in time: left out of the answer
	outReplayed                     // a retry of a message already handled
)

// message is one number of a request.
type message struct {
	uuid    string          // 17.0+
	resID   json.RawMessage // 16.0
	raw     string
	content string

	number   string // E.164
	id       string // providers.SMS.ID
	key      string // dedupe record key; "" for none
	fp       string
	segments int
	price    storage.Credits
	chain    []string
	claimed  bool // this request created the dedupe record
	idx      int  // its number in the send's trace (settle.go)

	out        outcome
	state      string // answer for out none/replayed
	credit     storage.Credits
	provider   string
	providerID string
	status     providers.SMSStatus
}

// answer is the state told to Odoo ("" leaves the message out).
func (m *message) answer(v16 bool) string {
	var st string
	switch m.out {
	case outAccepted:
		st = stateSuccess
	case outInvalid:
		st = stateBadNumber
	case outUnavailable, outIndeterminate:
		st = stateServerError
	case outDeferred, outSend:
		return ""
	default:
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

// send decides the fate of every message: checks, dedupe, hold, the
// providers, settlement. A non-nil error (the ledger or the records
// failed before anything was sent) fails the whole request, which Odoo
// answers by marking the batch server_error.
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
			m.number, m.out = num, outSend
			m.price = s.price(num) * storage.Credits(m.segments)
			m.chain = s.chain(num)
			m.fp = fingerprint(num, m.content)
			m.id = m.uuid
			if m.id == "" {
				m.id = randomID()
			}
			m.key = s.dedupeKey(b, m)
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
			m.out, m.state = outNone, stateUnregistered
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

	// Claim every uuid before anything is charged or sent.
	todo, err = s.claim(ctx, now, todo, o.id)
	if err != nil {
		return err
	}
	if len(todo) == 0 {
		return nil
	}
	failpoint.Hit("sms.claimed")

	// Hold the price of the batch, or of as many messages as the credit
	// covers, in order.
	txn, todo, err := s.hold(ctx, b, acct, todo, o.id)
	if err != nil {
		return err
	}
	if len(todo) == 0 {
		return nil
	}
	failpoint.Hit("sms.held")
	if err := o.held(ctx, txn.Token); err != nil {
		// Without its record the hold could not be settled after a
		// crash: nothing is sent.
		if _, cerr := s.ledger.Cancel(context.WithoutCancel(ctx), storage.SMS, txn.Token); cerr != nil {
			s.log.Error("sms: releasing a hold failed; it will expire", "transaction", txn.Token, "err", cerr)
		}
		s.release(ctx, todo)
		return err
	}
	failpoint.Hit("sms.recorded")

	s.dispatch(ctx, b, acct, todo, o)
	s.settle(ctx, b, txn, todo)
	failpoint.Hit("sms.captured")
	s.record(ctx, b, now, todo)
	failpoint.Hit("sms.final")
	return nil
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

// claim creates the dedupe record of every message; a message whose
// record exists is a retry and is answered from it. It returns the
// messages to send. The records are written concurrently, so that the
// ledger makes them durable in a few group syncs rather than one each.
func (s *Service) claim(ctx context.Context, now time.Time, todo []*message, send string) ([]*message, error) {
	errs := make([]error, len(todo))
	stored := make([][]byte, len(todo))
	parallel(len(todo), func(i int) {
		m := todo[i]
		if m.key == "" {
			return
		}
		rec, _ := json.Marshal(dedupeRecord{State: "pending", FP: m.fp, At: now.Unix(), Send: send})
		v, created, err := s.rec.PutRecordIfAbsent(ctx, nsDedupe, m.key, rec, now.Add(s.cfg.DedupeTTL))
		m.claimed = created && err == nil
		stored[i], errs[i] = v, err
	})
	for _, err := range errs {
		if err != nil {
			s.release(ctx, todo)
			return nil, err
		}
	}
	out := todo[:0:0]
	for i, m := range todo {
		if m.key == "" || m.claimed {
			out = append(out, m)
			continue
		}
		m.out = outReplayed
		var d dedupeRecord
		_ = json.Unmarshal(stored[i], &d)
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
	return out, nil
}

// parallelism bounds the concurrent record writes of one request.
const parallelism = 32

// parallel runs f(0) … f(n-1), parallelism at a time, and waits.
func parallel(n int, f func(i int)) {
	if n == 1 {
		f(0)
		return
	}
	sem := make(chan struct{}, parallelism)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			f(i)
		}()
	}
	wg.Wait()
}

// release deletes the dedupe records of messages that were not sent, so
// that Odoo may send them again.
func (s *Service) release(ctx context.Context, ms []*message) {
	ctx = context.WithoutCancel(ctx)
	parallel(len(ms), func(i int) {
		m := ms[i]
		if !m.claimed {
			return
		}
		if err := s.rec.DeleteRecord(ctx, nsDedupe, m.key); err != nil {
			s.log.Error("sms: releasing a uuid claim failed; a retry of it will be answered duplicate_message", "err", err)
		}
		m.claimed = false
	})
}

// hold authorizes the price of the messages, or of the longest prefix of
// them the available credit covers (none for a whole batch); the rest are
// insufficient_credit. It
// returns the hold (nil when nothing is to be sent) and the messages to
// send.
func (s *Service) hold(ctx context.Context, b batch, acct storage.Account, todo []*message, send string) (*storage.Transaction, []*message, error) {
	var total storage.Credits
	for _, m := range todo {
		total += m.price
	}
	txn, err := s.authorize(ctx, b, total, holdDescription(len(todo), send))
	if storage.Is(err, storage.InsufficientCredit) {
		if a, lerr := s.ledger.LookupAccount(ctx, storage.SMS, b.tok); lerr == nil {
			acct = a
		}
		var fit storage.Credits
		n := 0
		for n < len(todo) && !b.whole && fit+todo[n].price <= acct.Available {
			fit += todo[n].price
			n++
		}
		for _, m := range todo[n:] {
			m.out, m.state = outNone, stateNoCredit
		}
		s.release(ctx, todo[n:])
		todo = todo[:n]
		if n == 0 {
			return nil, nil, nil
		}
		txn, err = s.authorize(ctx, b, fit, holdDescription(n, send))
		if storage.Is(err, storage.InsufficientCredit) { // spent meanwhile
			for _, m := range todo {
				m.out, m.state = outNone, stateNoCredit
			}
			s.release(ctx, todo)
			return nil, nil, nil
		}
	}
	switch {
	case storage.Is(err, storage.Forbidden): // banned or unregistered meanwhile
		for _, m := range todo {
			m.out, m.state = outNone, stateUnregistered
		}
		s.release(ctx, todo)
		return nil, nil, nil
	case err != nil:
		s.release(ctx, todo)
		return nil, nil, err
	}
	return &txn, todo, nil
}

func (s *Service) authorize(ctx context.Context, b batch, amount storage.Credits, desc string) (storage.Transaction, error) {
	return s.ledger.Authorize(ctx, storage.AuthorizeRequest{
		Service:     storage.SMS,
		Account:     b.tok,
		Amount:      amount,
		Description: desc,
		TTL:         s.cfg.HoldTTL,
		FirstSight:  storage.FirstSight{DBUUID: b.dbuuid},
	})
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
					m.out = outDeferred
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
				m.out, m.provider = outAccepted, name
				m.providerID, m.status = results[i].ProviderID, results[i].Status
				s.m.calls.WithLabelValues(name, "accepted").Inc()
				continue
			case providers.Invalid:
				m.out = outInvalid
			case providers.Unavailable:
				next = append(next, m)
			default:
				m.out, m.provider = outIndeterminate, name
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
		if m.out == outSend && time.Until(deadline) < minCall {
			m.out = outDeferred
		} else {
			m.out = outUnavailable
		}
	}
}

// settle captures the price of what was accepted, keeps on hold the price
// of what is indeterminate and releases the rest.
func (s *Service) settle(ctx context.Context, b batch, txn *storage.Transaction, todo []*message) {
	ctx = context.WithoutCancel(ctx)
	var accepted, indet storage.Credits
	var nIndet int
	for _, m := range todo {
		switch m.out {
		case outAccepted:
			accepted += m.price
			m.credit = m.price
			s.m.segments.Add(float64(m.segments))
		case outIndeterminate:
			indet += m.price
			nIndet++
		}
	}
	keep := txn.Token
	capture := func() {
		var err error
		if accepted == 0 {
			_, err = s.ledger.Cancel(ctx, storage.SMS, txn.Token)
		} else {
			_, err = s.ledger.Capture(ctx, storage.CaptureRequest{Service: storage.SMS, Transaction: txn.Token, Amount: &accepted})
		}
		if err != nil {
			s.log.Error("sms: settling a hold failed; it will expire unsettled", "transaction", txn.Token, "captured", accepted.String(), "err", err)
		}
	}
	switch {
	case indet == 0:
		capture()
	case accepted == 0 && indet == txn.Amount:
		// The hold is exactly the price of what may have been sent: kept.
	default:
		// Hold the indeterminate part apart, then settle the batch hold.
		desc := "SMS: " + strconv.Itoa(nIndet) + " message(s) of indeterminate fate"
		h2, err := s.authorize(ctx, b, indet, desc)
		if storage.Is(err, storage.InsufficientCredit) {
			capture()
			h2, err = s.authorize(ctx, b, indet, desc)
		} else {
			defer capture()
		}
		if err != nil {
			keep = ""
			s.m.unheldErr.Inc()
			s.log.Error("sms: could not keep the price of indeterminate sends on hold; reconcile by hand",
				"account", rpc.TokenRef(b.tok), "amount", indet.String(), "messages", nIndet, "err", err)
		} else {
			keep = h2.Token
		}
	}
	for _, m := range todo {
		if m.out == outIndeterminate {
			m.providerID = keep // recorded for reconciliation
		}
	}
}

// record stores what became of each claimed message, the delivery-report
// mapping of the accepted ones, and queues the reports a provider gave at
// once.
func (s *Service) record(ctx context.Context, b batch, now time.Time, todo []*message) {
	ctx = context.WithoutCancel(ctx)
	var mu sync.Mutex
	var immediate []queued
	var release []*message
	parallel(len(todo), func(i int) {
		m := todo[i]
		switch m.out {
		case outAccepted:
			if m.claimed {
				c := m.credit
				v, _ := json.Marshal(dedupeRecord{State: "success", FP: m.fp, Credit: &c, At: now.Unix()})
				s.putRecord(ctx, nsDedupe, m.key, v, now.Add(s.cfg.DedupeTTL))
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
		case outIndeterminate:
			if m.claimed {
				v, _ := json.Marshal(dedupeRecord{State: "indeterminate", FP: m.fp, Txn: m.providerID, At: now.Unix()})
				s.putRecord(ctx, nsDedupe, m.key, v, now.Add(s.cfg.DedupeTTL))
			}
			s.log.Warn("sms: send indeterminate, hold kept for reconciliation", "provider", m.provider, "transaction", m.providerID, "to", redactNumber(m.number))
		default:
			mu.Lock()
			release = append(release, m)
			mu.Unlock()
		}
	})
	s.release(ctx, release)
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
