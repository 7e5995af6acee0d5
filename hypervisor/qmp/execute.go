package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Execute runs cmd with args (nil, or anything that encodes to a JSON object)
// and decodes the "return" value into result (nil to ignore it).
//
// Errors: a QMP error reply is returned wrapped as *Error; a dead connection
// as an error wrapping ErrDisconnected or ErrClosed; an expired ctx as its
// error, wrapped. In the last case the command may still run in QEMU: QMP has
// no cancellation. Its reply is dropped when it arrives.
func (c *Client) Execute(ctx context.Context, cmd string, args, result any) error {
	_, err := c.execute(ctx, cmd, cmd, args, result)
	return err
}

// execute also reports whether the command reached the socket, which Quit
// needs to tell "QEMU hung up because it is quitting" from "already dead".
// label names the call in errors (e.g. "qom-get /machine rtc-time").
func (c *Client) execute(ctx context.Context, label, cmd string, args, result any) (sent bool, err error) {
	return c.executeOOB(ctx, label, cmd, args, result, nil)
}

// executeOOB is execute with ancillary data (SCM_RIGHTS) sent with the
// command's first bytes; nil for none.
func (c *Client) executeOOB(ctx context.Context, label, cmd string, args, result any, oob []byte) (sent bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("qmp: %s: %w", label, err)
	}
	id := c.lastID.Add(1)
	line, err := encodeCommand(cmd, args, id)
	if err != nil {
		return false, err
	}

	// Register before writing: the reply may arrive before Write returns.
	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.pending == nil {
		err := c.err
		c.mu.Unlock()
		return false, fmt.Errorf("qmp: %s: %w", label, err)
	}
	c.pending[id] = ch
	c.mu.Unlock()

	if err := c.write(ctx, line, oob); err != nil {
		c.forget(id)
		return false, fmt.Errorf("qmp: %s: %w", label, err)
	}

	var r reply
	select {
	case r = <-ch:
	case <-ctx.Done():
		c.forget(id)
		// The reply may have raced in before forget: it is the truth about
		// what QEMU did, so prefer it to the context error.
		select {
		case r = <-ch:
		default:
			return true, fmt.Errorf("qmp: %s: %w", label, ctx.Err())
		}
	}
	switch {
	case r.err != nil:
		return true, fmt.Errorf("qmp: %s: %w", label, r.err)
	case r.qmpErr != nil:
		return true, fmt.Errorf("qmp: %s: %w", label, r.qmpErr)
	case result != nil:
		if err := json.Unmarshal(r.ret, result); err != nil {
			return true, fmt.Errorf("qmp: %s: decode result: %w", label, err)
		}
	}
	return true, nil
}

// forget stops waiting for id; a reply to it is then a late reply.
func (c *Client) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id) // no-op on a nil map
	c.mu.Unlock()
}

// write sends one whole line under ctx. A write that fails before sending
// anything leaves the stream intact and only fails this call; a partial or
// otherwise failed write leaves QEMU holding half a command, so the
// connection is torn down.
func (c *Client) write(ctx context.Context, line, oob []byte) error {
	// A channel rather than a mutex, so that waiting behind another
	// caller's stuck write also honours ctx.
	select {
	case c.writeSem <- struct{}{}:
		defer func() { <-c.writeSem }()
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := ctx.Err(); err != nil { // select picks randomly when both are ready
		return err
	}
	release := c.deadlineFrom(ctx, c.conn.SetWriteDeadline)
	n, err := c.writeLine(line, oob)
	release()
	if err == nil {
		return nil
	}
	if ctxErr := ctxCause(ctx, err); n == 0 && ctxErr != nil {
		return ctxErr
	}
	reason := fmt.Errorf("%w: write: %w", ErrDisconnected, err)
	c.fail(reason)
	// Report the first reason the connection died, which may differ from
	// ours (e.g. the reader saw EOF first, or Close).
	if first := c.Err(); first != nil && !errors.Is(reason, first) {
		return first
	}
	return reason
}

// writeLine writes line, with oob attached to its first bytes when set. A
// stream socket may take a sendmsg only in part; the ancillary data went
// with the first byte, so the rest is a plain write.
func (c *Client) writeLine(line, oob []byte) (int, error) {
	if oob == nil {
		return c.conn.Write(line)
	}
	mw, ok := c.conn.(unixMsgWriter)
	if !ok {
		return 0, ErrNoFDPassing
	}
	n, _, err := mw.WriteMsgUnix(line, oob, nil)
	if err != nil || n == len(line) {
		return n, err
	}
	m, err := c.conn.Write(line[n:])
	return n + m, err
}
