package coredump

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// Errors of the readers. Every error from Open and ReadAt wraps one of
// them, so callers can tell a damaged file from a hole.
var (
	ErrFormat    = errors.New("coredump: not a dump file this package knows")
	ErrCorrupt   = errors.New("coredump: dump file is damaged")
	ErrTruncated = errors.New("coredump: dump file is truncated")
	ErrHole      = errors.New("coredump: address is not in the dump")
)

// HoleError is ErrHole with the address: guest-physical memory the dump
// does not hold (no RAM there, or a page the dumper excluded).
type HoleError struct {
	Addr     uint64
	Excluded bool // RAM exists (1st kdump bitmap) but the page was not dumped
}

func (e *HoleError) Error() string {
	if e.Excluded {
		return fmt.Sprintf("coredump: page at %#x was excluded from the dump", e.Addr)
	}
	return fmt.Sprintf("coredump: address %#x is in a hole (no memory there)", e.Addr)
}

func (e *HoleError) Is(target error) bool { return target == ErrHole }

func corruptf(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, a...)...)
}

func truncatedf(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrTruncated}, a...)...)
}

// File is an open dump.
type File struct {
	Format      string   // "elf" or "kdump"
	Flattened   bool     // in makedumpfile's flattened stream
	Compression string   // kdump: zlib, snappy, zstd, lzo, none
	PageSize    int      // kdump block size; 4096 for ELF
	Extents     []Extent // memory the dump holds, sorted
	Notes       []Note

	impl  reader
	close func() error
}

// reader is one format's page access.
type reader interface {
	readAt(p []byte, addr uint64) (int, error)
}

// Pages is the number of pages the dump holds.
func (f *File) Pages() uint64 {
	var n uint64
	for _, e := range f.Extents {
		n += e.Size / uint64(f.PageSize)
	}
	return n
}

// Holes are the gaps between the extents.
func (f *File) Holes() []Extent { return Holes(f.Extents) }

// VMCoreInfo is the guest kernel's vmcoreinfo text, if the dump has it.
func (f *File) VMCoreInfo() ([]byte, bool) {
	d := findVMCoreInfo(f.Notes)
	return d, d != nil
}

// ReadAt reads guest-physical memory at addr. A byte not in the dump
// stops the read with a *HoleError (errors.Is(err, ErrHole)) and n says
// how much was read before it.
func (f *File) ReadAt(p []byte, addr int64) (int, error) {
	if addr < 0 {
		return 0, fmt.Errorf("coredump: negative address %d", addr)
	}
	return f.impl.readAt(p, uint64(addr))
}

// Close releases the file opened by OpenFile.
func (f *File) Close() error {
	if f.close != nil {
		return f.close()
	}
	return nil
}

// OpenFile opens a dump file by name.
func OpenFile(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("coredump: %w", err)
	}
	fi, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("coredump: %w", err)
	}
	f, err := Open(fh, fi.Size())
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.close = fh.Close
	return f, nil
}

// Open reads a dump's headers from r (of size bytes): ELF, kdump, or
// either inside makedumpfile's flattened stream.
func Open(r io.ReaderAt, size int64) (*File, error) {
	return open(r, size, true)
}

func open(r io.ReaderAt, size int64, allowFlat bool) (*File, error) {
	var magic [16]byte
	if n, err := r.ReadAt(magic[:], 0); n < len(magic) {
		if n < 4 || !bytes.HasPrefix(magic[:], []byte("\x7fELF")) {
			return nil, fmt.Errorf("%w: %d bytes, too short for any dump header (%v)", ErrFormat, n, err)
		}
	}
	switch {
	case bytes.HasPrefix(magic[:], []byte("\x7fELF")):
		return openELF(r, size)
	case bytes.HasPrefix(magic[:], []byte(kdumpSignature)):
		return openKdump(r, size)
	case bytes.Equal(magic[:], append([]byte(flatSignature), 0, 0, 0, 0)) && allowFlat:
		fr, err := openFlat(r, size)
		if err != nil {
			return nil, err
		}
		f, err := open(fr, fr.size, false)
		if err != nil {
			return nil, fmt.Errorf("inside the flattened stream: %w", err)
		}
		f.Flattened = true
		return f, nil
	}
	return nil, fmt.Errorf("%w: magic %q", ErrFormat, magic[:8])
}

// readFull fills dst from r and requires r to end there: a page must
// decompress to exactly one page.
func readFull(r io.Reader, dst []byte, what string) error {
	if _, err := io.ReadFull(r, dst); err != nil {
		return fmt.Errorf("%s: page decodes short: %w", what, err)
	}
	var one [1]byte
	if n, _ := r.Read(one[:]); n > 0 {
		return fmt.Errorf("%s: page decodes to more than %d bytes", what, len(dst))
	}
	return nil
}

// readSection reads n bytes at off, bounded by the file's size.
func readSection(r io.ReaderAt, size int64, off, n uint64, what string) ([]byte, error) {
	if off > uint64(size) || n > uint64(size)-off {
		return nil, truncatedf("%s needs bytes [%#x, %#x), the file has %#x", what, off, off+n, size)
	}
	b := make([]byte, n)
	if m, err := r.ReadAt(b, int64(off)); m < len(b) {
		return nil, truncatedf("%s at %#x: read %d of %d bytes: %w", what, off, m, n, err)
	}
	return b, nil
}
