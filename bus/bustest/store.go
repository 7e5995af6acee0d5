// Package bustest has test doubles for package bus: an in-memory store with
// the methods bus reads through, event generators, and NATS servers
// (in-process, and Debian's nats-server as an external process).
package bustest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// Store is an in-memory event log with the store's read, notify and relay
// position methods. Appends assign Seq and Version as the real store does.
type Store struct {
	mu        sync.Mutex
	events    []domains.Event // events[i].Seq == i+1
	versions  map[uuid.UUID]uint64
	committed chan struct{}
	relayPos  uint64
	posWrites int
	readErr   error
	posErr    error
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{versions: map[uuid.UUID]uint64{}, committed: make(chan struct{})}
}

// Append commits evs atomically and returns their sequences.
func (s *Store) Append(ctx context.Context, evs ...domains.Event) ([]uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	seqs := make([]uint64, len(evs))
	for i, e := range evs {
		s.versions[e.Domain]++
		e.Version = s.versions[e.Domain]
		e.Seq = uint64(len(s.events) + 1)
		s.events = append(s.events, e)
		seqs[i] = e.Seq
	}
	close(s.committed)
	s.committed = make(chan struct{})
	return seqs, nil
}

// ReadAfter returns up to limit events with Seq > after.
func (s *Store) ReadAfter(ctx context.Context, after uint64, limit int) ([]domains.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readErr != nil {
		return nil, s.readErr
	}
	if after >= uint64(len(s.events)) || limit <= 0 {
		return nil, nil
	}
	end := min(after+uint64(limit), uint64(len(s.events)))
	return append([]domains.Event(nil), s.events[after:end]...), nil
}

// LastSeq is the last committed sequence.
func (s *Store) LastSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint64(len(s.events))
}

// Committed returns a channel closed by the next Append.
func (s *Store) Committed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.committed
}

// RelayPosition returns the saved relay position.
func (s *Store) RelayPosition(ctx context.Context) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.relayPos, ctx.Err()
}

// SetRelayPosition saves the relay position; it refuses to go backwards,
// as the real store should, so a test catches a relay that does.
func (s *Store) SetRelayPosition(ctx context.Context, seq uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.posErr != nil {
		return s.posErr
	}
	if seq < s.relayPos || seq > uint64(len(s.events)) {
		return errors.New("bustest: relay position out of range")
	}
	s.relayPos = seq
	s.posWrites++
	return nil
}

// PositionWrites counts SetRelayPosition calls, to check they are batched.
func (s *Store) PositionWrites() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.posWrites
}

// FailReads makes ReadAfter fail with err (nil restores it).
func (s *Store) FailReads(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readErr = err
}

// FailPositionWrites makes SetRelayPosition fail with err (nil restores it).
func (s *Store) FailPositionWrites(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.posErr = err
}

// Event returns an unsequenced rtc-changed event for domain; n makes the
// payloads distinct so tests can tell events apart.
func Event(domain uuid.UUID, host string, n int64) domains.Event {
	return domains.NewEvent(domain, time.Unix(1700000000, 0).Add(time.Duration(n)*time.Millisecond),
		"", host, domains.RTCChanged{Offset: n, Adjustment: n})
}

// BigDefined returns an unsequenced defined event whose one disk path is
// "/" and pathBytes-1 '<': JSON escapes '<' as \u003c, so 300 KiB of path
// make an event of about 1.8 MB of JSON, more than a NATS message carries
// (issue 7's reproduction). Only a log written without the bus's append
// guard (an older log) can hold one.
func BigDefined(domain uuid.UUID, host, name string, pathBytes int) domains.Event {
	cfg := domains.Config{Name: name, UUID: domain, MemoryMiB: 64, VCPUs: 1,
		Clock: domains.Clock{Offset: domains.OffsetUTC},
		Disks: []domains.Disk{{Target: "vda", Path: "/" + strings.Repeat("<", pathBytes-1)}}}
	return domains.NewEvent(domain, time.Unix(1700000000, 0), "", host, domains.Defined{Config: cfg})
}
