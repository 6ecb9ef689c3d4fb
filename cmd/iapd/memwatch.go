package main

import (
	"context"
	"log/slog"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The memory limit is a safety net, not a cliff (issue 21): when the live
// heap nears the Go memory limit, the collector runs ever more often and
// an idle server can burn its cores. memWatch says so instead of leaving
// it to be found in a CPU graph: it samples the live heap every
// memWatchEvery and, when it reaches memNearFraction of the limit, logs
// one warning for the episode and counts it; the ratio is a metric an
// alert reads. An episode ends only when the heap has stayed below
// memClearFraction for memClearSamples samples in a row (a minute): a
// heap swinging around the warning level under load is one episode, not
// one a minute (at a million accounts the old single-sample 70 % exit
// counted 41 episodes in 25 minutes of steady load).
const (
	memWatchEvery    = 5 * time.Second
	memNearFraction  = 0.8
	memClearFraction = 0.6
	memClearSamples  = 12
)

// memWatch tracks the live heap against the memory limit.
type memWatch struct {
	log      *slog.Logger
	limit    func() int64 // the limit in force (math.MaxInt64: none)
	live     func() uint64
	near     bool
	quiet    int           // samples in a row below memClearFraction during an episode
	ratio    atomic.Uint64 // math.Float64bits of live/limit (0 without a limit)
	episodes prometheus.Counter
}

func newMemWatch(reg prometheus.Registerer, log *slog.Logger) (*memWatch, error) {
	m := &memWatch{
		log:   log,
		limit: func() int64 { return debug.SetMemoryLimit(-1) },
		live:  liveHeap,
		episodes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iap_memory_limit_near_total",
			Help: "Episodes of the live Go heap reaching 80% of the Go memory limit (memory_limit): the collector then runs often; raise the limit or find what grew.",
		}),
	}
	ratio := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "iap_memory_limit_ratio",
		Help: "Live Go heap after the last collection, as a fraction of the Go memory limit (0 when there is none), sampled every 5 s.",
	}, func() float64 { return math.Float64frombits(m.ratio.Load()) })
	for _, c := range []prometheus.Collector{m.episodes, ratio} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.check()
	return m, nil
}

// liveHeap is the heap the last collection found live.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// check samples once.
func (m *memWatch) check() {
	limit, live := m.limit(), m.live()
	if limit <= 0 || limit == math.MaxInt64 {
		m.ratio.Store(math.Float64bits(0))
		return
	}
	r := float64(live) / float64(limit)
	m.ratio.Store(math.Float64bits(r))
	switch {
	case !m.near && r >= memNearFraction:
		m.near = true
		m.episodes.Inc()
		m.log.Warn("the Go heap is near the memory limit: the collector runs often and costs CPU; raise memory_limit or find what grew (heap profile: /debug/pprof/heap on the ops listener)",
			"live_heap_bytes", live, "memory_limit_bytes", limit)
	case m.near && r >= memClearFraction:
		m.quiet = 0
	case m.near:
		if m.quiet++; m.quiet < memClearSamples {
			return
		}
		m.near, m.quiet = false, 0
		m.log.Info("the Go heap is back below the memory limit's warning level", "live_heap_bytes", live, "memory_limit_bytes", limit)
	}
}

// run samples every memWatchEvery until ctx ends.
func (m *memWatch) run(ctx context.Context) {
	t := time.NewTicker(memWatchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.check()
		}
	}
}
