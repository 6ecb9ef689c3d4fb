package storagetest

import (
	"context"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
)

// Extras is what RunExtras tests: a ledger that also implements the stores
// of storage/extras.go.
type Extras interface {
	storage.Ledger
	storage.Records
	storage.Vouchers
	storage.AlertOutbox
}

// ExtrasOpener opens a fresh, empty store on the clock now and registers
// its Close with t.Cleanup. reopen closes the store (it must not be closed
// already) and opens the same data again on the same clock, as a restarted
// process would: what was acknowledged before must be there.
type ExtrasOpener func(t *testing.T, now func() time.Time) (l Extras, reopen func() Extras)

// RunExtras runs the conformance suite of Records, Vouchers and
// AlertOutbox against stores made by open. The Badger backend's choices
// that the contracts leave open are pinned down here as storage/badger
// documents them (the alert crossing rule, threshold 0, record expiry on
// the store's clock); a backend that chooses otherwise must change both.
func RunExtras(t *testing.T, open ExtrasOpener) {
	tests := []struct {
		name string
		fn   func(*testing.T, *xenv)
	}{
		{"Records", testRecords},
		{"RecordsValidation", testRecordsValidation},
		{"RecordsExpiry", testRecordsExpiry},
		{"RecordsConcurrent", testRecordsConcurrent},
		{"RecordsReopen", testRecordsReopen},
		{"RecordsList", testRecordsList},
		{"VouchersCreate", testVouchersCreate},
		{"VouchersRedeem", testVouchersRedeem},
		{"VouchersList", testVouchersList},
		{"VouchersConcurrent", testVouchersConcurrent},
		{"VouchersReopen", testVouchersReopen},
		{"AlertsCrossing", testAlertsCrossing},
		{"AlertsSettings", testAlertsSettings},
		{"AlertsOutbox", testAlertsOutbox},
		{"AlertsConcurrent", testAlertsConcurrent},
		{"AlertsReopen", testAlertsReopen},
		{"Claims", testClaims},
		{"ClaimsRefused", testClaimsRefused},
		{"ClaimsReopen", testClaimsReopen},
		{"ClaimsConcurrent", testClaimsConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := NewClock(epoch())
			l, reopen := open(t, c.Now)
			x := &xenv{env: env{t: t, l: l, clock: c, ctx: context.Background()}, x: l, reopen: reopen}
			tc.fn(t, x)
		})
	}
}

// xenv is env with the extras.
type xenv struct {
	env
	x      Extras
	reopen func() Extras
}

// restart reopens the store and points the env at the new one.
func (e *xenv) restart() {
	e.x = e.reopen()
	e.l = e.x
}
