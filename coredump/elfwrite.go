package coredump

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
)

// ELF constants (elf.h).
const (
	ehdrSize    = 64
	phdrSize    = 56
	shdrSize    = 64
	etCore      = 4
	emX86_64    = 62
	ptLoad      = 1
	ptNote      = 4
	pnXNum      = 0xffff
	elfClass64  = 2
	elfData2LSB = 1
)

// writeELF writes an ELF64 core: the ELF header, the program headers
// right after it (where makedumpfile looks), with more than 65534 of them
// a section header 0 after them carrying the count (PN_XNUM), the notes,
// then the memory, page-aligned, one PT_LOAD per range.
func writeELF(ctx context.Context, w io.Writer, ram io.ReaderAt, m MemoryMap, notes []Note, o Options) (Stats, error) {
	nb := EncodeNotes(notes)
	phnum := uint64(1 + len(m))
	xnum := phnum >= pnXNum
	hdrEnd := uint64(ehdrSize) + phnum*phdrSize
	shoff := uint64(0)
	if xnum {
		shoff = hdrEnd
		hdrEnd += shdrSize
	}
	noteOff := hdrEnd
	dataOff := alignUp(noteOff+uint64(len(nb)), PageSize)

	le := binary.LittleEndian
	h := make([]byte, dataOff)
	copy(h, "\x7fELF")
	h[4], h[5], h[6] = elfClass64, elfData2LSB, 1
	le.PutUint16(h[16:], etCore)
	le.PutUint16(h[18:], emX86_64)
	le.PutUint32(h[20:], 1)
	le.PutUint64(h[32:], ehdrSize) // e_phoff
	le.PutUint64(h[40:], shoff)
	le.PutUint16(h[52:], ehdrSize)
	le.PutUint16(h[54:], phdrSize)
	if xnum {
		le.PutUint16(h[56:], pnXNum)
		le.PutUint16(h[58:], shdrSize)
		le.PutUint16(h[60:], 1) // e_shnum
		sh := h[shoff:]
		info := uint32(min(phnum, 0xffffffff))
		le.PutUint32(sh[44:], info) // sh_info holds the real e_phnum
	} else {
		le.PutUint16(h[56:], uint16(phnum))
	}
	ph := h[ehdrSize:]
	le.PutUint32(ph[0:], ptNote)
	le.PutUint64(ph[8:], noteOff)
	le.PutUint64(ph[32:], uint64(len(nb)))
	le.PutUint64(ph[40:], uint64(len(nb)))
	off := dataOff
	for i, r := range m {
		p := ph[phdrSize*(i+1):]
		le.PutUint32(p[0:], ptLoad)
		le.PutUint32(p[4:], 7) // PF_R|PF_W|PF_X, as QEMU and the kernel write
		le.PutUint64(p[8:], off)
		le.PutUint64(p[16:], r.Addr) // p_vaddr: no paging information, so the physical address
		le.PutUint64(p[24:], r.Addr)
		le.PutUint64(p[32:], r.Size)
		le.PutUint64(p[40:], r.Size)
		off += r.Size
	}
	copy(h[noteOff:], nb)

	st := Stats{Pages: m.Pages()}
	sw, sparse := w.(sparseFile)
	var start int64
	if sparse {
		// Zero pages are skipped with a seek, so the file must hold nothing
		// after where the dump starts.
		var err error
		if start, err = sw.Seek(0, io.SeekCurrent); err != nil {
			sparse = false
		} else if err := sw.Truncate(start); err != nil {
			return st, fmt.Errorf("coredump: truncate the output: %w", err)
		}
	}
	cw := &countWriter{w: w}
	if _, err := cw.Write(h); err != nil {
		return st, fmt.Errorf("coredump: write ELF headers: %w", err)
	}
	var done uint64
	pos := uint64(len(h)) // where the file's writer is, relative to start
	err := runPipeline(ctx, ram, m, o.Workers, false, 0, func(b *batch, r *batchResult) error {
		raw := r.raw[:b.pages*PageSize]
		if !sparse {
			if _, err := cw.Write(raw); err != nil {
				return fmt.Errorf("coredump: write memory at %#x: %w", b.addr, err)
			}
		} else {
			// Write everything but runs of at least sparseRun zero pages,
			// which are skipped with a seek: short runs are cheaper written
			// than seeked over (each seek splits a write).
			at := cw.n
			span := 0 // first page not yet written or skipped
			flush := func(end int) error {
				if end == span {
					return nil
				}
				if pos != at {
					if _, err := sw.Seek(start+int64(at), io.SeekStart); err != nil {
						return fmt.Errorf("coredump: seek: %w", err)
					}
				}
				if _, err := w.Write(raw[span*PageSize : end*PageSize]); err != nil {
					return fmt.Errorf("coredump: write memory at %#x: %w", b.addr+uint64(span)*PageSize, err)
				}
				at += uint64(end-span) * PageSize
				pos, span = at, end
				return nil
			}
			for i := 0; i < b.pages; {
				if r.sizes[i] != 0 {
					i++
					continue
				}
				j := i
				for j < b.pages && r.sizes[j] == 0 {
					j++
				}
				st.ZeroPages += uint64(j - i)
				if j-i >= sparseRun {
					if err := flush(i); err != nil {
						return err
					}
					at += uint64(j-i) * PageSize
					span = j
				}
				i = j
			}
			if err := flush(b.pages); err != nil {
				return err
			}
			cw.n = at
		}
		done += uint64(b.pages)
		if o.Progress != nil {
			o.Progress(done, st.Pages)
		}
		return nil
	})
	if err == nil && sparse && pos != cw.n {
		// Trailing zero pages: extend the file to its full size.
		if terr := sw.Truncate(start + int64(cw.n)); terr != nil {
			err = fmt.Errorf("coredump: extend the output: %w", terr)
		}
	}
	st.Bytes = cw.n
	return st, err
}

// sparseRun is the shortest run of zero pages the ELF writer seeks over.
const sparseRun = 32

// sparseFile is an output where runs of zero pages can be skipped (a
// regular file): the ELF then takes only the disk its non-zero pages need.
type sparseFile interface {
	io.WriteSeeker
	Truncate(size int64) error
}

func alignUp(n, a uint64) uint64 { return (n + a - 1) / a * a }
