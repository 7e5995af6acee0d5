package store

import (
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/vmledger/vmledger/domains"
)

// replayChunk is how many events one read transaction of Replay decodes.
// Large enough that the per-transaction cost vanishes, small enough that
// no read transaction lives long (a few milliseconds).
const replayChunk = 16384

type replayBuf struct {
	events []domains.Event
	err    error
}

// Replay calls fn, in sequence order from the caller's goroutine, for every
// event with sequence in (after, LastSeq at the call]. It stops at fn's
// first error and returns it.
//
// One goroutine reads and decodes the next chunk (in its own short read
// transaction) while the caller's goroutine applies the previous one: on
// two cores, decoding and folding run side by side.
func (s *Store) Replay(ctx context.Context, after uint64, fn func(domains.Event) error) error {
	upto := s.LastSeq()
	if after >= upto {
		return ctx.Err()
	}
	ctx, cancel := context.WithCancel(ctx)
	full := make(chan *replayBuf, 1)
	free := make(chan *replayBuf, 3)
	for range 3 {
		free <- &replayBuf{events: make([]domains.Event, 0, replayChunk)}
	}
	go s.replayReader(ctx, after, upto, free, full)
	// Wait for the reader on every return path: no read transaction may
	// outlive Replay.
	defer func() {
		cancel()
		for range full {
		}
	}()

	for b := range full {
		for i := range b.events {
			if err := fn(b.events[i]); err != nil {
				return err
			}
		}
		if b.err != nil {
			return fmt.Errorf("store: replay: %w", b.err)
		}
		clear(b.events) // drop references to payloads already applied
		free <- b
	}
	return ctx.Err()
}

// replayReader fills buffers from free with consecutive chunks and hands
// them over on full, which it closes when done.
func (s *Store) replayReader(ctx context.Context, pos, upto uint64, free <-chan *replayBuf, full chan<- *replayBuf) {
	defer close(full)
	for pos < upto {
		var b *replayBuf
		select {
		case b = <-free:
		case <-ctx.Done():
			return
		}
		b.events = b.events[:0]
		b.err = s.view(ctx, func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketEvents).Cursor()
			for k, v := c.Seek(u64(pos + 1)); k != nil && pos < upto && len(b.events) < replayChunk; k, v = c.Next() {
				e, err := decode(k, v)
				if err != nil {
					return err
				}
				if e.Seq != pos+1 {
					return fmt.Errorf("sequence %d follows %d: %w", e.Seq, pos, ErrCorrupt)
				}
				b.events = append(b.events, e)
				pos = e.Seq
			}
			return nil
		})
		if b.err == nil && len(b.events) == 0 && pos < upto {
			b.err = fmt.Errorf("log ends at %d, before %d: %w", pos, upto, ErrCorrupt)
		}
		select {
		case full <- b:
		case <-ctx.Done():
			return
		}
		if b.err != nil {
			return
		}
	}
}

// seqOf reads a big-endian sequence value.
func seqOf(v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("sequence value of %d bytes: %w", len(v), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}
