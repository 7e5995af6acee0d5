package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"

	"github.com/vmledger/vmledger/domains"
)

// The per-domain index is written behind the events, in bulk.
//
// Index keys are domain-major, so the entries of one group commit land in
// as many different leaf pages as there are domains in it, and bbolt
// rewrites each touched leaf whole: measured on the reference machine, one
// index entry per leaf per commit cost ~40µs of writer CPU per event, an
// entry among sixteen for the same leaf ~3µs (docs/store.md). So a commit
// writes only the events (and commands); their index entries stay in
// memory, in this lag, until indexFlushAt of them have gathered (or the
// store closes). Then one commit writes them all, sorted, together with
// meta "indexed": every event up to that sequence has its index entry, no
// later one has. After a crash, Open rebuilds the lag from the events after
// "indexed": nothing is lost, and opening never writes.
//
// Readers merge the bucket and the lag; where both hold a version (a flush
// between a reader's two looks) the bucket wins, which is the same answer.

// indexFlushAt is how many lagging index entries trigger a flush. Bounds
// the memory (~40 B each), the scan at Open after a crash, and the extra
// work of the flushing commit (a few milliseconds).
const indexFlushAt = 8192

// lagPos is one index entry of a domain, not yet in the index bucket.
type lagPos struct {
	version uint64
	seq     uint64
}

// lagIndex holds the index entries of events after indexed. The writer is
// its only mutator and reads it without the lock; readers take mu.
type lagIndex struct {
	mu       sync.RWMutex
	indexed  uint64
	n        int
	byDomain map[uuid.UUID][]lagPos // in version order
}

func newLag(indexed uint64) *lagIndex {
	return &lagIndex{indexed: indexed, byDomain: map[uuid.UUID][]lagPos{}}
}

// last is the domain's highest lagging version, 0 if none.
func (l *lagIndex) last(id uuid.UUID) uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.lastLocked(id)
}

func (l *lagIndex) lastLocked(id uuid.UUID) uint64 {
	if ps := l.byDomain[id]; len(ps) > 0 {
		return ps[len(ps)-1].version
	}
	return 0
}

// of returns a copy of the domain's lagging entries.
func (l *lagIndex) of(id uuid.UUID) []lagPos {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return slices.Clone(l.byDomain[id])
}

// add appends committed, unflushed entries.
func (l *lagIndex) add(batch map[uuid.UUID][]lagPos) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, ps := range batch {
		l.byDomain[id] = append(l.byDomain[id], ps...)
		l.n += len(ps)
	}
}

// replace takes l's entries.
func (l *lagIndex) replace(from *lagIndex) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.indexed, l.n, l.byDomain = from.indexed, from.n, from.byDomain
}

// flushed records that everything up to indexed is in the bucket now.
func (l *lagIndex) flushed(indexed uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.indexed, l.n, l.byDomain = indexed, 0, map[uuid.UUID][]lagPos{}
}

// flush writes the lag and batch (entries committed in this transaction)
// to the index bucket in key order, so that each leaf is rewritten once
// for all its new entries, and moves the "indexed" mark to upto.
func (l *lagIndex) flush(tx *bolt.Tx, batch map[uuid.UUID][]lagPos, upto uint64, vals []byte) error {
	ids := make([]uuid.UUID, 0, len(l.byDomain)+len(batch))
	for id := range l.byDomain {
		ids = append(ids, id)
	}
	for id := range batch {
		if _, ok := l.byDomain[id]; !ok {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	ix := tx.Bucket(bucketIndex)
	ix.FillPercent = indexFill
	var key [24]byte
	for _, id := range ids {
		copy(key[:16], id[:])
		for _, ps := range [2][]lagPos{l.byDomain[id], batch[id]} {
			for _, p := range ps {
				v := vals[:8:8] // bbolt keeps values, not copies, until commit
				vals = vals[8:]
				binary.BigEndian.PutUint64(v, p.seq)
				binary.BigEndian.PutUint64(key[16:], p.version)
				if err := ix.Put(key[:], v); err != nil {
					return fmt.Errorf("put index %s/%d: %w", id, p.version, err)
				}
			}
		}
	}
	return tx.Bucket(bucketMeta).Put(metaIndexed, u64(upto))
}

// loadLag rebuilds the lag from the events after meta "indexed", in chunks.
func (s *Store) loadLag(ctx context.Context) error {
	var indexed uint64
	missing := false
	err := s.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(metaIndexed)
		if missing = v == nil; missing {
			return nil
		}
		var err error
		indexed, err = seqOf(v)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: open %s: indexed mark: %w", s.path, err)
	}
	if missing {
		// Written before the lag existed, when every commit wrote its index
		// entries: the index is complete. Say so in the file before any
		// append can make it untrue.
		indexed = s.LastSeq()
		if !s.readOnly {
			err := s.update(ctx, func(tx *bolt.Tx) error {
				return tx.Bucket(bucketMeta).Put(metaIndexed, u64(indexed))
			})
			if err != nil {
				return fmt.Errorf("store: open %s: set indexed mark: %w", s.path, err)
			}
		}
	}
	if indexed > s.LastSeq() {
		return fmt.Errorf("store: open %s: indexed mark %d beyond the log (%d): %w", s.path, indexed, s.LastSeq(), ErrCorrupt)
	}
	l := newLag(indexed)
	batch := map[uuid.UUID][]lagPos{}
	pos := indexed
	for pos < s.LastSeq() {
		err := s.view(ctx, func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketEvents).Cursor()
			n := 0
			for k, v := c.Seek(u64(pos + 1)); k != nil && n < replayChunk; k, v = c.Next() {
				seq, err := seqOf(k)
				if err != nil {
					return err
				}
				id, ver, err := domains.PeekDomain(v)
				if err != nil {
					return fmt.Errorf("event %d: %w: %w", seq, ErrCorrupt, err)
				}
				batch[id] = append(batch[id], lagPos{version: ver, seq: seq})
				pos = seq
				n++
			}
			if n == 0 {
				return fmt.Errorf("events end at %d, before %d: %w", pos, s.LastSeq(), ErrCorrupt)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("store: open %s: rebuild index lag: %w", s.path, err)
		}
	}
	l.add(batch)
	if s.lag == nil {
		s.lag = l
	} else {
		s.lag.replace(l) // a reopen (recover.go): readers hold the pointer
	}
	return nil
}
