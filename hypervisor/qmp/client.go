package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Monitor is the small surface the rest of vmledger needs from a QMP
// connection; *Client implements it. Consumers that want a fake at a higher
// level than the wire (see qmptest for the wire) can accept a Monitor.
type Monitor interface {
	Execute(ctx context.Context, cmd string, args, result any) error
	Events() <-chan Event
	Done() <-chan struct{}
	Err() error
	Close() error
}

var _ Monitor = (*Client)(nil)

// Greeting is what QEMU announces when a client connects.
type Greeting struct {
	Version      Version
	Capabilities []string // e.g. ["oob"]; this client enables none of them
}

// Version is QEMU's version from the greeting.
type Version struct {
	Major, Minor, Micro int
	Package             string // distribution build string, may be empty
}

func (v Version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro)
	if v.Package != "" {
		s += " (" + v.Package + ")"
	}
	return s
}

const (
	// DefaultHandshakeTimeout bounds the handshake when ctx has no deadline:
	// a socket that accepts but never greets must not hang the agent.
	DefaultHandshakeTimeout = 10 * time.Second

	// DefaultMaxLineBytes bounds one line from QEMU. Real replies reach a few
	// MiB at most (query-qmp-schema is ~200 KiB); the limit only stops a
	// broken peer from eating memory.
	DefaultMaxLineBytes = 64 << 20
)

// Option configures a Client.
type Option func(*options)

type options struct {
	handshakeTimeout time.Duration
	maxLineBytes     int
}

// WithHandshakeTimeout replaces DefaultHandshakeTimeout. It only applies
// when the context given to Dial or New has no deadline.
func WithHandshakeTimeout(d time.Duration) Option {
	return func(o *options) { o.handshakeTimeout = d }
}

// WithMaxLineBytes replaces DefaultMaxLineBytes. A longer line is a protocol error.
func WithMaxLineBytes(n int) Option {
	return func(o *options) { o.maxLineBytes = n }
}

// Client is a QMP connection. It is safe for concurrent use.
type Client struct {
	conn     net.Conn
	greeting Greeting
	maxLine  int

	// lastID is the id of the most recent command; ids start at 1.
	lastID atomic.Uint64
	// writeSem (capacity 1) keeps each command line whole on the wire.
	writeSem chan struct{}

	mu      sync.Mutex
	pending map[uint64]chan reply // nil once the connection is dead
	err     error                 // why the connection is dead

	done       chan struct{} // closed when the connection is dead
	readerDone chan struct{} // closed when the reader goroutine returned
	events     *eventQueue

	lateReplies atomic.Uint64
}

// reply is what a waiting Execute receives: a result or why there is none.
type reply struct {
	ret    json.RawMessage
	qmpErr *Error
	err    error
}

// Dial connects to a QMP socket (usually network "unix") and performs the
// handshake, all under ctx (or DefaultHandshakeTimeout if ctx has no deadline).
func Dial(ctx context.Context, network, addr string, opts ...Option) (*Client, error) {
	o := newOptions(opts)
	ctx, cancel := handshakeContext(ctx, o)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("qmp: dial %s %s: %w", network, addr, err)
	}
	return New(ctx, conn, opts...)
}

// New performs the handshake on conn and starts the client. New owns conn
// from then on: it closes it if the handshake fails, and Close closes it.
func New(ctx context.Context, conn net.Conn, opts ...Option) (*Client, error) {
	o := newOptions(opts)
	ctx, cancel := handshakeContext(ctx, o)
	defer cancel()

	c := &Client{
		conn:       conn,
		maxLine:    o.maxLineBytes,
		writeSem:   make(chan struct{}, 1),
		pending:    make(map[uint64]chan reply),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
		events:     newEventQueue(),
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	if err := c.handshake(ctx, r); err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp: handshake: %w", err)
	}
	go c.readLoop(r)
	go c.events.run()
	return c, nil
}

func newOptions(opts []Option) options {
	o := options{handshakeTimeout: DefaultHandshakeTimeout, maxLineBytes: DefaultMaxLineBytes}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

func handshakeContext(ctx context.Context, o options) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, o.handshakeTimeout)
}

// Greeting returns what QEMU announced on connect, including its version.
func (c *Client) Greeting() Greeting { return c.greeting }

// Version is shorthand for Greeting().Version.
func (c *Client) Version() Version { return c.greeting.Version }

// Done is closed when the connection is dead, for whatever reason.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is nil while the connection is alive, then says why it died: an error
// wrapping ErrDisconnected (and ErrProtocol for a protocol violation), or
// ErrClosed after Close.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Events returns the channel of QMP events, in the order QEMU sent them.
// Every call returns the same channel. After a disconnect the events
// received before it are still delivered, then the channel is closed; Close
// closes it at once, dropping what was not yet taken.
func (c *Client) Events() <-chan Event { return c.events.out }

// Stats are counters for metrics and tests.
type Stats struct {
	QueuedEvents int    // received, not yet taken from Events(); may lag a hand-over briefly
	LateReplies  uint64 // replies dropped because the caller had given up
}

// Stats returns current counters.
func (c *Client) Stats() Stats {
	return Stats{QueuedEvents: c.events.len(), LateReplies: c.lateReplies.Load()}
}

// Close closes the connection, fails pending calls with ErrClosed, closes
// Events() and waits for the client's goroutines to exit. It is idempotent
// and always returns nil: there is nothing a caller could do about a failed
// close of a socket it is abandoning.
func (c *Client) Close() error {
	c.fail(ErrClosed)
	c.events.stop()
	<-c.readerDone
	<-c.events.done
	return nil
}

// fail marks the connection dead (once; the first reason wins), closes the
// socket so the reader wakes up, and fails every pending call.
func (c *Client) fail(reason error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = reason
	for id, ch := range c.pending {
		ch <- reply{err: reason} // buffered, never blocks
		delete(c.pending, id)
	}
	c.pending = nil
	c.mu.Unlock()
	c.conn.Close()
	close(c.done)
}
