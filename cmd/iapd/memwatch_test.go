package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMemWatchEpisodes: one warning and one count per episode near the
// limit, whatever the number of samples in it; an episode ends after
// memClearSamples samples in a row below memClearFraction, so a heap
// swinging around the warning level is one episode; the ratio follows.
func TestMemWatchEpisodes(t *testing.T) {
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	m, err := newMemWatch(reg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	live := uint64(0)
	m.limit = func() int64 { return 1000 }
	m.live = func() uint64 { return live }
	samples := []uint64{100, 850, 900, 750, 820, 550, 650, 810, 600}
	for range memClearSamples - 1 {
		samples = append(samples, 500) // not quite long enough
	}
	samples = append(samples, 610, 850) // the swing goes on: same episode
	for range memClearSamples {
		samples = append(samples, 500) // quiet for long enough: it ends
	}
	samples = append(samples, 950, 990)
	for _, v := range samples {
		live = v
		m.check()
	}
	if got := testutil.ToFloat64(m.episodes); got != 2 {
		t.Fatalf("episodes = %v, want 2 (850…850, then 950…)", got)
	}
	if n := strings.Count(logs.String(), "near the memory limit"); n != 2 {
		t.Fatalf("%d warnings, want 2:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "back below"); n != 1 {
		t.Fatalf("%d all-clear lines, want 1:\n%s", n, logs.String())
	}
	if got := testutil.ToFloat64(prometheus.Collector(regGauge(t, reg))); got != 0.99 {
		t.Fatalf("ratio = %v, want 0.99", got)
	}
	m.limit = func() int64 { return 1<<63 - 1 }
	m.check()
	if got := testutil.ToFloat64(regGauge(t, reg)); got != 0 {
		t.Fatalf("ratio without a limit = %v, want 0", got)
	}
}

func regGauge(t *testing.T, reg *prometheus.Registry) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "iap_memory_limit_ratio" {
			g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
			g.Set(mf.GetMetric()[0].GetGauge().GetValue())
			return g
		}
	}
	t.Fatal("no iap_memory_limit_ratio")
	return nil
}
