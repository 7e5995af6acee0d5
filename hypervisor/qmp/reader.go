package qmp

import (
	"bufio"
	"errors"
	"fmt"
)

// readLoop is the connection's only reader. It never blocks on anything but
// the socket: replies go to buffered channels, events to an unbounded queue.
func (c *Client) readLoop(r *bufio.Reader) {
	defer close(c.readerDone)
	defer c.events.end()
	for {
		line, err := readLine(r, c.maxLine)
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				c.fail(protocolError("%v", err))
			} else {
				c.fail(fmt.Errorf("%w: %w", ErrDisconnected, err))
			}
			return
		}
		if len(line) == 0 {
			continue // tolerate blank lines; they carry nothing
		}
		m, err := decodeLine(line)
		if err != nil {
			c.fail(protocolError("%v", err))
			return
		}
		switch m.kind {
		case kindEvent:
			c.events.push(m.event)
		case kindReply:
			if err := c.deliver(m); err != nil {
				c.fail(err)
				return
			}
		default:
			c.fail(protocolError("greeting after handshake: %s", quote(line)))
			return
		}
	}
}

// deliver hands a reply to its caller. A reply to an id nobody waits for any
// more is a late reply (its caller's ctx expired) and is dropped; a reply to
// an id this client never sent means the stream is corrupt.
func (c *Client) deliver(m message) error {
	if m.id == 0 || m.id > c.lastID.Load() {
		return protocolError("reply to id %d, which was never sent", m.id)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ch, ok := c.pending[m.id]
	if !ok {
		c.lateReplies.Add(1)
		return nil
	}
	delete(c.pending, m.id)
	ch <- reply{ret: m.ret, qmpErr: m.qmpErr} // buffered, never blocks
	return nil
}
