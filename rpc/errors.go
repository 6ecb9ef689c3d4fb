package rpc

import (
	"errors"

	"github.com/iapd/iapd/storage"
)

// Odoo's exception names, sent as error.data.name. Clients only look at the
// last dotted segment (PROTOCOL §1.3); generation C and later clients (§1.4)
// recognise only InsufficientCreditError and turn every other name into a
// generic AccessError, older ones show the message of AccessError and
// UserError to the user.
const (
	nameInsufficientCredit = "odoo.addons.iap.tools.iap_tools.InsufficientCreditError" // #nosec G101 -- an exception name, not a credential
	nameAccessError        = "odoo.exceptions.AccessError"
	nameUserError          = "odoo.exceptions.UserError"
	nameNotFound           = "werkzeug.exceptions.NotFound" // unknown route only
)

// Codes of the JSON-RPC error object. Odoo's own server sends 200 for any
// exception raised in a json route and 404 for an unknown route; clients do
// not read it (§1.3). The HTTP status is always 200.
const (
	codeServerError = 200
	codeNotFound    = 404
)

// Messages shown instead of the error's own text when the cause is ours,
// not the caller's; the cause is logged.
const (
	msgUnavailable = "The IAP service is temporarily unavailable. Please try again later."
	msgInternal    = "The IAP service met an internal error."
)

// The InsufficientCreditError payload texts (§1.5), as Odoo's IAP sends them.
const (
	msgInsufficientCredit   = "You don't have enough credits on your account to use this service."
	titleInsufficientCredit = "Insufficient Balance"
)

// wireError is how one storage.Kind goes on the wire.
type wireError struct {
	name    string // error.data.name
	code    int    // error.code
	generic string // if set, shown instead of the error's message, and the cause logged as an error
	dflt    string // message when the error carries none
	// account, if set, is error.data.name on an account route (Route.Account)
	// instead of name: the unreachable-IAP answer Odoo 16–19 handle there
	// (AccessError: get_credits returns -1, lists and forms show local
	// data, alert writes are logged; PROTOCOL §1.4, §4).
	account string
}

// errorTable is the one mapping from error kinds to Odoo's errors. Every
// error a handler or the codec returns goes through it (Server.appendError).
var errorTable = [...]wireError{
	storage.Other:              {name: nameUserError, code: codeServerError, generic: msgInternal, account: nameAccessError},
	storage.Invalid:            {name: nameUserError, code: codeServerError, dflt: "Invalid request."},
	storage.NotFound:           {name: nameAccessError, code: codeServerError, dflt: "Not found."},
	storage.Exists:             {name: nameUserError, code: codeServerError, dflt: "It exists already."},
	storage.Conflict:           {name: nameUserError, code: codeServerError, dflt: "The request conflicts with the current state."},
	storage.InsufficientCredit: {name: nameInsufficientCredit, code: codeServerError}, // message: insufficientCreditMessage
	storage.Forbidden:          {name: nameAccessError, code: codeServerError, dflt: "This account may not use this service."},
	storage.Unauthorized:       {name: nameAccessError, code: codeServerError, dflt: "Access denied."},
	storage.Unavailable:        {name: nameUserError, code: codeServerError, generic: msgUnavailable, account: nameAccessError},
	storage.Internal:           {name: nameUserError, code: codeServerError, generic: msgInternal, account: nameAccessError},
}

// wireFor returns the table entry of err's kind.
func wireFor(err error) (storage.Kind, wireError) {
	k := storage.KindOf(err)
	if int(k) >= len(errorTable) || errorTable[k].name == "" {
		k = storage.Other
	}
	return k, errorTable[k]
}

// appendError appends Odoo's error envelope for err (answer to a request
// with the given raw id, nil meaning null, from client) and logs what
// needs logging. method is the route's gorilla method or its path.
func (s *Server) appendError(b, id []byte, method, client string, err error) []byte {
	kind, w := wireFor(err)
	name := w.name
	if w.account != "" && s.accountRoutes[method] {
		name = w.account
	}
	var msg string
	var se *storage.Error
	errors.As(err, &se)
	switch {
	case kind == storage.InsufficientCredit:
		var credit storage.Credits
		var svc storage.ServiceName
		if se != nil {
			credit, svc = se.Credit, se.Service
		}
		msg = string(s.insufficientCreditMessage(nil, credit, svc))
		s.log.Debug("insufficient credit", "method", method, "service", string(svc), "credit", credit.String())
	case w.generic != "" && errors.Is(err, storage.ErrDiskFull):
		// Counted (Refused) and logged once by the ledger: a line per
		// refusal would flood the log, maybe on the full volume itself.
		msg = w.generic
		s.log.Debug("request refused: disk full", "method", method, "client", client)
	case w.generic != "":
		msg = w.generic
		s.log.Error("request failed", "method", method, "client", client, "kind", kind.String(), "err", err)
	default:
		if se != nil {
			msg = se.Msg
		}
		if msg == "" {
			msg = w.dflt
		}
		s.log.Debug("request refused", "method", method, "client", client, "kind", kind.String(), "err", err)
	}
	return appendErrorEnvelope(b, id, w.code, name, msg)
}

// appendErrorEnvelope appends the error envelope Odoo's own server sends
// (§1.3): HTTP 200, error.data.name and error.data.message always present.
func appendErrorEnvelope(b, id []byte, code int, name, msg string) []byte {
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	b = appendID(b, id)
	b = append(b, `,"error":{"code":`...)
	b = appendInt(b, code)
	b = append(b, `,"message":"Odoo Server Error","data":{"name":`...)
	b = appendString(b, name)
	b = append(b, `,"message":`...)
	b = appendString(b, msg)
	b = append(b, `,"arguments":[`...)
	b = appendString(b, msg)
	b = append(b, `],"context":{},"debug":""}}}`...)
	return b
}

// insufficientCreditMessage appends the data.message of an
// InsufficientCreditError: a JSON object encoded as a string (§1.5), which
// Odoo 16–18 parse with json.loads / JSON.parse. It is written with
// Python's separators, as Odoo's IAP writes it.
func (s *Server) insufficientCreditMessage(b []byte, credit storage.Credits, svc storage.ServiceName) []byte {
	b = append(b, `{"credit": `...)
	b = credit.AppendJSON(b)
	b = append(b, `, "service_name": `...)
	b = appendString(b, string(svc))
	b = append(b, `, "base_url": `...)
	b = appendString(b, s.creditURL)
	b = append(b, `, "message": `...)
	b = appendString(b, msgInsufficientCredit)
	b = append(b, `, "title": `...)
	b = appendString(b, titleInsufficientCredit)
	b = append(b, `, "trial": false}`...)
	return b
}

// appendNotFound appends the answer to a POST on an unknown path: what
// Odoo's own server answers (werkzeug NotFound, code 404), HTTP 200.
func appendNotFound(b, id []byte) []byte {
	return appendErrorEnvelope(b, id, codeNotFound, nameNotFound,
		"404: Not Found: The requested URL was not found on the server.")
}
