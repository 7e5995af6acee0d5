package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
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

	// Fill factors (docs/store.md). Events are keyed by an increasing
	// sequence, so every insert is at the right edge: pack pages full.
	eventsFill = 1.0
	// Index keys are domain-major: each insert lands at the end of its
	// domain's run, in the middle of the tree. Split pages short of full
	// so the next insert into the same run does not split again at once.
	indexFill = 0.9
)

// batchState is the writer's scratch space, reused across commits.
type batchState struct {
	batch   []*request
	pending map[uuid.UUID]uint64 // versions after earlier requests of this batch
	cmds    map[string]struct{}  // command IDs of earlier requests of this batch
	vals    []byte               // index values (sequences); must outlive Put until commit
}

// writer is the only goroutine that writes to the file. It takes the first
// queued append, drains whatever else is queued, commits them in one
// transaction (one pair of fsyncs for the whole group), then replies.
func (s *Store) writer() {
	defer close(s.done)
	w := &batchState{pending: map[uuid.UUID]uint64{}, cmds: map[string]struct{}{}}
	replied := 0
	for {
		r, ok := <-s.reqs
		if !ok {
			return
		}
		w.batch = s.collect(w.batch[:0], r, replied)
		if len(w.batch) == 0 {
			continue // every request was abandoned before we took it
		}
		s.commit(w)
		replied = len(w.batch)
		for i, r := range w.batch {
			r.reply <- struct{}{} // capacity 1, one send per use: never blocks
			w.batch[i] = nil
		}
	}
}

// collect takes r and everything else already queued, up to maxBatchEvents.
// Requests whose caller gave up before we took them are dropped here, so
// a cancelled append is either never written or fully handled.
func (s *Store) collect(batch []*request, r *request, replied int) []*request {
	events := 0
	take := func(r *request) {
		if r.state.CompareAndSwap(stateQueued, stateTaken) {
			batch = append(batch, r)
			events += r.count()
		}
	}
	take(r)
	for events < maxBatchEvents {
		select {
		case r, ok := <-s.reqs:
			if !ok {
				return batch // closed: the next receive ends the writer
			}
			take(r)
			continue
		default:
		}
		break
	}
	return batch
}

// commit applies w.batch in one bbolt transaction. A request that fails its
// own checks gets its own error and writes nothing; the rest commit. An
// error of the transaction itself fails every request of the batch.
func (s *Store) commit(w *batchState) {
	start := time.Now()
	total := 0
	for _, r := range w.batch {
		total += r.count()
	}
	if cap(w.vals) < 8*total {
		w.vals = make([]byte, 8*total)
	}
	vals := w.vals[:8*total]
	clear(w.pending)
	clear(w.cmds)

	last := s.lastSeq.Load()
	next := last
	err := s.db.Update(func(tx *bolt.Tx) error {
		next = last
		ev, ix, cm := tx.Bucket(bucketEvents), tx.Bucket(bucketIndex), tx.Bucket(bucketCommands)
		ev.FillPercent, ix.FillPercent = eventsFill, indexFill
		c := ix.Cursor()
		var key [24]byte
		for _, r := range w.batch {
			r.err = nil
			if !s.check(w, c, cm, r) {
				continue
			}
			r.first, r.base = next+1, w.pending[r.domain]
			copy(key[:16], r.domain[:])
			for i := 0; i < r.count(); i++ {
				next++
				v := vals[:8:8]
				vals = vals[8:]
				binary.BigEndian.PutUint64(v, next)
				if err := ev.Put(v, r.event(i)); err != nil {
					return fmt.Errorf("put event %d: %w", next, err)
				}
				binary.BigEndian.PutUint64(key[16:], r.base+uint64(i)+1)
				if err := ix.Put(key[:], v); err != nil {
					return fmt.Errorf("put index %s/%d: %w", r.domain, r.base+uint64(i)+1, err)
				}
			}
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
		return nil
	})
	if err != nil {
		for _, r := range w.batch {
			if r.err == nil {
				r.err = fmt.Errorf("store: commit: %w", err)
			}
		}
		return
	}
	latency := time.Since(start)
	s.lastSeq.Store(next)
	s.broadcast()
	if s.obs != nil {
		s.obs.Committed(int(next-last), len(w.batch), latency)
	}
}

// check decides whether r may be applied on top of the index and the
// earlier requests of this batch, recording the domain's current version in
// w.pending; a refused request gets its error in r.err.
func (s *Store) check(w *batchState, c *bolt.Cursor, cm *bolt.Bucket, r *request) bool {
	cur, ok := w.pending[r.domain]
	if !ok {
		cur = lastVersion(c, r.domain)
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
