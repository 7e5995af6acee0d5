package owner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// Service is the worker: it validates commands against the projection,
// acts through the Driver, appends the resulting events and folds them. It
// sees only the interfaces in ports.go.
type Service struct {
	log    domains.EventLog
	driver domains.Driver
	clock  domains.TimeSource
	host   string
	notify func(domains.Event) // optional observer of committed events (metrics)
	// optional observer of asynchronous jobs' progress (the bus)
	onProgress func(uuid.UUID, domains.JobInfo)
	images     PathGuard     // save images' paths (save.go)
	paths      ConfigGuard   // a config's host files (confine.go)
	managedDir string        // managed save images (save.go)
	dumpDir    string        // on_crash dumps (oncrash.go)
	peers      MigrationPeer // the other agents, for migrate (migrate.go)

	mu   sync.RWMutex // guards proj
	proj *domains.Projection
	// fmu serializes folding (catchUp): only its holder changes proj, so
	// folds happen in sequence order, and it may read proj without mu.
	fmu sync.Mutex
	// onApply, if set, sees every event folded, under mu (tests).
	onApply func(domains.Event)

	lmu     sync.Mutex
	slots   map[uuid.UUID]*slot        // one per domain: its job and fold lock (jobs.go)
	guests  map[uuid.UUID]*guestHandle // running guests
	flight  map[string]*inflight       // command IDs being executed
	inbound map[uuid.UUID]*inbound     // incoming migrations (migrate_in.go)

	naming map[string]chan struct{} // names being defined (reserveName)
	wg     sync.WaitGroup
	closed chan struct{}
	hintTO time.Duration
}

// Options configure a Service.
type Options struct {
	Log        domains.EventLog
	Driver     domains.Driver     // nil: lifecycle verbs answer unavailable
	Time       domains.TimeSource // nil: SystemClock
	Host       string
	Projection *domains.Projection // the replayed log; nil: empty
	OnCommit   func(domains.Event)
	// OnProgress, if set, gets asynchronous jobs' progress, at most one
	// report per job each 250 ms.
	OnProgress func(domain uuid.UUID, job domains.JobInfo)
	// Images confines the paths of save and restore (nil: refused);
	// ManagedSaveDir is where managedsave keeps its images (save.go).
	Images         PathGuard
	ManagedSaveDir string
	// Paths confines the host files configs name (confine.go); nil:
	// unchecked (tests of the logic with fake drivers and fake paths).
	Paths ConfigGuard
	// DumpDir is where on_crash writes its dumps (oncrash.go).
	DumpDir string
	// Peers reaches the other agents' migration verbs (nil: migrate
	// answers unavailable).
	Peers MigrationPeer
}

// NewService builds a service over an already replayed projection.
func NewService(o Options) *Service {
	s := &Service{
		log: o.Log, driver: o.Driver, clock: o.Time, host: o.Host, notify: o.OnCommit, onProgress: o.OnProgress, proj: o.Projection,
		images: o.Images, paths: o.Paths, managedDir: o.ManagedSaveDir, dumpDir: o.DumpDir, peers: o.Peers, inbound: map[uuid.UUID]*inbound{},
		slots: map[uuid.UUID]*slot{}, guests: map[uuid.UUID]*guestHandle{}, flight: map[string]*inflight{}, naming: map[string]chan struct{}{},
		closed: make(chan struct{}), hintTO: 10 * time.Second,
	}
	if s.clock == nil {
		s.clock = domains.SystemClock{}
	}
	if s.proj == nil {
		s.proj = domains.NewProjection()
	}
	return s
}

// List returns every domain.
func (s *Service) List() []domains.Domain {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.proj.List()
}

// Get finds a domain by name or UUID.
func (s *Service) Get(ref string) (domains.Domain, error) {
	s.mu.RLock()
	d, ok := s.proj.Lookup(ref)
	s.mu.RUnlock()
	if !ok {
		return domains.Domain{}, domains.Errorf(domains.CodeNotFound, "domain %s not found", domains.Quote(ref))
	}
	return d, nil
}

// LastSeq is the last sequence folded into the live projection.
func (s *Service) LastSeq() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.proj.LastSeq()
}

// Snapshot serialises the live projection (for the store's snapshots).
// It serialises a copy made under fmu, not mu: folds wait for the copy
// (~20 ms with 10,000 domains), reads wait for nothing (under mu, a fold
// waiting for the lock held up every read for the whole serialisation).
func (s *Service) Snapshot() (seq uint64, data []byte, err error) {
	s.fmu.Lock()
	p := s.proj.Clone() // fmu: no writer; readers only read
	s.fmu.Unlock()
	data, err = p.MarshalSnapshot()
	return p.LastSeq(), data, err
}

// Equal compares the live projection with p (replay checks).
func (s *Service) Equal(p *domains.Projection) (bool, string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.proj.Equal(p)
}

// inflight is a command being executed: its request digest and a channel
// closed when it is done.
type inflight struct {
	done   chan struct{}
	digest []byte
}

// once runs fn at most once per command ID: a retry of a finished command
// gets the recorded result; a retry racing the first waits for it. The ID
// is bound to its request (digest, see requestDigest): the same ID with
// another request is a conflict, in flight or recorded.
func (s *Service) once(ctx context.Context, cmdID string, digest []byte, fn func() (domains.Result, error)) (domains.Result, error) {
	if cmdID == "" {
		return fn()
	}
	if len(cmdID) > 128 {
		return domains.Result{}, domains.Errorf(domains.CodeInvalid, "command id longer than 128 bytes")
	}
	for {
		s.lmu.Lock()
		f, busy := s.flight[cmdID]
		if !busy {
			f = &inflight{done: make(chan struct{}), digest: digest}
			s.flight[cmdID] = f
		}
		s.lmu.Unlock()
		if !busy {
			break
		}
		if !bytes.Equal(f.digest, digest) {
			return domains.Result{}, reusedID(cmdID)
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			return domains.Result{}, domains.Errorf(domains.CodeUnavailable, "waiting for command %s: %w", cmdID, ctx.Err())
		}
	}
	defer func() {
		s.lmu.Lock()
		close(s.flight[cmdID].done)
		delete(s.flight, cmdID)
		s.lmu.Unlock()
	}()
	rec, found, err := s.log.Command(ctx, cmdID)
	if err != nil {
		return domains.Result{}, domains.Errorf(domains.CodeUnavailable, "command table: %w", err)
	}
	if found {
		// A record without a digest is from an older log: it cannot tell.
		if rec.Digest != nil && !bytes.Equal(rec.Digest, digest) {
			return domains.Result{}, reusedID(cmdID)
		}
		return decodeResult(rec)
	}
	return fn()
}

// commandDigest is the digest once registered for a command in flight.
func (s *Service) commandDigest(cmdID string) []byte {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if f, ok := s.flight[cmdID]; ok {
		return f.digest
	}
	return nil
}

// commit appends events for one domain (caller holds its lock), folds them
// and returns the result. Events are facts: callers append only after the
// thing happened.
func (s *Service) commit(ctx context.Context, cmdID string, id uuid.UUID, payloads ...domains.Payload) (domains.Result, error) {
	return s.commitAt(ctx, time.Time{}, cmdID, id, payloads...)
}

// commitAt is commit with the time the fact happened, when a better source
// than the agent's clock knows it (QEMU's event timestamp); zero: now.
func (s *Service) commitAt(ctx context.Context, at time.Time, cmdID string, id uuid.UUID, payloads ...domains.Payload) (domains.Result, error) {
	return s.appendFold(ctx, at, cmdID, cmdID, id, payloads...)
}

// appendFold appends and folds events that name cause as the command that
// caused them, recording the result under cmdID in the command table
// (none when empty).
func (s *Service) appendFold(ctx context.Context, at time.Time, cmdID, cause string, id uuid.UUID, payloads ...domains.Payload) (domains.Result, error) {
	now := at
	if now.IsZero() {
		now = s.clock.Now()
	}
	evs := make([]domains.Event, len(payloads))
	for i, p := range payloads {
		evs[i] = domains.NewEvent(id, now, cause, s.host, p)
	}
	s.mu.RLock()
	expected := s.proj.Version(id)
	// Dry-run the fold on a copy: an event the projection would refuse is
	// a bug here, and must not reach the log.
	name, state, err := s.proj.Check(id, evs)
	s.mu.RUnlock()
	if err != nil {
		return domains.Result{}, domains.Errorf(domains.CodeConflict, "%w", err)
	}
	res := domains.Result{Domain: id, Name: name, State: state, Seqs: make([]uint64, len(evs))}
	if len(payloads) == 1 {
		switch p := payloads[0].(type) {
		case domains.JobStarted:
			res.Job = p.ID // the command started this job
		case domains.ConfigUpdated:
			res.Updated = true // define of an existing domain
		}
	}
	// Made before the append, so that the commits of one group commit do
	// this work while the previous one syncs, not all at once after it.
	logged := asLogged(evs, expected)
	req := domains.AppendRequest{Domain: id, ExpectedVersion: expected, Events: evs, CommandID: cmdID, CommandDigest: s.commandDigest(cmdID)}
	// The stored result cannot know its sequences yet; they are rebuilt
	// from the record's first sequence (events of one append are consecutive).
	if cmdID != "" {
		req.Result = encodeResult(res)
	}
	// Events record what already happened: the caller giving up must not
	// cut the recording short, so the append and the fold run on a context
	// of their own (bounded, never cancelled by the request).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	seqs, err := s.log.Append(ctx, req)
	if err != nil {
		// The log may hold events this projection has not seen (an append
		// that committed after its caller gave up): catch up, then report.
		_ = s.catchUp(ctx, 0, nil)
		// A refusal of the events themselves (a version conflict, an event
		// the bus could never carry) keeps its code; anything else means
		// the log could not take them now.
		if errors.Is(err, domains.ErrConflict) || errors.Is(err, domains.ErrInvalid) {
			return domains.Result{}, err
		}
		return domains.Result{}, domains.Errorf(domains.CodeUnavailable, "append: %w", err)
	}
	// Concurrent commits for other domains may have taken earlier
	// sequences; the projection folds strictly in order.
	if len(logged) != len(seqs) {
		logged = nil // not the append asLogged presumed: read the log
	}
	for i := range logged {
		logged[i].Seq = seqs[i]
	}
	if err := s.catchUp(ctx, seqs[len(seqs)-1], logged); err != nil {
		return domains.Result{}, domains.Errorf(domains.CodeInternal, "fold after append: %w", err)
	}
	if s.notify != nil {
		for i, e := range evs {
			e.Seq, e.Version = seqs[i], expected+uint64(i)+1
			s.notify(e)
		}
	}
	copy(res.Seqs, seqs)
	return res, nil
}

// asLogged returns the events as the log will hold them once appended at
// expected (their versions; the caller sets their sequences), through the
// binary codec, so that folding them is folding what replay will fold
// (not the caller's values, which share its memory). nil if one does not
// survive the codec: the fold then reads them from the log, and fails
// there as replay would.
func asLogged(evs []domains.Event, expected uint64) []domains.Event {
	out := make([]domains.Event, len(evs))
	var buf []byte
	for i, e := range evs {
		e.Version = expected + uint64(i) + 1
		b, err := e.MarshalBinary(buf[:0])
		if err != nil {
			return nil
		}
		if out[i], err = domains.UnmarshalEvent(0, b); err != nil {
			return nil
		}
		buf = b
	}
	return out
}

// catchUp folds events until the projection has seen upto (0: everything
// the log has). own are events this caller appended, as logged
// (asLogged): when they are the next ones the projection expects they are
// folded without reading the log. Reads of the log happen outside mu, so
// info and list do not wait for them; mu is held only to apply.
func (s *Service) catchUp(ctx context.Context, upto uint64, own []domains.Event) error {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	for {
		last := s.proj.LastSeq() // fmu: no other writer
		if upto != 0 && last >= upto {
			return nil
		}
		if len(own) > 0 && own[0].Seq == last+1 {
			return s.apply(own)
		}
		limit := 1024
		if len(own) > 0 && own[0].Seq > last+1 {
			// Only the gap before own: those are folded without a read.
			limit = int(min(own[0].Seq-1-last, 1024))
		}
		evs, err := s.log.ReadAfter(ctx, last, limit)
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			if upto == 0 {
				return nil
			}
			return fmt.Errorf("log ends at %d before sequence %d", last, upto)
		}
		if err := s.apply(evs); err != nil {
			return err
		}
	}
}

// apply folds evs under mu (caller holds fmu).
func (s *Service) apply(evs []domains.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range evs {
		if err := s.proj.Apply(e); err != nil {
			return err
		}
		if s.onApply != nil {
			s.onApply(e)
		}
	}
	return nil
}

// recordTimeout bounds the recording of facts that already happened.
const recordTimeout = 30 * time.Second

// startLanded reports whether, after an append that failed ambiguously,
// the log (as folded) records this very QEMU as started: only our own
// started event carries its pid.
func (s *Service) startLanded(id uuid.UUID, pid int) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, ok := s.proj.Get(id)
	return ok && d.Live != nil && d.Live.PID == pid && d.State.Active()
}

// Close interrupts asynchronous jobs (each records job-failed,
// interrupted), stops watching guests (they keep running) and waits.
func (s *Service) Close() {
	// Closed first: a job RunAsync starts from now on is interrupted at
	// once (RunAsync checks under lmu), so stopJobs misses none.
	s.lmu.Lock()
	select {
	case <-s.closed:
	default:
		close(s.closed)
	}
	s.lmu.Unlock()
	s.stopJobs()
	s.lmu.Lock()
	guests := make([]*guestHandle, 0, len(s.guests))
	for _, g := range s.guests {
		guests = append(guests, g)
	}
	s.lmu.Unlock()
	for _, g := range guests {
		_ = g.guest.Detach()
	}
	s.wg.Wait()
}
