package portal

import (
	"context"
	"crypto/sha1" // #nosec G505 -- Odoo 19's hashed token (PROTOCOL §4.7) is SHA-1; an identifier

	"github.com/iapd/iapd/storage"
)

// hashIndex resolves Odoo 19's hashed tokens (SHA-1 of the token) through
// the ledger's own index (storage.Ledger.TokenByHash, written with each
// account): nothing per account is kept here, and an account Odoo created
// a moment ago is found at once.
type hashIndex struct {
	ledger storage.Ledger
}

func hashToken(tok storage.AccountToken) [sha1.Size]byte { return storage.HashToken(tok) }

// lookup returns the token of h; ok is false when no account has it or
// the ledger could not answer (the caller answers both alike).
func (x *hashIndex) lookup(ctx context.Context, h [sha1.Size]byte) (storage.AccountToken, bool) {
	tok, err := x.ledger.TokenByHash(ctx, h)
	return tok, err == nil
}
