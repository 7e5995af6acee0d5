package store

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// keepSnapshots is how many snapshots SaveSnapshot keeps: the newest, and
// one before it in case the newest turns out unreadable.
const keepSnapshots = 2

// update runs fn in a write transaction outside the append path. bbolt
// serialises it with the writer's group commits; these are rare and small.
func (s *Store) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	if s.readOnly {
		return ErrReadOnly
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// A broken store writes nothing until it has reopened (recover.go).
	if err := s.Health(); err != nil {
		return err
	}
	return s.writeTx(fn)
}

// SaveSnapshot stores data as the projection of all events up to seq, and
// drops all but the newest keepSnapshots snapshots.
func (s *Store) SaveSnapshot(ctx context.Context, seq uint64, data []byte) error {
	if seq == 0 || seq > s.LastSeq() {
		return invalidf("save snapshot at %d: log ends at %d", seq, s.LastSeq())
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSnapshots)
		if err := b.Put(u64(seq), data); err != nil {
			return err
		}
		// Collect first: deleting under a live cursor skips keys in bbolt.
		var old [][]byte
		kept := 0
		c := b.Cursor()
		for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
			if kept < keepSnapshots {
				kept++
				continue
			}
			old = append(old, append([]byte{}, k...))
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: save snapshot at %d: %w", seq, err)
	}
	return nil
}

// LatestSnapshot returns the newest snapshot and the sequence it covers,
// or ErrNoSnapshot.
func (s *Store) LatestSnapshot(ctx context.Context) (uint64, []byte, error) {
	var seq uint64
	var data []byte
	err := s.view(ctx, func(tx *bolt.Tx) error {
		k, v := tx.Bucket(bucketSnapshots).Cursor().Last()
		if k == nil {
			return ErrNoSnapshot
		}
		var err error
		if seq, err = seqOf(k); err != nil {
			return err
		}
		data = append([]byte{}, v...) // bbolt memory is valid only inside the tx
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("store: latest snapshot: %w", err)
	}
	return seq, data, nil
}

// RelayPosition is the last sequence the NATS relay has published.
func (s *Store) RelayPosition(ctx context.Context) (uint64, error) {
	var pos uint64
	err := s.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(metaRelay)
		if v == nil {
			return nil
		}
		var err error
		pos, err = seqOf(v)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: relay position: %w", err)
	}
	return pos, nil
}

// SetRelayPosition records how far the relay got. It costs a commit of its
// own, so the relay should call it once per published batch, not per
// event; after a crash the relay republishes from here and subscribers
// drop duplicates by sequence.
func (s *Store) SetRelayPosition(ctx context.Context, seq uint64) error {
	if seq > s.LastSeq() {
		return invalidf("set relay position %d: log ends at %d", seq, s.LastSeq())
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaRelay, u64(seq))
	})
	if err != nil {
		return fmt.Errorf("store: set relay position %d: %w", seq, err)
	}
	return nil
}
