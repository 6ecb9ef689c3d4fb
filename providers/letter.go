package providers

import "context"

// Address is a postal address as printed on a letter.
type Address struct {
	Name    string
	Street  string
	Street2 string
	Zip     string
	City    string
	State   string // state or province code or name
	Country string // ISO 3166-1 alpha-2
}

// Letter is one document to print and post.
type Letter struct {
	ID      string // iapd's id (the Odoo document's res_id with the database)
	PDF     []byte
	Pages   int // counted by the caller from the PDF
	Color   bool
	Duplex  bool
	Cover   bool // add a cover page with the recipient's address before the document (counted in Pages)
	To      Address
	From    Address // the company's return address, if known
	Country string  // destination ISO country (= To.Country)
}

// LetterStatus is a letter's state.
type LetterStatus string

// Letter states.
const (
	LetterAccepted LetterStatus = "accepted" // taken by the print service
	LetterSent     LetterStatus = "sent"     // handed to the post
	LetterFailed   LetterStatus = "failed"
)

// LetterResult is the outcome of SendLetter.
type LetterResult struct {
	ProviderID string // the vendor's letter id, for status webhooks and support
	Status     LetterStatus
}

// LetterSender prints and posts letters.
type LetterSender interface {
	Provider
	SendLetter(ctx context.Context, l Letter) (LetterResult, error)
}
