package storage

import (
	"context"
	"log/slog"
	"time"
)

// Sweep releases expired holds every interval until ctx is done: it calls
// l.ExpireDue in batches of batch until a batch comes back short. When l is
// also a RecordSweeper, it then deletes expired records the same way.
// Errors are logged and retried at the next tick; the ledger stays correct
// without the sweeper (a capture of an expired hold is refused anyway, an
// expired record reads as absent), the sweeper only returns the credit to
// the account in time and frees the space of dead records.
func Sweep(ctx context.Context, l Ledger, interval time.Duration, batch int, now func() time.Time, log *slog.Logger) {
	if batch <= 0 {
		batch = 1000
	}
	rs, _ := l.(RecordSweeper)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		sweepBatches(ctx, "holds", func() (int, error) { return l.ExpireDue(ctx, now(), batch) }, batch, log)
		if rs != nil {
			sweepBatches(ctx, "records", func() (int, error) { return rs.DeleteExpiredRecords(ctx, now(), batch) }, batch, log)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweepBatches calls one until a batch comes back short or fails.
func sweepBatches(ctx context.Context, what string, one func() (int, error), batch int, log *slog.Logger) {
	for {
		n, err := one()
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("sweeping expired "+what, "err", err)
			}
			return
		}
		if n > 0 {
			log.Info("swept expired "+what, "count", n)
		}
		if n < batch {
			return
		}
	}
}
