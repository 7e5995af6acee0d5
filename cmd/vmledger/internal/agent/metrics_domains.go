package agent

import (
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/procfs"

	"github.com/vmledger/vmledger/cmd/vmledger/internal/buildinfo"
	"github.com/vmledger/vmledger/domains"
)

// metricStates are the states vmledger_domain_state has a series for, so
// a domain's series exist in every state (0) and a query can tell "not
// running" from "no data".
var metricStates = []domains.State{domains.StateShutoff, domains.StateRunning, domains.StatePaused, domains.StateShutdown, domains.StateCrashed}

// commandMetrics count and time every verb the command service answers,
// by the reply's code ("ok" or the error code: invalid, not_found, ...).
type commandMetrics struct {
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newCommandMetrics() commandMetrics {
	return commandMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmledger_commands_total", Help: "Commands answered, by verb and result code (ok, invalid, not-found, conflict, unavailable, internal).",
		}, []string{"verb", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "vmledger_command_duration_seconds", Help: "Time from a command's decode to its reply, by verb and result code.",
			// 100µs (a read) to ~100s (a start that waits for QEMU, a save).
			Buckets: prometheus.ExponentialBuckets(100e-6, 4, 11),
		}, []string{"verb", "code"}),
	}
}

// pidFinder finds a running domain's QEMU process (qemu.Driver.PIDOf).
type pidFinder interface {
	PIDOf(id uuid.UUID) (int, bool)
}

// domainCollector reads each domain's state from the projection and its
// QEMU's CPU time and RSS from /proc at scrape time: nothing is kept
// between scrapes, so an undefined domain's series simply disappear. It
// reads rows (name, UUID, state), not domains: a scrape copies no config.
type domainCollector struct {
	list  func() []domains.Row
	procs func() pidFinder // nil result: no hypervisor
	proc  procfs.FS

	state, cpu, rss *prometheus.Desc
}

func newDomainCollector(list func() []domains.Row, procs func() pidFinder) (*domainCollector, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return nil, err
	}
	return &domainCollector{
		list: list, procs: procs, proc: fs,
		state: prometheus.NewDesc("vmledger_domain_state", "1 for the domain's current state, 0 for the others (virsh domstate).",
			[]string{"name", "uuid", "state"}, nil),
		cpu: prometheus.NewDesc("vmledger_domain_qemu_cpu_seconds_total", "CPU time (user and system) of the domain's QEMU process.",
			[]string{"name", "uuid"}, nil),
		rss: prometheus.NewDesc("vmledger_domain_qemu_resident_memory_bytes", "Resident memory of the domain's QEMU process (guest RAM it touched included).",
			[]string{"name", "uuid"}, nil),
	}, nil
}

func (c *domainCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.state
	ch <- c.cpu
	ch <- c.rss
}

func (c *domainCollector) Collect(ch chan<- prometheus.Metric) {
	procs := c.procs()
	for _, d := range c.list() {
		name, id := d.Name, d.UUID.String()
		for _, s := range metricStates {
			v := 0.0
			if d.State == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, name, id, string(s))
		}
		if procs == nil || !d.State.Active() {
			continue
		}
		pid, ok := procs.PIDOf(d.UUID)
		if !ok {
			continue
		}
		p, err := c.proc.Proc(pid)
		if err != nil {
			continue // exited between the pid check and now
		}
		st, err := p.Stat()
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.CounterValue, st.CPUTime(), name, id)
		ch <- prometheus.MustNewConstMetric(c.rss, prometheus.GaugeValue, float64(st.ResidentMemory()), name, id)
	}
}

// buildInfoGauge is vmledger_build_info, 1 with the build as labels, the
// Prometheus convention for joining a version onto other series.
func buildInfoGauge() prometheus.Gauge {
	in := buildinfo.Read()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vmledger_build_info", Help: "1, labelled with the agent's module version, VCS revision and Go version.",
		ConstLabels: prometheus.Labels{"version": in.Version, "revision": in.Revision, "goversion": in.GoVersion},
	})
	g.Set(1)
	return g
}

// registerDomainMetrics adds the per-domain collector; the service and the
// driver exist by the time the metrics step runs.
func (a *agent) registerDomainMetrics() error {
	rows := func() []domains.Row { return a.svc.Rows("") }
	c, err := newDomainCollector(rows, func() pidFinder {
		if a.driver == nil {
			return nil
		}
		return a.driver
	})
	if err != nil {
		return fmt.Errorf("domain metrics: %w", err)
	}
	return a.metrics.reg.Register(c)
}

// readiness is /readyz: the agent has opened its log, joined the bus and
// serves commands, the log accepts appends, and NATS is connected. A
// supervisor or load balancer waits for it after a start, and stops
// sending work while it answers 503.
func (a *agent) readiness() error {
	switch {
	case !a.ready.Load():
		return errors.New("not ready: starting or stopping")
	case !a.nc.IsConnected():
		return fmt.Errorf("not ready: NATS %s", a.nc.Status())
	}
	if err := a.store.Health(); err != nil {
		return fmt.Errorf("event log: %w", err)
	}
	return nil
}
