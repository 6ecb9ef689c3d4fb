package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/postgres/pgtest"
)

// TestRetries: a change failing 40001 or 40P01 is run again, counted by
// reason; one that keeps failing stops after maxAttempts, Unavailable; any
// other failure is not retried.
func TestRetries(t *testing.T) {
	reg := prometheus.NewRegistry()
	l, err := Open(context.Background(), Options{URL: pgtest.Schema(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()

	codes := []string{"40001", "40P01", "40001"}
	calls := 0
	err = l.write(ctx, "test", func(tx *wtx, _ time.Time) (error, error) {
		calls++
		if calls <= len(codes) {
			return nil, &pgconn.PgError{Code: codes[calls-1]}
		}
		_, err := tx.Exec(ctx, "SELECT 1")
		return nil, err
	})
	if err != nil || calls != 4 {
		t.Fatalf("err %v after %d calls, want success at the 4th", err, calls)
	}
	if s, d := testutil.ToFloat64(l.retries.WithLabelValues("serialization")), testutil.ToFloat64(l.retries.WithLabelValues("deadlock")); s != 2 || d != 1 {
		t.Fatalf("retries: serialization %v deadlock %v, want 2 and 1", s, d)
	}

	calls = 0
	err = l.write(ctx, "test", func(*wtx, time.Time) (error, error) {
		calls++
		return nil, &pgconn.PgError{Code: "40001"}
	})
	if !storage.Is(err, storage.Unavailable) || calls != maxAttempts {
		t.Fatalf("always failing: err %v after %d calls, want Unavailable after %d", err, calls, maxAttempts)
	}

	calls = 0
	err = l.write(ctx, "test", func(*wtx, time.Time) (error, error) {
		calls++
		return nil, &pgconn.PgError{Code: "23514", ConstraintName: "iapd_accounts_available_check"}
	})
	if !storage.Is(err, storage.Internal) || calls != 1 {
		t.Fatalf("check violation: err %v after %d calls, want Internal after 1", err, calls)
	}

	names := map[string]bool{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"iap_ledger_tx_retries_total", "iap_ledger_pool_connections", "iap_ledger_pool_max_connections", "iap_ledger_pool_wait_seconds_total", "iap_ledger_pool_waits_total"} {
		if !names[n] {
			t.Errorf("%s not registered", n)
		}
	}
}
