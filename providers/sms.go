package providers

import "context"

// SMS is one text message to send.
type SMS struct {
	// ID is iapd's id of the message (the Odoo uuid where there is one):
	// adapters pass it to the vendor as a client reference where the API
	// has one, and report it back.
	ID     string
	To     string // E.164, "+32470123456"
	Body   string
	Sender string // sender id or number; empty: the instance's default
	// StatusURL is where the vendor should send delivery reports for this
	// message, when the adapter has Callbacks; empty: none.
	StatusURL string
}

// SMSStatus is a message's state as iapd tracks it.
type SMSStatus string

// Message states. Adapters map their vendor's states onto these.
const (
	SMSAccepted    SMSStatus = "accepted"    // queued or sent by the vendor, no receipt yet
	SMSDelivered   SMSStatus = "delivered"   // the handset received it
	SMSUndelivered SMSStatus = "undelivered" // the vendor or carrier gave up
	SMSExpired     SMSStatus = "expired"     // validity period elapsed
	SMSRejected    SMSStatus = "rejected"    // refused: bad number, blocked, …
)

// SMSResult is the outcome of one message of a batch.
type SMSResult struct {
	ID         string    // SMS.ID
	ProviderID string    // the vendor's message id (Twilio SID, Vonage message-id), for delivery reports
	Status     SMSStatus // when Err is nil
	Segments   int       // billed segments as the vendor counted them; 0: unknown
	Err        *Error    // this message failed
}

// SMSSender sends text messages.
type SMSSender interface {
	Provider
	// SendSMS sends a batch and returns one result per message, in order.
	// A non-nil error means the whole batch met that failure (its Kind
	// tells what became of it); otherwise each result says how its message
	// fared. Adapters that send one message per vendor call stop at the
	// first Unavailable or Indeterminate failure and mark the rest with
	// that error's kind Unavailable (not sent).
	SendSMS(ctx context.Context, msgs []SMS) ([]SMSResult, error)
}

// DeliveryReport is what a vendor's status callback says of one message.
type DeliveryReport struct {
	ProviderID string
	Status     SMSStatus
	Code       string // vendor error code, if any
}

// DeliverySink receives the delivery reports a provider's callbacks
// parsed. It must not block for long (it queues).
type DeliverySink func(ctx context.Context, provider string, reports []DeliveryReport)

// DeliveryReporter is an SMSSender whose vendor sends delivery reports to
// iapd (through Callbacks).
type DeliveryReporter interface {
	Callbacks
	// SetSink gives the instance where to send what its callbacks parse.
	// Called once, before the callbacks are served.
	SetSink(DeliverySink)
}
