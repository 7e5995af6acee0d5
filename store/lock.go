package store

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// bbolt's flock lives and dies with its DB value, so a store that reopens
// its file (recover.go) would leave a moment where another process could
// take the log: a second agent started on the same state directory. So the
// store also holds an open-file-description lock (fcntl F_OFD_SETLK) of
// its own on the file, from Open to Close, across reopens: exclusive for
// writing, shared for reading, taken before bbolt's. On Linux these locks
// and flock do not interact.

// fileLock is an OFD lock on the first byte of a file.
type fileLock struct{ f *os.File }

// lockFile takes the lock, retrying until timeout; a holder past it is
// ErrLocked.
func lockFile(path string, exclusive bool, timeout time.Duration) (*fileLock, error) {
	flag, typ := os.O_RDONLY, int16(unix.F_RDLCK)
	if exclusive {
		flag, typ = os.O_RDWR, unix.F_WRLCK
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: 0, Len: 1}
	deadline := time.Now().Add(timeout)
	for {
		err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
		if err == nil {
			return &fileLock{f: f}, nil
		}
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
			f.Close()
			return nil, fmt.Errorf("store: lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("store: open %s: another process (a running agent?) holds the file: %w", path, ErrLocked)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// release drops the lock (closing the description does).
func (l *fileLock) release() {
	if l != nil {
		_ = l.f.Close()
	}
}
