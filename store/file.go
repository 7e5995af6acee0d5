package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"

	bolt "go.etcd.io/bbolt"
)

// bbolt maps the whole file and trusts its meta page: a file cut short
// (a copy interrupted, `head -c`) makes it touch pages past the end of the
// file, and the kernel answers with SIGBUS, which kills the process however
// it was called. So the file is checked before bbolt sees it (checkFile),
// and reads run with faults turned into panics, recovered into ErrCorrupt
// (guard). docs/store.md, "A damaged file".

// The meta page layout of bbolt's file format version 2 (its
// internal/common/meta.go and page.go): a 16-byte page header, then the
// meta fields in the machine's byte order, the last one an FNV-64a checksum
// of the others.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	pageHeaderSize = 16
	metaSize       = 56 // magic .. txid; the checksum follows
	noFreelist     = ^uint64(0)
)

// fileMeta is what one meta page of a bbolt file says.
type fileMeta struct {
	pageSize uint32
	root     uint64 // root bucket's page
	freelist uint64 // freelist page, noFreelist if none
	pgid     uint64 // high water mark: pages [0, pgid) are in use
	txid     uint64
}

// parseMeta decodes the meta page at the start of b; ok is false when it
// is not a valid one (wrong magic or version, bad checksum).
func parseMeta(b []byte) (m fileMeta, ok bool) {
	if len(b) < pageHeaderSize+metaSize+8 {
		return m, false
	}
	f := b[pageHeaderSize:]
	ne := binary.NativeEndian
	h := fnv.New64a()
	h.Write(f[:metaSize])
	if ne.Uint32(f[0:]) != boltMagic || ne.Uint32(f[4:]) != boltVersion || ne.Uint64(f[metaSize:]) != h.Sum64() {
		return m, false
	}
	m = fileMeta{pageSize: ne.Uint32(f[8:]), root: ne.Uint64(f[16:]), freelist: ne.Uint64(f[32:]),
		pgid: ne.Uint64(f[40:]), txid: ne.Uint64(f[48:])}
	return m, true
}

// readMeta returns the meta page bbolt would use: the valid one with the
// higher transaction ID. Like bbolt, it looks for the second meta page at
// the page size the first one gives, or, when the first is damaged, at
// every plausible page size.
func readMeta(f *os.File) (fileMeta, error) {
	buf := make([]byte, pageHeaderSize+metaSize+8)
	at := func(off int64) (fileMeta, bool) {
		if _, err := f.ReadAt(buf, off); err != nil {
			return fileMeta{}, false
		}
		return parseMeta(buf)
	}
	m0, ok0 := at(0)
	var m1 fileMeta
	ok1 := false
	if ok0 {
		m1, ok1 = at(int64(m0.pageSize))
	} else {
		for size := int64(1024); size <= 64<<10 && !ok1; size *= 2 {
			m1, ok1 = at(size)
		}
	}
	switch {
	case ok0 && ok1 && m1.txid > m0.txid, !ok0 && ok1:
		return m1, nil
	case ok0:
		return m0, nil
	}
	return fileMeta{}, errors.New("neither of its two meta pages is valid (not a bbolt file, or its first pages are damaged)")
}

// checkFile refuses, before bbolt maps it, a file that would make bbolt
// fault or silently start over: an empty file (bbolt would write a new,
// empty log into it; a log this package creates is never empty, see
// create), a file without a valid meta page, and a file shorter than its
// meta page says (its high water mark). For writing, also a damaged
// freelist page: bbolt reads it at open, and a wild count there makes it
// allocate terabytes (a fatal error, no panic to recover); read-only,
// bbolt reads it only in Check, which looks first. It returns false for a
// missing file.
func checkFile(path string, writable bool) (exists bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: open %s: %w", path, err)
	}
	defer f.Close()
	// Meta first, size second: a live writer grows the file before it
	// writes a meta page that needs the room, never after.
	m, merr := readMeta(f)
	fi, err := f.Stat()
	if err != nil {
		return true, fmt.Errorf("store: open %s: %w", path, err)
	}
	damaged := func(format string, a ...any) error {
		return fmt.Errorf("store: open %s: %s: %w", path, fmt.Sprintf(format, a...), ErrCorrupt)
	}
	switch {
	case fi.Size() == 0:
		return true, damaged("the file is empty (0 bytes), not an event log; a new log is created only where no file exists: restore the file, or move it away to start a new log")
	case merr != nil:
		return true, damaged("%d bytes, %v", fi.Size(), merr)
	case m.pageSize < 512 || m.pageSize > 64<<10 || m.pageSize&(m.pageSize-1) != 0:
		return true, damaged("meta page gives page size %d", m.pageSize)
	case m.root >= m.pgid || (m.freelist != noFreelist && m.freelist >= m.pgid):
		return true, damaged("meta page points past its high water mark (root %d, freelist %d, %d pages)", m.root, m.freelist, m.pgid)
	case uint64(fi.Size()) < m.pgid*uint64(m.pageSize):
		return true, damaged("the file is truncated: %d bytes, its meta page (transaction %d) needs %d pages of %d bytes (%d bytes)",
			fi.Size(), m.txid, m.pgid, m.pageSize, m.pgid*uint64(m.pageSize))
	}
	if writable {
		if err := checkFreelist(f, m); err != nil {
			return true, damaged("%v (log verify, log export and log inspect can still read it)", err)
		}
	}
	return true, nil
}

// guard runs fn, a read of the file, with memory faults turned into
// panics, and turns a panic (a fault, or one of bbolt's assertions on a
// damaged page) into an error wrapping ErrCorrupt. bbolt's View and Update
// roll their transaction back on a panic; for a write transaction that
// rollback reads the file too, and when it faults as well bbolt's writer
// lock stays held: writeTx then takes the DB as wedged.
func guard(path, op string, fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			err = faultError{fmt.Errorf("store: %s %s: the file is damaged (%v): %w", op, path, r, ErrCorrupt)}
		}
	}()
	return fn()
}

// faultError is an error guard made of a panic (it wraps ErrCorrupt).
type faultError struct{ error }

func (e faultError) Unwrap() error { return e.error }

// create makes a new, empty log at path: built under a temporary name and
// linked into place once complete, so that no process ever finds a
// half-made log (or an empty file) at path. Linking fails if another
// process created path meanwhile; its log is then used.
func create(path string, opts Options) error {
	dir, base := filepath.Split(path)
	tmp, err := os.CreateTemp(dir, "."+base+".new-*")
	if err != nil {
		return fmt.Errorf("store: create %s: %w", path, err)
	}
	name := tmp.Name()
	defer os.Remove(name)
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("store: create %s: %w", path, err)
	}
	db, err := openBolt(name, opts, false)
	if err != nil {
		return err
	}
	err = (&Store{db: db, path: name}).init()
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("store: create %s: %w", path, cerr)
	}
	if err != nil {
		return err
	}
	if err := os.Link(name, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("store: create %s: %w", path, err)
	}
	if opts.NoSync {
		return nil
	}
	if dir == "" {
		dir = "."
	}
	if err := syncPath(dir); err != nil {
		return fmt.Errorf("store: create %s: sync directory: %w", path, err)
	}
	return nil
}

// touchAll reads every key and the ends of every value of every bucket, so
// that every page bbolt's check will visit has been reached through a
// cursor (branch, leaf and overflow pages).
func touchAll(tx *bolt.Tx) byte {
	var sum byte
	var walk func(b *bolt.Bucket)
	walk = func(b *bolt.Bucket) {
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			sum ^= k[len(k)-1]
			if v == nil {
				if sub := b.Bucket(k); sub != nil {
					walk(sub)
				}
				continue
			}
			if len(v) > 0 {
				sum ^= v[0] ^ v[len(v)-1]
			}
		}
	}
	_ = tx.ForEach(func(_ []byte, b *bolt.Bucket) error { walk(b); return nil })
	return sum
}

// checkFreelist reads the freelist page the meta page names, with plain
// reads, and checks that it is one and that its page IDs fit in it and
// lie below the high water mark.
func checkFreelist(f *os.File, m fileMeta) error {
	if m.freelist == noFreelist {
		return nil
	}
	const freelistFlag = 0x10
	hdr := make([]byte, pageHeaderSize+8)
	if _, err := f.ReadAt(hdr, int64(m.freelist)*int64(m.pageSize)); err != nil {
		return fmt.Errorf("freelist page %d: %w", m.freelist, err)
	}
	ne := binary.NativeEndian
	flags, count, overflow := ne.Uint16(hdr[8:]), uint64(ne.Uint16(hdr[10:])), uint64(ne.Uint32(hdr[12:]))
	skip := uint64(0)
	if count == 0xFFFF { // the real count is the first element
		count, skip = ne.Uint64(hdr[pageHeaderSize:]), 1
	}
	room := ((overflow+1)*uint64(m.pageSize) - pageHeaderSize) / 8
	switch {
	case flags != freelistFlag:
		return fmt.Errorf("freelist page %d: flags %#x, not a freelist page", m.freelist, flags)
	case m.freelist+overflow >= m.pgid:
		return fmt.Errorf("freelist page %d: %d overflow pages run past the high water mark %d", m.freelist, overflow, m.pgid)
	case count > room-skip:
		return fmt.Errorf("freelist page %d: %d IDs do not fit in %d pages", m.freelist, count, overflow+1)
	}
	ids := make([]byte, 8*(count+skip))
	if _, err := f.ReadAt(ids, int64(m.freelist)*int64(m.pageSize)+pageHeaderSize); err != nil {
		return fmt.Errorf("freelist page %d: %w", m.freelist, err)
	}
	for i := skip; i < count+skip; i++ {
		if id := ne.Uint64(ids[8*i:]); id < 2 || id >= m.pgid {
			return fmt.Errorf("freelist page %d: free page ID %d outside [2, %d)", m.freelist, id, m.pgid)
		}
	}
	return nil
}

// checkFileFreelist is checkFreelist on the file at path.
func checkFileFreelist(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	m, err := readMeta(f)
	if err != nil {
		return err
	}
	return checkFreelist(f, m)
}

// CheckFile looks at the file at path the way a writable Open does before
// mapping it (meta pages, size against the high water mark, freelist page)
// and returns nil or an error wrapping ErrCorrupt. It reads a few pages,
// with plain reads: cheap, and safe on any file. A read-only Open skips the
// freelist (bbolt does not read it then), so a log that opens read-only can
// still fail here.
func CheckFile(path string) error {
	exists, err := checkFile(path, true)
	if err == nil && !exists {
		err = fmt.Errorf("store: %s: %w", path, fs.ErrNotExist)
	}
	return err
}
