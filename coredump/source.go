package coredump

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// ramSource gives workers a batch's bytes.
type ramSource interface {
	// pages returns n bytes of RAM at file offset off, in buf or (for a
	// mapping) in place; the caller must not write to the result.
	pages(off, n uint64, buf []byte) ([]byte, error)
	close() error
}

// newSource maps a RAM file read-only when it can: the dump then reads
// guest memory the way QEMU does, straight from the mapping, with no
// copy and with holes of a sparse file costing nothing. Other readers
// (and files that cannot be mapped) are read with ReadAt.
func newSource(ram io.ReaderAt) ramSource {
	f, ok := ram.(*os.File)
	if !ok {
		return readerSource{ram}
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() <= 0 || int64(int(fi.Size())) != fi.Size() {
		return readerSource{ram}
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return readerSource{ram}
	}
	return mmapSource{b}
}

type readerSource struct{ r io.ReaderAt }

func (s readerSource) pages(off, n uint64, buf []byte) ([]byte, error) {
	b := buf[:n]
	m, err := s.r.ReadAt(b, int64(off))
	if m < len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("at file offset %#x: %w", off+uint64(m), err)
	}
	return b, nil
}

func (readerSource) close() error { return nil }

type mmapSource struct{ b []byte }

func (s mmapSource) pages(off, n uint64, _ []byte) ([]byte, error) {
	if off > uint64(len(s.b)) || n > uint64(len(s.b))-off {
		return nil, fmt.Errorf("[%#x, %#x) is past the end of the %#x-byte RAM file: %w", off, off+n, len(s.b), io.ErrUnexpectedEOF)
	}
	return s.b[off : off+n : off+n], nil
}

func (s mmapSource) close() error { return unix.Munmap(s.b) }
