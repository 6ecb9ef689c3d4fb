package storage

import (
	"context"
	"log/slog"
	"time"
)

// Sweep releases expired holds every interval until ctx is done: it calls
// l.ExpireDue in batches of batch until a batch comes back short. Errors are
// logged and retried at the next tick; the ledger stays correct without the
// sweeper (a capture of an expired hold is refused anyway), the sweeper only
// returns the credit to the account in time.
func Sweep(ctx context.Context, l Ledger, interval time.Duration, batch int, now func() time.Time, log *slog.Logger) {
	if batch <= 0 {
		batch = 1000
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for {
			n, err := l.ExpireDue(ctx, now(), batch)
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("expiring holds", "err", err)
				}
				break
			}
			if n > 0 {
				log.Info("expired holds", "count", n)
			}
			if n < batch {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
