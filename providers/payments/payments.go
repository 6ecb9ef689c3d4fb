// Package payments is the vocabulary of online payment of packs: what a
// payment provider adapter (providers/payments/stripe, …) takes and
// returns. The interface the adapters implement is defined by its
// consumer, rpc/portal (Payments): this package holds only the types both
// sides name, amounts exact in fixed point.
//
// It imports only the standard library.
package payments

import (
	"errors"
	"fmt"
	"strings"
)

// Money is an exact amount: Value in ten-thousandths of the currency's
// unit (12.5 EUR is 125000), Currency an upper-case ISO 4217 code.
type Money struct {
	Value    int64
	Currency string
}

func (m Money) String() string {
	neg := ""
	v := m.Value
	if v < 0 {
		neg, v = "-", -v
	}
	return fmt.Sprintf("%s%d.%04d %s", neg, v/10000, v%10000, m.Currency)
}

// Order is one pack to be paid for by one account.
type Order struct {
	// Service is the account's service; Reference names the account
	// opaquely (never its token). Both travel with the payment and come
	// back in Session.
	Service   string
	Reference string
	// Pack is the pack's id (its position in the service's list, from
	// 1), PackName its name shown on the payment page, Credits the
	// credit it adds as a decimal string.
	Pack     int
	PackName string
	Credits  string
	// Price is what the customer pays.
	Price Money
	// SuccessURL and CancelURL are where the customer's browser returns.
	// SessionPlaceholder in SuccessURL is replaced by the session's id.
	SuccessURL string
	CancelURL  string
}

// SessionPlaceholder in Order.SuccessURL stands for the session id.
const SessionPlaceholder = "{CHECKOUT_SESSION_ID}"

// Checkout is a created payment page.
type Checkout struct {
	ID  string // the session id, unique per provider
	URL string // where to send the customer's browser
}

// Session is a payment session as the provider reports it.
type Session struct {
	ID string
	// Service, Reference, Pack and Credits are the Order's, as carried by
	// the session (empty for a session iapd did not create).
	Service   string
	Reference string
	Pack      int
	Credits   string
	// Paid: the provider says the money is received.
	Paid bool
	// Amount is what the customer paid (or is to pay).
	Amount Money
	// PaymentID is the provider's payment the session made (the id
	// refunds and disputes name); empty before payment.
	PaymentID string
}

// EventKind says what a webhook event asks of iapd.
type EventKind int

// Event kinds.
const (
	// Ignored: nothing to do (an event type iapd does not use, a dispute
	// won, …).
	Ignored EventKind = iota
	// Paid: Session is complete; credit it if Session.Paid.
	Paid
	// Reversed: a dispute on the payment PaymentID was lost: take back
	// what it credited and no refund took back yet.
	Reversed
	// Refunded: the payment PaymentID was refunded, in part or in full:
	// take back each refund's share (the refunds are read from the
	// provider, not from the event).
	Refunded
)

// Event is a verified, decoded webhook delivery.
type Event struct {
	ID        string // the provider's event id
	Type      string // the provider's event type, for logs
	Kind      EventKind
	Session   Session // Paid
	PaymentID string  // Reversed, Refunded
	// Refunded is the payment's total refunded when the event was sent
	// (Refunded): a list of refunds that adds up to less is behind it.
	Refunded Money
}

// Refund is one refund of a payment, as the provider lists it: an amount
// that never changes once made.
type Refund struct {
	ID     string // the provider's refund id, unique per provider
	Amount Money  // > 0, in the payment's currency
	// Status is the provider's word (pending, succeeded, failed, …);
	// Returned says whether it counts as money given back: true unless
	// the refund failed or was cancelled.
	Status   string
	Returned bool
}

// Errors of the adapters (compare with errors.Is).
var (
	// ErrSignature: a webhook delivery whose signature is missing, wrong
	// or too old. Answer 400.
	ErrSignature = errors.New("payments: webhook signature not valid")
	// ErrNotFound: no such session, or no session made that payment.
	ErrNotFound = errors.New("payments: not found")
	// ErrInvalid: the provider refused the request (the order or the
	// configuration is wrong); retrying will not help.
	ErrInvalid = errors.New("payments: refused by the provider")
)

// zeroDecimal and threeDecimal are the currencies whose minor unit is not
// the hundredth (ISO 4217, as card processors use them).
var (
	zeroDecimal  = set("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF")
	threeDecimal = set("BHD JOD KWD OMR TND")
)

func set(s string) map[string]bool {
	m := map[string]bool{}
	for _, c := range strings.Fields(s) {
		m[c] = true
	}
	return m
}

// Decimals is the number of decimals of the currency's minor unit.
func Decimals(currency string) int {
	c := strings.ToUpper(currency)
	switch {
	case zeroDecimal[c]:
		return 0
	case threeDecimal[c]:
		return 3
	}
	return 2
}

// MinorUnits returns m in the currency's minor unit (cents); an error when
// m has more decimals than the currency.
func MinorUnits(m Money) (int64, error) {
	f := pow10(4 - Decimals(m.Currency))
	if m.Value%f != 0 {
		return 0, fmt.Errorf("payments: %s has more decimals than %s allows", m, m.Currency)
	}
	return m.Value / f, nil
}

// FromMinorUnits is the inverse of MinorUnits.
func FromMinorUnits(minor int64, currency string) Money {
	return Money{Value: minor * pow10(4-Decimals(currency)), Currency: strings.ToUpper(currency)}
}

func pow10(n int) int64 {
	v := int64(1)
	for range n {
		v *= 10
	}
	return v
}
