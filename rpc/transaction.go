package rpc

import (
	"context"
	"net/http"
	"time"

	"github.com/iapd/iapd/storage"
)

// Transaction serves the service-provider API (PROTOCOL §5): a provider
// holds a customer's credit with authorize, then captures or cancels the
// hold. The service key identifies the service; the customer's account
// token identifies the account in it.
type Transaction struct{ s *Server }

// AuthorizeArgs are the params of /iap/1/authorize (§5.1).
type AuthorizeArgs struct {
	AccountToken string `json:"account_token"`
	Key          string `json:"key"`
	Credit       Number `json:"credit"`
	Description  Text   `json:"description"` // string or null
	TTL          Number `json:"ttl"`         // whole hours; absent: 4320
	DBUUID       string `json:"dbuuid"`      // optional
}

// AuthorizeReply is the transaction token of the new hold.
type AuthorizeReply struct{ Transaction string }

func (r *AuthorizeReply) appendJSON(b []byte) []byte { return appendString(b, r.Transaction) }

// MarshalJSON encodes the reply as the client reads it: a string.
func (r *AuthorizeReply) MarshalJSON() ([]byte, error) { return r.appendJSON(nil), nil }

// Authorize holds credit on the account and answers the transaction token.
// A token of a neutralised database ("+disabled") is refused before the
// ledger is touched; a wrong or missing key is an AccessError; too little
// available credit is an InsufficientCreditError whose data.message is
// the JSON object 16–18 clients parse (§1.5).
func (t *Transaction) Authorize(r *http.Request, args *AuthorizeArgs, reply *AuthorizeReply) error {
	const op = "authorize"
	tok, disabled, err := accountToken(op, "account_token", args.AccountToken)
	if err != nil {
		return err
	}
	if disabled {
		return storage.E(op, storage.Forbidden, "This database is neutralised (its account token is disabled): paid services are refused.")
	}
	amount, err := credits(op, "credit", args.Credit)
	if err != nil {
		return err
	}
	hours, err := ttlHours(op, args.TTL)
	if err != nil {
		return err
	}
	ctx := r.Context()
	svc, err := t.service(ctx, op, args.Key)
	if err != nil {
		return err
	}
	txn, err := t.s.ledger.Authorize(ctx, storage.AuthorizeRequest{
		Service:     svc.Name,
		Account:     tok,
		Amount:      amount,
		Description: description(args.Description),
		TTL:         time.Duration(hours) * time.Hour,
		FirstSight:  storage.FirstSight{DBUUID: args.DBUUID},
	})
	if err != nil {
		return insufficient(op, err, svc.Name, amount)
	}
	reply.Transaction = txn.Token
	return nil
}

// CaptureArgs are the params of /iap/1/capture (§5.2).
type CaptureArgs struct {
	Token           string `json:"token"`
	Key             string `json:"key"`
	CreditToCapture Number `json:"credit_to_capture"` // false, null or absent: the held amount
}

// Capture confirms a hold and answers true. Capturing again with the same
// amount is harmless; capturing a cancelled or expired hold, or for
// another amount, is a UserError. Capturing more than the hold of an
// account banned (or unregistered) since the authorize is an AccessError,
// the hold kept: up to the hold settles what was held, the excess would
// be new spending.
func (t *Transaction) Capture(r *http.Request, args *CaptureArgs, reply *bool) error {
	const op = "capture"
	txn, err := transactionToken(op, args.Token)
	if err != nil {
		return err
	}
	var amount *storage.Credits
	if args.CreditToCapture.Set() {
		c, err := credits(op, "credit_to_capture", args.CreditToCapture)
		if err != nil {
			return err
		}
		amount = &c
	}
	ctx := r.Context()
	svc, err := t.service(ctx, op, args.Key)
	if err != nil {
		return err
	}
	_, err = t.s.ledger.Capture(ctx, storage.CaptureRequest{Service: svc.Name, Transaction: txn, Amount: amount})
	if err != nil {
		var asked storage.Credits
		if amount != nil {
			asked = *amount
		}
		return transactionError(op, insufficient(op, err, svc.Name, asked))
	}
	*reply = true
	return nil
}

// CancelArgs are the params of /iap/1/cancel (§5.3).
type CancelArgs struct {
	Token string `json:"token"`
	Key   string `json:"key"`
}

// Cancel releases a hold and answers true. Cancelling again, or after the
// hold expired, is harmless; cancelling a captured hold is a UserError.
func (t *Transaction) Cancel(r *http.Request, args *CancelArgs, reply *bool) error {
	const op = "cancel"
	txn, err := transactionToken(op, args.Token)
	if err != nil {
		return err
	}
	ctx := r.Context()
	svc, err := t.service(ctx, op, args.Key)
	if err != nil {
		return err
	}
	if _, err := t.s.ledger.Cancel(ctx, svc.Name, txn); err != nil {
		return transactionError(op, err)
	}
	*reply = true
	return nil
}

// service returns the service whose key is key; Unauthorized when key
// is missing, malformed or no service's (serviceKey, refuseKey).
func (t *Transaction) service(ctx context.Context, op, key string) (storage.Service, error) {
	keyHash, err := serviceKey(op, key)
	if err != nil {
		return storage.Service{}, err
	}
	svc, err := t.s.ledger.ServiceByKey(ctx, keyHash)
	if err != nil {
		return storage.Service{}, refuseKey(op, err)
	}
	return svc, nil
}

// refuseKey turns a failed key lookup into an AccessError, keeping
// backend failures what they are.
func refuseKey(op string, err error) error {
	switch storage.KindOf(err) {
	case storage.Unauthorized, storage.NotFound:
		return &storage.Error{Op: op, Kind: storage.Unauthorized, Msg: "Invalid service key.", Err: err}
	}
	return err
}

// insufficient makes sure an InsufficientCredit error says which service
// and what amount was asked (the InsufficientCreditError payload needs
// both, §1.5).
func insufficient(op string, err error, svc storage.ServiceName, asked storage.Credits) error {
	se := asStorage(err)
	if se == nil || se.Kind != storage.InsufficientCredit {
		return err
	}
	if se.Service != "" && se.Credit != 0 {
		return err
	}
	e := &storage.Error{Op: op, Kind: storage.InsufficientCredit, Msg: se.Msg, Err: err, Service: se.Service, Credit: se.Credit}
	if e.Service == "" {
		e.Service = svc
	}
	if e.Credit == 0 {
		e.Credit = asked
	}
	return e
}

// transactionError gives capture and cancel errors a clear message of
// their own, whatever the backend's wording: an unknown transaction (or
// one of another service) is an AccessError, a state conflict a
// UserError saying what the ledger said about the state.
func transactionError(op string, err error) error {
	se := asStorage(err)
	if se == nil {
		return err
	}
	switch se.Kind {
	case storage.NotFound:
		return &storage.Error{Op: op, Kind: storage.NotFound, Msg: "Unknown transaction.", Err: err}
	case storage.Conflict:
		verb, why := "captured", "it was cancelled or expired, or captured for another amount"
		if op == "cancel" {
			verb, why = "cancelled", "it was captured"
		}
		if se.Msg != "" {
			why = se.Msg
		}
		msg := "The transaction cannot be " + verb + ": " + why + "."
		return &storage.Error{Op: op, Kind: storage.Conflict, Msg: msg, Err: err}
	}
	return err
}
