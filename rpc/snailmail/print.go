package snailmail

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/rpc/internal/failpoint"
	"github.com/iapd/iapd/rpc/sendflow"
	"github.com/iapd/iapd/rpc/snailmail/pdf"
	"github.com/iapd/iapd/storage"
)

// The error codes of a document (PROTOCOL §7). Odoo stores any other
// value as UNKNOWN_ERROR.
const (
	codeMissingFields = "MISSING_REQUIRED_FIELDS"
	codeCredit        = "CREDIT_ERROR"
	codeTrial         = "TRIAL_ERROR"
	codeNoPrice       = "NO_PRICE_AVAILABLE"
	codeFormat        = "FORMAT_ERROR"
	codeUnknown       = "UNKNOWN_ERROR"
)

// PrintArgs are the params of /iap/snailmail/1/print (§7). Documents and
// options are decoded one by one, leniently: a malformed document gets
// its own error, it does not fail the call.
type PrintArgs struct {
	AccountToken string            `json:"account_token"`
	DBUUID       rpc.Text          `json:"dbuuid"`
	Batch        *bool             `json:"batch"`
	Options      json.RawMessage   `json:"options"`
	Documents    []json.RawMessage `json:"documents"`
}

// Document is one letter of a call.
type Document struct {
	LetterID       json.RawMessage `json:"letter_id"`
	ResModel       rpc.Text        `json:"res_model"`
	ResID          json.RawMessage `json:"res_id"`
	ContactAddress rpc.Text        `json:"contact_address"`
	Address        Address         `json:"address"`
	ReturnAddress  Address         `json:"return_address"`
	PDFBin         rpc.Text        `json:"pdf_bin"`
}

// Address is a recipient or return address as Odoo sends it: every
// value a string or false.
type Address struct {
	Name        rpc.Text `json:"name"`
	Street      rpc.Text `json:"street"`
	Street2     rpc.Text `json:"street2"`
	Zip         rpc.Text `json:"zip"`
	City        rpc.Text `json:"city"`
	State       rpc.Text `json:"state"`
	CountryCode rpc.Text `json:"country_code"`
}

func (a Address) provider() providers.Address {
	t := func(x rpc.Text) string { return strings.TrimSpace(x.S) }
	return providers.Address{Name: t(a.Name), Street: t(a.Street), Street2: t(a.Street2), Zip: t(a.Zip),
		City: t(a.City), State: t(a.State), Country: strings.ToUpper(t(a.CountryCode))}
}

// options are the print options of the call (the first letter's).
type options struct {
	Color  bool `json:"color"`
	Cover  bool `json:"cover"`
	Duplex bool `json:"duplex"`
}

// PrintReply is the result Odoo reads: request_code 200 and, per
// document, sent with a send_id or an error code. total_cost and
// credit_error are not read by the client (§7) but sent as Odoo's IAP
// does.
type PrintReply struct {
	RequestCode int             `json:"request_code"`
	TotalCost   storage.Credits `json:"total_cost"`
	CreditError bool            `json:"credit_error"`
	Request     PrintEcho       `json:"request"`
}

// PrintEcho is the request as answered.
type PrintEcho struct {
	Documents []DocumentResult `json:"documents"`
	Options   json.RawMessage  `json:"options"`
}

// DocumentResult is one document's fate: exactly the keys Odoo accepted
// (fixtures READMEs): letter_id and sent, then send_id when sent, error
// when not.
type DocumentResult struct {
	LetterID json.RawMessage `json:"letter_id"`
	Sent     bool            `json:"sent"`
	SendID   string          `json:"send_id,omitempty"`
	Error    string          `json:"error,omitempty"`
}

// letterRecord is the value of a nsLetter record.
type letterRecord struct {
	State      string `json:"s"` // pending, sent, indeterminate
	SendID     string `json:"i,omitempty"`
	Provider   string `json:"p,omitempty"`
	Txn        string `json:"t,omitempty"` // the hold kept for an indeterminate send
	Cost       string `json:"c,omitempty"`
	Pages      int    `json:"n,omitempty"`
	ClaimedAt  int64  `json:"a"`
	DecidedAt  int64  `json:"d,omitempty"`
	LetterHash string `json:"h,omitempty"`
	Send       string `json:"x,omitempty"` // the send that claimed it (pending only; settle.go)
}

// Print serves /iap/snailmail/1/print.
func (s *Service) Print(r *http.Request, args *PrintArgs, reply *PrintReply) error {
	const op = "snailmail.print"
	if args.Documents == nil {
		return storage.E(op, storage.Invalid, "Missing param documents.")
	}
	if len(args.Documents) > s.cfg.MaxDocuments {
		return storage.Ef(op, storage.Invalid, "Too many documents in one call (at most %d).", s.cfg.MaxDocuments)
	}
	tok, disabled, err := rpc.ParseAccountToken(op, "account_token", args.AccountToken)
	if err != nil {
		return err
	}
	ctx := r.Context()
	var opts options
	echo := json.RawMessage("{}")
	if len(args.Options) > 0 && bytes.HasPrefix(bytes.TrimSpace(args.Options), []byte("{")) {
		echo = args.Options
		_ = json.Unmarshal(args.Options, &opts) // a wrong type leaves the option off
	}
	c := call{tok: tok, dbuuid: args.DBUUID.S, batch: args.Batch == nil || *args.Batch, opts: opts}
	if len(c.dbuuid) > 64 {
		c.dbuuid = ""
	}
	*reply = PrintReply{RequestCode: 200, Request: PrintEcho{Documents: make([]DocumentResult, len(args.Documents)), Options: echo}}
	docs := reply.Request.Documents
	for i, raw := range args.Documents {
		docs[i].LetterID = letterID(raw)
	}
	defer func() {
		for _, d := range docs {
			if d.Sent {
				s.m.letters.WithLabelValues("sent").Inc()
			} else if d.Error != "" {
				s.m.letters.WithLabelValues(d.Error).Inc()
			}
		}
	}()
	refuse := func(code string) {
		for i := range docs {
			docs[i].Error = code
		}
	}
	if disabled {
		// A neutralised database: refused, the ledger not even touched.
		refuse(codeTrial)
		return nil
	}
	acct, err := s.ledger.Account(ctx, storage.Snailmail, tok, storage.FirstSight{DBUUID: c.dbuuid})
	if err != nil {
		return err
	}
	if acct.State != storage.Registered {
		refuse(codeTrial)
		return nil
	}
	for i, raw := range args.Documents {
		res, cost, err := s.printOne(ctx, c, raw)
		if err != nil {
			// The ledger or the records failed (or, with batch false,
			// the credit is short): the call fails; documents already
			// sent are answered as sent when Odoo retries.
			return err
		}
		res.LetterID = docs[i].LetterID
		docs[i] = res
		reply.TotalCost += cost
		if res.Error == codeCredit {
			reply.CreditError = true
		}
	}
	return nil
}

// letterID returns the raw letter_id of a document (null if absent or
// not a scalar).
func letterID(raw json.RawMessage) json.RawMessage {
	var d struct {
		LetterID json.RawMessage `json:"letter_id"`
	}
	if json.Unmarshal(raw, &d) != nil || len(d.LetterID) == 0 {
		return json.RawMessage("null")
	}
	switch d.LetterID[0] {
	case '{', '[':
		return json.RawMessage("null")
	}
	return d.LetterID
}

// call is what one print request says besides its documents.
type call struct {
	tok    storage.AccountToken
	dbuuid string
	batch  bool
	opts   options
}

// letter is one document, checked and priced.
type letter struct {
	key   string // nsLetter record key
	hash  string // of the PDF, recipient and options
	pdf   []byte
	pages int // printed: the PDF's, plus the cover
	price storage.Credits
	l     providers.Letter
	at    time.Time // when this request claimed it
}

// printOne decides the fate of one document. It returns its result and
// what was charged for it; an error fails the whole call.
func (s *Service) printOne(ctx context.Context, c call, raw json.RawMessage) (DocumentResult, storage.Credits, error) {
	fail := func(code string) (DocumentResult, storage.Credits, error) {
		return DocumentResult{Error: code}, 0, nil
	}
	var d Document
	if err := json.Unmarshal(raw, &d); err != nil {
		// A value of the wrong type somewhere: the document cannot be
		// printed as sent.
		return fail(codeFormat)
	}
	to := d.Address.provider()
	if to.Street == "" && to.Street2 == "" || to.City == "" || to.Zip == "" || to.Country == "" {
		return fail(codeMissingFields)
	}
	if !validCountry(to.Country) {
		return fail(codeNoPrice)
	}
	body, err := decodePDF(d.PDFBin.S)
	if err != nil {
		return fail(codeFormat)
	}
	// Read before anything is held or claimed: a PDF refused here costs
	// the caller nothing.
	n, st, err := pdf.Count(ctx, body, s.cfg.pdfBudget())
	switch {
	case errors.Is(err, pdf.ErrBudget):
		s.refusals.Refused("pdf_budget")
		s.log.Warn("snailmail: PDF refused, more work than its budget", "account", rpc.TokenRef(c.tok), "bytes", len(body), "steps", st.Steps)
		return fail(codeFormat)
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		// The client went or the route's deadline passed: nothing
		// was held; the call ends.
		return DocumentResult{}, 0, storage.Wrap("snailmail.print", storage.Unavailable, err)
	case err != nil:
		s.log.Info("snailmail: unreadable PDF refused", "account", rpc.TokenRef(c.tok), "bytes", len(body), "err", err)
		return fail(codeFormat)
	}
	pages := n
	if c.opts.Cover {
		pages++
	}
	if pages > s.cfg.MaxPages {
		return fail(codeFormat)
	}
	price, ok := s.cfg.Prices.price(to.Country, c.opts.Color, c.opts.Duplex, pages)
	if !ok {
		return fail(codeNoPrice)
	}
	lt := &letter{pdf: body, pages: pages, price: price}
	lt.hash = letterHash(body, to, c.opts)
	lt.key = c.dbuuid + "/" + rpc.TokenRef(c.tok) + "/" + clip(d.ResModel.S, 64) + "/" + clip(string(d.ResID), 32) + "/" + lt.hash
	lt.l = providers.Letter{
		ID: lt.hash[:32], PDF: body, Pages: pages, Color: c.opts.Color, Duplex: c.opts.Duplex, Cover: c.opts.Cover,
		To: to, From: d.ReturnAddress.provider(), Country: to.Country,
	}

	now := s.now()
	lt.at = now
	// The letter's trace, so that a crash at any later step is settled at
	// the next start (settle.go).
	tr := &trace{s: s, id: randomID(), v: openLetter{Key: lt.key, Tok: string(c.tok), At: now.Unix(), Price: price, Pages: pages, Ref: lt.l.ID}}
	if err := tr.step(ctx, stepNew); err != nil {
		return DocumentResult{}, 0, err
	}
	defer tr.close(ctx)
	failpoint.Hit("letter.opened")
	claim, _ := json.Marshal(letterRecord{State: "pending", ClaimedAt: now.Unix(), LetterHash: lt.hash, Send: tr.id})
	it := &sendflow.Item{Key: lt.key, Claim: claim, Price: price}
	steps := &letterSteps{s: s, lt: lt, tr: tr}
	desc := "Letter: " + strconv.Itoa(lt.pages) + " page(s) to " + lt.l.Country + ", send " + tr.id
	err = s.flow.Run(ctx, sendflow.Send{Account: c.tok, DBUUID: c.dbuuid, Whole: true,
		Describe:     func(int) string { return desc },
		DescribeKept: func(int) string { return desc },
	}, []*sendflow.Item{it}, steps)
	if err != nil {
		return DocumentResult{}, 0, err
	}
	switch it.State {
	case sendflow.Replayed:
		return s.replay(it.Stored), 0, nil
	case sendflow.Refused:
		if it.Refusal == storage.Forbidden { // banned or unregistered meanwhile
			return DocumentResult{Error: codeTrial}, 0, nil
		}
		if !c.batch { // InsufficientCreditError, as asked
			return DocumentResult{}, 0, &storage.Error{Op: "authorize", Kind: storage.InsufficientCredit,
				Msg: "not enough credit", Service: storage.Snailmail, Credit: price}
		}
		return DocumentResult{Error: codeCredit}, 0, nil
	case sendflow.Accepted:
		return DocumentResult{Sent: true, SendID: steps.sendID}, price, nil
	case sendflow.Invalid:
		return DocumentResult{Error: codeFormat}, 0, nil
	}
	// Indeterminate (never posted twice: a retry is answered
	// UNKNOWN_ERROR) or unavailable (the claim is released: Odoo may send
	// it again).
	return DocumentResult{Error: codeUnknown}, 0, nil
}

// replay answers a document that was claimed before: sent again as it
// was, or UNKNOWN_ERROR when it is being sent or may have been (never
// posted twice).
func (s *Service) replay(stored []byte) DocumentResult {
	var rec letterRecord
	_ = json.Unmarshal(stored, &rec)
	if rec.State == "sent" && rec.SendID != "" {
		return DocumentResult{Sent: true, SendID: rec.SendID}
	}
	return DocumentResult{Error: codeUnknown}
}

// letterSteps are the letter service's steps of a send (sendflow.Steps).
type letterSteps struct {
	s        *Service
	lt       *letter
	tr       *trace
	provider string // the provider that accepted it or may have
	sendID   string // its id for the letter
}

func (st *letterSteps) Held(ctx context.Context, txn string) error {
	st.tr.v.Txn = txn
	return st.tr.step(ctx, stepHeld)
}

// Dispatch hands the letter to the providers in turn, on to the next only
// while one is unavailable (nothing was done).
func (st *letterSteps) Dispatch(ctx context.Context, held []*sendflow.Item) error {
	s, lt, tr, it := st.s, st.lt, st.tr, held[0]
	sendCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.SendTimeout)
	defer cancel()
	var last error
	for _, name := range s.cfg.Providers {
		tr.v.Provider = name
		if err := tr.step(ctx, stepHanding); err != nil {
			return err // not handed over: released
		}
		failpoint.Hit("letter.handed")
		sent, err := s.senders[name].SendLetter(sendCtx, lt.l)
		failpoint.Hit("letter.answered")
		if err == nil && sent.ProviderID == "" {
			err = providers.Errorf(name, providers.Indeterminate, "accepted the letter without an id")
		}
		if err == nil {
			s.m.calls.WithLabelValues(name, "accepted").Inc()
			it.State, st.provider, st.sendID = sendflow.Accepted, name, sent.ProviderID
			tr.v.SendID = sent.ProviderID
			if terr := tr.step(ctx, stepAnswered); terr != nil {
				s.log.Error("snailmail: recording a provider's answer failed", "provider", name, "err", terr)
			}
			failpoint.Hit("letter.answer-recorded")
			return nil
		}
		kind := providers.KindOf(err)
		s.m.calls.WithLabelValues(name, kind.String()).Inc()
		last = err
		switch kind {
		case providers.Unavailable:
			s.log.Warn("snailmail: provider unavailable", "provider", name, "err", err)
			continue // nothing was done: the next provider may do it
		case providers.Invalid:
			s.log.Info("snailmail: provider refused the letter", "provider", name, "err", err)
			it.State = sendflow.Invalid
			return nil
		default:
			// May have been posted: the price stays held until the
			// operator reconciles (or the hold expires), and a retry is
			// answered UNKNOWN_ERROR, never posted again.
			s.log.Warn("snailmail: letter indeterminate, hold kept for reconciliation",
				"provider", name, "amount", lt.price.String(), "err", err)
			it.State, st.provider = sendflow.Indeterminate, name
			return nil
		}
	}
	// No provider took it: nothing was done. The hold is released, the
	// claim too (Odoo may send the document again).
	s.log.Warn("snailmail: no provider could take the letter", "err", last)
	it.State = sendflow.Unavailable
	return nil
}

func (st *letterSteps) Record(ctx context.Context, held []*sendflow.Item) {
	it, lt := held[0], st.lt
	switch it.State {
	case sendflow.Accepted:
		st.s.record(ctx, lt, letterRecord{State: "sent", SendID: st.sendID, Provider: st.provider, Cost: lt.price.String(), Pages: lt.pages})
	case sendflow.Indeterminate:
		st.s.record(ctx, lt, letterRecord{State: "indeterminate", Provider: st.provider, Txn: it.Kept, Cost: lt.price.String(), Pages: lt.pages})
	}
}

// record stores the fate of a claimed document.
func (s *Service) record(ctx context.Context, lt *letter, rec letterRecord) {
	now := s.now()
	rec.ClaimedAt, rec.DecidedAt, rec.LetterHash = lt.at.Unix(), now.Unix(), lt.hash
	v, _ := json.Marshal(rec)
	if err := s.rec.PutRecord(ctx, nsLetter, lt.key, v, now.Add(s.cfg.DedupeTTL)); err != nil {
		s.log.Error("snailmail: recording a letter failed; a retry of it would be answered UNKNOWN_ERROR", "state", rec.State, "err", err)
	}
}

// decodePDF decodes pdf_bin (standard base64, line breaks tolerated).
func decodePDF(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("no PDF")
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		b, err = base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
	}
	return b, err
}

// letterHash identifies what is printed and where it goes.
func letterHash(body []byte, to providers.Address, o options) string {
	h := sha256.New()
	h.Write(body)
	for _, f := range []string{to.Name, to.Street, to.Street2, to.Zip, to.City, to.State, to.Country} {
		h.Write([]byte{0})
		h.Write([]byte(f))
	}
	h.Write([]byte{0, b2i(o.Color), b2i(o.Cover), b2i(o.Duplex)})
	return hex.EncodeToString(h.Sum(nil))
}

func b2i(b bool) byte {
	if b {
		return 1
	}
	return 0
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
