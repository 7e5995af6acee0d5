package store

import (
	"errors"

	"github.com/vmledger/vmledger/domains"
)

// Sentinel errors. The conflict-coded ones are *domains.Error values so
// that errors.Is(err, domains.ErrConflict) holds for them, and a reply on
// the bus carries the conflict code; errors.Is against the store sentinel
// itself still tells them apart.
var (
	// ErrVersionConflict: the domain's version is not the expected one.
	ErrVersionConflict error = &domains.Error{Code: domains.CodeConflict, Message: "store: version conflict"}
	// ErrDuplicateCommand: the command ID was already recorded; nothing
	// was appended. Command returns the recorded result.
	ErrDuplicateCommand error = &domains.Error{Code: domains.CodeConflict, Message: "store: duplicate command ID"}

	// ErrLocked: another process holds the file (a running agent).
	ErrLocked = errors.New("store: file is locked")
	// ErrBroken: a commit failed once bbolt had begun writing it (a write
	// or fsync failed: a full disk, an I/O error); the store refuses
	// appends until it has reopened the file and a probe commit succeeded
	// (recover.go), which it retries by itself.
	ErrBroken = errors.New("store: a commit failed while writing; appends are refused until the log is reopened")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrNoSnapshot: no snapshot was saved yet.
	ErrNoSnapshot = errors.New("store: no snapshot")
	// ErrReadOnly: a write on a store opened with OpenReadOnly.
	ErrReadOnly = errors.New("store: read-only")
	// ErrFormat: the file is not a vmledger store of a known format.
	ErrFormat = errors.New("store: unknown file format")
	// ErrCorrupt: Check (or a read) found an inconsistency.
	ErrCorrupt = errors.New("store: corrupt")
	// ErrMaybeCommitted: the context ended after the writer took the
	// append, so it may still commit. Retry with the same CommandID.
	ErrMaybeCommitted = errors.New("store: append may have committed")
)

func invalidf(format string, a ...any) error {
	return domains.Errorf(domains.CodeInvalid, "store: "+format, a...)
}
