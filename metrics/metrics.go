package metrics

import (
	"fmt"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metric names. The README's "Monitor iapd" section lists them all, and
// the dashboard and alerting rules in docs/ use nothing else.
const (
	nameRequests        = "iap_requests_total"
	nameRequestDuration = "iap_request_duration_seconds"
	nameSyncDuration    = "iap_ledger_sync_duration_seconds"
	nameSyncBatch       = "iap_ledger_sync_batch_size"
	nameCheckpoint      = "iap_ledger_checkpoint_duration_seconds"
	nameCheckpointKeys  = "iap_ledger_checkpoint_keys_total"
	nameBuildInfo       = "iap_build_info"
	nameRefusals        = "iap_refusals_total"
)

// Histogram buckets.
var (
	// RequestBuckets bound the answer time of one JSON-RPC request, from
	// a refusal that never touches the disk (tens of µs) to a write that
	// waited for a slow fsync.
	RequestBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	// SyncBuckets bound one group sync round of the ledger (fdatasync of
	// the WAL files).
	SyncBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	// BatchBuckets bound the number of commits one sync round made
	// durable.
	BatchBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096}
)

// RefusalReasons are the reasons iapd refuses with (iap_refusals_total's
// reason label): each series exists from the start at 0, so that alert
// rules with increase() see the first refusal. The README's Security
// section explains each; cmd/iapd's tests check the code refuses with no
// other.
var RefusalReasons = []string{
	"body_too_large", "too_many_items", // rpc: the front
	"pdf_budget",                                                                      // rpc/snailmail: a PDF over its budget of steps
	"disk_full",                                                                       // storage/badger: free space under the reserve
	"account_creation_address", "account_creation_database", "account_creation_total", // rpc/admit
	"trial_no_database", "trial_database", "trial_address", "trial_total", // rpc/admit
	"alert_recipients", "alert_email_account", "alert_email_recipient", // rpc, rpc/limit
	"portal_failed_lookups", "portal_failed_lookups_total", // rpc/portal
	"payment_calls", // rpc/portal: provider calls from the pages over their bound
}

// Config describes the build for iap_build_info.
type Config struct {
	// Version is the module version ("v1.2.0", "(devel)"); empty reads
	// "(devel)".
	Version string
	// Revision is the VCS revision the binary was built from, if known.
	Revision string
}

// Metrics are the metrics fed by hooks: requests (ObserveRequest), ledger
// sync rounds (ObserveSync) and journal checkpoints (ObserveCheckpoint). Its methods are safe for concurrent use.
type Metrics struct {
	requests  *prometheus.CounterVec
	durations *prometheus.HistogramVec
	syncDur   prometheus.Histogram
	syncBatch prometheus.Histogram
	ckDur     prometheus.Histogram
	ckKeys    prometheus.Counter
	refusals  *prometheus.CounterVec
}

// New creates the metrics and registers them on reg, with iap_build_info
// and the Go runtime and process collectors. It fails if a name is
// already registered on reg.
func New(reg prometheus.Registerer, cfg Config) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: nameRequests,
			Help: "JSON-RPC requests answered by the public listener, by route and outcome (ok, an error kind such as insufficient_credit, or http_error).",
		}, []string{"route", "outcome"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    nameRequestDuration,
			Help:    "Time to answer a request of the public listener, by route and outcome.",
			Buckets: RequestBuckets,
		}, []string{"route", "outcome"}),
		syncDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    nameSyncDuration,
			Help:    "Duration of one group sync round of the ledger (what makes commits durable).",
			Buckets: SyncBuckets,
		}),
		syncBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    nameSyncBatch,
			Help:    "Number of commits one group sync round of the ledger made durable.",
			Buckets: BatchBuckets,
		}),
		ckDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: nameCheckpoint,
			Help: "Duration of one checkpoint of the ledger's journal into Badger (every 200 ms under load; " +
				"growing durations mean Badger is falling behind, and hold operations start waiting for checkpoints).",
			Buckets: SyncBuckets,
		}),
		ckKeys: prometheus.NewCounter(prometheus.CounterOpts{
			Name: nameCheckpointKeys,
			Help: "Keys written into Badger by the checkpoints of the ledger's journal.",
		}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: nameRefusals,
			Help: "Requests or operations iapd refused to protect itself or others (a limit, a budget, a full disk), by reason. " +
				"Each refusal was answered in a form the calling Odoo understands; none is silent.",
		}, []string{"reason"}),
	}
	for _, r := range RefusalReasons {
		m.refusals.WithLabelValues(r)
	}
	version := cfg.Version
	if version == "" {
		version = "(devel)"
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: nameBuildInfo,
		Help: "Always 1; the labels describe the running build.",
	}, []string{"version", "revision", "goversion"})
	build.WithLabelValues(version, cfg.Revision, runtime.Version()).Set(1)

	for _, c := range []prometheus.Collector{
		m.requests, m.durations, m.syncDur, m.syncBatch, m.ckDur, m.ckKeys, m.refusals, build,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return m, nil
}

// ObserveRequest records one answered request of the public listener. It
// implements rpc.Observer; route and outcome must come from bounded sets
// (the router guarantees it).
func (m *Metrics) ObserveRequest(route, outcome string, d time.Duration) {
	m.requests.WithLabelValues(route, outcome).Inc()
	m.durations.WithLabelValues(route, outcome).Observe(d.Seconds())
}

// ObserveSync records one group sync round of the ledger: how many commits
// it released and how long it took. It has the signature of the Badger
// ledger's Options.OnSync.
func (m *Metrics) ObserveSync(batch int, d time.Duration) {
	m.syncBatch.Observe(float64(batch))
	m.syncDur.Observe(d.Seconds())
}

// ObserveCheckpoint records one checkpoint of the ledger's journal: how
// many keys it wrote into Badger and how long it took, until durable. It
// has the signature of the Badger ledger's Options.OnCheckpoint.
func (m *Metrics) ObserveCheckpoint(keys int, d time.Duration) {
	m.ckKeys.Add(float64(keys))
	m.ckDur.Observe(d.Seconds())
}

// Refused counts one refusal made to protect iapd or others (an abuse
// limit, a work budget, a full disk). reason must come from a bounded set
// of snake_case words chosen by the code that refuses (never a token, an
// address or other caller input). Consumers declare their own
// one-method interface for it.
func (m *Metrics) Refused(reason string) {
	m.refusals.WithLabelValues(reason).Inc()
}
