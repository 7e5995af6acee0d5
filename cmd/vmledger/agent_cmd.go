package main

import (
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/cmd/vmledger/internal/agent"
	"github.com/vmledger/vmledger/domains"
)

func defaultStateDir() string {
	if d := os.Getenv("VMLEDGER_STATE_DIR"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/lib/vmledger"
	}
	if d, err := os.UserHomeDir(); err == nil {
		return filepath.Join(d, ".local", "state", "vmledger")
	}
	return ".vmledger"
}

func newAgentCmd() *cobra.Command {
	var cfg agent.Config
	var level, format, profile string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the vmledger daemon: event log, NATS bus, domain service",
		Long: `Run the agent. It keeps the event log (bbolt) under --state-dir, serves
commands on vmledger.cmd.<host>.<verb>, publishes every committed event on
vmledger.evt.<host>.<domain>.<type> and answers history requests on
vmledger.api.<host>.history.

Without --nats-url it runs an embedded NATS server on --nats-listen
(loopback by default). It stops cleanly on SIGTERM or SIGINT; running
guests keep running and are reattached at the next start; a QEMU whose
start an agent crash cut short is killed (or, if it already ran the
guest, recorded as started).

It refuses to start (exit 2) when asked for something that cannot work:
a --qemu or --run-dir QEMU cannot use, --nats-no-auth on a non-loopback
address, a non-loopback --nats-listen or --nats-cluster-listen without
TLS (--nats-tls-cert/--nats-tls-key) or --insecure, a nats.token that
group or others may read. A state directory
that group or others may enter is set to 0700, with a warning.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := newLogger(level, format)
			if err != nil {
				return err
			}
			cfg.Log = log
			switch cfg.Accel {
			case "auto", "kvm", "tcg", "none":
			default:
				return usagef("--accel %s: want auto, kvm, tcg or none", domains.Quote(cfg.Accel))
			}
			return withCPUProfile(profile, func() error { return agent.Run(cmd.Context(), cfg) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.StateDir, "state-dir", defaultStateDir(), "directory for the event log and run files (env VMLEDGER_STATE_DIR)")
	f.StringVar(&cfg.Host, "host", envOr("VMLEDGER_HOST", defaultHost()), "this agent's host name in NATS subjects (env VMLEDGER_HOST)")
	f.StringVar(&cfg.NATSURL, "nats-url", os.Getenv("VMLEDGER_AGENT_NATS_URL"), "external NATS server or cluster (comma-separated URLs); empty: embedded server")
	f.StringVar(&cfg.NATSListen, "nats-listen", "127.0.0.1:4222", "embedded NATS server's listen address")
	f.StringVar(&cfg.NATSClusterListen, "nats-cluster-listen", "", "the embedded server also listens for routes here (HOST:PORT) and forms a cluster with --nats-routes; routes authenticate with the token, so every agent of the cluster needs the same <state-dir>/nats.token")
	f.StringSliceVar(&cfg.NATSRoutes, "nats-routes", nil, "other agents' route URLs (nats-route://HOST:PORT, comma-separated or repeated), without credentials")
	f.StringVar(&cfg.Stream, "jetstream", "", "also store every event in this JetStream stream (created if missing, capturing vmledger.evt.>), deduplicated by Nats-Msg-Id <host>-<seq>; the relay then waits for the stream's acks (docs/bus.md, Fleet history)")
	f.IntVar(&cfg.StreamReplicas, "jetstream-replicas", 1, "replicas of a stream --jetstream creates (a NATS cluster with JetStream: up to its node count)")
	f.BoolVar(&cfg.NATSJetStream, "nats-jetstream", false, "enable JetStream in the embedded NATS server (a single host; store in <state-dir>/jetstream)")
	f.StringVar(&cfg.NATSCreds, "nats-creds", os.Getenv("VMLEDGER_NATS_CREDS"), "NATS credentials file for an external server")
	f.StringVar(&cfg.NATSNKey, "nats-nkey", os.Getenv("VMLEDGER_NATS_NKEY"), "NATS nkey seed file for an external server that knows the agent as an nkey user (docs/bus.md, Identities)")
	f.BoolVar(&cfg.NATSNoAuth, "nats-no-auth", false, "run the embedded NATS server without its token (<state-dir>/nats.token): any local user could then command this agent; refused unless --nats-listen is a loopback address")
	f.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics (/metrics), a health answer (/healthz: 200 or 503) and readiness (/readyz: 200 once serving, 503 while starting, stopping, off NATS or with a broken log) on this address (e.g. 127.0.0.1:9464); empty: off")
	f.StringVar(&cfg.Accel, "accel", "auto", "accelerator: auto (KVM where /dev/kvm opens, else TCG; no hypervisor only when QEMU is not installed and --qemu is not given), kvm, tcg, or none (no hypervisor)")
	f.StringVar(&cfg.RunDir, "run-dir", "", "per-guest sockets, pid files and RAM files (default <state-dir>/run; keep it short: socket paths are limited to 107 bytes)")
	f.StringVar(&cfg.QEMUBinary, "qemu", "", "QEMU binary (default qemu-system-x86_64 on PATH); one that cannot be run fails the start")
	f.StringArrayVar(&cfg.AllowDirs, "allow-dir", nil, "a directory the files commands name must lie in: disks, kernels, initrds, save images, dumps (repeatable; default <state-dir>/images); checked at define and again at use, through symlinks, by device and inode; paths with \"..\" and devices (see --allow-device) are refused")
	registerSecurityFlags(f, &cfg.Security)
	f.Uint64Var(&cfg.SnapshotEvery, "snapshot-every", 10000, "events between projection snapshots")
	f.StringVar(&level, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&format, "log-format", "json", "log format: json or console")
	registerProfileFlag(f, &profile)
	return cmd
}

func newLogger(level, format string) (zerolog.Logger, error) {
	lv, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Logger{}, usagef("--log-level %s: want debug, info, warn or error", domains.Quote(level))
	}
	var l zerolog.Logger
	switch format {
	case "json":
		l = zerolog.New(os.Stderr)
	case "console":
		l = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: logTimeFormat,
			FormatTimestamp: func(v any) string { s, _ := v.(string); return s }})
	default:
		return l, usagef("--log-format %s: want json or console", domains.Quote(format))
	}
	// Sub-second, fixed-width UTC timestamps, set per logger by a hook
	// rather than through zerolog's process-wide TimeFieldFormat.
	return l.Level(lv).Hook(zerolog.HookFunc(func(e *zerolog.Event, _ zerolog.Level, _ string) {
		e.Str(zerolog.TimestampFieldName, time.Now().UTC().Format(logTimeFormat))
	})), nil
}

// logTimeFormat is RFC 3339 with microseconds, fixed width so that lines
// sort as text.
const logTimeFormat = "2006-01-02T15:04:05.000000Z07:00"
