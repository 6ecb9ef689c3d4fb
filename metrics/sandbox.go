package metrics

import "github.com/prometheus/client_golang/prometheus"

// RegisterSandbox registers iap_provider_sandbox{service} on reg: 1 for a
// service served by at least one provider that sends nothing for real
// (providers.Sandboxed), 0 for a service whose providers are all real. The
// values are set once, at start-up: the providers do not change while iapd
// runs. A gauge per service rather than one info series, so that the
// alert names the service and a dashboard can sum them.
func RegisterSandbox(reg prometheus.Registerer, services map[string]bool) error {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "iap_provider_sandbox",
		Help: "1 when the service runs on a sandbox provider that sends nothing for real (outbox, a folder without dir, the sample company directory), else 0.",
	}, []string{"service"})
	for svc, on := range services {
		v := 0.0
		if on {
			v = 1
		}
		g.WithLabelValues(svc).Set(v)
	}
	return reg.Register(g)
}
