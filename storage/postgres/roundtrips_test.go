package postgres

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/postgres/pgtest"
)

// tripCounter counts what goes to the server: each batch and each single
// query is one round trip (a statement new to a connection adds a prepare
// round, which the warm-up takes).
type tripCounter struct{ n atomic.Int64 }

func (c *tripCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *tripCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *tripCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *tripCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (c *tripCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// countedLedger opens a ledger on a new schema with one connection (its
// statement cache warm after the first round) whose round trips trips
// counts; it is closed when the test ends.
func countedLedger(t *testing.T) (*Ledger, *tripCounter) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(pgtest.Schema(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	trips := &tripCounter{}
	cfg.ConnConfig.Tracer = trips
	l, err := open(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l, trips
}

// TestRoundTrips pins the round trips of the hot operations
// (docs/postgres.md): authorize, capture and cancel 1 each (fast.go), a key lookup
// 1 then 0 while cached.
func TestRoundTrips(t *testing.T) {
	ctx := context.Background()
	l, trips := countedLedger(t)
	if _, err := l.EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true}); err != nil {
		t.Fatal(err)
	}
	key := storage.HashKey("k")
	if err := l.SetServiceKey(ctx, "sms", key); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "tok", Amount: 100 * storage.Scale, Kind: storage.EntryRecharge}); err != nil {
		t.Fatal(err)
	}
	count := func(what string, want int64, fn func() error) {
		t.Helper()
		before := trips.n.Load()
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := trips.n.Load() - before; got != want {
			t.Errorf("%s: %d round trips, want %d", what, got, want)
		}
	}
	for round := 0; round < 2; round++ { // the first warms the statement cache
		var a, b storage.Transaction
		hold := func(tr *storage.Transaction) func() error {
			return func() (err error) {
				*tr, err = l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: "tok", Amount: storage.Scale, TTL: time.Hour})
				return err
			}
		}
		if round == 0 {
			_ = hold(&a)()
			_ = hold(&b)()
			_, _ = l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: a.Token})
			_, _ = l.Cancel(ctx, "sms", b.Token)
			continue
		}
		count("authorize", 1, hold(&a))
		count("authorize", 1, hold(&b))
		count("capture", 1, func() error {
			_, err := l.Capture(ctx, storage.CaptureRequest{Service: "sms", Transaction: a.Token})
			return err
		})
		count("cancel", 1, func() error { _, err := l.Cancel(ctx, "sms", b.Token); return err })
	}
	count("service by key", 1, func() error { _, err := l.ServiceByKey(ctx, key); return err })
	count("service by key, cached", 0, func() error { _, err := l.ServiceByKey(ctx, key); return err })
}
