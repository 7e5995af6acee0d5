package store

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"

	"github.com/vmledger/vmledger/domains"
)

// MaxReadLimit caps one ReadAfter or ReadDomain call (and is what a limit
// <= 0 means), so that no read transaction grows with the log.
const MaxReadLimit = 16384

func clampLimit(limit int) int {
	if limit <= 0 || limit > MaxReadLimit {
		return MaxReadLimit
	}
	return limit
}

// ReadAfter returns up to limit committed events with sequence > after, in
// sequence order.
func (s *Store) ReadAfter(ctx context.Context, after uint64, limit int) ([]domains.Event, error) {
	limit = clampLimit(limit)
	if after == ^uint64(0) {
		return nil, ctx.Err() // nothing can follow; after+1 would wrap to the start
	}
	// Only acknowledged events: the file may already hold a commit whose
	// appenders are still waiting (or whose sync failed); LastSeq moves
	// only after the commit returned.
	head := s.LastSeq()
	if after >= head {
		return nil, ctx.Err()
	}
	limit = int(min(uint64(limit), head-after))
	var out []domains.Event
	err := s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek(u64(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			e, err := decode(k, v)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: read after %d: %w", after, err)
	}
	return out, nil
}

// ReadDomain returns up to limit events of domain id with version >
// afterVersion, in version order. An unknown domain gives no events.
func (s *Store) ReadDomain(ctx context.Context, id uuid.UUID, afterVersion uint64, limit int) ([]domains.Event, error) {
	limit = clampLimit(limit)
	if afterVersion == ^uint64(0) {
		return nil, ctx.Err() // nothing can follow; afterVersion+1 would wrap
	}
	lagging := s.lag.of(id) // before the transaction: all of these are visible in it
	var out []domains.Event
	err := s.view(ctx, func(tx *bolt.Tx) error {
		events := tx.Bucket(bucketEvents)
		add := func(version uint64, seq []byte) error {
			v := events.Get(seq)
			if v == nil {
				return fmt.Errorf("index %s/%d points at missing event %x: %w", id, version, seq, ErrCorrupt)
			}
			e, err := decode(seq, v)
			if err != nil {
				return err
			}
			out = append(out, e)
			return nil
		}
		last := afterVersion
		c := tx.Bucket(bucketIndex).Cursor()
		var start [24]byte
		copy(start[:16], id[:])
		binary.BigEndian.PutUint64(start[16:], afterVersion+1)
		for k, seq := c.Seek(start[:]); k != nil && len(out) < limit; k, seq = c.Next() {
			if len(k) != 24 || string(k[:16]) != string(id[:]) {
				break
			}
			last = binary.BigEndian.Uint64(k[16:])
			if err := add(last, seq); err != nil {
				return err
			}
		}
		for _, p := range lagging {
			if len(out) >= limit {
				break
			}
			if p.version <= last {
				continue // in the bucket too (flushed since we copied the lag)
			}
			last = p.version
			if err := add(p.version, u64(p.seq)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: read domain %s after version %d: %w", id, afterVersion, err)
	}
	return out, nil
}

// DomainVersion is the domain's current version: 0 if it has no events.
func (s *Store) DomainVersion(ctx context.Context, id uuid.UUID) (uint64, error) {
	v := s.lag.last(id)
	err := s.view(ctx, func(tx *bolt.Tx) error {
		v = max(v, lastVersion(tx.Bucket(bucketIndex).Cursor(), id))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: version of %s: %w", id, err)
	}
	return v, nil
}

// Command returns the result recorded with command id, if any.
func (s *Store) Command(ctx context.Context, id string) ([]byte, bool, error) {
	var res []byte
	found := false
	err := s.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketCommands).Get([]byte(id))
		if v == nil {
			return nil
		}
		c, err := parseCommand(v)
		if err != nil {
			return err
		}
		found = true
		res = append([]byte{}, c.result...) // bbolt memory is valid only inside the tx
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("store: command %q: %w", id, err)
	}
	return res, found, nil
}

// decode turns a key/value of the events bucket into an Event. The decoder
// copies everything it keeps, so the event outlives the transaction.
func decode(k, v []byte) (domains.Event, error) {
	if len(k) != 8 {
		return domains.Event{}, fmt.Errorf("event key %x: %w", k, ErrCorrupt)
	}
	seq := binary.BigEndian.Uint64(k)
	e, err := domains.UnmarshalEvent(seq, v)
	if err != nil {
		return e, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return e, nil
}
