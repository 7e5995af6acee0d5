package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/vmledger/vmledger/domains"
)

// RelayOptions tunes the relay; zero values pick the defaults.
type RelayOptions struct {
	// Host is this agent's host token in the subjects.
	Host string
	// Batch is how many events are read, published and confirmed with one
	// flush; default 256.
	Batch int
	// PersistEvery and PersistInterval bound how much is republished after
	// a restart: the position is saved after this many events or this much
	// time, whichever comes first (defaults 1024 events, 1s), and on stop.
	PersistEvery    int
	PersistInterval time.Duration
	// FlushTimeout bounds the wait for the server's receipt of a batch;
	// default 5s. A timeout counts as an outage: the batch is resent.
	FlushTimeout time.Duration
	// Stream, when set, is the JetStream mode (jetstream.go): events are
	// published through JetStream into this stream, which is created if
	// missing, and a batch is confirmed by the stream's acks.
	Stream string
	// StreamReplicas is the replica count of a stream the relay creates;
	// default 1.
	StreamReplicas int
	// Logger; the zero value discards.
	Logger zerolog.Logger
}

// Relay publishes committed events on NATS in sequence order, at least
// once. It reads the log and never waits on the writer, so it cannot hold
// up an append; apart from that it only saves its position (a small commit
// at most once a second, off the publishing path), so a restarted agent
// resumes where the last one stopped instead of republishing everything.
//
// Delivery: a batch counts as published only when a flush (PING/PONG) on
// the same connection succeeded after it, which proves the server received
// every message sent before the PING. If the connection was replaced in
// between (reconnect count changed), the batch is sent again. After an
// outage the relay resumes from the last confirmed sequence: subscribers
// may see the stream step back and repeat sequences, never skip one
// because of the relay. Dropping every sequence at or below the last one
// seen restores exactly-once, in order.
type Relay struct {
	nc     *nats.Conn
	st     RelayStore
	o      RelayOptions
	log    zerolog.Logger
	pubd   atomic.Uint64 // last sequence confirmed by the server
	truncs atomic.Uint64 // events published as placeholders (see message)

	// JetStream mode (jetstream.go); js is nil without it.
	js        jetstream.JetStream
	jsErr     error
	stream    jetstream.Stream
	dupWindow time.Duration
	dups      atomic.Uint64

	advMu    sync.Mutex
	advanced chan struct{} // closed (and replaced) when pubd moves
}

// NewRelay prepares a relay; Run starts it (and rejects a bad Host).
func NewRelay(nc *nats.Conn, st RelayStore, o RelayOptions) *Relay {
	if o.Batch <= 0 {
		o.Batch = 256
	}
	if o.PersistEvery <= 0 {
		o.PersistEvery = 1024
	}
	if o.PersistInterval <= 0 {
		o.PersistInterval = time.Second
	}
	if o.FlushTimeout <= 0 {
		o.FlushTimeout = 5 * time.Second
	}
	r := &Relay{nc: nc, st: st, o: o, log: o.Logger.With().Str("component", "relay").Logger(), advanced: make(chan struct{})}
	if o.Stream != "" {
		// Acks older than a batch's wait are given up on, so the pending
		// table cannot grow through an outage.
		r.js, r.jsErr = jetstream.New(nc, jetstream.WithPublishAsyncTimeout(o.FlushTimeout), jetstream.WithPublishAsyncMaxPending(4*o.Batch))
	}
	return r
}

// setPublished moves the confirmed position and wakes WaitPublished.
func (r *Relay) setPublished(seq uint64) {
	r.pubd.Store(seq)
	r.advMu.Lock()
	close(r.advanced)
	r.advanced = make(chan struct{})
	r.advMu.Unlock()
}

// WaitPublished blocks until the server confirmed every event up to seq,
// or ctx ends (the agent's stop gives the relay a moment this way).
func (r *Relay) WaitPublished(ctx context.Context, seq uint64) error {
	for {
		r.advMu.Lock()
		ch := r.advanced
		r.advMu.Unlock()
		if r.pubd.Load() >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("relay at %d of %d: %w", r.pubd.Load(), seq, ctx.Err())
		}
	}
}

// Published is the last sequence the server confirmed receiving.
func (r *Relay) Published() uint64 { return r.pubd.Load() }

// Lag is how many committed events are not yet confirmed published: the
// metric to alert on during an outage.
func (r *Relay) Lag() uint64 {
	last, pub := r.st.LastSeq(), r.pubd.Load()
	if last < pub {
		return 0
	}
	return last - pub
}

// Truncated counts events published as placeholders: larger than one NATS
// message can carry (each is logged as an error; docs/bus.md, Limits).
// A resend after an outage counts again.
func (r *Relay) Truncated() uint64 { return r.truncs.Load() }

// Run relays until ctx ends, then saves its position and returns nil. It
// returns an error only when it cannot go on: the store failed a read,
// the connection was closed, or (JetStream mode) the stream cannot take
// this host's events. No single event stops it (see message).
func (r *Relay) Run(ctx context.Context) error {
	if err := checkToken("host", r.o.Host); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	if r.o.Stream != "" {
		if err := CheckStreamName(r.o.Stream); err != nil {
			return fmt.Errorf("relay: %w", err)
		}
		if r.jsErr != nil {
			return fmt.Errorf("relay: JetStream: %w", r.jsErr)
		}
	}
	pos, err := r.st.RelayPosition(ctx)
	if err != nil {
		return fmt.Errorf("relay: read position: %w", err)
	}
	saved := pos
	if r.js != nil {
		if pos, err = r.joinStream(ctx, pos); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("relay: %w", err)
		}
	}
	r.setPublished(pos)
	r.log.Info().Uint64("position", pos).Uint64("last_seq", r.st.LastSeq()).Msg("relay started")

	kick := make(chan struct{}, 1)
	sctx, stopSaver := context.WithCancel(ctx)
	saverDone := make(chan struct{})
	go func() { defer close(saverDone); r.savePositions(sctx, saved, kick) }()
	defer func() { stopSaver(); <-saverDone }()

	fails := 0 // consecutive unconfirmed batches
	for {
		// Take the commit channel before reading: a commit that lands after
		// the read closes it, so no wake-up is lost between read and wait.
		committed := r.st.Committed()
		evs, err := readCommitted(ctx, r.st, pos, r.o.Batch)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("relay: %w", err)
		}
		if len(evs) == 0 {
			select {
			case <-committed:
			case <-ctx.Done():
				return nil
			}
			continue
		}
		publish := r.publish
		if r.js != nil {
			publish = r.publishJS
		}
		if err := publish(ctx, evs); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			fails++
			r.log.Warn().Err(err).Uint64("position", pos).Int("attempt", fails).Msg("relay: batch not confirmed; waiting for NATS, then resending from position")
			if err := r.awaitBus(ctx, fails); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if r.js != nil {
				// What the stream holds may be past pos by more than its
				// duplicate window after a long outage.
				p, err := r.resync(ctx, pos)
				if domains.CodeOf(err) == domains.CodeInvalid {
					return fmt.Errorf("relay: %w", err)
				}
				if p > pos {
					pos = p
					r.setPublished(pos)
				}
			}
			continue
		}
		if fails > 0 {
			r.log.Info().Uint64("position", pos).Msg("relay: NATS back, resumed")
			fails = 0
		}
		pos = evs[len(evs)-1].Seq
		r.setPublished(pos)
		select {
		case kick <- struct{}{}:
		default: // a kick is pending; the saver reads the latest position
		}
	}
}

// savePositions saves the confirmed position (Published) off the
// publishing path: a position write is a bbolt commit with its fsyncs, and
// waiting for it would hold up every event behind it. The first change
// after a quiet spell is saved at once; after a save, further changes wait
// PersistInterval unless PersistEvery events pile up. A failed write costs
// only republishing after a restart, so it is logged and retried, never
// fatal. When ctx ends the final position is saved.
func (r *Relay) savePositions(ctx context.Context, saved uint64, kick <-chan struct{}) {
	save := func(ctx context.Context) {
		pos := r.pubd.Load()
		if pos == saved {
			return
		}
		if err := r.st.SetRelayPosition(ctx, pos); err != nil {
			r.log.Warn().Err(err).Uint64("position", pos).Msg("relay: position not saved; events after the last saved one would be republished after a restart")
			return
		}
		saved = pos
	}
	defer func() {
		// A fresh context: ctx is what just ended.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		save(fctx)
	}()
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	holding := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
			if holding && r.pubd.Load()-saved < uint64(r.o.PersistEvery) {
				continue
			}
		case <-hold.C:
			holding = false
			if r.pubd.Load() == saved {
				continue
			}
		}
		save(ctx)
		holding = true
		hold.Reset(r.o.PersistInterval)
	}
}

// publish sends evs and returns nil only when the server confirmed them.
func (r *Relay) publish(ctx context.Context, evs []domains.Event) error {
	before := r.nc.Stats().Reconnects
	for i := range evs {
		m := r.message(&evs[i], r.nc.MaxPayload())
		err := r.nc.PublishMsg(m)
		if errors.Is(err, nats.ErrMaxPayload) && m.Header.Get(HeaderTruncated) == "" {
			// The limit shrank since it was read (a reconnect to another
			// server): cut the event to its placeholder after all.
			m = r.message(&evs[i], 0)
			err = r.nc.PublishMsg(m)
		}
		if err != nil {
			return fmt.Errorf("publish seq %d: %w", evs[i].Seq, err)
		}
	}
	fctx, cancel := context.WithTimeout(ctx, r.o.FlushTimeout)
	defer cancel()
	if err := r.nc.FlushWithContext(fctx); err != nil {
		return fmt.Errorf("flush after seq %d: %w", evs[len(evs)-1].Seq, err)
	}
	// The PONG proves receipt only for what went over the connection that
	// carried the PING. Messages buffered for a socket that died before
	// the reconnect are gone even though this flush succeeded.
	if r.nc.Stats().Reconnects != before {
		return errors.New("connection replaced while the batch was in flight")
	}
	return nil
}

// message renders e for the bus. An event too large for one message (or
// unencodable) goes out as its bounded placeholder (truncated.go): never
// skipping it keeps the stream gap-free, so no subscriber asks history for
// a sequence it can never get, and never stopping on it keeps every later
// event flowing. maxPayload 0 forces the placeholder.
func (r *Relay) message(e *domains.Event, maxPayload int64) *nats.Msg {
	var body []byte
	var size int
	truncated := maxPayload == 0
	if truncated {
		body = placeholderOf(e, 0, 0, "the event did not fit the server's max payload")
	} else {
		body, size, truncated = wireEvent(e, maxPayload)
	}
	m := nats.NewMsg(EventSubject(r.o.Host, e.Domain, e.Type))
	m.Data = body
	m.Header.Set(HeaderSeq, strconv.FormatUint(e.Seq, 10))
	m.Header.Set(HeaderMsgID, msgID(r.o.Host, e.Seq))
	if truncated {
		m.Header.Set(HeaderTruncated, strconv.Itoa(size))
		r.truncs.Add(1)
		r.log.Error().Uint64("seq", e.Seq).Str("type", string(e.Type)).Str("domain", e.Domain.String()).Int("bytes", size).
			Int64("max_payload", maxPayload).Msg("relay: event too large for one NATS message; published its placeholder (docs/bus.md, Limits)")
	}
	return m
}

// readCommitted reads up to limit events after pos, but never past
// LastSeq: the store publishes LastSeq only once a commit is durable, and
// a bbolt reader can see a transaction a moment before its final fsync.
// An event on the bus must never be one a crash could still take back.
func readCommitted(ctx context.Context, st EventReader, pos uint64, limit int) ([]domains.Event, error) {
	head := st.LastSeq()
	if head <= pos {
		return nil, nil
	}
	evs, err := st.ReadAfter(ctx, pos, int(min(uint64(limit), head-pos)))
	if err != nil {
		return nil, fmt.Errorf("read after %d: %w", pos, err)
	}
	for len(evs) > 0 && evs[len(evs)-1].Seq > head {
		evs = evs[:len(evs)-1]
	}
	return evs, nil
}

// awaitBus waits until the connection is up again, then a backoff that
// grows with consecutive failures: a failure that persists while connected
// (a server that stopped answering PINGs in time) must not become a hot
// loop. A closed connection never comes back, so that ends the relay.
func (r *Relay) awaitBus(ctx context.Context, fails int) error {
	if err := waitConnected(ctx, r.nc); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	t := time.NewTimer(reconnectDelay(fails - 1))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
