package portal

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"strconv"
	"time"

	"github.com/iapd/iapd/storage"
)

// A message after an action ("the voucher was redeemed") travels in the
// redirect's URL, signed: msg is the code, mt the time and ms an HMAC of
// (account, code, time) with the portal secret. A link that lacks a valid
// signature, names another account or is older than flashFor shows no
// message, so that nobody can craft a link that tells a customer
// something the server did not do.
const flashFor = 10 * time.Minute

// flashLives are the codes that stay valid longer than flashFor: a
// payment's cancel URL is made when the payment page is, and the customer
// may cancel there until the page expires (Stripe: 24 hours).
var flashLives = map[string]time.Duration{"payment-cancelled": 25 * time.Hour}

func (c csrf) flashMAC(svc storage.ServiceName, tok storage.AccountToken, code string, at int64) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte("iapd-portal-flash\x00"))
	m.Write([]byte(svc))
	m.Write([]byte{0})
	m.Write([]byte(tok))
	m.Write([]byte{0})
	m.Write([]byte(code))
	m.Write([]byte{0})
	m.Write([]byte(strconv.FormatInt(at, 10)))
	return m.Sum(nil)[:18]
}

// flashParams are the query params that show message code on the
// account's credit page.
func (c csrf) flashParams(svc storage.ServiceName, tok storage.AccountToken, code string, now time.Time) url.Values {
	at := now.Unix()
	return url.Values{"msg": {code}, "mt": {strconv.FormatInt(at, 10)},
		"ms": {base64.RawURLEncoding.EncodeToString(c.flashMAC(svc, tok, code, at))}}
}

// flash returns the message code the params carry when their signature
// is valid for the account and recent; "" otherwise.
func (c csrf) flash(svc storage.ServiceName, tok storage.AccountToken, code, mt, ms string, now time.Time) string {
	if _, known := messages[code]; !known {
		return ""
	}
	at, err := strconv.ParseInt(mt, 10, 64)
	if err != nil {
		return ""
	}
	life, ok := flashLives[code]
	if !ok {
		life = flashFor
	}
	if d := now.Sub(time.Unix(at, 0)); d > life || d < -time.Minute {
		return ""
	}
	got, err := base64.RawURLEncoding.DecodeString(ms)
	if err != nil || !hmac.Equal(got, c.flashMAC(svc, tok, code, at)) {
		return ""
	}
	return code
}

// ResultLink is the credit page of an account showing message code (one
// of the closed list: "redeemed", "paid", "payment-cancelled", …) for the
// next flashFor (flashLives): where a form or a payment's return URL
// sends the customer. The link names the account by its hashed token.
func (p *Portal) ResultLink(svc storage.ServiceName, tok storage.AccountToken, dbuuid, code string) string {
	return p.resultLink(svc, tok, dbuuid, code, p.now())
}

func (p *Portal) resultLink(svc storage.ServiceName, tok storage.AccountToken, dbuuid, code string, now time.Time) string {
	return creditLink(svc, tok, cleanDBUUID(dbuuid), p.csrf.flashParams(svc, tok, code, now))
}

// show sets the page's message to code, one of messages.
func (d *creditData) show(code string) { d.Message, d.MessageOK = "msg."+code, messages[code] }
