package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// AnyVersion (^uint64(0)) as ExpectedVersion skips the optimistic
// concurrency check; it is the domains package's constant.
const AnyVersion = domains.AnyVersion

// AppendRequest is one atomic append for one domain.
type AppendRequest struct {
	Domain uuid.UUID
	// ExpectedVersion is the domain's current version as the caller saw it
	// (0 for a new domain); AnyVersion skips the check.
	ExpectedVersion uint64
	// Events all belong to Domain (a zero Event.Domain is taken as Domain).
	// Seq and Version are assigned by the store; on success Append writes
	// them back into this slice.
	Events []domains.Event
	// CommandID, if set, is recorded with Result in the same transaction;
	// a second append with the same ID fails with ErrDuplicateCommand.
	CommandID string
	// Result is the opaque reply that Command returns for CommandID.
	Result []byte
	// CommandDigest, if set (32 bytes), binds CommandID to its request; it
	// is kept with Result and returned by the domains-side Command.
	CommandDigest []byte
}

// Request states: the caller and the writer race for a queued request with
// compare-and-swap, so exactly one of "abandoned, never written" and
// "taken, may commit" happens.
const (
	stateQueued int32 = iota
	stateTaken
	stateAbandoned
)

// request is an AppendRequest as the writer sees it: already encoded, so
// that the writer's transaction does nothing but look-ups and puts.
type request struct {
	domain   uuid.UUID
	expected uint64
	cmdID    string
	cmdVal   []byte // 8-byte first sequence (set by the writer) + result, a copy
	buf      []byte // encoded events back to back
	ends     []int  // end offset of each event in buf
	state    atomic.Int32
	reply    chan struct{} // capacity 1: the writer never blocks on it

	// Set by the writer before reply.
	first uint64 // sequence of the first event
	base  uint64 // the domain's version before this request
	err   error
}

func (r *request) count() int { return len(r.ends) }

// event returns the i-th encoded event.
func (r *request) event(i int) []byte {
	start := 0
	if i > 0 {
		start = r.ends[i-1]
	}
	return r.buf[start:r.ends[i]]
}

// requestPool recycles requests (their buffers and reply channels). Only
// a caller that received the reply returns its request: an abandoned one
// may still be in the writer's hands and is left to the collector.
type requestPool struct{ p sync.Pool }

func (p *requestPool) get() *request {
	if r, ok := p.p.Get().(*request); ok {
		return r
	}
	return &request{reply: make(chan struct{}, 1)}
}

func (p *requestPool) put(r *request) {
	if cap(r.buf)+cap(r.cmdVal) > 64<<10 {
		return // do not let one huge append pin memory in the pool
	}
	r.buf, r.ends, r.cmdVal, r.cmdID, r.err = r.buf[:0], r.ends[:0], r.cmdVal[:0], "", nil
	r.state.Store(stateQueued)
	p.p.Put(r)
}

// Append appends req's events atomically and returns their sequences once
// the transaction is synced to disk.
//
// Cancellation: if ctx ends before the writer takes the request, nothing
// is written and ctx's error is returned. If it ends afterwards, Append
// returns at once with an error wrapping ErrMaybeCommitted and ctx's
// error; the events may or may not be in the log. A retry with the same
// CommandID then either appends once or reports ErrDuplicateCommand.
func (s *Store) Append(ctx context.Context, req AppendRequest) ([]uint64, error) {
	if s.readOnly {
		return nil, fmt.Errorf("store: append: %w", ErrReadOnly)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: append: %w", err)
	}
	r, err := s.encode(req)
	if err != nil {
		return nil, err
	}

	if b := s.broken.Load(); b != nil {
		return nil, *b
	}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return nil, fmt.Errorf("store: append: %w", ErrClosed)
	}
	select {
	case s.reqs <- r:
		s.closeMu.RUnlock()
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return nil, fmt.Errorf("store: append: %w", ctx.Err())
	}

	select {
	case <-r.reply:
	case <-ctx.Done():
		if r.state.CompareAndSwap(stateQueued, stateAbandoned) {
			return nil, fmt.Errorf("store: append: %w", ctx.Err())
		}
		select {
		case <-r.reply: // the reply raced the cancellation: use it
		default:
			return nil, fmt.Errorf("store: append for %s: %w: %w", req.Domain, ErrMaybeCommitted, ctx.Err())
		}
	}
	if r.err != nil {
		err := r.err
		s.pool.put(r)
		return nil, err
	}
	seqs := make([]uint64, r.count())
	for i := range seqs {
		seqs[i] = r.first + uint64(i)
		req.Events[i].Seq = seqs[i]
		req.Events[i].Version = r.base + uint64(i) + 1
		req.Events[i].Domain = req.Domain
	}
	s.pool.put(r)
	return seqs, nil
}

// encode validates req and encodes its events in the caller's goroutine,
// presuming versions ExpectedVersion+1... (0+1... under AnyVersion; the
// writer fixes them up then, see rebase).
func (s *Store) encode(req AppendRequest) (*request, error) {
	if req.Domain == uuid.Nil {
		return nil, invalidf("append: nil domain")
	}
	if len(req.Events) == 0 && req.CommandID == "" {
		return nil, invalidf("append for %s: no events and no command ID", req.Domain)
	}
	if len(req.CommandID) > maxCommandID {
		return nil, invalidf("append for %s: command ID longer than %d bytes", req.Domain, maxCommandID)
	}
	if n := len(req.CommandDigest); n != 0 && (n != digestLen || req.CommandID == "") {
		return nil, invalidf("append for %s: command digest of %d bytes (want %d, with a command ID)", req.Domain, n, digestLen)
	}
	base := req.ExpectedVersion
	if base == AnyVersion {
		base = 0
	}
	r := s.pool.get()
	r.domain, r.expected, r.cmdID = req.Domain, req.ExpectedVersion, req.CommandID
	if req.CommandID != "" {
		r.cmdVal = appendCommand(r.cmdVal[:0], req.CommandDigest, req.Result)
	}
	for i := range req.Events {
		e := req.Events[i] // a copy: the caller's slice is written only on success
		if e.Domain == uuid.Nil {
			e.Domain = req.Domain
		} else if e.Domain != req.Domain {
			return nil, invalidf("append for %s: event %d is for domain %s", req.Domain, i, e.Domain)
		}
		e.Seq, e.Version = 0, base+uint64(i)+1
		b, err := e.MarshalBinary(r.buf)
		if err != nil {
			return nil, domains.Errorf(domains.CodeInvalid, "store: append for %s: event %d: %w", req.Domain, i, err)
		}
		r.buf = b
		r.ends = append(r.ends, len(b))
	}
	return r, nil
}

// maxCommandID keeps command keys well inside bbolt's key limit.
const maxCommandID = 1024
