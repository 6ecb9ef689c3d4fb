package sms

import (
	"context"
	"html/template"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/storage"
)

// AccountPagePath is the page Odoo's "Register now." link opens:
// <sms.endpoint>/1/account?account_token=… (PROTOCOL §6.2).
const AccountPagePath = "/1/account"

var accountPage = template.Must(template.New("account").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>SMS account</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto">
<h1>SMS account</h1>
{{if .Error}}<p>{{.Error}}</p>{{else}}
<p>State: <strong>{{.State}}</strong>{{if .Sender}}, sender name <strong>{{.Sender}}</strong>{{end}}.</p>
{{if eq .State "registered"}}<p>This account can send SMS.</p>
{{else if eq .State "banned"}}<p>This account has been banned from the SMS service. Contact the operator of this IAP server.</p>
{{else if .Verify}}<p>To register, open Odoo (18.0 or later): Settings ▸ SMS ▸ <em>Register</em>, enter a phone number, then the code received by SMS.</p>
{{else}}<p>Registration is done by the operator of this IAP server: contact them.</p>{{end}}
{{end}}</body></html>
`))

// AccountPage serves AccountPagePath (GET): the account's registration
// state, and how to register. It never creates an account nor echoes the
// token.
func (s *Service) AccountPage(ctx *fasthttp.RequestCtx) {
	data := struct {
		Error, State, Sender string
		Verify               bool
	}{Verify: s.cfg.Registration == "verify"}
	raw := string(ctx.QueryArgs().Peek("account_token"))
	tok, disabled, err := rpc.ParseAccountToken("sms.account", "account_token", raw)
	switch {
	case err != nil:
		data.Error = "This link has no valid account token."
	case disabled:
		data.Error = "This database is neutralised (its account token is disabled): it cannot use the SMS service."
	default:
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		acct, err := s.ledger.LookupAccount(c, storage.SMS, tok)
		switch {
		case storage.Is(err, storage.NotFound):
			data.State = string(storage.Unregistered)
		case err != nil:
			data.Error = "The account could not be read; try again later."
		default:
			data.State, data.Sender = string(acct.State), acct.SenderName
		}
	}
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.Response.Header.Set("Referrer-Policy", "no-referrer")
	ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
	if err := accountPage.Execute(ctx, data); err != nil {
		s.log.Error("sms: account page", "err", err)
	}
}
