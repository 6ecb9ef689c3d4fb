package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/postgres"
	"github.com/iapd/iapd/storage/postgres/pgtest"
	"github.com/iapd/iapd/storage/storagetest"
)

// open opens a ledger on url with the clock now, closed at cleanup.
func open(t *testing.T, url string, now func() time.Time) *postgres.Ledger {
	t.Helper()
	l, err := postgres.Open(context.Background(), postgres.Options{URL: url, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestConformance runs the storage contract's suite, the bank test
// included, against PostgreSQL.
func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, now func() time.Time) storage.Ledger {
		return open(t, pgtest.Schema(t), now)
	})
}

// TestExtras runs the suite of Records, Vouchers and AlertOutbox; reopen
// is a new pool on the same schema, as a restarted node would open it.
func TestExtras(t *testing.T) {
	storagetest.RunExtras(t, func(t *testing.T, now func() time.Time) (storagetest.Extras, func() storagetest.Extras) {
		url := pgtest.Schema(t)
		l := open(t, url, now)
		return l, func() storagetest.Extras {
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = open(t, url, now)
			return l
		}
	})
}
