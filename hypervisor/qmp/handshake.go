package qmp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// handshake reads the greeting, leaves capabilities-negotiation mode and
// checks QEMU's answer. It runs before the reader goroutine exists, so it
// reads synchronously and bounds itself with socket deadlines derived from ctx.
func (c *Client) handshake(ctx context.Context, r *bufio.Reader) error {
	release := c.deadlineFrom(ctx, c.conn.SetDeadline)
	defer release()
	// wrap turns a deadline-induced I/O error into the context's error, which
	// is what the caller asked about.
	wrap := func(what string, err error) error {
		if ctxErr := ctxCause(ctx, err); ctxErr != nil {
			return fmt.Errorf("%s: %w", what, ctxErr)
		}
		return fmt.Errorf("%s: %w: %w", what, ErrDisconnected, err)
	}

	line, err := readLine(r, c.maxLine)
	if err != nil {
		return wrap("waiting for greeting", err)
	}
	m, err := decodeLine(line)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrProtocol, err)
	}
	if m.kind != kindGreeting {
		return fmt.Errorf("%w: expected greeting, got %s", ErrProtocol, quote(line))
	}
	c.greeting = m.greeting

	id := c.lastID.Add(1)
	cmd, err := encodeCommand("qmp_capabilities", nil, id)
	if err != nil {
		return err
	}
	if _, err := c.conn.Write(cmd); err != nil {
		return wrap("sending qmp_capabilities", err)
	}
	for {
		line, err := readLine(r, c.maxLine)
		if err != nil {
			return wrap("waiting for qmp_capabilities reply", err)
		}
		m, err := decodeLine(line)
		if err != nil {
			return fmt.Errorf("%w: %s", ErrProtocol, err)
		}
		switch {
		case m.kind == kindEvent:
			// QEMU sends no events before negotiation ends, but one racing
			// the reply is harmless: keep it for Events().
			c.events.push(m.event)
			continue
		case m.kind != kindReply || m.id != id:
			return fmt.Errorf("%w: expected qmp_capabilities reply, got %s", ErrProtocol, quote(line))
		case m.qmpErr != nil:
			return fmt.Errorf("qmp_capabilities: %w", m.qmpErr)
		case !isEmptyObject(m.ret):
			return fmt.Errorf("%w: qmp_capabilities returned %s, want {}", ErrProtocol, quote(m.ret))
		}
		return nil
	}
}

// ctxCause returns ctx's error if ctx caused the I/O error err. Socket
// deadlines only ever come from ctx, but the kernel's timer can fire a hair
// before the context's, so a timeout waits briefly for ctx to catch up.
func ctxCause(ctx context.Context, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return ctx.Err()
}

func isEmptyObject(raw json.RawMessage) bool {
	var obj map[string]json.RawMessage
	return bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) &&
		json.Unmarshal(raw, &obj) == nil && len(obj) == 0
}

// deadlineFrom makes blocking I/O on the connection honour ctx: its deadline
// becomes the socket deadline, and cancellation moves the socket deadline
// into the past, which unblocks a pending Read or Write. The returned release
// func must be called when the I/O is over; it waits for a racing
// cancellation to finish and then clears the deadline again.
func (c *Client) deadlineFrom(ctx context.Context, set func(time.Time) error) (release func()) {
	if dl, ok := ctx.Deadline(); ok {
		set(dl)
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		set(time.Unix(1, 0))
	})
	return func() {
		if !stop() {
			<-fired
		}
		set(time.Time{})
	}
}

// encodeCommand renders one command line. Arguments must encode to a JSON
// object (or be nil); QEMU rejects anything else, and catching it here gives
// the caller a clear error without touching the connection.
func encodeCommand(cmd string, args any, id uint64) ([]byte, error) {
	if cmd == "" {
		return nil, errors.New("qmp: empty command name")
	}
	var rawArgs json.RawMessage
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return nil, fmt.Errorf("qmp: %s: encode arguments: %w", cmd, err)
		}
		switch {
		case bytes.Equal(b, []byte("null")):
			// A typed nil pointer: same as no arguments.
		case len(b) == 0 || b[0] != '{':
			return nil, fmt.Errorf("qmp: %s: arguments must encode to a JSON object, got %s", cmd, quote(b))
		default:
			rawArgs = b
		}
	}
	name, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("qmp: %s: encode: %w", cmd, err)
	}
	// Assembled by hand rather than by marshalling a struct holding the
	// arguments: that would re-validate them, doubling the cost of big ones.
	line := make([]byte, 0, len(name)+len(rawArgs)+64)
	line = append(append(append(line, `{"execute":`...), name...), ',')
	if rawArgs != nil {
		line = append(append(append(line, `"arguments":`...), rawArgs...), ',')
	}
	line = strconv.AppendUint(append(line, `"id":`...), id, 10)
	return append(line, '}', '\n'), nil
}
