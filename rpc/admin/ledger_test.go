package admin_test

import (
	"testing"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

// newTestLedger returns the ledger the admin tests run against: the real
// Badger ledger, in memory.
func newTestLedger(t *testing.T) storage.Ledger {
	t.Helper()
	l, err := badger.Open(badger.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
