package providers

import "context"

// Email is one message a notifier delivers (low-credit alerts).
type Email struct {
	ID       string // stable across retries (the alert id): adapters use it as Message-ID
	To       []string
	Subject  string
	Text     string // text/plain body
	HTML     string // optional text/html alternative
	Language string
}

// EmailSender delivers e-mail. An error's Kind says whether to retry
// (Unavailable, Indeterminate) or give up (Invalid).
type EmailSender interface {
	Provider
	SendEmail(ctx context.Context, m Email) error
}
