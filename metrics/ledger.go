package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iapd/iapd/storage"
)

// StatsReader is what LedgerCollector needs of a ledger.
type StatsReader interface {
	// Stats returns the ledger's figures by service (storage.Stats). It
	// may scan the ledger; the collector calls it at most once per
	// LedgerOptions.MaxAge. An error means no figures this time: the scrape
	// reports it and the next scrape tries again.
	Stats(ctx context.Context) (storage.Stats, error)
}

// DefaultStatsMaxAge is how long LedgerCollector reuses a Stats result
// when LedgerOptions.MaxAge is zero.
const DefaultStatsMaxAge = 5 * time.Second

// DefaultStatsTimeout bounds one Stats call when LedgerOptions.Timeout is
// zero.
const DefaultStatsTimeout = 10 * time.Second

// LedgerOptions configure a LedgerCollector.
type LedgerOptions struct {
	// MaxAge is how long a Stats result serves scrapes before the ledger
	// is read again; 0 is DefaultStatsMaxAge, negative reads it at every
	// scrape.
	MaxAge time.Duration
	// Timeout bounds one Stats call; 0 is DefaultStatsTimeout.
	Timeout time.Duration
	// Now is the clock of the cache; nil is time.Now.
	Now func() time.Time
}

// LedgerCollector is a prometheus.Collector that reads the ledger's
// figures at scrape time: accounts by state, accounts below their alert
// threshold, available credit, open holds and the credit flows, all by
// service. Register it on the same Registerer as New's metrics.
type LedgerCollector struct {
	src     StatsReader
	maxAge  time.Duration
	timeout time.Duration
	now     func() time.Time

	mu       sync.Mutex // serialises reads of the ledger
	cached   storage.Stats
	cachedAt time.Time
	valid    bool
	took     time.Duration // duration of the last Stats call that succeeded

	errors prometheus.Counter

	accounts, belowThreshold, available, holds, held   *prometheus.Desc
	authorized, captured, released, expired, recharged *prometheus.Desc
	statsDuration                                      *prometheus.Desc
}

// NewLedgerCollector returns a collector reading src.
func NewLedgerCollector(src StatsReader, opts LedgerOptions) *LedgerCollector {
	c := &LedgerCollector{src: src, maxAge: opts.MaxAge, timeout: opts.Timeout, now: opts.Now}
	if c.maxAge == 0 {
		c.maxAge = DefaultStatsMaxAge
	}
	if c.timeout <= 0 {
		c.timeout = DefaultStatsTimeout
	}
	if c.now == nil {
		c.now = time.Now
	}
	svc := []string{"service"}
	c.accounts = prometheus.NewDesc("iap_accounts", "Accounts by service and state (registered, unregistered, banned).", []string{"service", "state"}, nil)
	c.belowThreshold = prometheus.NewDesc("iap_accounts_below_alert_threshold",
		"Registered accounts whose low-credit alert is enabled and whose available credit is below its threshold, by service.", svc, nil)
	c.available = prometheus.NewDesc("iap_credits_available", "Credit available on the accounts (the balances customers see), by service.", svc, nil)
	c.holds = prometheus.NewDesc("iap_holds_outstanding", "Open holds (authorized, not yet captured, cancelled or expired), by service.", svc, nil)
	c.held = prometheus.NewDesc("iap_holds_outstanding_credits", "Credit held by the open holds, by service.", svc, nil)
	c.authorized = prometheus.NewDesc("iap_credits_authorized_total", "Credit held by authorize, over the ledger's history, by service.", svc, nil)
	c.captured = prometheus.NewDesc("iap_credits_captured_total", "Credit consumed by capture, over the ledger's history, by service.", svc, nil)
	c.released = prometheus.NewDesc("iap_credits_released_total",
		"Credit returned from holds by cancel or by a capture for less than held, over the ledger's history, by service.", svc, nil)
	c.expired = prometheus.NewDesc("iap_credits_expired_total", "Credit returned by holds that expired, over the ledger's history, by service.", svc, nil)
	c.recharged = prometheus.NewDesc("iap_credits_recharged_total",
		"Credit added by recharges, trial credit included (adjustments excluded), over the ledger's history, by service.", svc, nil)
	c.statsDuration = prometheus.NewDesc("iap_ledger_stats_duration_seconds",
		"Duration of the last read of the ledger's figures for these metrics (cached between scrapes).", nil, nil)
	c.errors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "iap_ledger_stats_errors_total",
		Help: "Reads of the ledger's figures for these metrics that failed.",
	})
	return c
}

// Describe implements prometheus.Collector.
func (c *LedgerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.accounts, c.belowThreshold, c.available, c.holds, c.held,
		c.authorized, c.captured, c.released, c.expired, c.recharged, c.statsDuration,
	} {
		ch <- d
	}
	c.errors.Describe(ch)
}

// accountStates are the states reported for every service, so that a
// state with no account reads 0 rather than missing.
var accountStates = []storage.AccountState{storage.Registered, storage.Unregistered, storage.Banned}

// Collect implements prometheus.Collector: it reads the ledger (or the
// cached figures) and sends one series per service and figure. A failed
// read is reported as an invalid metric (the scrape's error) and counted.
func (c *LedgerCollector) Collect(ch chan<- prometheus.Metric) {
	st, took, err := c.stats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.accounts, err)
		ch <- c.errors
		return
	}
	ch <- c.errors
	ch <- prometheus.MustNewConstMetric(c.statsDuration, prometheus.GaugeValue, took.Seconds())
	for name, s := range st.Services {
		svc := string(name)
		for _, state := range accountStates {
			ch <- prometheus.MustNewConstMetric(c.accounts, prometheus.GaugeValue, float64(s.Accounts[state]), svc, string(state))
		}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, svc)
		}
		counter := func(d *prometheus.Desc, v storage.Credits) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v.Float64(), svc)
		}
		gauge(c.belowThreshold, float64(s.BelowThreshold))
		gauge(c.available, s.Available.Float64())
		gauge(c.holds, float64(s.Holds))
		gauge(c.held, s.Held.Float64())
		counter(c.authorized, s.Authorized)
		counter(c.captured, s.Captured)
		counter(c.released, s.Released)
		counter(c.expired, s.Expired)
		counter(c.recharged, s.Recharged)
	}
}

// stats returns the cached figures while they are younger than maxAge,
// else reads the ledger. Concurrent scrapes wait for one read.
func (c *LedgerCollector) stats() (storage.Stats, time.Duration, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.valid && c.maxAge > 0 && c.now().Sub(c.cachedAt) < c.maxAge {
		return c.cached, c.took, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	start := time.Now()
	st, err := c.src.Stats(ctx)
	if err != nil {
		c.errors.Inc()
		return storage.Stats{}, 0, err
	}
	c.cached, c.cachedAt, c.valid, c.took = st, c.now(), true, time.Since(start)
	return st, c.took, nil
}

var _ prometheus.Collector = (*LedgerCollector)(nil)
