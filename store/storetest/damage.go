// Package storetest damages event log files the ways hostile tests do:
// cut short, emptied, or with a broken freelist page. For tests only.
package storetest

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"

	bolt "go.etcd.io/bbolt"
)

// Truncate makes path hold only its first n bytes, as
// `head -c n path > copy && mv copy path` does.
func Truncate(path string, n int64) error {
	return os.Truncate(path, n)
}

// Copy copies src to dst (mode 0600).
func Copy(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Freelist kinds of damage.
const (
	// NotAFreelist gives the freelist page a leaf page's flags: bbolt
	// panics reading it ("invalid freelist page").
	NotAFreelist = iota
	// HugeFreelist claims 2^40 free page IDs (count 0xFFFF, then the real
	// count): bbolt reads far past the end of the file and faults.
	HugeFreelist
)

// CorruptFreelist damages the freelist page of the bbolt file at path
// (which no process may hold) in the given way.
func CorruptFreelist(path string, kind int) error {
	off, err := freelistOffset(path)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	hdr := make([]byte, 24) // page header (id, flags, count, overflow) + first ID
	if _, err := f.ReadAt(hdr, off); err != nil {
		return err
	}
	ne := binary.NativeEndian
	switch kind {
	case NotAFreelist:
		ne.PutUint16(hdr[8:], 0x02) // leaf
	case HugeFreelist:
		ne.PutUint16(hdr[10:], 0xFFFF)
		ne.PutUint64(hdr[16:], 1<<40)
	default:
		return fmt.Errorf("unknown damage %d", kind)
	}
	if _, err := f.WriteAt(hdr, off); err != nil {
		return err
	}
	return f.Sync()
}

// freelistOffset finds the freelist page with bbolt itself (a writable
// open loads the freelist and can tell every page's type).
func freelistOffset(path string) (int64, error) {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	off := int64(-1)
	err = db.View(func(tx *bolt.Tx) error {
		pages := int(tx.Size()) / db.Info().PageSize
		for id := 2; id < pages; id++ {
			p, err := tx.Page(id)
			if err != nil {
				return err
			}
			if p != nil && p.Type == "freelist" {
				off = int64(id) * int64(db.Info().PageSize)
				return nil
			}
		}
		return fmt.Errorf("%s: no freelist page among %d pages", path, pages)
	})
	return off, err
}
