// Package agent assembles the vmledger daemon: the store, the bus, the
// domains service and the hypervisor, started as named steps and stopped
// in reverse.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
	"github.com/vmledger/vmledger/domains/owner"
	"github.com/vmledger/vmledger/hypervisor/qemu"
	"github.com/vmledger/vmledger/store"
)

// Config is the agent's configuration (flags of `vmledger agent`).
type Config struct {
	StateDir   string
	Host       string
	NATSURL    string // empty: run an embedded server
	NATSListen string // embedded server's host:port
	NATSCreds  string
	// NATSNKey is an nkey seed file for an external server that knows the
	// agent as an nkey user (docs/bus.md, Identities).
	NATSNKey string
	// NATSNoAuth runs the embedded server without its token (any local
	// user can then command the agent).
	NATSNoAuth bool
	// NATSClusterListen, when set, makes the embedded server listen for
	// routes there and join NATSRoutes (one cluster of several agents).
	NATSClusterListen string
	NATSRoutes        []string
	// Stream, StreamReplicas, NATSJetStream: the relay's JetStream mode
	// and the embedded server's JetStream (jetstream.go).
	Stream         string
	StreamReplicas int
	NATSJetStream  bool
	MetricsAddr    string // empty: no metrics endpoint
	SnapshotEvery  uint64 // events between projection snapshots
	// Accel is auto (KVM where /dev/kvm opens, else TCG), kvm, tcg, or
	// none (no hypervisor: lifecycle verbs answer unavailable).
	Accel      string
	RunDir     string // per-guest sockets, pid files, RAM; default <StateDir>/run
	QEMUBinary string
	// AllowDirs are the directories every file a command names (disks,
	// kernels, initrds, save images, dumps) must lie in (default
	// <StateDir>/images, made at start; docs/security.md).
	AllowDirs []string
	Log       zerolog.Logger
	Security  // TLS, exposure, confinement (security.go)
	// Ready, if set, is called once the agent serves commands.
	Ready func(Info)
}

// Info describes a running agent.
type Info struct {
	Host        string
	NATSURL     string
	MetricsAddr string
	LastSeq     uint64
	Domains     int
}

// Version is reported by the command service's $SRV.INFO.
const Version = "0.1.0"

// DBFile is the log's file name inside the state directory.
const DBFile = "events.db"

// Run starts the agent and serves until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	a := &agent{cfg: cfg, log: cfg.Log}
	if err := a.validate(); err != nil {
		return err
	}
	st := &steps{log: a.log}
	stopCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	}
	if err := st.run(ctx, a.steps()...); err != nil {
		uctx, cancel := stopCtx()
		defer cancel()
		return errors.Join(err, st.unwind(uctx))
	}
	a.ready.Store(true) // before "agent ready": whoever reads that line may probe /readyz
	// The URL may carry a token (--nats-url nats://TOKEN@...): never log it.
	info := Info{Host: cfg.Host, NATSURL: bus.RedactURL(a.natsURL), MetricsAddr: a.metricsAddr, LastSeq: a.svc.LastSeq(), Domains: a.svc.Len()}
	tokenFile := ""
	if a.natsToken != "" {
		tokenFile = filepath.Join(a.cfg.StateDir, TokenFile)
	}
	a.log.Info().Str("host", info.Host).Str("nats", info.NATSURL).Str("nats_token_file", tokenFile).Str("metrics", info.MetricsAddr).Uint64("last_seq", info.LastSeq).
		Int("domains", info.Domains).Str("state_dir", cfg.StateDir).Msg("agent ready")
	if cfg.Ready != nil {
		cfg.Ready(info)
	}
	<-ctx.Done()
	a.ready.Store(false)
	a.log.Info().Msg("agent stopping")
	uctx, cancel := stopCtx()
	defer cancel()
	return st.unwind(uctx)
}

type agent struct {
	cfg Config
	log zerolog.Logger

	store       *store.Store
	proj        *domains.Projection
	embedded    *bus.Embedded
	nc          *nats.Conn
	natsURL     string
	natsToken   string
	svc         *owner.Service
	reconciler  atomic.Pointer[owner.Service] // svc, for the store's writer goroutine (reconcile.go)
	metrics     *metrics
	relay       *bus.Relay
	metricsAddr string
	driver      *qemu.Driver
	metricsSrv  *http.Server
	relayStop   func()
	consoles    *consoles
	folded      chan struct{} // signalled after the service folds a commit
	consoleStop func()
	snapStop    func()

	history  *bus.HistoryService
	commands *bus.CommandService
	ready    atomic.Bool // every step has run; cleared when stopping (readyz)
}

func (a *agent) validate() error {
	a.folded = make(chan struct{}, 1)
	c := &a.cfg
	if !domains.ValidName(c.Host) {
		return domains.Errorf(domains.CodeInvalid, "host %s: must be a NATS subject token (letters, digits, '-', '_')", domains.Quote(c.Host))
	}
	if c.StateDir == "" {
		return domains.Errorf(domains.CodeInvalid, "state directory: must be set")
	}
	abs, err := filepath.Abs(c.StateDir)
	if err != nil {
		return domains.Errorf(domains.CodeInvalid, "state directory %s: %w", domains.Quote(c.StateDir), err)
	}
	c.StateDir = abs
	if c.NATSNoAuth && c.NATSURL == "" {
		host, _, err := splitListen(c.NATSListen)
		if err != nil {
			return err
		}
		if !isLoopback(host) {
			return domains.Errorf(domains.CodeInvalid, "--nats-no-auth with --nats-listen %s: without its token the embedded server must listen on loopback only (127.0.0.1, ::1 or localhost), or anyone who reaches the port commands this agent", domains.Quote(c.NATSListen))
		}
	}
	if c.NATSURL != "" && (c.NATSClusterListen != "" || len(c.NATSRoutes) > 0) {
		return domains.Errorf(domains.CodeInvalid, "--nats-cluster-listen and --nats-routes are for the embedded server; with --nats-url the cluster is the external servers'")
	}
	if len(c.NATSRoutes) > 0 && c.NATSClusterListen == "" {
		return domains.Errorf(domains.CodeInvalid, "--nats-routes needs --nats-cluster-listen")
	}
	if c.NATSNoAuth && c.NATSClusterListen != "" {
		host, _, err := splitListen(c.NATSClusterListen)
		if err != nil {
			return err
		}
		if !isLoopback(host) {
			return domains.Errorf(domains.CodeInvalid, "--nats-no-auth with --nats-cluster-listen %s: routes without the token must stay on loopback", domains.Quote(c.NATSClusterListen))
		}
	}
	if err := a.validateSecurity(); err != nil {
		return err
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = 10000
	}
	return validateJetStream(c)
}

func (a *agent) steps() []step {
	return []step{
		{name: "state directory", do: a.stateDir},
		{name: "event log", do: a.openStore, undo: func(context.Context) error { return a.store.Close() }},
		{name: "projection", do: a.loadProjection},
		{name: "hypervisor", do: a.startHypervisor},
		{name: "nats", do: a.startNATS, undo: a.stopNATS},
		{name: "domain service", do: a.startService, undo: a.stopService},
		{name: "guest recovery", do: func(ctx context.Context) error {
			if err := a.svc.Recover(ctx); err != nil {
				a.log.Warn().Err(err).Msg("some guests could not be recovered")
			}
			return nil
		}},
		{name: "autostart", do: a.autostart}, // autostart.go
		{name: "snapshots", do: a.startSnapshots, undo: a.stopSnapshots},
		{name: "relay", do: a.startRelay, undo: a.stopRelay},
		{name: "history service", do: a.startHistory, undo: func(ctx context.Context) error { return a.history.Stop(ctx) }},
		{name: "command service", do: a.startCommands, undo: func(ctx context.Context) error { return a.commands.Stop(ctx) }},
		{name: "consoles", do: a.startConsoles, undo: a.stopConsoles},
		{name: "metrics", do: a.startMetrics, undo: a.stopMetrics},
	}
}

func (a *agent) stateDir(context.Context) error {
	if err := os.MkdirAll(a.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", a.cfg.StateDir, err)
	}
	fi, err := os.Stat(a.cfg.StateDir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", a.cfg.StateDir)
	}
	if err := a.owned(a.cfg.StateDir, fi); err != nil {
		return err
	}
	// A directory others may enter is fixed, not refused: its mode is no
	// secret, and the files in it are 0600 (a loose token is refused on
	// its own, see loadOrCreateToken). A directory made by a package
	// manager or mkdir is often 0755, and should not stop the agent.
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		if err := os.Chmod(a.cfg.StateDir, perm&0o700|0o700); err != nil {
			return fmt.Errorf("%s: mode %04o lets others in, and chmod 700 failed: %w", a.cfg.StateDir, perm, err)
		}
		a.log.Warn().Str("path", a.cfg.StateDir).Str("was", fmt.Sprintf("%04o", perm)).Msg("state directory let group or others in: set its mode to 0700")
	}
	return nil
}

// owned refuses a state file that belongs to another user: whoever owns
// it can change the log or the token under the agent.
func (a *agent) owned(path string, fi os.FileInfo) error {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		a.log.Error().Str("path", path).Uint32("uid", st.Uid).Msg("refusing a state file owned by another user")
		return domains.Errorf(domains.CodeInvalid, "%s: owned by uid %d, not by this agent's user (%d)", path, st.Uid, os.Geteuid())
	}
	return nil
}

// private refuses, as ssh refuses loose keys, a secret file others may
// read or write or that belongs to another user. Refused rather than
// fixed: what was readable may have been read, so it needs replacing.
func (a *agent) private(path string, fi os.FileInfo, fix string) error {
	if err := a.owned(path, fi); err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		a.log.Error().Str("path", path).Str("mode", fmt.Sprintf("%04o", perm)).Msg("refusing a secret file others may read")
		return domains.Errorf(domains.CodeInvalid, "%s: mode %04o: group and others must have no access (anyone who read it may command this agent); fix: %s", path, perm, fix)
	}
	return nil
}

// isLoopback reports whether a listen host reaches this machine only.
func isLoopback(host string) bool { return bus.IsLoopback(host) }

func (a *agent) openStore(context.Context) error {
	// The gauges are read at scrape time; each part may not exist yet (the
	// store opens below, the service and relay start later steps).
	a.metrics = newMetrics(
		func() float64 {
			if a.svc == nil {
				return 0
			}
			return float64(a.svc.Len()) // not List: that copies every config
		},
		func() float64 {
			if a.relay == nil {
				return 0
			}
			return float64(a.relay.Lag())
		},
		func() float64 {
			if a.store == nil {
				return 0
			}
			return float64(a.store.LastSeq())
		},
		func() float64 {
			if a.store == nil || a.store.Health() != nil {
				return 0
			}
			return 1
		},
	)
	s, err := store.Open(filepath.Join(a.cfg.StateDir, DBFile), store.Options{Observer: a.metrics, OnHealth: a.storeHealth})
	if err != nil {
		return err
	}
	a.store = s
	return nil
}

// storeHealth is told, from the store's writer, when the log stops
// accepting appends and when it has recovered by itself (docs/store.md).
func (a *agent) storeHealth(err error) {
	if err != nil {
		a.metrics.storeBroken.Inc()
		a.log.Error().Err(err).Str("path", filepath.Join(a.cfg.StateDir, DBFile)).
			Msg("event log: a commit failed; every change is refused until the log recovers (retrying; a full disk?)")
		return
	}
	a.log.Info().Uint64("last_seq", a.store.LastSeq()).Msg("event log: recovered, changes accepted again")
	a.reconcileSoon()
}

func (a *agent) loadProjection(ctx context.Context) error {
	t0 := time.Now()
	p, err := store.LoadProjection(ctx, a.store)
	if err != nil {
		return err
	}
	a.proj = p
	a.log.Info().Uint64("last_seq", p.LastSeq()).Int("domains", p.Len()).Dur("took_ms", time.Since(t0)).Msg("projection loaded")
	return nil
}

// startHypervisor resolves the accelerator once; every guest of this agent
// uses it, and the log says which.
func (a *agent) startHypervisor(ctx context.Context) error {
	if a.cfg.Accel == "none" {
		a.log.Warn().Msg("hypervisor: none (--accel none): lifecycle verbs will answer unavailable")
		return nil
	}
	if a.cfg.RunDir == "" {
		a.cfg.RunDir = filepath.Join(a.cfg.StateDir, "run")
	}
	d, err := qemu.New(qemu.Options{RunDir: a.cfg.RunDir, Binary: a.cfg.QEMUBinary, Accel: a.cfg.Accel,
		Protected: []string{a.cfg.StateDir}, User: a.cfg.QEMUUser, Log: a.log.With().Str("component", "qemu").Logger()})
	if err != nil {
		// Only a QEMU that is simply not installed makes "auto" fall back
		// to no hypervisor. Anything the user named (--qemu, a run
		// directory too long for socket paths) that cannot work fails the
		// start: serving without guests would hide the mistake.
		auto := a.cfg.Accel == "auto" || a.cfg.Accel == ""
		if auto && a.cfg.QEMUBinary == "" && errors.Is(err, exec.ErrNotFound) {
			a.log.Warn().Err(err).Msg("hypervisor: none: QEMU is not installed; lifecycle verbs will answer unavailable")
			return nil
		}
		return domains.Errorf(domains.CodeInvalid, "%w", err)
	}
	vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	version, err := d.Version(vctx)
	if err != nil {
		return domains.Errorf(domains.CodeInvalid, "%w", err)
	}
	a.driver = d
	a.log.Info().Str("accel", d.Accel()).Str("run_dir", d.RunDir()).Str("version", version).Msg("hypervisor: QEMU")
	return nil
}

// domainDriver is the driver as the service sees it: a nil interface, not
// a typed nil pointer, when there is none.
func (a *agent) domainDriver() domains.Driver {
	if a.driver == nil {
		return nil
	}
	return a.driver
}

func (a *agent) startNATS(ctx context.Context) error {
	url := a.cfg.NATSURL
	if url == "" {
		host, port, err := splitListen(a.cfg.NATSListen)
		if err != nil {
			return err
		}
		if port == 0 {
			port = -1 // nats-server's "pick a free port"; its 0 means 4222
		}
		token := ""
		var ids []bus.Identity
		if !a.cfg.NATSNoAuth {
			if token, err = a.loadOrCreateToken(a.cfg.StateDir); err != nil {
				return err
			}
			if ids, err = a.loadOrCreateIdentities(a.cfg.StateDir); err != nil {
				return err
			}
		}
		eo := bus.EmbeddedOptions{Host: host, Port: port, Token: token, Logger: a.log, ServerName: "vmledger-" + a.cfg.Host,
			Identities: ids, ReadVerbs: ReadVerbs(), JetStream: a.embeddedJetStream(), TLS: a.cfg.serverTLS()}
		if a.cfg.NATSClusterListen != "" {
			ch, cp, err := splitListen(a.cfg.NATSClusterListen)
			if err != nil {
				return err
			}
			if cp == 0 {
				cp = -1
			}
			eo.Cluster = &bus.ClusterOptions{Host: ch, Port: cp, Routes: a.cfg.NATSRoutes}
			// Nodes share the token, not their nkeys: an agent failing
			// over to another node can only present the token, so in a
			// cluster the token keeps the agent's rights.
			eo.TokenRole = bus.RoleAgent
		}
		e, err := bus.StartEmbedded(ctx, eo)
		if err != nil {
			return err
		}
		a.embedded, url, a.natsToken = e, e.ClientURL(), token
	}
	co := bus.ConnectOptions{Name: "vmledger-agent-" + a.cfg.Host, CredsFile: a.cfg.NATSCreds, NKeyFile: a.cfg.NATSNKey, Token: a.natsToken, Logger: a.log}
	if a.embedded != nil && a.natsToken != "" && a.cfg.NATSClusterListen == "" {
		// The token no longer has the agent's rights: the agent is its
		// own identity.
		co.Token, co.NKeyFile = "", IdentityFile(a.cfg.StateDir, bus.RoleAgent)
	}
	nc, err := a.connectNATS(ctx, url, co)
	if err != nil {
		if a.embedded != nil {
			_ = a.embedded.Shutdown(ctx)
		}
		return err
	}
	a.nc, a.natsURL = nc, url
	return nil
}

func (a *agent) stopNATS(ctx context.Context) error {
	var err error
	if a.nc != nil {
		err = a.nc.Drain()
		a.nc.Close()
	}
	if a.embedded != nil {
		err = errors.Join(err, a.embedded.Shutdown(ctx))
	}
	return err
}

func (a *agent) startService(context.Context) error {
	images, managed, err := a.imageDirs()
	if err != nil {
		return err
	}
	a.svc = owner.NewService(owner.Options{
		Images: images, Paths: images, ManagedSaveDir: managed, DumpDir: filepath.Join(a.cfg.StateDir, DumpsDir), Peers: newPeers(a.nc),
		// The guard refuses an event the bus could never carry whole
		// (docs/bus.md, Limits) before the log sees it.
		Log: bus.GuardEventLog(a.store.EventLog(), a.eventCheck()), Driver: a.domainDriver(), Host: a.cfg.Host, Projection: a.proj,
		OnCommit: func(e domains.Event) {
			a.metrics.events.WithLabelValues(string(e.Type)).Inc()
			select { // the projection has folded e: wake the console loop
			case a.folded <- struct{}{}:
			default:
			}
		},
		// Progress goes on the bus only (never into the log); Publish
		// buffers, so a slow subscriber never holds up a job.
		OnProgress: func(id uuid.UUID, j domains.JobInfo) {
			if b, err := json.Marshal(j); err == nil {
				_ = a.nc.Publish(bus.JobProgressSubject(a.cfg.Host, id), b)
			}
		},
	})
	a.proj = nil // the service owns it now
	a.reconciler.Store(a.svc)
	return nil
}

// stopService detaches from guests (they keep running) and waits for the
// service's goroutines.
// eventCheck refuses events the bus could not carry whole (bus.CheckEventSize).
func (a *agent) eventCheck() func(domains.Event) error {
	return bus.CheckEventSize(a.cfg.Host, a.nc.MaxPayload)
}

func (a *agent) stopService(context.Context) error {
	a.svc.Close()
	return nil
}

func (a *agent) startRelay(ctx context.Context) error {
	a.relay = bus.NewRelay(a.nc, a.store, a.relayOptions())
	if err := a.ensureStream(ctx); err != nil {
		return err
	}
	// Events an older log holds that are too large for NATS go out as
	// placeholders (docs/bus.md, Limits): worth an alert, not a stall.
	if err := a.metrics.reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "vmledger_relay_truncated_events_total",
		Help: "Events published as placeholders because their JSON exceeds the NATS max payload (counted again when resent).",
	}, func() float64 { return float64(a.relay.Truncated()) })); err != nil {
		return fmt.Errorf("relay metric: %w", err)
	}
	a.relayStop = background(func(ctx context.Context) {
		if err := a.relay.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			a.log.Error().Err(err).Msg("relay stopped")
		}
	})
	return nil
}

// stopRelay gives the relay a moment to publish what was committed last
// (woken by the relay as it confirms, not by polling).
func (a *agent) stopRelay(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := a.relay.WaitPublished(wctx, a.store.LastSeq()); err != nil {
		a.log.Warn().Err(err).Msg("relay stopped before publishing everything; the next agent publishes the rest")
	}
	a.relayStop()
	return nil
}

func (a *agent) startHistory(ctx context.Context) error {
	// Not ctx: SIGTERM must not cancel requests in flight; Stop drains them.
	h, err := bus.StartHistory(context.WithoutCancel(ctx), a.nc, a.store, bus.HistoryOptions{Host: a.cfg.Host, Logger: a.log,
		Version: Version, Consoles: consoleLookup{a}})
	a.history = h
	return err
}

func (a *agent) startCommands(ctx context.Context) error {
	h := observed{next: api.Handler{Svc: a.svc, Log: a.store, CheckEvent: a.eventCheck()}, lookup: a.svc, metrics: a.metrics.commands,
		log: a.log.With().Str("component", "commands").Logger(), reads: ReadVerbs()}
	c, err := bus.StartCommands(context.WithoutCancel(ctx), a.nc, h, bus.CommandOptions{
		Host: a.cfg.Host, Verbs: api.Verbs(), ReadVerbs: ReadVerbs(), PeerVerbs: api.PeerVerbs(), Version: Version, Logger: a.log,
	})
	a.commands = c
	return err
}

func (a *agent) startMetrics(context.Context) error {
	if a.cfg.MetricsAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", a.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	a.metricsAddr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
	mux.Handle("/healthz", probe("event log", a.store.Health))
	mux.Handle("/readyz", probe("agent", a.readiness))
	if err := a.registerDomainMetrics(); err != nil {
		ln.Close()
		return err
	}
	a.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = a.metricsSrv.Serve(ln) }()
	return nil
}

func (a *agent) stopMetrics(ctx context.Context) error {
	if a.metricsSrv == nil {
		return nil
	}
	return a.metricsSrv.Shutdown(ctx)
}

// background runs fn until the returned stop is called; stop waits for it.
func background(fn func(ctx context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); fn(ctx) }()
	return func() { cancel(); <-done }
}

func splitListen(s string) (string, int, error) {
	if s == "" {
		return "127.0.0.1", 4222, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, domains.Errorf(domains.CodeInvalid, "--nats-listen %s: %w", domains.Quote(s), err)
	}
	var p int
	if _, err := fmt.Sscanf(port, "%d", &p); err != nil || p < -1 || p > 65535 {
		return "", 0, domains.Errorf(domains.CodeInvalid, "--nats-listen %s: bad port", domains.Quote(s))
	}
	return host, p, nil
}
