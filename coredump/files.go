package coredump

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// FileRange is guest-physical memory [Addr, Addr+Size) held by a file of
// its own from offset 0: a hot-plugged DIMM's memory-backend-file, which
// is not in the main RAM file.
type FileRange struct {
	Addr uint64 `json:"addr"`
	Size uint64 `json:"size"`
	Path string `json:"path"`
}

// Memory is guest RAM spread over several files, read as one: the main
// RAM file at offsets [0, ramSize), then each extra file after it, in the
// order given. Map places every file's bytes at its guest addresses.
type Memory struct {
	Map   MemoryMap
	parts []part
}

type part struct {
	off, size uint64
	r         io.ReaderAt
	f         *os.File // closed by Close; nil for the caller's own
}

// AddFiles returns the guest memory of ram (ramSize bytes, laid out by m)
// with the extra files added at their addresses. Each extra file must
// exist, be a regular file and hold at least its Size; the map is checked
// like any other (sorted once the files are in, disjoint, page-aligned).
// Close closes the extra files (not ram).
func AddFiles(ram io.ReaderAt, ramSize uint64, m MemoryMap, extra []FileRange) (*Memory, error) {
	mem := &Memory{Map: slices.Clone(m), parts: []part{{off: 0, size: ramSize, r: ram}}}
	at := ramSize
	for _, x := range extra {
		f, err := os.Open(x.Path)
		if err != nil {
			mem.Close()
			return nil, fmt.Errorf("coredump: memory at %#x: %w", x.Addr, err)
		}
		mem.parts = append(mem.parts, part{off: at, size: x.Size, r: f, f: f})
		fi, err := f.Stat()
		if err == nil && (!fi.Mode().IsRegular() || uint64(fi.Size()) < x.Size) {
			err = fmt.Errorf("%s is not a regular file of at least %d bytes", x.Path, x.Size)
		}
		if err != nil {
			mem.Close()
			return nil, fmt.Errorf("coredump: memory at %#x: %w", x.Addr, err)
		}
		mem.Map = append(mem.Map, Range{Addr: x.Addr, Size: x.Size, Offset: at})
		at += x.Size
	}
	slices.SortFunc(mem.Map, func(a, b Range) int {
		switch {
		case a.Addr < b.Addr:
			return -1
		case a.Addr > b.Addr:
			return 1
		}
		return 0
	})
	if err := mem.Map.Validate(); err != nil {
		mem.Close()
		return nil, err
	}
	return mem, nil
}

// ReadAt reads the concatenated files; a read may span several.
func (m *Memory) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("coredump: negative offset")
	}
	n := 0
	for _, p := range m.parts {
		if len(b) == 0 {
			break
		}
		o := uint64(off) + uint64(n)
		if o < p.off || o >= p.off+p.size {
			continue
		}
		want := min(uint64(len(b)), p.off+p.size-o)
		k, err := p.r.ReadAt(b[:want], int64(o-p.off))
		n += k
		b = b[k:]
		if err != nil && !(errors.Is(err, io.EOF) && uint64(k) == want) {
			return n, err
		}
	}
	if len(b) > 0 {
		return n, io.EOF
	}
	return n, nil
}

// Close closes the extra files.
func (m *Memory) Close() error {
	var errs []error
	for _, p := range m.parts {
		if p.f != nil {
			errs = append(errs, p.f.Close())
		}
	}
	return errors.Join(errs...)
}
