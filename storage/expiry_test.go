package storage

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"
)

// sweepLedger counts Sweep's calls; only ExpireDue and, when records is
// set, DeleteExpiredRecords are implemented.
type sweepLedger struct {
	Ledger               // nil: any other call panics
	holds, records []int // what successive calls return
	holdCalls      int
	recCalls       int
	cancel         context.CancelFunc
}

func (s *sweepLedger) ExpireDue(ctx context.Context, now time.Time, max int) (int, error) {
	s.holdCalls++
	return next(&s.holds), nil
}

func next(q *[]int) int {
	if len(*q) == 0 {
		return 0
	}
	n := (*q)[0]
	*q = (*q)[1:]
	return n
}

type sweepRecords struct{ *sweepLedger }

func (s sweepRecords) DeleteExpiredRecords(ctx context.Context, now time.Time, max int) (int, error) {
	s.recCalls++
	n := next(&s.records)
	if len(s.records) == 0 {
		s.cancel() // the pass ends with this call; Sweep then returns
	}
	if n < 0 {
		return 0, errors.New("disk on fire")
	}
	return n, nil
}

func TestSweepDeletesRecords(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := &sweepLedger{holds: []int{10, 3}, records: []int{10, 10, 4}, cancel: cancel}
	Sweep(ctx, sweepRecords{l}, time.Hour, 10, time.Now, slog.New(slog.DiscardHandler))
	if l.holdCalls != 2 || l.recCalls != 3 {
		t.Fatalf("calls: %d ExpireDue (want 2), %d DeleteExpiredRecords (want 3)", l.holdCalls, l.recCalls)
	}

	// A failing batch ends the pass; the next tick tries again.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	l = &sweepLedger{records: []int{10, -1}, cancel: cancel} // a third call would be a bug
	Sweep(ctx, sweepRecords{l}, time.Hour, 10, time.Now, slog.New(slog.DiscardHandler))
	if l.recCalls != 2 {
		t.Fatalf("%d DeleteExpiredRecords calls, want 2", l.recCalls)
	}

	// A ledger without records: holds only.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	l = &sweepLedger{holds: []int{1}}
	Sweep(ctx, l, time.Hour, 10, time.Now, slog.New(slog.DiscardHandler))
	if l.holdCalls != 1 {
		t.Fatalf("%d ExpireDue calls, want 1", l.holdCalls)
	}
}
