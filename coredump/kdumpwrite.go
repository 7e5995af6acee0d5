package coredump

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// kdumpLayout is where each part of a kdump file goes.
type kdumpLayout struct {
	maxMapnr   uint64 // pfn after the last page
	subBlocks  uint64
	noteOff    uint64
	bitmapOff  uint64
	bitmapLen  uint64 // of one bitmap
	descOff    uint64
	dataOff    uint64 // the shared zero page
	pages      uint64
	notesBytes []byte
}

func layoutKdump(m MemoryMap, notes []Note) kdumpLayout {
	var l kdumpLayout
	l.notesBytes = EncodeNotes(notes)
	l.maxMapnr = m.End() / PageSize
	l.pages = m.Pages()
	l.subBlocks = alignUp(subHeaderSize+uint64(len(l.notesBytes)), PageSize) / PageSize
	l.noteOff = PageSize + subHeaderSize
	l.bitmapOff = (1 + l.subBlocks) * PageSize
	l.bitmapLen = alignUp(alignUp(l.maxMapnr, 8)/8, PageSize)
	l.descOff = l.bitmapOff + 2*l.bitmapLen
	l.dataOff = l.descOff + pageDescSize*l.pages
	return l
}

func writeKdump(ctx context.Context, out offsetWriter, ram io.ReaderAt, m MemoryMap, notes []Note, flag uint32, o Options) (Stats, error) {
	st := Stats{Pages: m.Pages()}
	l := layoutKdump(m, notes)
	put := func(what string, b []byte, off uint64) error {
		if _, err := out.WriteAt(b, int64(off)); err != nil {
			return fmt.Errorf("coredump: write %s at %#x: %w", what, off, err)
		}
		return nil
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	if err := put("disk_dump_header", l.header(flag, len(o.CPUs), o.VMCoreInfo, now), 0); err != nil {
		return st, err
	}
	if err := put("kdump_sub_header", l.subHeader(notes), PageSize); err != nil {
		return st, err
	}
	if len(l.notesBytes) > 0 {
		if err := put("notes", l.notesBytes, l.noteOff); err != nil {
			return st, err
		}
	}
	if err := writeBitmaps(m, l, put); err != nil {
		return st, err
	}
	if err := put("zero page", zeroPage, l.dataOff); err != nil {
		return st, err
	}

	le := binary.LittleEndian
	dataAt := l.dataOff + PageSize
	var idx uint64
	desc := make([]byte, batchPages*pageDescSize)
	err := runPipeline(ctx, ram, m, o.Workers, true, flag, func(b *batch, r *batchResult) error {
		d := desc[:b.pages*pageDescSize]
		at := dataAt
		for i := range b.pages {
			e := d[i*pageDescSize:]
			if r.sizes[i] == 0 {
				le.PutUint64(e, l.dataOff)
				le.PutUint32(e[8:], PageSize)
				le.PutUint32(e[12:], 0)
				st.ZeroPages++
			} else {
				le.PutUint64(e, at)
				le.PutUint32(e[8:], r.sizes[i])
				le.PutUint32(e[12:], r.flags[i])
				at += uint64(r.sizes[i])
			}
			le.PutUint64(e[16:], 0) // page_flags
		}
		if len(r.data) > 0 {
			if err := put("page data", r.data, dataAt); err != nil {
				return err
			}
		}
		if err := put("page descriptors", d, l.descOff+idx*pageDescSize); err != nil {
			return err
		}
		dataAt = at
		idx += uint64(b.pages)
		if o.Progress != nil {
			o.Progress(idx, st.Pages)
		}
		return nil
	})
	if err == nil {
		err = out.Close()
	}
	st.Bytes = out.Size()
	return st, err
}

func (l kdumpLayout) header(flag uint32, cpus int, vmcoreinfo []byte, now time.Time) []byte {
	le := binary.LittleEndian
	h := make([]byte, PageSize)
	copy(h, kdumpSignature)
	le.PutUint32(h[8:], kdumpVersion)
	uts := func(field int, s string) {
		copy(h[utsOffset+field*utsFieldLen:utsOffset+(field+1)*utsFieldLen-1], s)
	}
	uts(utsSysname, "Linux")
	uts(utsMachine, "x86_64")
	// crash --osrelease reads a kdump file's release from here.
	if rel, ok := VMCoreInfoValue(vmcoreinfo, "OSRELEASE"); ok {
		uts(utsRelease, rel)
	}
	le.PutUint64(h[offTimestamp:], uint64(now.Unix()))
	le.PutUint64(h[offTimestamp+8:], uint64(now.Nanosecond()/1000))
	le.PutUint32(h[offStatus:], flag)
	le.PutUint32(h[offBlockSize:], PageSize)
	le.PutUint32(h[offSubHdrSize:], uint32(l.subBlocks))
	le.PutUint32(h[offBitmapBlocks:], uint32(2*l.bitmapLen/PageSize))
	le.PutUint32(h[offMaxMapnr:], uint32(min(l.maxMapnr, 0xffffffff)))
	le.PutUint32(h[offNrCPUs:], uint32(cpus))
	return h[:diskHeaderSize]
}

func (l kdumpLayout) subHeader(notes []Note) []byte {
	le := binary.LittleEndian
	s := make([]byte, subHeaderSize)
	le.PutUint64(s[subPhysBase:], 0)
	le.PutUint32(s[subDumpLevel:], 0) // nothing excluded: zero pages are dumped (shared)
	at := l.noteOff
	for _, n := range notes {
		if n.Name == NameVMCoreInfo {
			// Like makedumpfile, point at the text itself, here inside its note.
			le.PutUint64(s[subOffVMCoreInfo:], at+12+uint64(align4(len(n.Name)+1)))
			le.PutUint64(s[subSizeVMCoreInf:], uint64(len(n.Desc)))
		}
		at += uint64(noteSize(n))
	}
	if len(l.notesBytes) > 0 {
		le.PutUint64(s[subOffNote:], l.noteOff)
		le.PutUint64(s[subSizeNote:], uint64(len(l.notesBytes)))
	}
	le.PutUint64(s[subMaxMapnr64:], l.maxMapnr)
	return s
}

// writeBitmaps writes both bitmaps (identical: every page that exists is
// dumped) a chunk at a time, so a huge guest needs no huge buffer.
func writeBitmaps(m MemoryMap, l kdumpLayout, put func(string, []byte, uint64) error) error {
	const chunk = 1 << 20 // bytes of bitmap, 32 GiB of guest
	buf := make([]byte, chunk)
	for start := uint64(0); start < l.bitmapLen; start += chunk {
		n := min(chunk, l.bitmapLen-start)
		b := buf[:n]
		clear(b)
		lo, hi := start*8, (start+n)*8 // pfns covered
		for _, r := range m {
			a, e := max(r.Addr/PageSize, lo), min(r.End()/PageSize, hi)
			for pfn := a; pfn < e; pfn++ {
				if pfn%8 == 0 && pfn+8 <= e {
					b[(pfn-lo)/8] = 0xff
					pfn += 7
					continue
				}
				b[(pfn-lo)/8] |= 1 << (pfn % 8)
			}
		}
		if err := put("1st bitmap", b, l.bitmapOff+start); err != nil {
			return err
		}
		if err := put("2nd bitmap", b, l.bitmapOff+l.bitmapLen+start); err != nil {
			return err
		}
	}
	return nil
}
