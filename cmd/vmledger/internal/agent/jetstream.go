package agent

import (
	"context"
	"path/filepath"
	"time"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains"
)

// JetStreamDir is the embedded server's JetStream store inside the state
// directory (--nats-jetstream).
const JetStreamDir = "jetstream"

// validateJetStream refuses a JetStream setup that cannot work, before
// anything starts.
func validateJetStream(c *Config) error {
	if c.Stream != "" {
		if err := bus.CheckStreamName(c.Stream); err != nil {
			return domains.Errorf(domains.CodeInvalid, "--jetstream: %w", err)
		}
	}
	if c.StreamReplicas < 0 || c.StreamReplicas > 5 {
		return domains.Errorf(domains.CodeInvalid, "--jetstream-replicas %d: want 1 to 5", c.StreamReplicas)
	}
	if !c.NATSJetStream {
		return nil
	}
	if c.NATSURL != "" {
		return domains.Errorf(domains.CodeInvalid, "--nats-jetstream is the embedded server's; with --nats-url JetStream is the external servers' (docs/bus.md, Fleet history)")
	}
	if c.NATSClusterListen != "" {
		return domains.Errorf(domains.CodeInvalid, "--nats-jetstream is for a single host, not with --nats-cluster-listen: run JetStream on an external cluster (docs/bus.md, Fleet history)")
	}
	return nil
}

// embeddedJetStream is the embedded server's JetStream, or nil.
func (a *agent) embeddedJetStream() *bus.EmbeddedJetStream {
	if !a.cfg.NATSJetStream {
		return nil
	}
	return &bus.EmbeddedJetStream{StoreDir: filepath.Join(a.cfg.StateDir, JetStreamDir), Stream: a.cfg.Stream}
}

// relayOptions are the relay's options, JetStream mode included.
func (a *agent) relayOptions() bus.RelayOptions {
	return bus.RelayOptions{Host: a.cfg.Host, Logger: a.log, Stream: a.cfg.Stream, StreamReplicas: a.cfg.StreamReplicas}
}

// ensureStream readies the relay's stream before the agent reports ready:
// a stream that cannot take this host's events fails the start; one not
// reachable in time is left to the relay, which keeps retrying (and holds
// events back until it is there: they wait in the log).
func (a *agent) ensureStream(ctx context.Context) error {
	if a.cfg.Stream == "" {
		return nil
	}
	ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := a.relay.EnsureStream(ectx)
	if err != nil && domains.CodeOf(err) == domains.CodeInvalid {
		return err
	}
	if err != nil {
		a.log.Warn().Err(err).Str("stream", a.cfg.Stream).Msg("JetStream stream not ready yet; the relay keeps trying and holds events back meanwhile")
	}
	return nil
}
