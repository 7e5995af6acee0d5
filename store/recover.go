package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// A commit that fails after its transaction was built (a page write or an
// fsync failed: a full disk, an I/O error) breaks the store: bbolt may
// already show that transaction (if its meta page was written) while
// lastSeq does not count it, so the next commit could reuse its sequences.
// Appends then fail with ErrBroken, and the writer tries, every
// RecoverEvery, to recover without a restart: close the file, open it
// again, re-read the last sequence and the index lag from it (what is in
// the file, not what this process believed), and commit a probe (rewriting
// meta "format" with its own value) to show that writing works again. Only
// then are appends accepted: their sequences follow the file's last one.
// It first waits for minFreeSpace on the file system: a probe commit can
// reuse the file's free pages on a disk that is still full, and the store
// would break again at the next append (the health would flap).

// Health is nil while the store accepts appends, else the error that broke
// it (wrapping ErrBroken).
func (s *Store) Health() error {
	if b := s.broken.Load(); b != nil {
		return *b
	}
	return nil
}

// setBroken breaks the store (from any goroutine) and wakes the writer,
// which then retries.
func (s *Store) setBroken(err error) {
	if s.broken.Swap(&err) != nil {
		return
	}
	if s.opts.OnHealth != nil {
		s.opts.OnHealth(err)
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Store) recoverEvery() time.Duration {
	if s.opts.RecoverEvery > 0 {
		return s.opts.RecoverEvery
	}
	return DefaultRecoverEvery
}

// writeTx runs fn in a bbolt write transaction on the current file,
// guarded like a read: a fault or a bbolt panic (a damaged page under a
// cursor, or under bbolt's rollback) is an error, and bbolt's Update rolls
// the transaction back on the way out, releasing its lock. A panic once the
// writer's transaction was built counts as a failed commit (commit: the
// store is broken, and recovers by reopening the file).
func (s *Store) writeTx(fn func(*bolt.Tx) error) error {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.db == nil {
		return s.Health()
	}
	err := guard(s.path, "write", func() error { return s.db.Update(fn) })
	if errors.As(err, new(faultError)) && !s.readOnly {
		// bbolt's rollback may have faulted too, leaving its writer lock
		// held: no write can go through this DB any more, nor can it close.
		s.wedged.Store(true)
		s.setBroken(fmt.Errorf("%w: %w", ErrBroken, err))
	}
	return err
}

// tryRecover runs in the writer goroutine (no commit can race it) while the
// store is broken. On failure the store stays broken, with the new reason.
func (s *Store) tryRecover() {
	err := s.roomToWrite()
	if err == nil {
		err = s.reopen()
	}
	if err == nil {
		err = s.writeTx(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(metaFormat, u64(formatVersion))
		})
	}
	if err != nil {
		if !errors.Is(err, ErrBroken) {
			err = fmt.Errorf("%w: recovery: %w", ErrBroken, err)
		}
		s.broken.Store(&err)
		return
	}
	s.broken.Store(nil)
	s.broadcast() // followers read on: the file may hold a commit that failed late
	if s.opts.OnHealth != nil {
		s.opts.OnHealth(nil)
	}
}

// reopen closes and reopens the file, then re-reads lastSeq and the lag.
// Readers wait on dbMu meanwhile.
func (s *Store) reopen() error {
	s.dbMu.Lock()
	switch {
	case s.db == nil:
	case s.wedged.Load():
		// Abandon the DB (its mapping leaks); closing its file releases
		// bbolt's lock, so that it can be opened again.
		_ = s.dbFile.Close()
	default:
		_ = s.db.Close() // a failed close leaves nothing we could still use
	}
	s.db, s.dbFile = nil, nil
	s.wedged.Store(false)
	_, err := checkFile(s.path, true)
	if err == nil {
		s.db, s.dbFile, err = openBoltFile(s.path, s.opts, false)
	}
	s.dbMu.Unlock()
	if err != nil {
		return err
	}
	// init reads like any reader; it never lowers lastSeq.
	return s.init()
}

// minFreeSpace is the room recovery waits for: 64 pages, a few commits.
const minFreeSpace = 256 << 10

// roomToWrite fails while the log's file system has less than minFreeSpace
// available.
func (s *Store) roomToWrite() error {
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(s.path), &st); err != nil {
		return nil // cannot tell: let the probe decide
	}
	if free := st.Bavail * uint64(st.Bsize); free < minFreeSpace {
		return fmt.Errorf("%w: waiting for free space: %d bytes available on the file system of %s, want %d",
			ErrBroken, free, s.path, minFreeSpace)
	}
	return nil
}
