package bus

import (
	"context"

	"github.com/vmledger/vmledger/domains"
)

// EventReader is the read side of the event log: the history service needs
// nothing more.
type EventReader interface {
	// ReadAfter returns up to limit committed events with Seq > after, in
	// sequence order.
	ReadAfter(ctx context.Context, after uint64, limit int) ([]domains.Event, error)
	// LastSeq is the sequence of the last committed event (0 when empty).
	LastSeq() uint64
}

// CommitWatcher lets the relay sleep until something is committed instead
// of polling the log.
type CommitWatcher interface {
	// Committed returns a channel closed at the next commit after the call.
	Committed() <-chan struct{}
}

// RelayPositioner keeps how far the relay got, so a restarted agent resumes
// there instead of republishing the whole log.
type RelayPositioner interface {
	RelayPosition(ctx context.Context) (uint64, error)
	SetRelayPosition(ctx context.Context, seq uint64) error
}

// RelayStore is everything the relay needs from the store.
type RelayStore interface {
	EventReader
	CommitWatcher
	RelayPositioner
}
