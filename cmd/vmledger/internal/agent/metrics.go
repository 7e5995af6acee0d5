package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are registered on the agent's own registry (never the global
// default one), so two agents in one test process do not collide.
type metrics struct {
	reg          *prometheus.Registry
	appended     prometheus.Counter
	batches      prometheus.Counter
	appendLat    prometheus.Histogram
	events       *prometheus.CounterVec
	domains      prometheus.GaugeFunc
	relayLag     prometheus.GaugeFunc
	lastSeq      prometheus.GaugeFunc
	snapshotsErr prometheus.Counter
}

func newMetrics(domains, relayLag, lastSeq func() float64) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		appended: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vmledger_events_appended_total", Help: "Events durably appended to the log.",
		}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vmledger_append_batches_total", Help: "Group commits (bbolt transactions) of the log.",
		}),
		appendLat: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "vmledger_append_latency_seconds", Help: "Time from an append request to its synced commit.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 14),
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmledger_domain_events_total", Help: "Events committed by the domain service, by type.",
		}, []string{"type"}),
		snapshotsErr: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vmledger_snapshot_errors_total", Help: "Projection snapshots that failed to save.",
		}),
	}
	m.domains = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vmledger_domains", Help: "Defined domains."}, domains)
	m.relayLag = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "vmledger_relay_lag_events", Help: "Committed events not yet confirmed published on NATS.",
	}, relayLag)
	m.lastSeq = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vmledger_last_seq", Help: "Last committed sequence."}, lastSeq)
	m.reg.MustRegister(m.appended, m.batches, m.appendLat, m.events, m.domains, m.relayLag, m.lastSeq, m.snapshotsErr,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// Committed implements store.Observer.
func (m *metrics) Committed(events, batch int, latency time.Duration) {
	m.appended.Add(float64(events))
	m.batches.Inc()
	m.appendLat.Observe(latency.Seconds())
}
