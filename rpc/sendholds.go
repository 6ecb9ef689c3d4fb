package rpc

import (
	"context"
	"strings"
	"time"

	"github.com/iapd/iapd/storage"
)

// HistoryReader reads an account's ledger entries (storage.Ledger's
// History).
type HistoryReader interface {
	History(ctx context.Context, svc storage.ServiceName, tok storage.AccountToken, q storage.HistoryQuery) ([]storage.Entry, error)
}

// SendHolds returns the holds of (svc, tok) whose description ends with
// "send <send>", from the account's history since a minute before at:
// how a start-up settlement (rpc/sms, rpc/snailmail) finds a hold the
// ledger acknowledged before the send's trace recorded it. An unknown
// account has none. It pages through the history, 500 entries at a time.
func SendHolds(ctx context.Context, h HistoryReader, svc storage.ServiceName, tok storage.AccountToken, send string, at time.Time) ([]string, error) {
	var out []string
	q := storage.HistoryQuery{Since: at.Add(-time.Minute), Limit: 500}
	for {
		es, err := h.History(ctx, svc, tok, q)
		if storage.Is(err, storage.NotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			if e.Kind == storage.EntryHold && strings.HasSuffix(e.Description, "send "+send) {
				out = append(out, e.Transaction)
			}
		}
		if len(es) < q.Limit {
			return out, nil
		}
		q.Before = es[len(es)-1].Seq
	}
}
