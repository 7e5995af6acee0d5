// Package domainstest provides in-memory fakes of the interfaces that
// owner.Service consumes (ports.go): an event log, a hypervisor driver
// with scriptable guests, and a clock. They are meant for tests of the
// domains package and of anything wired on top of it (the agent, the bus).
package domainstest

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// MemLog is an in-memory domains.EventLog with the store's contract:
// gap-free global sequences from 1, per-domain versions that continue
// across undefine/define, expected-version checks, and a command table
// written atomically with the events.
//
// Events are kept in their binary form (domains.Event.MarshalBinary), so
// everything appended must survive the codec and readers never share
// memory with the appender.
type MemLog struct {
	mu        sync.Mutex
	recs      [][]byte // encoded events; recs[i] has seq i+1
	versions  map[uuid.UUID]uint64
	commands  map[string]domains.CommandRecord
	committed chan struct{} // closed and replaced at every commit
	relay     uint64

	failErr  error
	onAppend func(domains.AppendRequest, []uint64)
	appends  int
}

var _ domains.EventLog = (*MemLog)(nil)

// NewMemLog returns an empty log.
func NewMemLog() *MemLog {
	return &MemLog{
		versions:  map[uuid.UUID]uint64{},
		commands:  map[string]domains.CommandRecord{},
		committed: make(chan struct{}),
	}
}

// FailAppends makes every following Append fail with err (nothing is
// written) until FailAppends(nil).
func (l *MemLog) FailAppends(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failErr = err
}

// OnAppend installs fn, called after each successful append, outside the
// log's lock and before Append returns: tests use it to hold an appender
// back at the worst moment. nil removes it.
func (l *MemLog) OnAppend(fn func(req domains.AppendRequest, seqs []uint64)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onAppend = fn
}

// Appends counts successful Append calls.
func (l *MemLog) Appends() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.appends
}

// Append implements domains.EventLog. It refuses, without writing
// anything: a nil domain, events for another domain, a version other than
// ExpectedVersion (unless domains.AnyVersion), and a command ID already
// recorded; the refusals are conflict- or invalid-coded *domains.Error.
func (l *MemLog) Append(ctx context.Context, req domains.AppendRequest) ([]uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if req.Domain == uuid.Nil {
		return nil, domains.Errorf(domains.CodeInvalid, "memlog: append: nil domain")
	}
	if len(req.Events) == 0 && req.CommandID == "" {
		return nil, domains.Errorf(domains.CodeInvalid, "memlog: append for %s: no events and no command ID", req.Domain)
	}
	l.mu.Lock()
	if l.failErr != nil {
		err := l.failErr
		l.mu.Unlock()
		return nil, err
	}
	cur := l.versions[req.Domain]
	if req.ExpectedVersion != domains.AnyVersion && req.ExpectedVersion != cur {
		l.mu.Unlock()
		return nil, domains.Errorf(domains.CodeConflict, "memlog: domain %s is at version %d, not %d", req.Domain, cur, req.ExpectedVersion)
	}
	if req.CommandID != "" {
		if _, dup := l.commands[req.CommandID]; dup {
			l.mu.Unlock()
			return nil, domains.Errorf(domains.CodeConflict, "memlog: command %q already recorded", req.CommandID)
		}
	}
	first := uint64(len(l.recs)) + 1
	recs := make([][]byte, len(req.Events))
	seqs := make([]uint64, len(req.Events))
	for i, e := range req.Events {
		if e.Domain != req.Domain {
			l.mu.Unlock()
			return nil, domains.Errorf(domains.CodeInvalid, "memlog: append for %s: event %d is for domain %s", req.Domain, i, e.Domain)
		}
		e.Version = cur + uint64(i) + 1
		b, err := e.MarshalBinary(nil)
		if err != nil {
			l.mu.Unlock()
			return nil, domains.Errorf(domains.CodeInvalid, "memlog: append for %s: event %d: %w", req.Domain, i, err)
		}
		// What the store would hand back must decode: catch codec bugs here.
		if _, err := domains.UnmarshalEvent(first+uint64(i), b); err != nil {
			l.mu.Unlock()
			return nil, fmt.Errorf("memlog: event %d does not survive the codec: %w", i, err)
		}
		recs[i], seqs[i] = b, first+uint64(i)
	}
	l.recs = append(l.recs, recs...)
	l.versions[req.Domain] = cur + uint64(len(recs))
	if req.CommandID != "" {
		rec := domains.CommandRecord{FirstSeq: first, Result: append([]byte(nil), req.Result...), Digest: bytes.Clone(req.CommandDigest)}
		if len(recs) == 0 {
			rec.FirstSeq = 0 // as the store: a command without events has no first sequence
		}
		l.commands[req.CommandID] = rec
	}
	for i := range req.Events {
		req.Events[i].Seq, req.Events[i].Version = seqs[i], cur+uint64(i)+1
	}
	l.appends++
	close(l.committed)
	l.committed = make(chan struct{})
	hook := l.onAppend
	l.mu.Unlock()
	if hook != nil {
		hook(req, seqs)
	}
	return seqs, nil
}

// Command implements domains.EventLog.
func (l *MemLog) Command(ctx context.Context, id string) (domains.CommandRecord, bool, error) {
	if err := ctx.Err(); err != nil {
		return domains.CommandRecord{}, false, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	rec, ok := l.commands[id]
	if ok {
		rec.Result = append([]byte(nil), rec.Result...)
	}
	return rec, ok, nil
}

// LastSeq is the sequence of the last event (0 when empty).
func (l *MemLog) LastSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return uint64(len(l.recs))
}

// Version is the domain's version in the log (undefined domains included).
func (l *MemLog) Version(id uuid.UUID) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.versions[id]
}

// Committed returns a channel closed at the next commit after the call.
func (l *MemLog) Committed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.committed
}

// Raw returns a copy of the encoded event with sequence seq.
func (l *MemLog) Raw(seq uint64) ([]byte, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq == 0 || seq > uint64(len(l.recs)) {
		return nil, false
	}
	return append([]byte(nil), l.recs[seq-1]...), true
}

// ReadAfter returns up to limit events with Seq > after, in order; a
// limit <= 0 means all of them.
func (l *MemLog) ReadAfter(ctx context.Context, after uint64, limit int) ([]domains.Event, error) {
	return l.read(ctx, after, limit, func(domains.Event) bool { return true })
}

// ReadDomain returns up to limit events of domain id with version >
// afterVersion, in order; a limit <= 0 means all of them.
func (l *MemLog) ReadDomain(ctx context.Context, id uuid.UUID, afterVersion uint64, limit int) ([]domains.Event, error) {
	return l.read(ctx, 0, limit, func(e domains.Event) bool { return e.Domain == id && e.Version > afterVersion })
}

func (l *MemLog) read(ctx context.Context, after uint64, limit int, keep func(domains.Event) bool) ([]domains.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	recs := l.recs
	l.mu.Unlock()
	var out []domains.Event
	for i := after; i < uint64(len(recs)); i++ {
		if limit > 0 && len(out) >= limit {
			break
		}
		e, err := domains.UnmarshalEvent(i+1, recs[i])
		if err != nil {
			return nil, err
		}
		if keep(e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// Events returns every event in the log.
func (l *MemLog) Events() ([]domains.Event, error) {
	return l.ReadAfter(context.Background(), 0, 0)
}

// Replay folds the whole log into a fresh projection, as an agent does at
// start: tests compare it with the live one (replay must equal live).
func (l *MemLog) Replay() (*domains.Projection, error) {
	evs, err := l.Events()
	if err != nil {
		return nil, err
	}
	p := domains.NewProjection()
	for _, e := range evs {
		if err := p.Apply(e); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Wait blocks until the log holds an event with sequence seq, or ctx ends.
func (l *MemLog) Wait(ctx context.Context, seq uint64) error {
	for {
		l.mu.Lock()
		n, ch := uint64(len(l.recs)), l.committed
		l.mu.Unlock()
		if n >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("memlog: waiting for seq %d (at %d): %w", seq, n, ctx.Err())
		}
	}
}

// RelayPosition and SetRelayPosition keep a relay's progress, so MemLog
// can stand in for the store under the bus relay.
func (l *MemLog) RelayPosition(ctx context.Context) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.relay, ctx.Err()
}

// SetRelayPosition records how far a relay got.
func (l *MemLog) SetRelayPosition(ctx context.Context, seq uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.relay = seq
	return nil
}
