package store

import (
	"encoding/binary"
	"fmt"
)

// A command's value in the commands bucket:
//
//	first sequence (8, big endian; 0 if the command had no events)
//	[0x00, digest (32)]  only when the append carried a CommandDigest
//	result               the opaque reply
//
// Results are the domains service's JSON (they start with '{'), so a zero
// byte after the sequence marks the digest; a value without it (older
// logs, or an append without a digest) is read as having none.
const (
	digestMark = 0x00
	digestLen  = 32
)

type command struct {
	first  uint64
	digest []byte // nil: none recorded
	result []byte
}

// appendCommand encodes a command's value with a zero first sequence
// (the writer fills it in).
func appendCommand(b, digest, result []byte) []byte {
	b = append(b, make([]byte, 8)...)
	if len(digest) > 0 {
		b = append(append(b, digestMark), digest...)
	}
	return append(b, result...)
}

// parseCommand decodes a command's value; the slices alias v.
func parseCommand(v []byte) (command, error) {
	if len(v) < 8 {
		return command{}, fmt.Errorf("command value of %d bytes: %w", len(v), ErrCorrupt)
	}
	c := command{first: binary.BigEndian.Uint64(v), result: v[8:]}
	if len(v) > 8 && v[8] == digestMark {
		if len(v) < 8+1+digestLen {
			return command{}, fmt.Errorf("command value of %d bytes, digest cut short: %w", len(v), ErrCorrupt)
		}
		c.digest, c.result = v[9:9+digestLen], v[9+digestLen:]
	}
	return c, nil
}
