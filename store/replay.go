package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/vmledger/vmledger/domains"
)

// replayChunk is how many events one read transaction of Replay decodes.
// Large enough that the per-transaction cost vanishes, small enough that
// no read transaction lives long (a few milliseconds).
const replayChunk = 16384

// maxDecoders bounds Replay's decoding goroutines.
const maxDecoders = 4

// replayJob is one chunk of Replay: the events with sequence in (from, to].
type replayJob struct {
	from, to uint64
	events   []domains.Event
	err      error
	done     chan struct{} // closed when events (or err) are ready
}

// Replay calls fn, in sequence order from the caller's goroutine, for every
// event with sequence in (after, LastSeq at the call]. It stops at fn's
// first error and returns it.
//
// Decoding is most of replay's cost, so it runs ahead of fn on up to
// GOMAXPROCS goroutines (at most maxDecoders), each decoding whole chunks
// in its own short read transaction; the caller's goroutine takes the
// chunks in order and folds them. Since sequences are gap-free, chunk
// boundaries are known without reading: chunk i is (after+i·C, after+(i+1)·C].
// A few chunks of decoded events are in memory at a time (~2 MiB each).
func (s *Store) Replay(ctx context.Context, after uint64, fn func(domains.Event) error) error {
	upto := s.LastSeq()
	if after >= upto {
		return ctx.Err()
	}
	workers := min(runtime.GOMAXPROCS(0), maxDecoders, int((upto-after+replayChunk-1)/replayChunk))
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// Wait for every goroutine on every return path: no read transaction
	// may outlive Replay.
	defer wg.Wait()
	defer cancel()

	free := make(chan []domains.Event, workers+1) // bounds decoded chunks in memory
	for range workers + 1 {
		free <- make([]domains.Event, 0, replayChunk)
	}
	order := make(chan *replayJob, workers+1) // chunks in sequence order, for fn
	jobs := make(chan *replayJob, workers+1)  // the same chunks, for the decoders
	wg.Add(1 + workers)
	go func() {
		defer wg.Done()
		defer close(order)
		defer close(jobs)
		for from := after; from < upto; from += replayChunk {
			var buf []domains.Event
			select {
			case buf = <-free:
			case <-ctx.Done():
				return
			}
			j := &replayJob{from: from, to: min(from+replayChunk, upto), events: buf[:0], done: make(chan struct{})}
			order <- j // capacity ≥ buffers in flight: never blocks for long
			jobs <- j
		}
	}()
	for range workers {
		go func() {
			defer wg.Done()
			for j := range jobs {
				j.events, j.err = s.decodeChunk(ctx, j.from, j.to, j.events)
				close(j.done)
			}
		}()
	}

	for j := range order {
		select {
		case <-j.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		for i := range j.events {
			if err := fn(j.events[i]); err != nil {
				return err
			}
		}
		if j.err != nil {
			return fmt.Errorf("store: replay: %w", j.err)
		}
		clear(j.events) // drop references to payloads already applied
		free <- j.events
	}
	return ctx.Err()
}

// decodeChunk decodes the events with sequence in (from, to] into buf, in
// one read transaction; a missing sequence is corruption.
func (s *Store) decodeChunk(ctx context.Context, from, to uint64, buf []domains.Event) ([]domains.Event, error) {
	pos := from
	err := s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek(u64(from + 1)); k != nil && pos < to; k, v = c.Next() {
			e, err := decode(k, v)
			if err != nil {
				return err
			}
			if e.Seq != pos+1 {
				return fmt.Errorf("sequence %d follows %d: %w", e.Seq, pos, ErrCorrupt)
			}
			buf = append(buf, e)
			pos = e.Seq
		}
		if pos < to {
			return fmt.Errorf("log ends at %d, before %d: %w", pos, to, ErrCorrupt)
		}
		return nil
	})
	return buf, err
}

// seqOf reads a big-endian sequence value.
func seqOf(v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("sequence value of %d bytes: %w", len(v), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}
