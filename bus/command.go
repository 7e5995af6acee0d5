package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/vmledger/vmledger/domains"
)

// Handler executes one command. body is the request as sent (JSON by
// convention; decoding and validating it is the handler's job). The result
// is marshalled to JSON under "result"; a returned error goes back as
// {code, message}, coded by domains.CodeOf.
type Handler interface {
	Handle(ctx context.Context, verb string, body []byte) (any, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, verb string, body []byte) (any, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, verb string, body []byte) (any, error) {
	return f(ctx, verb, body)
}

// ServiceName is the micro service name, as seen by $SRV.PING/INFO/STATS.
const ServiceName = "vmledger"

// CommandOptions configures the command service.
type CommandOptions struct {
	Host string
	// Verbs get one micro endpoint each, on vmledger.cmd.<host>.<verb>.
	Verbs []string
	// PeerVerbs are agent-to-agent verbs, served on
	// vmledger.peer.<host>.<verb> only (peer.go); on the command subject
	// they are refused.
	PeerVerbs []string
	// Version is the semver reported by $SRV.INFO; default "0.0.0".
	Version string
	// Timeout is the longest any handler call may run; a caller's shorter
	// deadline (sent in Vmledger-Timeout-Ms) wins. Default 60s.
	Timeout time.Duration
	// MaxInFlight bounds concurrent handler calls of the verbs that are
	// not ReadVerbs; default 64. When full, new requests of those verbs
	// wait in their endpoint's subscription queue.
	MaxInFlight int
	// ReadVerbs change nothing (info, config, list...): they get a pool of
	// their own, MaxReadsInFlight handlers (default 64), so a read is
	// answered while slow changes (a suspend through QMP, a define waiting
	// for its commit) fill the other pool. Each must be one of Verbs.
	ReadVerbs        []string
	MaxReadsInFlight int
	Logger           zerolog.Logger
}

// CommandService serves verbs over NATS.
type CommandService struct {
	nc       *nats.Conn
	h        Handler
	o        CommandOptions
	log      zerolog.Logger
	svc      micro.Service
	fallback *nats.Subscription
	known    map[string]bool
	peer     map[string]bool // PeerVerbs
	base     context.Context
	cancel   context.CancelFunc
	sem      chan struct{} // changing verbs
	readSem  chan struct{} // ReadVerbs
	reads    map[string]bool
	mu       sync.Mutex // orders wg.Add against Stop's wg.Wait
	stopping bool
	wg       sync.WaitGroup
	stats    map[string]*verbStats
	// bufs are the reply encoders' buffers (*bytes.Buffer): one reply per
	// command, where json.Marshal allocated its result and the envelope anew.
	bufs sync.Pool
}

// verbStats are the numbers micro cannot keep for us: handlers run outside
// micro's callback (see serve), so its own processing time and error
// counts stay near zero. They show up as the endpoint's "data" in STATS.
type verbStats struct {
	InFlight, Errors, Panics, Nanos atomic.Int64
}

// StartCommands registers the service and its endpoints. Handler calls get
// contexts derived from ctx, so cancelling ctx cancels them all.
func StartCommands(ctx context.Context, nc *nats.Conn, h Handler, o CommandOptions) (*CommandService, error) {
	if err := checkToken("host", o.Host); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, domains.Errorf(domains.CodeInvalid, "commands: nil handler")
	}
	if o.Version == "" {
		o.Version = "0.0.0"
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 64
	}
	if o.MaxReadsInFlight <= 0 {
		o.MaxReadsInFlight = 64
	}
	s := &CommandService{
		nc: nc, h: h, o: o,
		log:     o.Logger.With().Str("component", "commands").Logger(),
		known:   map[string]bool{},
		sem:     make(chan struct{}, o.MaxInFlight),
		readSem: make(chan struct{}, o.MaxReadsInFlight),
		reads:   map[string]bool{},
		stats:   map[string]*verbStats{},
	}
	for _, v := range o.Verbs {
		if err := checkToken("verb", v); err != nil {
			return nil, err
		}
		if s.known[v] {
			return nil, domains.Errorf(domains.CodeInvalid, "verb %q listed twice", v)
		}
		s.known[v] = true
		s.stats[v] = &verbStats{}
	}
	for _, v := range o.ReadVerbs {
		if !s.known[v] {
			return nil, domains.Errorf(domains.CodeInvalid, "read verb %s is not one of the verbs served", domains.Quote(v))
		}
		s.reads[v] = true
	}
	if err := s.checkPeerVerbs(); err != nil {
		return nil, err
	}
	s.base, s.cancel = context.WithCancel(ctx)
	svc, err := micro.AddService(nc, micro.Config{
		Name:        ServiceName,
		Version:     o.Version,
		Description: "vmledger agent commands",
		Metadata:    map[string]string{"host": o.Host},
		StatsHandler: func(e *micro.Endpoint) any {
			st := s.stats[e.Name]
			if st == nil {
				return nil
			}
			return map[string]int64{
				"in_flight": st.InFlight.Load(), "errors": st.Errors.Load(),
				"panics": st.Panics.Load(), "processing_ns": st.Nanos.Load(),
			}
		},
	})
	if err != nil {
		s.cancel()
		return nil, fmt.Errorf("commands: add service: %w", err)
	}
	s.svc = svc
	fail := func(err error) (*CommandService, error) {
		_ = svc.Stop()
		if s.fallback != nil {
			_ = s.fallback.Unsubscribe()
		}
		s.cancel()
		return nil, fmt.Errorf("commands: %w", err)
	}
	for _, verb := range o.Verbs {
		if err := s.addEndpoint(svc, verb, CommandSubject(o.Host, verb)); err != nil {
			return fail(err)
		}
	}
	if err := s.addPeerEndpoints(svc); err != nil {
		return fail(err)
	}
	// Every request on vmledger.cmd.<host>.> also reaches this fallback,
	// which answers only the verbs no endpoint serves: a typo gets a clear
	// error instead of a timeout. Its queue group must differ from micro's:
	// the server picks one member per queue group name across all matching
	// subjects, so sharing "q" would hand known verbs to the fallback.
	s.fallback, err = nc.QueueSubscribe(commandPrefix(o.Host)+">", "vmledger-unknown-verb", func(m *nats.Msg) {
		verb := strings.TrimPrefix(m.Subject, commandPrefix(o.Host))
		if s.known[verb] || m.Reply == "" {
			return
		}
		s.respond(m.Reply, verb, nil, s.notServed(verb))
	})
	if err != nil {
		return fail(fmt.Errorf("fallback subscription: %w", err))
	}
	if err := flushSubs(ctx, nc); err != nil {
		return fail(err)
	}
	return s, nil
}

// Stop stops taking requests and lets running handlers finish until ctx
// ends; then it cancels their contexts and returns without waiting for
// handlers that ignore cancellation.
func (s *CommandService) Stop(ctx context.Context) error {
	defer s.cancel()
	err := s.svc.Stop()
	if ferr := drainSub(ctx, s.fallback); err == nil {
		err = ferr
	}
	// micro's Stop drains asynchronously: a request already taken off the
	// wire may still reach dispatch, which now refuses it.
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("handlers still running: %w", ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("commands: stop: %w", err)
	}
	return nil
}

// dispatch runs the handler in its own goroutine. micro calls endpoint
// handlers one at a time per endpoint; running inline would make a slow
// `start` of one guest hold up the `start` of every other. A semaphore
// per pool (reads, changes) bounds the total; when it is full this blocks
// the endpoint's subscription, which queues further requests in the
// client library. Every endpoint has its own subscription, so a full
// change pool does not stop the read endpoints' deliveries.
func (s *CommandService) dispatch(verb string, body []byte, replyTo, timeout string) {
	sem := s.sem
	if s.reads[verb] {
		sem = s.readSem
	}
	select {
	case sem <- struct{}{}:
	case <-s.base.Done():
		s.respond(replyTo, verb, nil, domains.Errorf(domains.CodeUnavailable, "agent is shutting down"))
		return
	}
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		<-sem
		s.respond(replyTo, verb, nil, domains.Errorf(domains.CodeUnavailable, "agent is shutting down"))
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() { <-sem }()
		res, err := s.call(verb, body, timeout)
		s.respond(replyTo, verb, res, err)
	}()
}

// call runs one handler with its deadline, turning a panic into an
// internal error: a bug in one verb must not take the agent down.
func (s *CommandService) call(verb string, body []byte, timeout string) (res any, err error) {
	st := s.stats[verb]
	st.InFlight.Add(1)
	start := time.Now()
	d := s.o.Timeout
	if ms, perr := strconv.ParseInt(timeout, 10, 64); perr == nil && ms > 0 {
		// Keep a tenth (at least 50ms, at most 100ms, never more than
		// half) for the reply's trip back, so a handler that honours its
		// deadline is heard before the caller gives up on it; 10ms of a
		// 100ms deadline was too little under -race on a loaded machine.
		left := time.Duration(ms) * time.Millisecond
		d = min(d, left-min(max(left/10, 50*time.Millisecond), 100*time.Millisecond, left/2))
	}
	ctx, cancel := context.WithTimeout(s.base, d)
	defer func() {
		cancel()
		st.InFlight.Add(-1)
		st.Nanos.Add(int64(time.Since(start)))
		if p := recover(); p != nil {
			st.Panics.Add(1)
			s.log.Error().Str("verb", verb).Interface("panic", p).Bytes("stack", debug.Stack()).Msg("command handler panicked")
			res, err = nil, domains.Errorf(domains.CodeInternal, "%s: internal error (handler panicked: %v)", verb, p)
		}
		if err != nil {
			st.Errors.Add(1)
		}
	}()
	return s.h.Handle(ctx, verb, body)
}

func (s *CommandService) respond(replyTo, verb string, res any, err error) {
	if replyTo == "" {
		return
	}
	if !replyAllowed(replyTo) {
		refuseReply(s.log, verb, replyTo)
		return
	}
	var m *nats.Msg
	if err == nil {
		buf, _ := s.bufs.Get().(*bytes.Buffer)
		if buf == nil {
			buf = new(bytes.Buffer)
		}
		defer func() {
			if buf.Cap() <= maxPooledReply {
				s.bufs.Put(buf)
			}
		}()
		if merr := resultEnvelope(buf, res); merr != nil {
			err = domains.Errorf(domains.CodeInternal, "encode result: %w", merr)
		} else {
			// PublishMsg copies Data into the connection's buffer before it
			// returns, so buf can go back to the pool after.
			m = &nats.Msg{Subject: replyTo, Data: buf.Bytes()}
			if max := s.nc.MaxPayload(); int64(len(m.Data)) > max {
				err = oversizeReply(verb, len(m.Data), max)
			}
		}
	}
	if err != nil {
		m = errorMsg(replyTo, wireErrorOf(err))
	}
	if perr := s.nc.PublishMsg(m); perr != nil {
		s.log.Warn().Err(perr).Msg("command reply not sent; the caller will retry with the same command ID")
	}
}

// maxPooledReply: buffers larger than this (a list of every domain) are
// left to the collector rather than kept for the next reply.
const maxPooledReply = 256 << 10

// resultEnvelope writes json.Marshal(reply{Result: json.Marshal(res)})
// into buf (reset first), encoding res once and without re-scanning it
// (json.Marshal compacts a RawMessage).
func resultEnvelope(buf *bytes.Buffer, res any) error {
	buf.Reset()
	buf.WriteString(`{"result":`)
	if err := json.NewEncoder(buf).Encode(res); err != nil {
		return err
	}
	buf.Truncate(buf.Len() - 1) // Encode's newline
	buf.WriteByte('}')
	return nil
}
