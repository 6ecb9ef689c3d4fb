package metrics

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRegisterSandbox(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if err := RegisterSandbox(reg, map[string]bool{"sms": true, "snailmail": false}); err != nil {
		t.Fatal(err)
	}
	want := `# HELP iap_provider_sandbox 1 when the service runs on a sandbox provider that sends nothing for real (outbox, a folder without dir, the sample company directory), else 0.
# TYPE iap_provider_sandbox gauge
iap_provider_sandbox{service="sms"} 1
iap_provider_sandbox{service="snailmail"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "iap_provider_sandbox"); err != nil {
		t.Error(err)
	}
}

// The parts are exported as read; a failed read costs this family only.
func TestLedgerSizeCollector(t *testing.T) {
	var fail error
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewLedgerSizeCollector(func() (LedgerFiles, error) {
		return LedgerFiles{Tables: 1, ValueLog: 2, Memtables: 3, Journal: 4, Other: 5}, fail
	}))
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 {
		t.Fatalf("gather: %v %v", mfs, err)
	}
	got := map[string]float64{}
	for _, m := range mfs[0].GetMetric() {
		got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
	}
	want := map[string]float64{"tables": 1, "value_log": 2, "memtables": 3, "journal": 4, "other": 5}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("part %s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	fail = errors.New("listing failed")
	if _, err := reg.Gather(); err == nil || !strings.Contains(err.Error(), "listing failed") {
		t.Errorf("a failed read: %v", err)
	}
}
