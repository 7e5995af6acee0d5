package qmp

import (
	"errors"
	"fmt"
)

var (
	// ErrDisconnected means the connection to QEMU is gone (EOF, read or
	// write error, protocol violation). Pending and later calls fail with an
	// error wrapping it; Client.Err tells why.
	ErrDisconnected = errors.New("qmp: disconnected")

	// ErrClosed means Close was called on the client.
	ErrClosed = errors.New("qmp: client closed")

	// ErrProtocol means the peer sent something that is not QMP (a line that
	// is not JSON, or JSON that is neither greeting, reply nor event, or a
	// reply to an id that was never sent). It is always wrapped together with
	// ErrDisconnected after the handshake, because such a connection is closed.
	ErrProtocol = errors.New("qmp: protocol error")
)

// Error is an error reply from QEMU: {"error": {"class": ..., "desc": ...}}.
// Execute wraps it, so use errors.As to get at it.
type Error struct {
	Class string `json:"class"` // e.g. GenericError, CommandNotFound, DeviceNotFound
	Desc  string `json:"desc"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("qmp error %s: %s", e.Class, e.Desc)
}

// protocolError builds the error a client dies of when the peer breaks the
// protocol. It matches both ErrDisconnected and ErrProtocol so that callers
// that only care about reconnecting need to check one sentinel.
func protocolError(format string, args ...any) error {
	return fmt.Errorf("%w: %w: %s", ErrDisconnected, ErrProtocol, fmt.Sprintf(format, args...))
}

// maxQuoted bounds how much of an offending line ends up in an error message:
// enough to recognise it, never megabytes in a log.
const maxQuoted = 120

// quote renders a (possibly huge, possibly binary) line for an error message.
func quote(line []byte) string {
	if len(line) <= maxQuoted {
		return fmt.Sprintf("%q", line)
	}
	return fmt.Sprintf("%q... (%d bytes)", line[:maxQuoted], len(line))
}
