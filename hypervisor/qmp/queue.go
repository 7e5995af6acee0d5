package qmp

import (
	"sync"
	"sync/atomic"
)

// eventQueue decouples the reader from the consumer of Events(). push never
// blocks (the queue is unbounded, see the package comment for why); a
// delivery goroutine feeds the unbuffered out channel in order.
type eventQueue struct {
	out chan Event

	mu     sync.Mutex
	items  []Event
	ended  bool // no more pushes: deliver what is left, then close out
	wake   chan struct{}
	queued atomic.Int64 // pushed, not yet received from out

	stopOnce sync.Once
	stopped  chan struct{} // Close: stop delivering at once
	done     chan struct{} // run returned and out is closed
}

func newEventQueue() *eventQueue {
	return &eventQueue{
		out:     make(chan Event),
		wake:    make(chan struct{}, 1),
		stopped: make(chan struct{}),
		done:    make(chan struct{}),
	}
}

func (q *eventQueue) push(ev Event) {
	q.mu.Lock()
	q.items = append(q.items, ev)
	q.mu.Unlock()
	q.queued.Add(1)
	q.signal()
}

// end says the connection is gone; what is queued is still delivered so that
// a consumer sees e.g. the SHUTDOWN that preceded QEMU's hang-up.
func (q *eventQueue) end() {
	q.mu.Lock()
	q.ended = true
	q.mu.Unlock()
	q.signal()
}

// stop abandons undelivered events. Without it a consumer that never reads
// would keep the delivery goroutine alive forever.
func (q *eventQueue) stop() {
	q.stopOnce.Do(func() { close(q.stopped) })
}

func (q *eventQueue) len() int { return int(q.queued.Load()) }

func (q *eventQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

func (q *eventQueue) run() {
	defer close(q.done)
	defer close(q.out)
	for {
		// Take the whole backlog at once: one lock per batch, and the
		// reader never waits for a consumer.
		q.mu.Lock()
		batch, ended := q.items, q.ended
		q.items = nil
		q.mu.Unlock()

		for _, ev := range batch {
			select {
			case q.out <- ev:
				q.queued.Add(-1)
			case <-q.stopped:
				return
			}
		}
		if len(batch) > 0 {
			continue
		}
		if ended {
			return
		}
		select {
		case <-q.wake:
		case <-q.stopped:
			return
		}
	}
}
