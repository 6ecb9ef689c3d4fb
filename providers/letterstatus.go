package providers

import "context"

// Letter states a print service's status webhooks report after
// SendLetter (besides LetterSent and LetterFailed).
const (
	LetterDelivered     LetterStatus = "delivered"     // the post delivered it
	LetterUndeliverable LetterStatus = "undeliverable" // the post brought it back
)

// LetterReport is what a print service's status callback says of one
// letter.
type LetterReport struct {
	ProviderID string // LetterResult.ProviderID
	Status     LetterStatus
	Code       string // the vendor's reason, if any
}

// LetterSink receives the letter reports a provider's callbacks parsed.
// It must not block for long.
type LetterSink func(ctx context.Context, provider string, reports []LetterReport)

// LetterReporter is a LetterSender whose vendor reports letter status to
// iapd (through Callbacks).
type LetterReporter interface {
	Callbacks
	// SetLetterSink gives the instance where to send what its callbacks
	// parse. Called once, before the callbacks are served.
	SetLetterSink(LetterSink)
}
