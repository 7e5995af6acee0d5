// Package qmp is a client for the QEMU Machine Protocol.
//
// A Client owns one connection to one QEMU monitor socket. The design follows
// from what vmledger needs of it:
//
//   - One reader goroutine per connection reads newline-delimited JSON with a
//     bufio.Reader (no bufio.Scanner: its 64 KiB token limit breaks on large
//     replies such as query-qmp-schema). Every command carries a unique,
//     monotonic uint64 "id"; replies are matched by id, so callers may run
//     commands concurrently and replies may arrive in any order.
//   - Every blocking call takes a context. When it expires the call returns
//     the context's error (wrapped); the reply, if it ever comes, is dropped
//     and counted in Stats().LateReplies.
//   - Events never stall replies: the reader appends them to an unbounded
//     in-memory queue and a separate goroutine hands them to Events(). QEMU
//     emits few events, and dropping one (a SHUTDOWN, an RTC_CHANGE) would
//     lose a fact the agent must record, so memory is the better price.
//   - Anything the peer sends that is not a greeting, reply or event is a
//     protocol violation: the connection is closed and every pending call
//     fails with an error wrapping both ErrDisconnected and ErrProtocol. A
//     desynchronised stream cannot be trusted to match replies any more.
//
// See docs/qmp.md for error semantics and the RTC path verified against QEMU 7.2.
package qmp
