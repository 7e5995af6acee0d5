package bus

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vmledger/vmledger/domains"
)

// The relay's JetStream mode (docs/bus.md, Fleet history): every event is
// published through JetStream into one stream capturing vmledger.evt.>, and
// a batch counts as published only when the stream acknowledged each of
// its messages. The same publish reaches core subscribers, so nothing else
// changes for them. Duplicates (a batch resent after a lost ack, a relay
// restarted from a position saved a moment before it stopped) are dropped
// by the stream by Nats-Msg-Id, <host>-<seq>.

// EventStreamSubjects is what a stream created by the relay captures.
var EventStreamSubjects = []string{subjectRoot + ".evt.>"}

// streamNameRE is what JetStream accepts as a stream name that is also
// safe in a subject ($JS.API.STREAM.INFO.<name>) and a file name.
var streamNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// CheckStreamName refuses a stream name JetStream or its API subjects
// cannot carry.
func CheckStreamName(s string) error {
	if !streamNameRE.MatchString(s) {
		return domains.Errorf(domains.CodeInvalid,
			"JetStream stream %s: must be 1-64 letters, digits, '-' or '_'", domains.Quote(s))
	}
	return nil
}

// streamRetry is how long one JetStream API request may take before it is
// asked again: a clustered server that has no meta leader yet (just
// started, or its leader's node died) drops API requests without an
// answer, so one long request would wait out the whole deadline even
// though a leader is elected a moment later (docs/bus.md, JetStream on a
// cluster).
const streamRetry = 2 * time.Second

// EnsureStream makes sure the relay's stream exists and captures this
// host's events, creating it (file storage, EventStreamSubjects,
// RelayOptions.StreamReplicas) if missing. It retries what a cluster
// answers while it settles (no reply, no meta leader, no peers for
// placement yet) until ctx ends; a stream that exists but does not capture
// vmledger.evt.<host>.> is an invalid error at once.
func (r *Relay) EnsureStream(ctx context.Context) error {
	if r.js == nil {
		return nil
	}
	err := r.retry(ctx, "relay: JetStream stream not ready; retrying", func() error { return r.ensureStreamOnce(ctx) })
	if err != nil && domains.CodeOf(err) != domains.CodeInvalid && ctx.Err() != nil {
		return fmt.Errorf("relay: JetStream stream %s: %w (last: %w)", r.o.Stream, ctx.Err(), err)
	}
	return err
}

// retry calls fn until it succeeds, fails as invalid (a setup that waiting
// cannot fix) or ctx ends, with the reconnect backoff between calls.
func (r *Relay) retry(ctx context.Context, what string, fn func() error) error {
	for attempt := 0; ; attempt++ {
		err := fn()
		if err == nil || domains.CodeOf(err) == domains.CodeInvalid || ctx.Err() != nil {
			return err
		}
		r.log.Warn().Err(err).Str("stream", r.o.Stream).Int("attempt", attempt+1).Msg(what)
		t := time.NewTimer(reconnectDelay(attempt))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
}

func (r *Relay) ensureStreamOnce(ctx context.Context) error {
	actx, cancel := context.WithTimeout(ctx, streamRetry)
	defer cancel()
	s, err := r.js.Stream(actx, r.o.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		replicas := max(r.o.StreamReplicas, 1)
		s, err = r.js.CreateStream(actx, jetstream.StreamConfig{
			Name: r.o.Stream, Subjects: EventStreamSubjects, Storage: jetstream.FileStorage,
			Replicas: replicas, Description: "vmledger events of every host (the relay's --jetstream)",
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("create stream %s: another relay created it at the same moment; looking again: %w", r.o.Stream, err)
		}
		if err == nil {
			r.log.Info().Str("stream", r.o.Stream).Int("replicas", replicas).Strs("subjects", EventStreamSubjects).Msg("relay: created the JetStream stream")
		}
	}
	if err != nil {
		return fmt.Errorf("JetStream stream %s: %w", r.o.Stream, err)
	}
	want := EventFilter(r.o.Host, [16]byte{}, "")
	cfg := s.CachedInfo().Config
	for _, sub := range cfg.Subjects {
		if subjectCovers(sub, want) {
			r.stream, r.dupWindow = s, cfg.Duplicates
			return nil
		}
	}
	return domains.Errorf(domains.CodeInvalid, "JetStream stream %s captures %s, not this host's events %s: add %s to its subjects (docs/bus.md, Fleet history)",
		r.o.Stream, domains.Quote(strings.Join(cfg.Subjects, ",")), want, EventStreamSubjects[0])
}

// subjectCovers says whether every subject subj matches is captured by
// pattern (subj may end in '>'; tokens '*' and '>' as NATS means them).
func subjectCovers(pattern, subj string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subj, ".")
	for i, tok := range p {
		switch {
		case tok == ">":
			return i < len(s)
		case i >= len(s) || s[i] == ">":
			return false
		case tok != "*" && tok != s[i]:
			return false
		case tok == "*" && s[i] == "*":
			// '*' covers '*'.
		}
	}
	return len(p) == len(s)
}

// resync moves pos past what the stream already holds of this host when
// its de-duplication cannot drop a re-publish any more: the host's last
// stored event is older than half the stream's duplicate window (an agent
// down for longer than that, an outage longer than that). Within the
// window the relay republishes from pos and the stream drops the repeats,
// which keeps core subscribers' at-least-once. A stream holding a
// sequence beyond the local log's end means another log published under
// this host name: an invalid error, since the stream would drop this
// log's events as duplicates of that one's.
func (r *Relay) resync(ctx context.Context, pos uint64) (uint64, error) {
	actx, cancel := context.WithTimeout(ctx, streamRetry)
	defer cancel()
	m, err := r.stream.GetLastMsgForSubject(actx, EventFilter(r.o.Host, [16]byte{}, ""))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return pos, nil
	}
	if err != nil {
		return pos, fmt.Errorf("JetStream stream %s: last event of %s: %w", r.o.Stream, r.o.Host, err)
	}
	seq, err := parseSeq(m.Header.Get(HeaderSeq))
	if err != nil {
		return pos, fmt.Errorf("JetStream stream %s: last event of %s (stream seq %d): %w", r.o.Stream, r.o.Host, m.Sequence, err)
	}
	if last := r.st.LastSeq(); seq > last {
		return pos, domains.Errorf(domains.CodeInvalid, "JetStream stream %s holds events of host %s up to seq %d, but this log ends at %d: another log published under this host name (docs/bus.md, Fleet history)",
			r.o.Stream, r.o.Host, seq, last)
	}
	if seq > pos && time.Since(m.Time) > r.dupWindow/2 {
		r.log.Info().Uint64("position", pos).Uint64("stored", seq).Dur("duplicate_window", r.dupWindow).
			Msg("relay: the stream's duplicate window has passed since its last event of this host; resuming after it instead of republishing")
		return seq, nil
	}
	return pos, nil
}

// joinStream readies JetStream mode before the first batch: the stream,
// then the resume position. It retries until ctx ends, and gives up only
// on an invalid setup (wrong subjects, another log's events).
func (r *Relay) joinStream(ctx context.Context, pos uint64) (uint64, error) {
	if err := r.EnsureStream(ctx); err != nil {
		return pos, err
	}
	err := r.retry(ctx, "relay: JetStream not answering; retrying", func() error {
		p, err := r.resync(ctx, pos)
		pos = p
		return err
	})
	return pos, err
}

// publishJS sends evs through JetStream and returns nil only when the
// stream acknowledged every one (a duplicate counts: the stream has it).
func (r *Relay) publishJS(ctx context.Context, evs []domains.Event) error {
	futs := make([]jetstream.PubAckFuture, 0, len(evs))
	for i := range evs {
		m := r.message(&evs[i], r.nc.MaxPayload())
		f, err := r.js.PublishMsgAsync(m, jetstream.WithExpectStream(r.o.Stream))
		if errors.Is(err, nats.ErrMaxPayload) && m.Header.Get(HeaderTruncated) == "" {
			m = r.message(&evs[i], 0) // as in publish: the limit shrank
			f, err = r.js.PublishMsgAsync(m, jetstream.WithExpectStream(r.o.Stream))
		}
		if err != nil {
			return fmt.Errorf("JetStream publish seq %d: %w", evs[i].Seq, err)
		}
		futs = append(futs, f)
	}
	actx, cancel := context.WithTimeout(ctx, r.o.FlushTimeout)
	defer cancel()
	for i, f := range futs {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				r.dups.Add(1)
			}
		case err := <-f.Err():
			return fmt.Errorf("JetStream ack of seq %d: %w", evs[i].Seq, err)
		case <-actx.Done():
			return fmt.Errorf("JetStream ack of seq %d: %w", evs[i].Seq, actx.Err())
		}
	}
	return nil
}

// Duplicates counts events the stream reported as already stored (JetStream
// mode): the re-publishes its de-duplication dropped.
func (r *Relay) Duplicates() uint64 { return r.dups.Load() }

// embeddedJetStream turns on the embedded server's JetStream.
func embeddedJetStream(opts *server.Options, js *EmbeddedJetStream, clustered bool) error {
	if clustered {
		// A meta group of agents' embedded servers would need a quorum of
		// agents up for any host's relay to make progress.
		return domains.Errorf(domains.CodeInvalid, "embedded JetStream is for a single host, not with a cluster: run JetStream on the NATS cluster itself (docs/bus.md, Fleet history)")
	}
	if js.StoreDir == "" {
		return domains.Errorf(domains.CodeInvalid, "embedded JetStream: no store directory")
	}
	if js.Stream != "" {
		if err := CheckStreamName(js.Stream); err != nil {
			return err
		}
	}
	opts.JetStream, opts.StoreDir = true, js.StoreDir
	return nil
}

// StreamConsumerPermissions is what a fleet consumer needs on stream
// beyond reading the event subjects: stream info, creating and reading its
// own durable pull consumers, and acknowledging (docs/bus.md, Fleet
// history). Not deleting consumers, streams or messages, not publishing
// into the stream.
func StreamConsumerPermissions(stream string) []string {
	api := "$JS.API."
	return []string{api + "INFO", api + "STREAM.INFO." + stream,
		api + "CONSUMER.CREATE." + stream, api + "CONSUMER.CREATE." + stream + ".>",
		api + "CONSUMER.DURABLE.CREATE." + stream + ".>", api + "CONSUMER.INFO." + stream + ".>",
		api + "CONSUMER.MSG.NEXT." + stream + ".>", "$JS.ACK." + stream + ".>"}
}

// AgentStreamPermissions is what the agent (the relay) needs on stream on
// an external server beyond publishing its event subjects: create the
// stream if missing, read its config and the host's last stored event.
// The acks come to the agent's inbox.
func AgentStreamPermissions(stream string) []string {
	api := "$JS.API."
	return []string{api + "INFO", api + "STREAM.INFO." + stream, api + "STREAM.CREATE." + stream,
		api + "STREAM.MSG.GET." + stream, api + "DIRECT.GET." + stream, api + "DIRECT.GET." + stream + ".>"}
}

// addStreamConsumer gives a read role (not the unrestricted agent) the
// consumer permissions on stream; no stream, no change.
func addStreamConsumer(p *server.Permissions, stream string) {
	if p == nil || stream == "" {
		return
	}
	p.Publish.Allow = append(p.Publish.Allow, StreamConsumerPermissions(stream)...)
}
