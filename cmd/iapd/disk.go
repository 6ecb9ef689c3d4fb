package main

import (
	"encoding/json"
	"net/http"

	"github.com/iapd/iapd/metrics"
	"github.com/iapd/iapd/storage/badger"
)

// ledgerDiskReserve is badger.Options.DiskReserve for the configured
// disk_reserve: 0 keeps only what Badger needs (negative for Open).
func ledgerDiskReserve(c ByteSize) int64 {
	if c == 0 {
		return -1
	}
	return int64(c)
}

// diskGauges reads the ledger's last measurement of its volume for the
// iap_disk_* gauges.
func diskGauges(space func() badger.SpaceStatus) func() metrics.DiskSpace {
	return func() metrics.DiskSpace {
		s := space()
		return metrics.DiskSpace{Free: s.Free, Reserve: s.Reserve, Floor: s.Floor}
	}
}

// readyzWithSpace answers GET /readyz while the ledger refuses writes for
// lack of space: 200 with {"status":"degraded","reason":…,"free_bytes",
// "reserve_bytes","floor_bytes"}, as long as ready (the admin handler's
// own check) passes; otherwise next answers as it always does (200 ready
// or 503 not ready).
//
// 200, not 503: iapd is one process on its data directory, so a load
// balancer that took it out of rotation would have nowhere to send the
// reads it still serves (balances, account pages, captures and cancels
// of held credit), and Odoo would get connection errors instead of a
// readable "temporarily unavailable" on the writes refused. The operator
// is told by the iap_disk_* gauges and iap_refusals_total{reason=
// "disk_full"} (alerts), by the log (once per change), and here.
func readyzWithSpace(next http.Handler, space func() badger.SpaceStatus, ready func() error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := space()
		if s.Level == badger.SpaceOK || ready() != nil {
			next.ServeHTTP(w, r)
			return
		}
		b, _ := json.Marshal(map[string]any{
			"status": "degraded", "reason": s.Reason(),
			"free_bytes": s.Free, "reserve_bytes": s.Reserve, "floor_bytes": s.Floor,
		})
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(append(b, '\n'))
	})
}
