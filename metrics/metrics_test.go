package metrics

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/iapd/iapd/storage"
)

// fakeStats is a StatsReader returning fixed figures or an error.
type fakeStats struct {
	mu    sync.Mutex
	st    storage.Stats
	err   error
	calls atomic.Int64
}

func (f *fakeStats) Stats(ctx context.Context) (storage.Stats, error) {
	f.calls.Add(1)
	if _, ok := ctx.Deadline(); !ok {
		return storage.Stats{}, errors.New("no deadline on the context")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st, f.err
}

func (f *fakeStats) set(st storage.Stats, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st, f.err = st, err
}

func credits(s string) storage.Credits {
	c, err := storage.ParseCredits(s)
	if err != nil {
		panic(err)
	}
	return c
}

func sampleStats() storage.Stats {
	return storage.Stats{Services: map[storage.ServiceName]storage.ServiceStats{
		"sms": {
			Accounts:       map[storage.AccountState]int{storage.Registered: 3, storage.Banned: 1},
			BelowThreshold: 2,
			Available:      credits("41.5"),
			Holds:          2,
			Held:           credits("0.0001"),
			Authorized:     credits("12.25"),
			Captured:       credits("10"),
			Released:       credits("2"),
			Expired:        credits("0.25"),
			Recharged:      credits("100"),
		},
		"reveal": {Accounts: map[storage.AccountState]int{}},
	}}
}

// The ledger collector turns storage.Stats into one series per service
// and figure, credits converted exactly, every state present.
func TestLedgerCollectorValues(t *testing.T) {
	src := &fakeStats{}
	src.set(sampleStats(), nil)
	c := NewLedgerCollector(src, LedgerOptions{})
	const want = `
# HELP iap_accounts Accounts by service and state (registered, unregistered, banned).
# TYPE iap_accounts gauge
iap_accounts{service="reveal",state="banned"} 0
iap_accounts{service="reveal",state="registered"} 0
iap_accounts{service="reveal",state="unregistered"} 0
iap_accounts{service="sms",state="banned"} 1
iap_accounts{service="sms",state="registered"} 3
iap_accounts{service="sms",state="unregistered"} 0
# HELP iap_accounts_below_alert_threshold Registered accounts whose low-credit alert is enabled and whose available credit is below its threshold, by service.
# TYPE iap_accounts_below_alert_threshold gauge
iap_accounts_below_alert_threshold{service="reveal"} 0
iap_accounts_below_alert_threshold{service="sms"} 2
# HELP iap_credits_authorized_total Credit held by authorize, over the ledger's history, by service.
# TYPE iap_credits_authorized_total counter
iap_credits_authorized_total{service="reveal"} 0
iap_credits_authorized_total{service="sms"} 12.25
# HELP iap_credits_available Credit available on the accounts (the balances customers see), by service.
# TYPE iap_credits_available gauge
iap_credits_available{service="reveal"} 0
iap_credits_available{service="sms"} 41.5
# HELP iap_credits_captured_total Credit consumed by capture, over the ledger's history, by service.
# TYPE iap_credits_captured_total counter
iap_credits_captured_total{service="reveal"} 0
iap_credits_captured_total{service="sms"} 10
# HELP iap_credits_expired_total Credit returned by holds that expired, over the ledger's history, by service.
# TYPE iap_credits_expired_total counter
iap_credits_expired_total{service="reveal"} 0
iap_credits_expired_total{service="sms"} 0.25
# HELP iap_credits_recharged_total Credit added by recharges, trial credit included (adjustments excluded), over the ledger's history, by service.
# TYPE iap_credits_recharged_total counter
iap_credits_recharged_total{service="reveal"} 0
iap_credits_recharged_total{service="sms"} 100
# HELP iap_credits_released_total Credit returned from holds by cancel or by a capture for less than held, over the ledger's history, by service.
# TYPE iap_credits_released_total counter
iap_credits_released_total{service="reveal"} 0
iap_credits_released_total{service="sms"} 2
# HELP iap_holds_outstanding Open holds (authorized, not yet captured, cancelled or expired), by service.
# TYPE iap_holds_outstanding gauge
iap_holds_outstanding{service="reveal"} 0
iap_holds_outstanding{service="sms"} 2
# HELP iap_holds_outstanding_credits Credit held by the open holds, by service.
# TYPE iap_holds_outstanding_credits gauge
iap_holds_outstanding_credits{service="reveal"} 0
iap_holds_outstanding_credits{service="sms"} 0.0001
# HELP iap_ledger_stats_errors_total Reads of the ledger's figures for these metrics that failed.
# TYPE iap_ledger_stats_errors_total counter
iap_ledger_stats_errors_total 0
`
	names := []string{
		"iap_accounts", "iap_accounts_below_alert_threshold", "iap_credits_available",
		"iap_holds_outstanding", "iap_holds_outstanding_credits",
		"iap_credits_authorized_total", "iap_credits_captured_total", "iap_credits_released_total",
		"iap_credits_expired_total", "iap_credits_recharged_total", "iap_ledger_stats_errors_total",
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(registryWith(t, c), "iap_ledger_stats_duration_seconds"); err != nil || n != 1 {
		t.Fatalf("iap_ledger_stats_duration_seconds: %d series, %v", n, err)
	}
	if problems := lint(t, registryWith(t, c)); len(problems) > 0 {
		t.Fatalf("promlint: %+v", problems)
	}
}

// Scrapes within MaxAge share one read of the ledger; later ones read it
// again; concurrent scrapes wait for one read.
func TestLedgerCollectorCaches(t *testing.T) {
	src := &fakeStats{}
	src.set(sampleStats(), nil)
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	reg := registryWith(t, NewLedgerCollector(src, LedgerOptions{MaxAge: 5 * time.Second, Now: clock}))

	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := reg.Gather(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := src.calls.Load(); n != 1 {
		t.Fatalf("%d reads for 8 concurrent scrapes, want 1", n)
	}
	advance(4 * time.Second)
	gather(t, reg)
	if n := src.calls.Load(); n != 1 {
		t.Fatalf("%d reads within MaxAge, want 1", n)
	}
	next := sampleStats()
	s := next.Services["sms"]
	s.Captured = credits("11")
	next.Services["sms"] = s
	src.set(next, nil)
	advance(2 * time.Second)
	if v := value(t, gather(t, reg), "iap_credits_captured_total", "service", "sms"); v != 11 {
		t.Fatalf("captured after MaxAge: %v, want 11", v)
	}
	if n := src.calls.Load(); n != 2 {
		t.Fatalf("%d reads after MaxAge, want 2", n)
	}

	// MaxAge < 0: every scrape reads.
	src2 := &fakeStats{}
	reg2 := registryWith(t, NewLedgerCollector(src2, LedgerOptions{MaxAge: -1}))
	gather(t, reg2)
	gather(t, reg2)
	if n := src2.calls.Load(); n != 2 {
		t.Fatalf("%d reads without cache, want 2", n)
	}
}

// A failed read makes the scrape report an error and count it; it is not
// cached, and the next scrape succeeds when the ledger does.
func TestLedgerCollectorErrors(t *testing.T) {
	src := &fakeStats{}
	src.set(storage.Stats{}, storage.E("stats", storage.Unavailable, "ledger closed"))
	reg := registryWith(t, NewLedgerCollector(src, LedgerOptions{}))
	if _, err := reg.Gather(); err == nil || !strings.Contains(err.Error(), "ledger closed") {
		t.Fatalf("Gather with a failing ledger: %v", err)
	}
	src.set(sampleStats(), nil)
	mfs := gather(t, reg)
	if v := value(t, mfs, "iap_ledger_stats_errors_total"); v != 1 {
		t.Fatalf("errors counted: %v, want 1", v)
	}
	if v := value(t, mfs, "iap_holds_outstanding", "service", "sms"); v != 2 {
		t.Fatalf("after recovery: holds %v", v)
	}
}

// New registers the request, sync and build metrics plus the Go and
// process collectors; the hooks feed them; the whole registry lints clean.
func TestNewAndHooks(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := New(reg, Config{Version: "v1.2.3", Revision: "abc123"})
	if err != nil {
		t.Fatal(err)
	}
	m.ObserveRequest("/iap/1/authorize", "ok", 3*time.Millisecond)
	m.ObserveRequest("/iap/1/authorize", "ok", 2*time.Second)
	m.ObserveRequest("/iap/1/authorize", "insufficient_credit", time.Millisecond)
	m.ObserveSync(3, 2*time.Millisecond)
	m.ObserveSync(1, time.Millisecond)
	mfs := gather(t, reg)

	if v := value(t, mfs, "iap_requests_total", "route", "/iap/1/authorize", "outcome", "ok"); v != 2 {
		t.Errorf("requests ok: %v", v)
	}
	if v := value(t, mfs, "iap_requests_total", "route", "/iap/1/authorize", "outcome", "insufficient_credit"); v != 1 {
		t.Errorf("requests insufficient_credit: %v", v)
	}
	h := find(t, mfs, "iap_request_duration_seconds", "route", "/iap/1/authorize", "outcome", "ok").GetHistogram()
	if h.GetSampleCount() != 2 || h.GetSampleSum() < 2.003 || h.GetSampleSum() > 2.0031 {
		t.Errorf("duration histogram: count %d sum %v", h.GetSampleCount(), h.GetSampleSum())
	}
	sb := find(t, mfs, "iap_ledger_sync_batch_size").GetHistogram()
	if sb.GetSampleCount() != 2 || sb.GetSampleSum() != 4 {
		t.Errorf("batch histogram: count %d sum %v", sb.GetSampleCount(), sb.GetSampleSum())
	}
	sd := find(t, mfs, "iap_ledger_sync_duration_seconds").GetHistogram()
	if sd.GetSampleCount() != 2 || sd.GetSampleSum() < 0.0029 || sd.GetSampleSum() > 0.0031 {
		t.Errorf("sync duration histogram: count %d sum %v", sd.GetSampleCount(), sd.GetSampleSum())
	}
	if v := value(t, mfs, "iap_build_info", "version", "v1.2.3", "revision", "abc123", "goversion", runtime.Version()); v != 1 {
		t.Errorf("build info = %v", v)
	}
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_start_time_seconds"} {
		if !has(mfs, name) && !(name == "process_start_time_seconds" && runtime.GOOS != "linux") {
			t.Errorf("%s missing", name)
		}
	}
	if problems := lint(t, reg); len(problems) > 0 {
		t.Fatalf("promlint: %+v", problems)
	}

	// A second set on the same registry is refused, not a panic.
	if _, err := New(reg, Config{}); err == nil {
		t.Fatal("New twice on one registry succeeded")
	}
	// An empty version reads (devel).
	reg2 := prometheus.NewRegistry()
	if _, err := New(reg2, Config{}); err != nil {
		t.Fatal(err)
	}
	value(t, gather(t, reg2), "iap_build_info", "version", "(devel)", "revision", "", "goversion", runtime.Version())
}

func registryWith(t *testing.T, cs ...prometheus.Collector) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

func gather(t *testing.T, g prometheus.Gatherer) []*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

func lint(t *testing.T, g prometheus.Gatherer) []promlint.Problem {
	t.Helper()
	problems, err := promlint.NewWithMetricFamilies(gather(t, g)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	return problems
}

func has(mfs []*dto.MetricFamily, name string) bool {
	for _, mf := range mfs {
		if mf.GetName() == name {
			return true
		}
	}
	return false
}

// find returns the series of family name that has these labels, given as
// name, value pairs (none: the series without labels).
func find(t *testing.T, mfs []*dto.MetricFamily, name string, kv ...string) *dto.Metric {
	t.Helper()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			match := len(labels) == len(kv)/2
			for i := 0; match && i+1 < len(kv); i += 2 {
				match = labels[kv[i]] == kv[i+1]
			}
			if match {
				return m
			}
		}
	}
	t.Fatalf("no series %s%v", name, kv)
	return nil
}

// value returns the value of a counter or gauge series.
func value(t *testing.T, mfs []*dto.MetricFamily, name string, kv ...string) float64 {
	t.Helper()
	m := find(t, mfs, name, kv...)
	if m.GetCounter() != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}
