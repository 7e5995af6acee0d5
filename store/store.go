// Package store is vmledger's durable event log: one bbolt file per agent.
//
// Events are keyed by an 8-byte big-endian global sequence; a per-domain
// index maps (domain, version) to that sequence; commands, snapshots and
// the relay position sit beside them. Appends go through a single writer
// goroutine that group-commits and returns only after fsync. Read
// transactions never outlive the function that opened them.
// docs/store.md describes the layout and the reasons behind each choice.
package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Options tune a Store. The zero value is what the agent should use.
type Options struct {
	// NoSync skips fsync on commit. Only for tests and raw-speed benchmarks:
	// an acknowledged append may be lost on power failure. Never in the agent.
	NoSync bool
	// InitialMmapSize is the size of the first memory map, in bytes.
	// 0 → DefaultInitialMmapSize. A map large enough for the file means a
	// growing file never has to remap, and remapping waits for every open
	// read transaction (docs/store.md).
	InitialMmapSize int
	// Timeout bounds the wait for the file lock; 0 → DefaultTimeout.
	Timeout time.Duration
	// Observer, if set, is told about every commit (metrics).
	Observer Observer
	// OnHealth, if set, is called from the writer goroutine when the store
	// stops accepting appends (a commit failed: full disk, I/O error) with
	// the reason, and with nil once it has recovered. It must be quick.
	OnHealth func(err error)
	// RecoverEvery is how often a broken store tries to reopen the file;
	// 0 → DefaultRecoverEvery.
	RecoverEvery time.Duration
}

// Observer receives one call per commit, from the writer goroutine, after
// the commit is durable and before the appenders are released: it must be
// quick and must not call back into the Store's Append.
type Observer interface {
	// Committed reports the events written, the number of Append requests
	// in the group commit, and how long the bbolt transaction (including
	// its fsyncs) took.
	Committed(events int, batch int, latency time.Duration)
}

const (
	// DefaultInitialMmapSize is 1 GiB of address space (not memory): about
	// 7 million events with their index (~154 B each). See docs/store.md.
	DefaultInitialMmapSize = 1 << 30
	// DefaultTimeout is how long Open waits for another holder of the lock.
	DefaultTimeout = 500 * time.Millisecond
	// DefaultRecoverEvery is how often a broken store retries (recover.go).
	DefaultRecoverEvery = time.Second

	// formatVersion is the layout version kept in meta; Open refuses others.
	formatVersion = 1
)

// Bucket and meta key names. They are part of the on-disk format.
var (
	bucketEvents    = []byte("events")
	bucketIndex     = []byte("index")
	bucketCommands  = []byte("commands")
	bucketSnapshots = []byte("snapshots")
	bucketMeta      = []byte("meta")

	metaFormat  = []byte("format")
	metaRelay   = []byte("relay")
	metaIndexed = []byte("indexed") // events up to here have index entries (lag.go)
)

func allBuckets() [][]byte {
	return [][]byte{bucketEvents, bucketIndex, bucketCommands, bucketSnapshots, bucketMeta}
}

// Store is an open event log. Its methods are safe for concurrent use.
type Store struct {
	// dbMu guards db against the reopen of a broken store (recover.go):
	// every transaction holds it shared; db is nil while a reopen failed.
	dbMu     sync.RWMutex
	db       *bolt.DB
	path     string
	readOnly bool
	obs      Observer
	opts     Options
	lock     *fileLock // held from Open to Close, across reopens (lock.go)
	dbFile   *os.File  // the file bbolt opened (writable stores)
	wedged   atomic.Bool
	wake     chan struct{} // tells the writer the store broke (capacity 1)

	pool    requestPool
	lastSeq atomic.Uint64 // highest committed sequence; written by the writer only
	lag     *lagIndex     // index entries not yet in the index bucket

	// closeMu orders Append's send against Close: Close takes the write
	// lock, so no request can slip into reqs after the writer's last drain.
	closeMu sync.RWMutex
	closed  bool
	reqs    chan *request
	done    chan struct{} // closed when the writer goroutine has exited

	commitMu sync.Mutex
	commitCh chan struct{} // closed and replaced at each commit

	// broken is set when a commit failed after bbolt had written it (its
	// fsync failed): bbolt then serves that transaction as committed while
	// this store's sequence counter does not know it. Every later append
	// fails until the log is reopened, which re-reads the truth from disk.
	broken atomic.Pointer[error]
}

// Open opens (creating if needed) the log at path for writing, holding an
// exclusive lock on the file, and starts the writer goroutine. An existing
// file that is empty, truncated or damaged is refused with ErrCorrupt and
// left as it is (file.go).
func Open(path string, opts Options) (*Store, error) {
	exists, err := checkFile(path, true)
	if err != nil {
		return nil, err
	}
	if !exists {
		if err := create(path, opts); err != nil {
			return nil, err
		}
	}
	lock, err := lockFile(path, true, boltOptions(opts, false).Timeout)
	if err != nil {
		return nil, err
	}
	db, file, err := openBoltFile(path, opts, false)
	if err != nil {
		lock.release()
		return nil, err
	}
	s := &Store{db: db, dbFile: file, path: path, obs: opts.Observer, opts: opts, lock: lock, wake: make(chan struct{}, 1)}
	if err := s.init(); err != nil {
		_ = db.Close()
		lock.release()
		return nil, err
	}
	s.reqs = make(chan *request, reqQueue)
	s.done = make(chan struct{})
	s.commitCh = make(chan struct{})
	go s.writer()
	return s, nil
}

// OpenReadOnly opens the log for reading only (offline tools), with a
// shared lock. While an agent holds the file it fails with ErrLocked; a
// missing file is an error, a damaged one ErrCorrupt.
func OpenReadOnly(path string, opts Options) (*Store, error) {
	if _, err := checkFile(path, false); err != nil {
		return nil, err
	}
	lock, err := lockFile(path, false, boltOptions(opts, true).Timeout)
	if err != nil {
		return nil, err
	}
	db, err := openBolt(path, opts, true)
	if err != nil {
		lock.release()
		return nil, err
	}
	s := &Store{db: db, path: path, readOnly: true, commitCh: make(chan struct{}), opts: opts, lock: lock}
	if err := s.init(); err != nil {
		_ = db.Close()
		lock.release()
		return nil, err
	}
	return s, nil
}

// openBolt opens path with bbolt. A damaged freelist makes bbolt panic
// inside Open (it reads the freelist there when writable): the panic is
// turned into ErrCorrupt and the file bbolt had opened, with its lock, is
// closed (its mapping stays: bbolt's DB value is lost with the panic).
func openBolt(path string, opts Options, readOnly bool) (*bolt.DB, error) {
	db, _, err := openBoltFile(path, opts, readOnly)
	return db, err
}

// openBoltFile is openBolt that also returns the file bbolt opened: closing
// it releases bbolt's lock even when bbolt's DB is wedged (recover.go).
func openBoltFile(path string, opts Options, readOnly bool) (*bolt.DB, *os.File, error) {
	o := boltOptions(opts, readOnly)
	var file *os.File
	o.OpenFile = func(name string, flag int, mode os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, mode)
		file = f
		return f, err
	}
	var db *bolt.DB
	err := guard(path, "open", func() error {
		var err error
		db, err = bolt.Open(path, 0o600, o)
		return err
	})
	switch {
	case err == nil:
		return db, file, nil
	case errors.Is(err, ErrCorrupt):
		if db == nil && file != nil {
			_ = file.Close()
		}
		return nil, nil, err
	}
	return nil, nil, openError(path, err)
}

func boltOptions(opts Options, readOnly bool) *bolt.Options {
	o := &bolt.Options{
		Timeout:         opts.Timeout,
		InitialMmapSize: opts.InitialMmapSize,
		NoSync:          opts.NoSync,
		ReadOnly:        readOnly,
		// Reasons for each of these are in docs/store.md.
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: false,
		NoGrowSync:     false,
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.InitialMmapSize <= 0 {
		o.InitialMmapSize = DefaultInitialMmapSize
	}
	return o
}

func openError(path string, err error) error {
	if errors.Is(err, berrors.ErrTimeout) {
		return fmt.Errorf("store: open %s: another process (a running agent?) holds the file: %w (%w)", path, ErrLocked, err)
	}
	return fmt.Errorf("store: open %s: %w", path, err)
}

// init creates the buckets on first use, checks the format version and
// loads the last sequence. It uses s.db without dbMu: it runs before the
// store is shared, or from the writer while reopening (recover.go).
func (s *Store) init() error {
	var last uint64
	missing := false
	err := s.viewDB(func(tx *bolt.Tx) error {
		for _, name := range allBuckets() {
			if tx.Bucket(name) == nil {
				missing = true
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: open %s: %w", s.path, err)
	}
	if missing {
		if s.readOnly {
			return fmt.Errorf("store: open %s: not a vmledger store (missing buckets): %w", s.path, ErrFormat)
		}
		// Only write when something is missing: an Update always commits a
		// new meta page, and opening an existing log should not write.
		err = s.db.Update(func(tx *bolt.Tx) error {
			for _, name := range allBuckets() {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return err
				}
			}
			m := tx.Bucket(bucketMeta)
			if m.Get(metaFormat) != nil {
				return nil
			}
			if err := m.Put(metaIndexed, u64(0)); err != nil {
				return err
			}
			return m.Put(metaFormat, u64(formatVersion))
		})
		if err != nil {
			return fmt.Errorf("store: create buckets in %s: %w", s.path, err)
		}
	}
	err = s.viewDB(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(metaFormat)
		if len(v) != 8 || binary.BigEndian.Uint64(v) != formatVersion {
			return fmt.Errorf("store: open %s: format %x, want %d: %w", s.path, v, formatVersion, ErrFormat)
		}
		if k, _ := tx.Bucket(bucketEvents).Cursor().Last(); k != nil {
			if len(k) != 8 {
				return fmt.Errorf("store: open %s: event key %x: %w", s.path, k, ErrCorrupt)
			}
			last = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// A reopen (recover.go) must find at least every acknowledged event.
	if prev := s.lastSeq.Load(); last < prev {
		return fmt.Errorf("store: open %s: the log ends at %d, before the acknowledged %d: %w", s.path, last, prev, ErrCorrupt)
	}
	s.lastSeq.Store(last)
	return s.loadLag(context.Background())
}

// Close stops accepting appends, lets the writer commit what it already
// queued, and closes the file.
func (s *Store) Close() error {
	if !s.readOnly {
		s.closeMu.Lock()
		already := s.closed
		if !already {
			s.closed = true
			close(s.reqs)
		}
		s.closeMu.Unlock()
		<-s.done
		if already {
			return nil
		}
	}
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	defer s.lock.release()
	if s.db == nil {
		return nil // a reopen failed (recover.go): nothing is open
	}
	if s.wedged.Load() {
		return s.dbFile.Close() // bbolt's Close would wait forever (recover.go)
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", s.path, err)
	}
	return nil
}

// Path is the file the store was opened from.
func (s *Store) Path() string { return s.path }

// LastSeq is the highest committed sequence, 0 for an empty log.
func (s *Store) LastSeq() uint64 { return s.lastSeq.Load() }

// Committed returns a channel closed by the next commit that completes
// after this call. A follower (the relay) takes the channel first, then
// reads up to LastSeq, then waits on it: a commit can never fall between
// the read and the wait. The writer never blocks on it.
func (s *Store) Committed() <-chan struct{} {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	return s.commitCh
}

// broadcast wakes every Committed waiter; called after lastSeq is updated.
func (s *Store) broadcast() {
	s.commitMu.Lock()
	old := s.commitCh
	s.commitCh = make(chan struct{})
	s.commitMu.Unlock()
	close(old)
}

// view runs fn in a read transaction after checking ctx, so that callers
// with an expired context do not touch the file.
func (s *Store) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.db == nil {
		return s.Health()
	}
	return s.viewDB(fn)
}

// viewDB is a read transaction on s.db with faults and bbolt's panics on
// a damaged file turned into ErrCorrupt (guard). The caller holds dbMu or
// owns the store alone.
func (s *Store) viewDB(fn func(*bolt.Tx) error) error {
	return guard(s.path, "read", func() error { return s.db.View(fn) })
}

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}
