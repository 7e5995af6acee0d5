package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"

	"github.com/vmledger/vmledger/domains"
)

// maxReported bounds the problems a Report lists; the rest are counted.
const maxReported = 100

// Report is what Verify found. Problems is empty for a sound log.
type Report struct {
	Path      string           `json:"path"`
	Events    uint64           `json:"events"`   // events read
	LastSeq   uint64           `json:"last_seq"` // the last sequence at the start
	Domains   int              `json:"domains"`  // domains with events
	Defined   int              `json:"defined"`  // domains defined at the end
	Snapshots []SnapshotResult `json:"snapshots"`
	Problems  []string         `json:"problems"`
	Omitted   int              `json:"omitted,omitempty"` // problems beyond those listed
}

// SnapshotResult is the comparison of one stored snapshot with a replay.
type SnapshotResult struct {
	Seq     uint64 `json:"seq"`
	OK      bool   `json:"ok"`
	Problem string `json:"problem,omitempty"`
}

// OK reports whether the log passed every check.
func (r *Report) OK() bool { return len(r.Problems) == 0 && r.Omitted == 0 }

func (r *Report) add(format string, a ...any) {
	if len(r.Problems) >= maxReported {
		r.Omitted++
		return
	}
	r.Problems = append(r.Problems, fmt.Sprintf(format, a...))
}

// Verify reads the whole log and checks what replay relies on: sequences
// run 1, 2, ... without a gap; each domain's versions run 1, 2, ...; every
// event decodes (older schemas upcast); a projection accepts every event;
// and every stored snapshot equals a fresh replay up to its sequence. It
// also runs Check, for the file's structure (bbolt pages, the per-domain
// index, commands). Problems go into the Report; the error is for a
// verification that could not run (I/O, ctx). It works read-only.
func Verify(ctx context.Context, s *Store) (Report, error) {
	rep := Report{Path: s.path, LastSeq: s.LastSeq(), Problems: []string{}, Snapshots: []SnapshotResult{}}
	snaps, err := s.snapshots(ctx)
	if errors.Is(err, ErrCorrupt) {
		rep.add("snapshots cannot be read: %v", err)
	} else if err != nil {
		return rep, err
	}
	v := &verifier{rep: &rep, proj: domains.NewProjection(), last: map[uuid.UUID]uint64{}, broken: map[uuid.UUID]bool{}}
	for i := len(snaps) - 1; i >= 0; i-- { // oldest first
		v.snaps = append(v.snaps, snaps[i])
	}
	if err := v.scan(ctx, s); errors.Is(err, ErrCorrupt) {
		rep.add("events after %d cannot be read: %v", v.pos, err) // a damaged page (guard)
	} else if err != nil {
		return rep, fmt.Errorf("store: verify %s: %w", s.path, err)
	}
	for _, sn := range v.snaps[v.nextSnap:] {
		rep.Snapshots = append(rep.Snapshots, SnapshotResult{Seq: sn.seq, Problem: "beyond the end of the log"})
		rep.add("snapshot %d: beyond the end of the log (%d)", sn.seq, v.pos)
	}
	rep.Domains, rep.Defined = len(v.last), v.proj.Len()
	if err := s.Check(ctx); err != nil {
		if !errors.Is(err, ErrCorrupt) {
			return rep, err
		}
		// Check joins its problems one a line after a heading line.
		lines := strings.Split(err.Error(), "\n")
		if len(lines) > 1 {
			lines = lines[1:]
		}
		for _, line := range lines {
			rep.add("structure: %s", line)
		}
	}
	return rep, nil
}

type verifier struct {
	rep      *Report
	proj     *domains.Projection
	pos      uint64               // the last sequence read
	last     map[uuid.UUID]uint64 // each domain's last version
	broken   map[uuid.UUID]bool   // domains whose events no longer fold
	snaps    []snapshot           // oldest first
	nextSnap int
}

// scan reads the events in chunks, each in its own short transaction.
func (v *verifier) scan(ctx context.Context, s *Store) error {
	upto := v.rep.LastSeq
	for v.pos < upto {
		start := v.pos
		err := s.view(ctx, func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketEvents).Cursor()
			n := 0
			for k, val := c.Seek(u64(v.pos + 1)); k != nil && n < replayChunk && v.pos < upto; k, val = c.Next() {
				n++
				if len(k) != 8 {
					v.rep.add("event key %x: not 8 bytes", k)
					continue
				}
				v.event(binary.BigEndian.Uint64(k), val)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if v.pos == start {
			v.rep.add("the log ends at sequence %d, before its last sequence %d", v.pos, upto)
			return nil
		}
	}
	return nil
}

// event checks one event and folds it; val is valid only in the transaction.
func (v *verifier) event(seq uint64, val []byte) {
	v.rep.Events++
	if seq != v.pos+1 {
		v.rep.add("sequence %d follows %d: a gap of %d", seq, v.pos, seq-v.pos-1)
	}
	v.pos = seq
	defer v.snapshotsAt(seq)
	e, err := domains.UnmarshalEvent(seq, val)
	if err != nil {
		v.rep.add("event %d does not decode: %v", seq, err)
		if id, _, perr := domains.PeekDomain(val); perr == nil {
			v.broken[id] = true
		}
		return
	}
	if want := v.last[e.Domain] + 1; e.Version != want {
		v.rep.add("event %d: domain %s version %d, want %d", seq, e.Domain, e.Version, want)
	}
	v.last[e.Domain] = e.Version
	if v.broken[e.Domain] {
		return // already reported: its later events cannot fold
	}
	if err := v.proj.Apply(e); err != nil {
		v.broken[e.Domain] = true
		v.rep.add("event %d does not fold into the projection: %v", seq, err)
	}
}

// snapshotsAt compares the snapshots taken at seq with the replay so far.
func (v *verifier) snapshotsAt(seq uint64) {
	for v.nextSnap < len(v.snaps) && v.snaps[v.nextSnap].seq <= seq {
		sn := v.snaps[v.nextSnap]
		v.nextSnap++
		res := SnapshotResult{Seq: sn.seq}
		switch {
		case sn.seq < seq:
			res.Problem = "its sequence is missing from the log"
		case len(v.broken) > 0:
			res.Problem = "not compared: the log before it does not replay"
		default:
			res.Problem = compareSnapshot(sn.data, v.proj)
		}
		res.OK = res.Problem == ""
		if !res.OK {
			v.rep.add("snapshot %d: %s", sn.seq, res.Problem)
		}
		v.rep.Snapshots = append(v.rep.Snapshots, res)
	}
}

func compareSnapshot(data []byte, p *domains.Projection) string {
	sp, err := domains.UnmarshalSnapshot(data)
	if err != nil {
		return fmt.Sprintf("does not decode: %v", err)
	}
	if ok, diff := sp.Equal(p); !ok {
		return "differs from a fresh replay: " + diff
	}
	return ""
}
