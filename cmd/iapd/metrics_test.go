package main

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

const metricsTestKey = "metrics-test-key-0123456789abcdef"

// TestMetricsEndpoint drives authorize, capture, cancel and expiry through
// a server started by run(), scrapes the real /metrics of its ops
// listener, parses it with the Prometheus text parser and checks every
// iapd series: request counts and durations by route and outcome, credit
// flows, holds, accounts, ledger sync, build info, Go and process
// collectors; and that the exposition lints clean. The expiry happens
// while the server is stopped (holds last at least an hour): the credit
// counters are read from the ledger's history, so the restarted server
// reports everything, the expiry included. Last, the dashboard and the
// alerting rules in docs/ may use only series seen here.
func TestMetricsEndpoint(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	env := map[string]string{"IAPD_ADMIN_TOKEN": testAdminToken}
	s := startServer(t, env, "-data", data)
	s.mustCLI(t, metricsTestKey+"\n", "services", "create", "prov", "-key-stdin", "-trial", "0")
	s.mustCLI(t, "", "credit", "prov", "a0000000000000000000000000000001", "100")
	s.mustCLI(t, "", "credit", "prov", "a0000000000000000000000000000002", "3")
	s.mustCLI(t, "", "accounts", "ban", "prov", "a0000000000000000000000000000002")

	authorize := func(credit string, ttl int) string {
		t.Helper()
		res, errName := publicCall(t, s.public, "/iap/1/authorize", map[string]any{
			"account_token": "a0000000000000000000000000000001", "key": metricsTestKey, "credit": json.Number(credit), "ttl": ttl})
		var txn string
		if errName != "" || json.Unmarshal(res, &txn) != nil {
			t.Fatalf("authorize %s: %s %s", credit, errName, res)
		}
		return txn
	}
	mustOK := func(path string, params map[string]any) {
		t.Helper()
		if res, errName := publicCall(t, s.public, path, params); errName != "" {
			t.Fatalf("%s: %s %s", path, errName, res)
		}
	}
	mustOK("/iap/1/capture", map[string]any{"token": authorize("10", 1), "key": metricsTestKey})                                       // captured 10
	mustOK("/iap/1/capture", map[string]any{"token": authorize("6", 1), "key": metricsTestKey, "credit_to_capture": json.Number("4")}) // captured 4, released 2
	mustOK("/iap/1/cancel", map[string]any{"token": authorize("3", 1), "key": metricsTestKey})                                         // released 3
	bySweep := authorize("2", 1)                                                                                                       // expires while stopped
	byCapture := authorize("1.5", 1)                                                                                                   // expired by a capture
	authorize("5", 100)                                                                                                                // stays open
	if _, errName := publicCall(t, s.public, "/iap/1/authorize", map[string]any{"account_token": "a0000000000000000000000000000001", "key": metricsTestKey, "credit": 1000}); !strings.HasSuffix(errName, "InsufficientCreditError") {
		t.Fatalf("authorize beyond the balance: %s", errName)
	}
	if _, errName := publicCall(t, s.public, "/iap/1/authorize", map[string]any{"account_token": "a0000000000000000000000000000001", "key": "wrong-key-0123456789", "credit": 1}); errName == "" {
		t.Fatal("authorize with a wrong key succeeded")
	}
	mustOK("/iap/1/balance", map[string]any{"account_token": "a0000000000000000000000000000001", "service_name": "prov"})
	if _, errName := publicCall(t, s.public, "/iap/1/no-such-route", map[string]any{}); errName == "" {
		t.Fatal("unknown route answered a result")
	}
	postRaw(t, s.public+"/iap/1/balance", `{"jsonrpc":`)

	seen := map[string]bool{} // every family exported, across both scrapes
	mfs := scrapeMetrics(t, s.ops)
	for name := range mfs {
		seen[name] = true
	}

	// Requests by route and outcome; the histogram counts the same.
	for _, c := range []struct {
		route, outcome string
		n              float64
	}{
		{"/iap/1/authorize", "ok", 6},
		{"/iap/1/authorize", "insufficient_credit", 1},
		{"/iap/1/authorize", "unauthorized", 1},
		{"/iap/1/capture", "ok", 2},
		{"/iap/1/cancel", "ok", 1},
		{"/iap/1/balance", "ok", 1},
		{"/iap/1/balance", "invalid", 1},
		{"unknown", "not_found", 1},
	} {
		labels := []string{"route", c.route, "outcome", c.outcome}
		if v := seriesValue(t, mfs, "iap_requests_total", labels...); v != c.n {
			t.Errorf("iap_requests_total{route=%q,outcome=%q} = %v, want %v", c.route, c.outcome, v, c.n)
		}
		h := series(t, mfs, "iap_request_duration_seconds", labels...).GetHistogram()
		if float64(h.GetSampleCount()) != c.n || h.GetSampleSum() <= 0 {
			t.Errorf("iap_request_duration_seconds{route=%q,outcome=%q}: count %d sum %v", c.route, c.outcome, h.GetSampleCount(), h.GetSampleSum())
		}
	}
	if n := len(mfs["iap_requests_total"].GetMetric()); n != 8 {
		t.Errorf("iap_requests_total has %d series, want the 8 above", n)
	}

	// Credit figures of the service, while two holds are due but not yet
	// expired and one is open for 100 hours.
	wantProv := map[string]float64{
		"iap_credits_authorized_total":       10 + 6 + 3 + 2 + 1.5 + 5,
		"iap_credits_captured_total":         10 + 4,
		"iap_credits_released_total":         2 + 3,
		"iap_credits_expired_total":          0,
		"iap_credits_recharged_total":        100 + 3,
		"iap_holds_outstanding":              3,
		"iap_holds_outstanding_credits":      2 + 1.5 + 5,
		"iap_credits_available":              100 + 3 - 14 - 8.5,
		"iap_accounts_below_alert_threshold": 0,
	}
	checkServiceSeries(t, "running", mfs, wantProv)
	for state, n := range map[string]float64{"registered": 1, "banned": 1, "unregistered": 0} {
		if v := seriesValue(t, mfs, "iap_accounts", "service", "prov", "state", state); v != n {
			t.Errorf("iap_accounts{service=prov,state=%s} = %v, want %v", state, v, n)
		}
	}
	// Every service has its series, used or not.
	for _, svc := range []string{"sms", "snailmail", "partner_autocomplete", "reveal"} {
		if v := seriesValue(t, mfs, "iap_credits_captured_total", "service", svc); v != 0 {
			t.Errorf("iap_credits_captured_total{service=%s} = %v", svc, v)
		}
	}
	if v := seriesValue(t, mfs, "iap_ledger_stats_errors_total"); v != 0 {
		t.Errorf("iap_ledger_stats_errors_total = %v", v)
	}
	if v := seriesValue(t, mfs, "iap_ledger_stats_duration_seconds"); v <= 0 {
		t.Errorf("iap_ledger_stats_duration_seconds = %v", v)
	}
	// Every durable write waited for a sync round.
	sync := series(t, mfs, "iap_ledger_sync_duration_seconds").GetHistogram()
	batch := series(t, mfs, "iap_ledger_sync_batch_size").GetHistogram()
	if sync.GetSampleCount() == 0 || sync.GetSampleCount() != batch.GetSampleCount() || batch.GetSampleSum() < 9 {
		t.Errorf("sync rounds %d, batches %d holding %v commits", sync.GetSampleCount(), batch.GetSampleCount(), batch.GetSampleSum())
	}
	// The hold operations went through the journal: its checkpoints wrote
	// them into Badger (at the latest for the scrape, which drains it).
	ck := series(t, mfs, "iap_ledger_checkpoint_duration_seconds").GetHistogram()
	if ck.GetSampleCount() == 0 || seriesValue(t, mfs, "iap_ledger_checkpoint_keys_total") < 4 {
		t.Errorf("checkpoints %d, keys %v", ck.GetSampleCount(), seriesValue(t, mfs, "iap_ledger_checkpoint_keys_total"))
	}
	version, revision, _ := badger.Build()
	if v := seriesValue(t, mfs, "iap_build_info", "version", version, "revision", revision, "goversion", runtime.Version()); v != 1 {
		t.Errorf("iap_build_info = %v", v)
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "process_resident_memory_bytes", "process_cpu_seconds_total"} {
		if _, ok := mfs[name]; !ok {
			t.Errorf("%s not exported", name)
		}
	}
	checkPromlint(t, s.ops)

	// /metrics is on the ops listener only.
	if code, _ := get(t, s.public+"/metrics", ""); code == http.StatusOK {
		t.Error("/metrics answers on the public listener")
	}

	// Stop; expire the two due holds as a later clock sees them (one by a
	// capture, one by the sweep); restart on the same data.
	s.stop(t)
	later := time.Now().Add(2 * time.Hour)
	l, err := badger.Open(badger.Options{Dir: data, Now: func() time.Time { return later }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Capture(context.Background(), storage.CaptureRequest{Service: "prov", Transaction: byCapture}); !storage.Is(err, storage.Conflict) {
		t.Fatalf("capture of an expired hold: %v", err)
	}
	if n, err := l.ExpireDue(context.Background(), later, 10); err != nil || n != 1 {
		t.Fatalf("ExpireDue: %d, %v", n, err)
	}
	if tx, err := l.Transaction(context.Background(), bySweep); err != nil || tx.State != storage.Expired {
		t.Fatalf("swept hold: %+v %v", tx, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	s = startServer(t, env, "-data", data)
	mfs = scrapeMetrics(t, s.ops)
	for name := range mfs {
		seen[name] = true
	}
	wantProv["iap_credits_expired_total"] = 2 + 1.5
	wantProv["iap_holds_outstanding"] = 1
	wantProv["iap_holds_outstanding_credits"] = 5
	wantProv["iap_credits_available"] += 3.5
	checkServiceSeries(t, "after expiry and restart", mfs, wantProv)
	checkPromlint(t, s.ops)

	t.Run("docs use only exported series", func(t *testing.T) {
		// Families created on first use by traffic this test does not make
		// (SMS, letters, upstream forwarding) count as exported when the
		// sources define them (metricsdoc_test.go).
		for name := range definedFamilies(t) {
			seen[name] = true
		}
		checkMonitoringDocs(t, seen)
	})
}

// checkServiceSeries checks the series of service "prov".
func checkServiceSeries(t *testing.T, when string, mfs map[string]*dto.MetricFamily, want map[string]float64) {
	t.Helper()
	for name, w := range want {
		if v := seriesValue(t, mfs, name, "service", "prov"); math.Abs(v-w) > 1e-9 {
			t.Errorf("%s: %s{service=\"prov\"} = %v, want %v", when, name, v, w)
		}
	}
}

// publicCall posts an Odoo JSON-RPC call and returns its result, or the
// error's data.name.
func publicCall(t *testing.T, base, path string, params map[string]any) (json.RawMessage, string) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": 1, "params": params})
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Result json.RawMessage
		Error  *struct{ Data struct{ Name string } }
	}
	if err := json.Unmarshal(postRaw(t, base+path, string(body)), &env); err != nil {
		t.Fatal(err)
	}
	if env.Error != nil {
		return nil, env.Error.Data.Name
	}
	return env.Result, ""
}

func postRaw(t *testing.T, url, body string) []byte {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %v %s", url, resp.StatusCode, err, b)
	}
	return b
}

// scrapeMetrics GETs /metrics of the ops listener as Prometheus does and
// parses it with the text parser.
func scrapeMetrics(t *testing.T, ops string) map[string]*dto.MetricFamily {
	t.Helper()
	body := scrapeText(t, ops)
	p := expfmt.NewTextParser(pmodel.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return mfs
}

func scrapeText(t *testing.T, ops string) string {
	t.Helper()
	req, err := http.NewRequest("GET", ops+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v %s", resp.StatusCode, err, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics: Content-Type %q", ct)
	}
	return string(b)
}

// checkPromlint lints a fresh scrape: no problem at all is allowed.
func checkPromlint(t *testing.T, ops string) {
	t.Helper()
	problems, err := promlint.New(strings.NewReader(scrapeText(t, ops))).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// series returns the series of family name with exactly these labels
// (name, value pairs; an empty value is an absent label, as Prometheus
// reads it).
func series(t *testing.T, mfs map[string]*dto.MetricFamily, name string, kv ...string) *dto.Metric {
	t.Helper()
	mf, ok := mfs[name]
	if !ok {
		t.Fatalf("%s not exported", name)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			want[kv[i]] = kv[i+1]
		}
	}
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			if lp.GetValue() != "" {
				labels[lp.GetName()] = lp.GetValue()
			}
		}
		if maps.Equal(labels, want) {
			return m
		}
	}
	t.Fatalf("%s has no series %v", name, kv)
	return nil
}

// seriesValue is the value of a counter, gauge or untyped series.
func seriesValue(t *testing.T, mfs map[string]*dto.MetricFamily, name string, kv ...string) float64 {
	t.Helper()
	m := series(t, mfs, name, kv...)
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	}
	return m.GetUntyped().GetValue()
}

// checkMonitoringDocs parses the Grafana dashboard and the Prometheus
// alerting rules, extracts the metric names of every PromQL expression,
// and checks each is a series iapd exports (exported holds the family
// names a scrape showed; histogram series are name_bucket, _sum, _count).
func checkMonitoringDocs(t *testing.T, exported map[string]bool) {
	known := func(name string) bool {
		if name == "up" || exported[name] { // up: Prometheus's own
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && exported[base] {
				return true
			}
		}
		return false
	}
	root := filepath.Join("..", "..", "docs")

	// The dashboard: every target's expr, and the metrics of the
	// variables' label_values queries.
	raw, err := os.ReadFile(filepath.Join(root, "grafana", "iapd.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("docs/grafana/iapd.json: %v", err)
	}
	var exprs, varQueries []string
	walkJSON(dash, "", func(key, value string) {
		switch key {
		case "expr":
			exprs = append(exprs, value)
		case "definition":
			varQueries = append(varQueries, value)
		}
	})
	if len(exprs) < 15 || len(varQueries) < 3 {
		t.Fatalf("dashboard: %d expressions, %d variable queries", len(exprs), len(varQueries))
	}
	dashMetrics := map[string]bool{}
	for _, e := range exprs {
		for _, m := range promqlMetrics(t, e) {
			dashMetrics[m] = true
			if !known(m) {
				t.Errorf("dashboard uses %s, which iapd does not export: %s", m, e)
			}
		}
	}
	labelValues := regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	for _, q := range varQueries {
		m := labelValues.FindStringSubmatch(q)
		if m == nil || !known(m[1]) {
			t.Errorf("dashboard variable query %q: not label_values of an exported metric", q)
		}
	}
	// What the dashboard is for.
	for _, m := range []string{
		"iap_credits_captured_total", "iap_holds_outstanding", "iap_holds_outstanding_credits", "iap_requests_total",
		"iap_request_duration_seconds_bucket", "iap_ledger_sync_duration_seconds_bucket", "iap_ledger_sync_batch_size_bucket",
		"iap_accounts_below_alert_threshold", "iap_ledger_checkpoint_duration_seconds_bucket",
	} {
		if !dashMetrics[m] {
			t.Errorf("dashboard does not use %s", m)
		}
	}

	// The alerting rules.
	raw, err = os.ReadFile(filepath.Join(root, "prometheus", "iapd-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert  string
				Record string
				Expr   string
				For    string
			}
		}
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("docs/prometheus/iapd-rules.yml: %v", err)
	}
	ruleMetrics := map[string]bool{}
	alerts := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" && r.Record == "" || strings.TrimSpace(r.Expr) == "" {
				t.Errorf("group %s: a rule without a name or an expr: %+v", g.Name, r)
				continue
			}
			if r.Alert != "" {
				alerts++
			}
			if r.For != "" {
				if _, err := pmodel.ParseDuration(r.For); err != nil {
					t.Errorf("rule %s: for %q: %v", r.Alert, r.For, err)
				}
			}
			for _, m := range promqlMetrics(t, r.Expr) {
				ruleMetrics[m] = true
				if !known(m) {
					t.Errorf("rule %s%s uses %s, which iapd does not export: %s", r.Alert, r.Record, m, r.Expr)
				}
			}
		}
	}
	for _, m := range []string{"up", "iap_requests_total", "iap_ledger_sync_duration_seconds_bucket"} {
		if !ruleMetrics[m] {
			t.Errorf("the rules do not use %s", m)
		}
	}
	if alerts < 4 {
		t.Errorf("%d alerts", alerts)
	}
}

// walkJSON calls fn for every string value in v with its key.
func walkJSON(v any, key string, fn func(key, value string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			walkJSON(x, k, fn)
		}
	case []any:
		for _, x := range v {
			walkJSON(x, key, fn)
		}
	case string:
		fn(key, v)
	}
}

// promqlFunctions are PromQL's functions and aggregation operators: an
// identifier followed by "(" must be one of them.
var promqlFunctions = map[string]bool{}

func init() {
	for _, f := range strings.Fields(`abs absent absent_over_time acos acosh asin asinh atan atanh avg avg_over_time
		bottomk ceil changes clamp clamp_max clamp_min cos cosh count count_over_time count_values day_of_month
		day_of_week day_of_year days_in_month deg delta deriv exp floor group histogram_avg histogram_count
		histogram_fraction histogram_quantile histogram_stddev histogram_stdvar histogram_sum holt_winters
		double_exponential_smoothing hour idelta increase irate label_join label_replace last_over_time limitk
		limit_ratio ln log10 log2 mad_over_time max max_over_time min min_over_time minute month pi
		predict_linear present_over_time quantile quantile_over_time rad rate resets round scalar sgn sin sinh
		sort sort_by_label sort_by_label_desc sort_desc sqrt stddev stddev_over_time stdvar stdvar_over_time
		sum sum_over_time tan tanh time timestamp topk vector year`) {
		promqlFunctions[f] = true
	}
}

// promqlKeywords are identifiers that are not metric names.
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true, "offset": true, "bool": true, "atan2": true, "inf": true, "nan": true,
}

var (
	promqlStrings     = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	promqlMatchers    = regexp.MustCompile(`\{[^{}]*\}`)
	promqlRanges      = regexp.MustCompile(`\[[^\[\]]*\]`)
	promqlLabelLists  = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promqlVariables   = regexp.MustCompile(`\$\{?[a-zA-Z_][a-zA-Z0-9_]*\}?`)
	promqlIdentifiers = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// promqlMetrics returns the metric names of a PromQL expression: a simple
// tokenizer, enough for the expressions iapd's docs hold. It drops string
// literals, label matchers, ranges, label lists of by/without/on/ignoring
// and Grafana variables; of the identifiers left, those followed by "("
// must be functions, keywords are skipped, and the rest are metric names.
func promqlMetrics(t *testing.T, expr string) []string {
	t.Helper()
	e := promqlStrings.ReplaceAllString(expr, `""`)
	e = promqlVariables.ReplaceAllString(e, "1")
	e = promqlMatchers.ReplaceAllString(e, "{}")
	e = promqlRanges.ReplaceAllString(e, "[]")
	e = promqlLabelLists.ReplaceAllString(e, " ")
	var out []string
	for _, loc := range promqlIdentifiers.FindAllStringIndex(e, -1) {
		if loc[0] > 0 && strings.ContainsRune("0123456789.", rune(e[loc[0]-1])) {
			continue // part of a number such as 1e3
		}
		id := e[loc[0]:loc[1]]
		call := strings.HasPrefix(strings.TrimLeft(e[loc[1]:], " \t\n"), "(")
		switch {
		case promqlKeywords[strings.ToLower(id)]: // "or (" is an operator, not a call
		case call:
			if !promqlFunctions[id] {
				t.Errorf("%q: unknown function %s", expr, id)
			}
		default:
			if !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	if len(out) == 0 {
		t.Errorf("%q: no metric found", expr)
	}
	return out
}

// TestPromqlMetrics pins the tokenizer the docs check relies on.
func TestPromqlMetrics(t *testing.T) {
	for expr, want := range map[string]string{
		`up{job="iapd"} == 0`: "up",
		`sum by (job, route) (rate(iap_requests_total{outcome=~"internal|unavailable"}[5m])) / sum by (job) (rate(iap_requests_total[5m])) > 0.01`: "iap_requests_total",
		`histogram_quantile(0.99, sum by (le) (rate(iap_ledger_sync_duration_seconds_bucket{job=~"$job"}[$__rate_interval])))`:                     "iap_ledger_sync_duration_seconds_bucket",
		`sum by (route, outcome) (rate(a_total[1m])) / ignoring (outcome) group_left sum by (route) (rate(b_total{x="sum(c)"}[1m]))`:               "a_total b_total",
		`process_resident_memory_bytes > 512 * 1024 * 1e3 and on (instance) go_goroutines offset 5m`:                                               "process_resident_memory_bytes go_goroutines",
		"(a_total > 1)\nor\n(b_total > 2) unless (c_total)":                                                                                        "a_total b_total c_total",
	} {
		if got := strings.Join(promqlMetrics(t, expr), " "); got != want {
			t.Errorf("%s\n got %s\nwant %s", expr, got, want)
		}
	}
}
