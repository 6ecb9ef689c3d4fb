package rpc

import (
	"testing"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

// testLedger returns the ledger the end-to-end tests run on: the real
// Badger ledger on disk, in a fresh t.TempDir(). (The golden tests and the
// fuzz target use the in-memory ledger of memledger_test.go, for
// determinism and speed.)
func testLedger(t testing.TB) storage.Ledger {
	t.Helper()
	l, err := badger.Open(badger.Options{Dir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil && !storage.Is(err, storage.Unavailable) { // Unavailable: closed by the test
			t.Errorf("closing the ledger: %v", err)
		}
	})
	return l
}
