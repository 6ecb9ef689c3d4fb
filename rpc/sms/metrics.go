package sms

import "github.com/prometheus/client_golang/prometheus"

// metrics of the SMS service, on the registerer the wiring gives.
type metrics struct {
	messages  *prometheus.CounterVec // by state answered
	segments  prometheus.Counter
	calls     *prometheus.CounterVec // by provider, outcome
	reports   *prometheus.CounterVec // by provider, status
	relayed   *prometheus.CounterVec // by outcome
	queue     prometheus.Gauge
	unheldErr prometheus.Counter
	settled   *prometheus.CounterVec // by outcome (settle.go)
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iap_sms_messages_total",
			Help: "SMS numbers answered, by the state answered to Odoo (success, insufficient_credit, wrong_number_format, …; deferred: left out to be retried).",
		}, []string{"state"}),
		segments: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iap_sms_segments_total",
			Help: "SMS segments accepted by providers and charged.",
		}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iap_sms_provider_messages_total",
			Help: "Messages handed to SMS providers, by provider instance and outcome (accepted, invalid, unavailable, indeterminate).",
		}, []string{"provider", "outcome"}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iap_sms_delivery_reports_total",
			Help: "Delivery reports received from providers, by provider instance and status.",
		}, []string{"provider", "status"}),
		relayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iap_sms_webhook_reports_total",
			Help: "Delivery reports relayed to Odoo webhooks, by outcome (delivered, rejected, expired, retried).",
		}, []string{"outcome"}),
		queue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "iap_sms_webhook_queue_length",
			Help: "Delivery reports waiting to be relayed to Odoo.",
		}),
		unheldErr: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iap_sms_unheld_indeterminate_total",
			Help: "Indeterminate sends whose price could not be kept on hold (logged for reconciliation).",
		}),
		settled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iap_sms_settled_messages_total",
			Help: "Messages of sends interrupted by a crash, settled at start-up, by outcome (captured: a provider accepted them; indeterminate_captured: handed over without an answer recorded, charged as sent; released: never handed over).",
		}, []string{"outcome"}),
	}
	for _, o := range []string{"captured", "indeterminate_captured", "released"} {
		m.settled.WithLabelValues(o) // from 0, for increase() alerts
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.messages, m.segments, m.calls, m.reports, m.relayed, m.queue, m.unheldErr, m.settled} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
