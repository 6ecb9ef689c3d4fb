package sms

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/rpc/sendflow"
	"github.com/iapd/iapd/storage"
)

// Registration states answered by the 18.0+ wizards (PROTOCOL §6.3). The
// client reads result["state"]; every value here has a message of its
// own in Odoo.
const (
	regSuccess      = "success"
	regFormat       = "format_error"
	regUnregistered = "unregistered_account"
	regExisting     = "existing_sender"
	regBadPhone     = "invalid_phone_number"
	regDelivery     = "verification_sms_delivery"
	regClosed       = "closed_feature"
	regBanned       = "banned_account"
	regBadCode      = "invalid_code"
	regTooMany      = "too_many_attempts"
)

// Verification limits.
const (
	codeTTL       = 15 * time.Minute
	maxCodeTries  = 5 // wrong codes before the code is void
	maxCodeSends  = 3 // codes sent per account per window
	codeSendRange = time.Hour
)

// StateReply is the answer of the registration routes: {"state": …}.
type StateReply struct {
	State string `json:"state"`
}

// AccountCreateArgs are the params of /api/sms/1/account/create.
type AccountCreateArgs struct {
	AccountToken string   `json:"account_token"`
	PhoneNumber  rpc.Text `json:"phone_number"`
	DBUUID       rpc.Text `json:"dbuuid"`
}

// AccountVerifyArgs are the params of /api/sms/2/account/verify.
type AccountVerifyArgs struct {
	AccountToken string   `json:"account_token"`
	Code         rpc.Text `json:"code"`
	DBUUID       rpc.Text `json:"dbuuid"`
}

// AccountUpdateSenderArgs are the params of /api/sms/1/account/update_sender.
type AccountUpdateSenderArgs struct {
	AccountToken string   `json:"account_token"`
	SenderName   rpc.Text `json:"sender_name"`
	DBUUID       rpc.Text `json:"dbuuid"`
}

// verification is the value of a nsVerify record.
type verification struct {
	Hash   string `json:"h,omitempty"` // SHA-256 of account ref + code; "" when none pending
	Expiry int64  `json:"e,omitempty"`
	Tries  int    `json:"t"`
	Sent   int    `json:"n"` // codes sent since Window
	Window int64  `json:"w"`
}

func codeHash(tok storage.AccountToken, code string) string {
	sum := sha256.Sum256([]byte(rpc.TokenRef(tok) + "\x00" + code))
	return hex.EncodeToString(sum[:])
}

// account reads the account for a registration route: the state to answer
// at once, if any.
func (s *Service) regAccount(ctx context.Context, op, raw, dbuuid string) (storage.Account, string, error) {
	tok, disabled, err := rpc.ParseAccountToken(op, "account_token", raw)
	if err != nil {
		return storage.Account{}, "", err
	}
	if disabled {
		return storage.Account{}, regUnregistered, nil
	}
	if s.cfg.Registration == "off" {
		return storage.Account{}, regClosed, nil
	}
	acct, err := s.ledger.Account(ctx, storage.SMS, tok, storage.FirstSight{DBUUID: dbuuid})
	if err != nil {
		return acct, "", err
	}
	if acct.State == storage.Banned {
		return acct, regBanned, nil
	}
	return acct, "", nil
}

// AccountCreate starts a registration: a verification code is sent by SMS
// to phone_number, free of charge, at most three per account and hour and
// Settings.VerificationsPerHour in all. An account that is registered
// already (services auto-register by default) needs no code: it is
// answered success and nothing is sent, so that the route cannot be used
// to send SMS for free.
func (s *Service) AccountCreate(r *http.Request, args *AccountCreateArgs, reply *StateReply) error {
	ctx := r.Context()
	acct, st, err := s.regAccount(ctx, "sms.account.create", args.AccountToken, args.DBUUID.S)
	if err != nil || st != "" {
		reply.State = st
		return err
	}
	number, ok := normalizeNumber(args.PhoneNumber.S)
	if !ok || s.isUnsupported(number) {
		reply.State = regBadPhone
		return nil
	}
	if acct.State == storage.Registered {
		reply.State = regSuccess
		return nil
	}
	now := s.now()
	key := rpc.TokenRef(acct.Token)
	v, err := s.readVerification(ctx, key)
	if err != nil {
		return err
	}
	if now.Sub(time.Unix(v.Window, 0)) > codeSendRange {
		v.Window, v.Sent = now.Unix(), 0
	}
	if v.Sent >= maxCodeSends || !s.verifyLimit.take(now) {
		reply.State = regTooMany
		return nil
	}
	code := newCode()
	m := &message{number: number, content: fmt.Sprintf("Your SMS account verification code: %s", code), chain: s.chain(number), id: randomID()}
	m.State = sendflow.Held
	deadline := time.Now().Add(s.cfg.SendTimeout)
	sendCtx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	s.sendChunk(sendCtx, deadline, 0, batch{tok: acct.Token}, acct, []*message{m}, nil, 0) // free: no hold, no trace
	v.Sent++
	if m.State != sendflow.Accepted {
		if m.State == sendflow.Invalid {
			reply.State = regBadPhone
		} else {
			reply.State = regDelivery
		}
		return s.writeVerification(ctx, key, v, now)
	}
	v.Hash, v.Expiry, v.Tries = codeHash(acct.Token, code), now.Add(codeTTL).Unix(), 0
	if err := s.writeVerification(ctx, key, v, now); err != nil {
		return err
	}
	reply.State = regSuccess
	return nil
}

// AccountVerify checks the code; the right one registers the account. A
// registered account has nothing to verify: success.
func (s *Service) AccountVerify(r *http.Request, args *AccountVerifyArgs, reply *StateReply) error {
	ctx := r.Context()
	acct, st, err := s.regAccount(ctx, "sms.account.verify", args.AccountToken, args.DBUUID.S)
	if err != nil || st != "" {
		reply.State = st
		return err
	}
	if acct.State == storage.Registered {
		reply.State = regSuccess
		return nil
	}
	now := s.now()
	key := rpc.TokenRef(acct.Token)
	v, err := s.readVerification(ctx, key)
	if err != nil {
		return err
	}
	if v.Hash == "" || now.Unix() > v.Expiry {
		reply.State = regBadCode
		return nil
	}
	if v.Tries >= maxCodeTries {
		reply.State = regTooMany
		return nil
	}
	got := codeHash(acct.Token, args.Code.S)
	if subtle.ConstantTimeCompare([]byte(got), []byte(v.Hash)) != 1 {
		v.Tries++
		if err := s.writeVerification(ctx, key, v, now); err != nil {
			return err
		}
		reply.State = regBadCode
		if v.Tries >= maxCodeTries {
			reply.State = regTooMany
		}
		return nil
	}
	registered := storage.Registered
	if _, err := s.ledger.UpdateAccount(ctx, storage.SMS, acct.Token, storage.AccountUpdate{State: &registered}); err != nil {
		return err
	}
	v.Hash, v.Expiry, v.Tries = "", 0, 0
	if err := s.writeVerification(ctx, key, v, now); err != nil {
		s.log.Warn("sms: clearing a used verification code failed", "err", err)
	}
	reply.State = regSuccess
	return nil
}

// AccountUpdateSender sets the account's sender name once (3 to 11
// letters, digits, spaces or hyphens); it is then used for every SMS of
// the account and shown by get-accounts-information (§4.4).
func (s *Service) AccountUpdateSender(r *http.Request, args *AccountUpdateSenderArgs, reply *StateReply) error {
	ctx := r.Context()
	acct, st, err := s.regAccount(ctx, "sms.account.update_sender", args.AccountToken, args.DBUUID.S)
	if err != nil || st != "" {
		reply.State = st
		return err
	}
	name := args.SenderName.S
	switch {
	case acct.State != storage.Registered:
		reply.State = regUnregistered
	case !validSender(name):
		reply.State = regFormat
	case acct.SenderName != "" && acct.SenderName != name:
		reply.State = regExisting
	default:
		if acct.SenderName != name {
			if _, err := s.ledger.UpdateAccount(ctx, storage.SMS, acct.Token, storage.AccountUpdate{SenderName: &name}); err != nil {
				return err
			}
		}
		reply.State = regSuccess
	}
	return nil
}

// validSender is the rule Odoo checks client-side (§6.3): 3 to 11 ASCII
// letters, digits, spaces or hyphens.
func validSender(n string) bool {
	if len(n) < 3 || len(n) > 11 {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ' ' || c == '-') {
			return false
		}
	}
	return true
}

func (s *Service) readVerification(ctx context.Context, key string) (verification, error) {
	var v verification
	b, err := s.rec.GetRecord(ctx, nsVerify, key)
	switch {
	case storage.Is(err, storage.NotFound):
		return v, nil
	case err != nil:
		return v, err
	}
	_ = json.Unmarshal(b, &v)
	return v, nil
}

func (s *Service) writeVerification(ctx context.Context, key string, v verification, now time.Time) error {
	b, _ := json.Marshal(v)
	return s.rec.PutRecord(ctx, nsVerify, key, b, now.Add(codeSendRange+codeTTL))
}

// windowLimit allows max events per hour (a fixed window).
type windowLimit struct {
	max   int
	mu    sync.Mutex
	start time.Time
	n     int
}

func (l *windowLimit) take(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.start) >= time.Hour {
		l.start, l.n = now, 0
	}
	if l.n >= l.max {
		return false
	}
	l.n++
	return true
}

// newCode returns a uniformly random 6-digit code.
func newCode() string {
	for {
		var b [4]byte
		_, _ = rand.Read(b[:])
		n := binary.BigEndian.Uint32(b[:])
		if n < 4_294_000_000 { // a multiple of 10^6: no modulo bias
			return fmt.Sprintf("%06d", n%1_000_000)
		}
	}
}
