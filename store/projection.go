package store

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/vmledger/vmledger/domains"
)

// LoadProjection rebuilds the projection the agent starts from: the newest
// snapshot that decodes (the older one if the newest does not), then the
// events after it. If folding the tail onto a snapshot fails, the snapshot
// is not trusted and the whole log is replayed; an error from that full
// replay (a corrupt log) is returned.
func LoadProjection(ctx context.Context, s *Store) (*domains.Projection, error) {
	snaps, err := s.snapshots(ctx)
	if err != nil {
		return nil, err
	}
	for _, sn := range snaps {
		p, err := domains.UnmarshalSnapshot(sn.data)
		if err != nil || p.LastSeq() != sn.seq {
			continue
		}
		if err := s.Replay(ctx, p.LastSeq(), p.Apply); err == nil {
			return p, nil
		} else if ctx.Err() != nil {
			return nil, err
		}
		break
	}
	p := domains.NewProjection()
	if err := s.Replay(ctx, 0, p.Apply); err != nil {
		return nil, fmt.Errorf("store: load projection: %w", err)
	}
	return p, nil
}

type snapshot struct {
	seq  uint64
	data []byte
}

// snapshots returns the kept snapshots, newest first.
func (s *Store) snapshots(ctx context.Context) ([]snapshot, error) {
	var out []snapshot
	err := s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketSnapshots).Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			seq, err := seqOf(k)
			if err != nil {
				return err
			}
			out = append(out, snapshot{seq: seq, data: append([]byte{}, v...)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: snapshots: %w", err)
	}
	return out, nil
}

// EventLog adapts the store to the interface the domains service declares.
func (s *Store) EventLog() domains.EventLog { return eventLog{s} }

type eventLog struct{ s *Store }

func (l eventLog) Append(ctx context.Context, req domains.AppendRequest) ([]uint64, error) {
	return l.s.Append(ctx, AppendRequest(req))
}

func (l eventLog) ReadAfter(ctx context.Context, after uint64, limit int) ([]domains.Event, error) {
	return l.s.ReadAfter(ctx, after, limit)
}

func (l eventLog) Command(ctx context.Context, id string) (domains.CommandRecord, bool, error) {
	var rec domains.CommandRecord
	found := false
	err := l.s.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketCommands).Get([]byte(id))
		if v == nil {
			return nil
		}
		c, err := parseCommand(v)
		if err != nil {
			return err
		}
		found = true
		rec = domains.CommandRecord{FirstSeq: c.first, Result: bytes.Clone(c.result), Digest: bytes.Clone(c.digest)}
		return nil
	})
	if err != nil {
		return rec, false, fmt.Errorf("store: command %q: %w", id, err)
	}
	return rec, found, nil
}
