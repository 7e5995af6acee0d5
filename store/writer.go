package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"

	"github.com/vmledger/vmledger/domains"
)

const (
	// reqQueue is how many appends may wait for the writer. While a commit
	// syncs, new appends queue here and form the next group.
	reqQueue = 4096
	// maxBatchEvents bounds one group commit so a flood of appends cannot
	// make one transaction (and everyone's latency) arbitrarily long.
	maxBatchEvents = 16384
	// maxLinger bounds how long collect waits for released appenders to
	// come back before committing (see collect).
	maxLinger = 1 * time.Millisecond

	// Fill factors (docs/store.md). Events are keyed by an increasing
	// sequence, so every insert is at the right edge: pack pages full.
	eventsFill = 1.0
	// Index keys are domain-major: a flush inserts a sorted run at the end
	// of each domain's run, in the middle of the tree. 1.0 leaves slivers
	// when the next insert lands in a page just split full, 0.5 leaves
	// pages half empty for good; 0.9 measured best in the worst case
	// (73–88 % of leaf space used; docs/store.md).
	indexFill = 0.9
)

// batchState is the writer's scratch space, reused across commits.
type batchState struct {
	batch   []*request
	pending map[uuid.UUID]uint64   // versions after earlier requests of this batch
	cmds    map[string]struct{}    // command IDs of earlier requests of this batch
	keys    []byte                 // event keys; bbolt keeps values (and these) until commit
	ixVals  []byte                 // index values of a flush, likewise
	entries map[uuid.UUID][]lagPos // index entries of this commit, for the lag

	lastCommit time.Duration // how long the last commit took
	expected   int           // requests expected in the next batch (collect)
}

// writer is the only goroutine that writes to the file. It takes the first
// queued append, drains whatever else is queued, commits them in one
// transaction (one pair of fsyncs for the whole group), then replies.
func (s *Store) writer() {
	defer close(s.done)
	w := &batchState{pending: map[uuid.UUID]uint64{}, cmds: map[string]struct{}{}, entries: map[uuid.UUID][]lagPos{}}
	var retry *time.Timer // runs while the store is broken (recover.go)
	for {
		var r *request
		ok := true
		if s.broken.Load() == nil {
			select {
			case r, ok = <-s.reqs:
			case <-s.wake: // broken outside a commit (writeTx)
				continue
			}
		} else {
			if retry == nil {
				retry = time.NewTimer(s.recoverEvery())
			}
			select {
			case r, ok = <-s.reqs:
			case <-retry.C:
				retry = nil
				s.tryRecover()
				continue
			}
		}
		if !ok {
			// Closing: write the lagging index entries, so that a cleanly
			// closed log has a complete index.
			if s.lag.n > 0 && s.broken.Load() == nil {
				w.batch = w.batch[:0]
				s.commit(w, true)
			}
			return
		}
		s.collect(w, r)
		if len(w.batch) == 0 {
			continue // every request was abandoned before we took it
		}
		if b := s.broken.Load(); b != nil {
			for i, r := range w.batch {
				r.err = *b
				r.reply <- struct{}{}
				w.batch[i] = nil
			}
			continue
		}
		start := time.Now()
		s.commit(w, false)
		w.lastCommit = time.Since(start)
		w.expected = len(w.batch) + len(s.reqs)
		for i, r := range w.batch {
			r.reply <- struct{}{} // capacity 1, one send per use: never blocks
			w.batch[i] = nil
		}
	}
}

// collect takes r and everything else already queued, up to maxBatchEvents.
// Requests whose caller gave up before we took them are dropped here, so
// a cancelled append is either never written or fully handled.
//
// Lingering: the appenders released by the last commit are usually about
// to append again, but the first of them reaches the queue before the
// others have run. Committing at once splits them into two groups that
// alternate, each waiting for the other's fsyncs: half the throughput. So
// while fewer requests are queued than are expected (those the last commit
// released plus those that queued during it), collect yields the processor
// (runtime.Gosched: the released appenders are runnable, and run first) and
// drains again. It stops as soon as a yield brings nothing twice in a row,
// or after half the last commit's duration (at most maxLinger). A timer
// would be simpler but Go's timers wait ~1 ms here, longer than a commit.
// A lone appender costs one empty yield.
func (s *Store) collect(w *batchState, r *request) {
	w.batch = w.batch[:0]
	events := 0
	take := func(r *request) {
		if r.state.CompareAndSwap(stateQueued, stateTaken) {
			w.batch = append(w.batch, r)
			events += r.count()
		}
	}
	drain := func() (got int, open bool) {
		for events < maxBatchEvents {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					return got, false // closed: the next receive ends the writer
				}
				take(r)
				got++
				continue
			default:
			}
			break
		}
		return got, true
	}
	take(r)
	if _, open := drain(); !open {
		return
	}
	start := time.Now()
	linger := min(w.lastCommit/2, maxLinger)
	for idle := 0; len(w.batch) < w.expected && events < maxBatchEvents && idle < 2; {
		if time.Since(start) >= linger {
			break
		}
		runtime.Gosched()
		got, open := drain()
		if !open {
			return
		}
		if got == 0 {
			idle++
		} else {
			idle = 0
		}
	}
}

// commit applies w.batch in one bbolt transaction. A request that fails its
// own checks gets its own error and writes nothing; the rest commit. An
// error of the transaction itself fails every request of the batch.
//
// The events' index entries go to the lag (lag.go); when it is full, or
// with flushIndex, this commit also writes the whole lag to the index.
func (s *Store) commit(w *batchState, flushIndex bool) {
	start := time.Now()
	total := 0
	for _, r := range w.batch {
		total += r.count()
	}
	if cap(w.keys) < 8*total {
		w.keys = make([]byte, 8*total)
	}
	flush := flushIndex || s.lag.n+total >= indexFlushAt
	if n := 8 * (s.lag.n + total); flush && cap(w.ixVals) < n {
		w.ixVals = make([]byte, n)
	}
	clear(w.pending)
	clear(w.cmds)
	clear(w.entries)

	last := s.lastSeq.Load()
	next := last
	built := false // the transaction's work is done; from here bbolt writes it
	err := s.writeTx(func(tx *bolt.Tx) error {
		next = last
		keys := w.keys[:8*total]
		ev, cm := tx.Bucket(bucketEvents), tx.Bucket(bucketCommands)
		ev.FillPercent = eventsFill
		c := tx.Bucket(bucketIndex).Cursor()
		for _, r := range w.batch {
			r.err = nil
			if !s.check(w, c, cm, r) {
				continue
			}
			r.first, r.base = next+1, w.pending[r.domain]
			ps := w.entries[r.domain]
			for i := 0; i < r.count(); i++ {
				next++
				k := keys[:8:8]
				keys = keys[8:]
				binary.BigEndian.PutUint64(k, next)
				if err := ev.Put(k, r.event(i)); err != nil {
					return fmt.Errorf("put event %d: %w", next, err)
				}
				ps = append(ps, lagPos{version: r.base + uint64(i) + 1, seq: next})
			}
			w.entries[r.domain] = ps
			w.pending[r.domain] = r.base + uint64(r.count())
			if r.cmdID != "" {
				// The sequence of the command's first event; 0 if it had none.
				first := r.first
				if r.count() == 0 {
					first = 0
				}
				binary.BigEndian.PutUint64(r.cmdVal[:8], first)
				if err := cm.Put([]byte(r.cmdID), r.cmdVal); err != nil {
					return fmt.Errorf("put command %q: %w", r.cmdID, err)
				}
				w.cmds[r.cmdID] = struct{}{}
			}
		}
		if flush {
			if err := s.lag.flush(tx, w.entries, next, w.ixVals); err != nil {
				return err
			}
		}
		built = true
		return nil
	})
	if err != nil && built {
		// bbolt failed while writing or syncing the commit: the
		// transaction may be visible (bbolt reloads the newest meta page),
		// so neither "done" nor "nothing written" is safe to say, and the
		// next commit would reuse its sequences. Stop appending.
		broken := fmt.Errorf("%w: %w: %w", ErrBroken, ErrMaybeCommitted, err)
		s.setBroken(broken)
		for _, r := range w.batch {
			if r.err == nil {
				r.err = broken
			}
		}
		return
	}
	if err != nil {
		for _, r := range w.batch {
			if r.err == nil {
				r.err = fmt.Errorf("store: commit: %w", err)
			}
		}
		return
	}
	latency := time.Since(start)
	// Lag before lastSeq: a reader that saw the new LastSeq (or was woken
	// by Committed) finds these events through ReadDomain.
	if flush {
		s.lag.flushed(next)
	} else {
		s.lag.add(w.entries)
	}
	s.lastSeq.Store(next)
	s.broadcast()
	if s.obs != nil && len(w.batch) > 0 {
		s.obs.Committed(int(next-last), len(w.batch), latency)
	}
}

// check decides whether r may be applied on top of the index and the
// earlier requests of this batch, recording the domain's current version in
// w.pending; a refused request gets its error in r.err.
func (s *Store) check(w *batchState, c *bolt.Cursor, cm *bolt.Bucket, r *request) bool {
	cur, ok := w.pending[r.domain]
	if !ok {
		// The writer is the lag's only mutator: no lock needed to read it.
		if cur = s.lag.lastLocked(r.domain); cur == 0 {
			cur = lastVersion(c, r.domain)
		}
		w.pending[r.domain] = cur
	}
	if r.expected != AnyVersion && r.expected != cur {
		r.err = fmt.Errorf("store: append for %s: expected version %d, current %d: %w",
			r.domain, r.expected, cur, ErrVersionConflict)
		return false
	}
	if r.cmdID != "" {
		if _, dup := w.cmds[r.cmdID]; dup || cm.Get([]byte(r.cmdID)) != nil {
			r.err = fmt.Errorf("store: append for %s: command %q: %w", r.domain, r.cmdID, ErrDuplicateCommand)
			return false
		}
	}
	if r.expected == AnyVersion && cur != 0 {
		if err := r.rebase(cur); err != nil {
			r.err = err
			return false
		}
	}
	return true
}

// lastVersion is the highest version of id in the index, 0 if none.
func lastVersion(c *bolt.Cursor, id uuid.UUID) uint64 {
	var k [24]byte
	copy(k[:16], id[:])
	binary.BigEndian.PutUint64(k[16:], ^uint64(0))
	key, _ := c.Seek(k[:])
	if key == nil {
		key, _ = c.Last()
	} else {
		key, _ = c.Prev()
	}
	if len(key) != 24 || !bytes.Equal(key[:16], id[:]) {
		return 0
	}
	return binary.BigEndian.Uint64(key[16:])
}

// rebase rewrites the versions of an AnyVersion request, encoded as
// 1, 2, ..., to base+1, base+2, ... The version is the uvarint right after
// the codec byte and the domain (domains/codec.go, PeekDomain), so only
// that prefix is spliced; the rest of each event is copied as is.
func (r *request) rebase(base uint64) error {
	const prefix = 1 + 16
	out := make([]byte, 0, len(r.buf)+binary.MaxVarintLen64*r.count())
	ends := make([]int, r.count())
	for i := range ends {
		b := r.event(i)
		_, v, err := domains.PeekDomain(b)
		if err != nil {
			return fmt.Errorf("store: append for %s: event %d: %w", r.domain, i, err)
		}
		n := len(binary.AppendUvarint(nil, v))
		out = append(out, b[:prefix]...)
		out = binary.AppendUvarint(out, base+v)
		out = append(out, b[prefix+n:]...)
		ends[i] = len(out)
	}
	r.buf, r.ends = out, ends
	return nil
}
