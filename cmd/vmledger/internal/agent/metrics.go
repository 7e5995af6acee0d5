package agent

import (
	"fmt"
	"net/http"
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
	storeOK      prometheus.GaugeFunc
	storeBroken  prometheus.Counter
	commands     commandMetrics
}

func newMetrics(domains, relayLag, lastSeq, storeHealthy func() float64) *metrics {
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
		commands: newCommandMetrics(),
		storeBroken: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vmledger_store_failures_total", Help: "Times the event log stopped accepting appends (a commit failed: disk full, I/O error).",
		}),
	}
	m.storeOK = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "vmledger_store_healthy", Help: "1 while the event log accepts appends, 0 while it is broken and retrying (see /healthz).",
	}, storeHealthy)
	m.domains = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vmledger_domains", Help: "Defined domains."}, domains)
	m.relayLag = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "vmledger_relay_lag_events", Help: "Committed events not yet confirmed published on NATS.",
	}, relayLag)
	m.lastSeq = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vmledger_last_seq", Help: "Last committed sequence."}, lastSeq)
	m.reg.MustRegister(m.appended, m.batches, m.appendLat, m.events, m.domains, m.relayLag, m.lastSeq, m.snapshotsErr, m.storeOK, m.storeBroken,
		m.commands.total, m.commands.duration, buildInfoGauge(),
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// Committed implements store.Observer.
func (m *metrics) Committed(events, batch int, latency time.Duration) {
	m.appended.Add(float64(events))
	m.batches.Inc()
	m.appendLat.Observe(latency.Seconds())
}

// probe answers 200 "ok" while check passes, else 503 with the reason: a
// load balancer or a supervisor can act on it. /healthz checks that the
// agent can record events; /readyz that it also serves (readiness).
func probe(what string, check func() error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := check(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "%s: %v\n", what, err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
}
