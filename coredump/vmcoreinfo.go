package coredump

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
)

// maxVMCoreInfo bounds the note text (Linux's VMCOREINFO_BYTES is one
// page; leave room for larger ones).
const maxVMCoreInfo = 64 << 10

var vmcoreinfoName = []byte("VMCOREINFO\x00\x00")

// FindVMCoreInfo finds the guest kernel's VMCOREINFO note in guest RAM
// and returns its text. Linux keeps the note at the start of pages of its
// own (vmcoreinfo_note, from alloc_pages_exact), as an ELF note named
// VMCOREINFO whose text begins with OSRELEASE=; that is what QEMU's
// vmcoreinfo device passes to dump-guest-memory too, by address. Reading
// it from RAM needs no device and no help from QEMU. It returns ErrNoNote
// when no page holds one (the guest is not Linux, or not booted yet).
func FindVMCoreInfo(ctx context.Context, ram io.ReaderAt, m MemoryMap) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	src := newSource(ram)
	defer src.close()
	buf := make([]byte, batchPages*PageSize)
	le := binary.LittleEndian
	for _, r := range m {
		for off := uint64(0); off < r.Size; off += uint64(len(buf)) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			n := min(uint64(len(buf)), r.Size-off)
			b, err := src.pages(r.Offset+off, n, buf)
			if err != nil {
				return nil, fmt.Errorf("coredump: find VMCOREINFO: %w", err)
			}
			for p := uint64(0); p < n; p += PageSize {
				h := b[p:]
				if le.Uint32(h) != 11 || le.Uint32(h[8:]) != NTVMCoreInfo || !bytes.Equal(h[12:24], vmcoreinfoName) ||
					!bytes.HasPrefix(h[24:], []byte("OSRELEASE=")) {
					continue
				}
				at, size := off+p+24, uint64(le.Uint32(h[4:]))
				if size > maxVMCoreInfo || size > r.Size-at {
					continue // runs past its range: not the note
				}
				text := make([]byte, size)
				k, err := src.pages(r.Offset+at, size, text)
				if err != nil {
					return nil, fmt.Errorf("coredump: read VMCOREINFO: %w", err)
				}
				copy(text, k)
				return text, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: no VMCOREINFO note in guest RAM", ErrNoNote)
}
