package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"

	"github.com/vmledger/vmledger/domains"
)

// maxProblems bounds what Check reports; a broken file can have millions.
const maxProblems = 20

// errRollback ends a write transaction used only for reading.
var errRollback = errors.New("rollback")

type problems struct{ errs []error }

func (p *problems) add(format string, a ...any) {
	if len(p.errs) < maxProblems {
		p.errs = append(p.errs, fmt.Errorf(format, a...))
	}
}

func (p *problems) full() bool { return len(p.errs) >= maxProblems }

// Check verifies the whole file: bbolt's own page-level check, then that
// sequences run gap-free from 1 and every event decodes; that the index
// holds versions 1..n for each domain, each pointing at an event of that
// domain and version, with exactly one entry per event up to the
// "indexed" mark (lag.go); that the events after the mark continue each
// domain's versions without a gap; and that commands, snapshots and the
// relay position point inside the log. It returns nil or an error wrapping
// ErrCorrupt that lists the problems.
//
// Events committed while Check runs are left out: it checks the log as of
// its start, in chunks, so no read transaction grows with the log. bbolt's
// page check needs one transaction over the whole file: it runs in a write
// transaction that is rolled back, because bbolt's check is not safe beside
// a concurrent writer; appends wait for it.
func (s *Store) Check(ctx context.Context) error {
	var p problems
	if err := s.checkPages(ctx, &p); err != nil {
		return fmt.Errorf("store: check %s: %w", s.path, err)
	}
	var c checker
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketEvents).Cursor().Last(); len(k) == 8 {
			c.upto = binary.BigEndian.Uint64(k)
		}
		v := tx.Bucket(bucketMeta).Get(metaIndexed)
		if v == nil && s.readOnly {
			c.indexed = c.upto // written before the lag existed (loadLag)
			return nil
		}
		var err error
		if c.indexed, err = seqOf(v); err != nil || c.indexed > c.upto {
			p.add("meta indexed %x (log ends at %d)", v, c.upto)
			c.indexed = 0
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: check %s: %w", s.path, err)
	}
	c.last = map[uuid.UUID]uint64{}
	steps := []func(context.Context, *checker, *problems) error{s.checkIndex, s.checkEvents, s.checkSmall}
	for _, step := range steps {
		if p.full() {
			break
		}
		if err := step(ctx, &c, &p); err != nil {
			return fmt.Errorf("store: check %s: %w", s.path, err)
		}
	}
	if len(p.errs) > 0 {
		return fmt.Errorf("store: check %s: %w", s.path, errors.Join(append([]error{ErrCorrupt}, p.errs...)...))
	}
	return nil
}

// checker is the state Check carries from one pass to the next.
type checker struct {
	upto    uint64               // last event at the start
	indexed uint64               // the "indexed" mark at the start
	last    map[uuid.UUID]uint64 // per domain, the last version indexed up to the mark
}

func (s *Store) checkPages(ctx context.Context, p *problems) error {
	if s.readOnly {
		// bbolt's check reads the freelist page in a goroutine of its own,
		// where a fault cannot be recovered: look at the page first.
		if err := checkFileFreelist(s.path); err != nil {
			p.add("bbolt: %w", err)
			return nil
		}
	}
	fn := func(tx *bolt.Tx) error {
		// Likewise every page the check visits: walk them all here, where
		// a damaged page is an error (guard), and skip bbolt's check then.
		if err := guard(s.path, "walk", func() error { touchAll(tx); return nil }); err != nil {
			p.add("bbolt: page structure: %w", err)
			return nil
		}
		for err := range tx.Check() { // drain fully: the checker goroutine blocks otherwise
			p.add("bbolt: %w", err)
		}
		return nil
	}
	if s.readOnly {
		return s.view(ctx, fn)
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		_ = fn(tx)
		return errRollback
	})
	if errors.Is(err, errRollback) {
		return nil
	}
	return err
}

// checkEvents: keys 1..upto, each decodes; after the indexed mark, each
// continues its domain's versions.
func (s *Store) checkEvents(ctx context.Context, ck *checker, p *problems) error {
	pos := uint64(0)
	for pos < ck.upto && !p.full() {
		start := pos
		err := s.view(ctx, func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketEvents).Cursor()
			n := 0
			for k, v := c.Seek(u64(pos + 1)); k != nil && n < replayChunk && pos < ck.upto && !p.full(); k, v = c.Next() {
				n++
				if len(k) != 8 {
					p.add("event key %x is not 8 bytes", k)
					continue
				}
				seq := binary.BigEndian.Uint64(k)
				if seq != pos+1 {
					p.add("sequence %d follows %d (gap or disorder)", seq, pos)
				}
				pos = seq
				e, err := domains.UnmarshalEvent(seq, v)
				switch {
				case err != nil:
					p.add("event %d: %w", seq, err)
				case e.Domain == uuid.Nil || e.Version == 0:
					p.add("event %d: domain %s version %d", seq, e.Domain, e.Version)
				case seq > ck.indexed:
					if want := ck.last[e.Domain] + 1; e.Version != want {
						p.add("event %d (not yet indexed): %s version %d, want %d", seq, e.Domain, e.Version, want)
					}
					ck.last[e.Domain] = e.Version
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if pos == start {
			p.add("log ends at %d, expected %d events", pos, ck.upto)
			break
		}
	}
	return nil
}

// checkIndex: per domain versions 1..n, each pointing at an event of that
// domain and version; one entry per event up to the indexed mark. Entries
// after the mark are flushes since Check started: a store opened read-only
// cannot have those.
func (s *Store) checkIndex(ctx context.Context, ck *checker, p *problems) error {
	var (
		after   []byte // last key seen; resume after it
		domain  []byte
		version uint64
		entries uint64
		done    bool
	)
	for !done && !p.full() {
		err := s.view(ctx, func(tx *bolt.Tx) error {
			events := tx.Bucket(bucketEvents)
			c := tx.Bucket(bucketIndex).Cursor()
			k, v := c.First()
			if after != nil {
				if k, v = c.Seek(after); bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for n := 0; n < replayChunk && !p.full(); k, v = c.Next() {
				if k == nil {
					done = true
					return nil
				}
				n++
				after = append(after[:0], k...)
				if len(k) != 24 || len(v) != 8 {
					p.add("index entry %x → %x: bad key or value size", k, v)
					continue
				}
				seq := binary.BigEndian.Uint64(v)
				ver := binary.BigEndian.Uint64(k[16:])
				if !bytes.Equal(k[:16], domain) {
					domain, version = append(domain[:0], k[:16]...), 0
				}
				if ver != version+1 {
					p.add("index %x: version %d follows %d", k[:16], ver, version)
				}
				version = ver
				if seq <= ck.indexed {
					entries++
					ck.last[uuid.UUID(k[:16])] = ver
				} else if s.readOnly {
					p.add("index %x/%d → event %d, after the indexed mark %d", k[:16], ver, seq, ck.indexed)
				}
				ev := events.Get(v)
				if ev == nil {
					p.add("index %x/%d → missing event %d", k[:16], ver, seq)
					continue
				}
				id, evVer, err := domains.PeekDomain(ev)
				if err != nil || !bytes.Equal(id[:], k[:16]) || evVer != ver {
					p.add("index %x/%d → event %d of %s version %d (%v)", k[:16], ver, seq, id, evVer, err)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if !p.full() && entries != ck.indexed {
		p.add("index has %d entries for the %d indexed events", entries, ck.indexed)
	}
	return nil
}

// checkSmall: format, commands, snapshots and relay position.
func (s *Store) checkSmall(ctx context.Context, _ *checker, p *problems) error {
	return s.view(ctx, func(tx *bolt.Tx) error {
		last := uint64(0)
		if k, _ := tx.Bucket(bucketEvents).Cursor().Last(); len(k) == 8 {
			last = binary.BigEndian.Uint64(k)
		}
		if v := tx.Bucket(bucketMeta).Get(metaFormat); len(v) != 8 || binary.BigEndian.Uint64(v) != formatVersion {
			p.add("meta format %x", v)
		}
		if v := tx.Bucket(bucketMeta).Get(metaRelay); v != nil {
			if seq, err := seqOf(v); err != nil || seq > last {
				p.add("relay position %x beyond the log (%d)", v, last)
			}
		}
		c := tx.Bucket(bucketCommands).Cursor()
		for k, v := c.First(); k != nil && !p.full(); k, v = c.Next() {
			cmd, err := parseCommand(v)
			switch {
			case err != nil:
				p.add("command %.64q: %v", k, err)
			case cmd.first > last:
				p.add("command %.64q: value %x beyond the log (%d)", k, v[:8], last)
			}
		}
		n := 0
		c = tx.Bucket(bucketSnapshots).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
			if seq, err := seqOf(k); err != nil || seq == 0 || seq > last {
				p.add("snapshot key %x beyond the log (%d)", k, last)
			}
		}
		if n > keepSnapshots {
			p.add("%d snapshots, keep %d", n, keepSnapshots)
		}
		return nil
	})
}
