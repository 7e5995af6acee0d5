package coredump

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"sync"
)

// rankBlock is how many pfns share one precomputed count of dumped pages
// before them (8 words of the 2nd bitmap).
const rankBlock = 512

type kdumpReader struct {
	r         io.ReaderAt
	size      int64
	blockSize uint64
	maxMapnr  uint64
	bitmap1   []byte
	bitmap2   []byte
	rank      []uint64 // dumped pages before pfn i*rankBlock
	descOff   uint64

	mu    sync.Mutex // the decompressor and the cache
	dec   pageDecompressor
	comp  []byte
	cache []byte
	cpfn  uint64
	cok   bool
}

// kdumpHeaderLayout is where the two header layouts keep their fields:
// 64-bit (unsigned long is 8 bytes) and 32-bit, which QEMU writes for a
// guest outside long mode (still naming the machine x86_64).
type kdumpHeaderLayout struct {
	status, blockSize   int // blockSize is followed by sub_hdr_size, bitmap_blocks, max_mapnr
	offNote, maxMapnr64 int // in the sub header
	longSize            int
}

var (
	kdump64 = kdumpHeaderLayout{status: offStatus, blockSize: offBlockSize, offNote: subOffNote, maxMapnr64: subMaxMapnr64, longSize: 8}
	kdump32 = kdumpHeaderLayout{status: 412, blockSize: 416, offNote: 32, maxMapnr64: 72, longSize: 4}
)

func (l kdumpHeaderLayout) word(b []byte, at int) uint64 {
	if l.longSize == 4 {
		return uint64(binary.LittleEndian.Uint32(b[at:]))
	}
	return binary.LittleEndian.Uint64(b[at:])
}

// kdumpLayoutOf tells the layouts apart by which one has sane values.
func kdumpLayoutOf(h []byte) (kdumpHeaderLayout, bool) {
	for _, l := range []kdumpHeaderLayout{kdump64, kdump32} {
		le := binary.LittleEndian
		bs := le.Uint32(h[l.blockSize:])
		sub, bm := le.Uint32(h[l.blockSize+4:]), le.Uint32(h[l.blockSize+8:])
		if bs >= 512 && bs <= 1<<16 && bs&(bs-1) == 0 && sub >= 1 && bm >= 2 && bm%2 == 0 {
			return l, true
		}
	}
	return kdumpHeaderLayout{}, false
}

func openKdump(r io.ReaderAt, size int64) (*File, error) {
	le := binary.LittleEndian
	h, err := readSection(r, size, 0, diskHeaderSize, "disk_dump_header")
	if err != nil {
		return nil, err
	}
	version := le.Uint32(h[8:])
	if version < 1 || version > 64 {
		return nil, corruptf("kdump header version %d", version)
	}
	l, ok := kdumpLayoutOf(h)
	if !ok {
		return nil, corruptf("kdump header: no plausible block size, sub-header and bitmap sizes in either the 64- or the 32-bit layout")
	}
	bs := uint64(le.Uint32(h[l.blockSize:]))
	status := le.Uint32(h[l.status:])
	subBlocks := uint64(le.Uint32(h[l.blockSize+4:]))
	bitmapBlocks := uint64(le.Uint32(h[l.blockSize+8:]))
	maxMapnr := uint64(le.Uint32(h[l.blockSize+12:]))

	sub, err := readSection(r, size, bs, min(subHeaderSize, subBlocks*bs), "kdump_sub_header")
	if err != nil {
		return nil, err
	}
	sub = append(sub, make([]byte, subHeaderSize-len(sub))...)
	if version >= 6 {
		maxMapnr = le.Uint64(sub[l.maxMapnr64:])
	}
	f := &File{Format: "kdump", Compression: compressionName(status), PageSize: int(bs)}
	if version >= 4 {
		noff, nsize := le.Uint64(sub[l.offNote:]), l.word(sub, l.offNote+8)
		if nsize > maxNotes {
			return nil, corruptf("kdump notes of %d bytes (limit %d)", nsize, maxNotes)
		}
		if nsize > 0 {
			nb, err := readSection(r, size, noff, nsize, "kdump notes")
			if err != nil {
				return nil, err
			}
			if f.Notes, err = ParseNotes(nb); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
			}
		}
	}

	if bitmapBlocks%2 != 0 {
		return nil, corruptf("kdump bitmap_blocks %d is odd (two bitmaps of equal size)", bitmapBlocks)
	}
	bitmapOff := (1 + subBlocks) * bs
	bitmapLen := bitmapBlocks / 2 * bs
	if maxMapnr > bitmapLen*8 {
		return nil, corruptf("kdump max_mapnr %d exceeds the %d pfns its bitmaps cover", maxMapnr, bitmapLen*8)
	}
	if limit := storedBytes(r, size); 2*bitmapLen > limit {
		return nil, truncatedf("kdump bitmaps of 2x%d bytes, the file holds %d", bitmapLen, limit)
	}
	need := (maxMapnr + 7) / 8
	bm, err := readSection(r, size, bitmapOff, bitmapLen+need, "kdump bitmaps")
	if err != nil {
		return nil, err
	}
	k := &kdumpReader{r: r, size: size, blockSize: bs, maxMapnr: maxMapnr,
		bitmap1: bm[:need:need], bitmap2: bm[bitmapLen : bitmapLen+need : bitmapLen+need],
		descOff: bitmapOff + 2*bitmapLen, cache: make([]byte, bs)}
	if r := maxMapnr % 8; r != 0 { // bits past max_mapnr do not count
		k.bitmap1[need-1] &= 1<<r - 1
		k.bitmap2[need-1] &= 1<<r - 1
	}
	dumped := k.buildRank()
	if k.descOff > uint64(size) || dumped > (uint64(size)-k.descOff)/pageDescSize {
		return nil, truncatedf("%d page descriptors at %#x do not fit in %#x bytes", dumped, k.descOff, size)
	}
	f.Extents = k.extents()
	f.impl = k
	return f, nil
}

// storedBytes bounds what a reader may allocate: a flattened stream's
// logical file may be mostly unwritten.
func storedBytes(r io.ReaderAt, size int64) uint64 {
	if fr, ok := r.(*flatReader); ok {
		return fr.stored + 1<<20
	}
	return uint64(size)
}

func (k *kdumpReader) buildRank() uint64 {
	k.rank = make([]uint64, k.maxMapnr/rankBlock+1)
	var n uint64
	for i := range k.rank {
		k.rank[i] = n
		lo := uint64(i) * rankBlock / 8
		hi := min(lo+rankBlock/8, uint64(len(k.bitmap2)))
		for _, b := range k.bitmap2[min(lo, hi):hi] {
			n += uint64(bits.OnesCount8(b))
		}
	}
	return n
}

func bit(b []byte, pfn uint64) bool { return b[pfn/8]&(1<<(pfn%8)) != 0 }

// index is the number of dumped pages before pfn.
func (k *kdumpReader) index(pfn uint64) uint64 {
	n := k.rank[pfn/rankBlock]
	start := pfn / rankBlock * rankBlock
	for p := start; p < pfn; {
		if p%8 == 0 && p+8 <= pfn {
			n += uint64(bits.OnesCount8(k.bitmap2[p/8]))
			p += 8
			continue
		}
		if bit(k.bitmap2, p) {
			n++
		}
		p++
	}
	return n
}

func (k *kdumpReader) extents() []Extent {
	var es []Extent
	bs := k.blockSize
	for pfn := uint64(0); pfn < k.maxMapnr; {
		if pfn%8 == 0 && k.bitmap2[pfn/8] == 0 {
			pfn += 8
			continue
		}
		if !bit(k.bitmap2, pfn) {
			pfn++
			continue
		}
		start := pfn
		for pfn < k.maxMapnr {
			if pfn%8 == 0 && pfn+8 <= k.maxMapnr && k.bitmap2[pfn/8] == 0xff {
				pfn += 8
				continue
			}
			if !bit(k.bitmap2, pfn) {
				break
			}
			pfn++
		}
		es = append(es, Extent{start * bs, (pfn - start) * bs})
	}
	return es
}

func (k *kdumpReader) readAt(p []byte, addr uint64) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for n < len(p) {
		a := addr + uint64(n)
		pfn, in := a/k.blockSize, a%k.blockSize
		if err := k.load(pfn); err != nil {
			return n, err
		}
		n += copy(p[n:], k.cache[in:])
	}
	return n, nil
}

// load decodes page pfn into the cache.
func (k *kdumpReader) load(pfn uint64) error {
	if k.cok && k.cpfn == pfn {
		return nil
	}
	addr := pfn * k.blockSize
	if pfn >= k.maxMapnr || !bit(k.bitmap2, pfn) {
		return &HoleError{Addr: addr, Excluded: pfn < k.maxMapnr && bit(k.bitmap1, pfn)}
	}
	k.cok = false
	d, err := readSection(k.r, k.size, k.descOff+k.index(pfn)*pageDescSize, pageDescSize, fmt.Sprintf("page descriptor of %#x", addr))
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	off, size, flags := le.Uint64(d), uint64(le.Uint32(d[8:])), le.Uint32(d[12:])
	if size > 2*k.blockSize+64 || size == 0 {
		return corruptf("page %#x: descriptor says %d stored bytes (block size %d)", addr, size, k.blockSize)
	}
	if off > uint64(k.size) || size > uint64(k.size)-off {
		return truncatedf("page %#x: data [%#x, %#x) is past the end %#x", addr, off, off+size, k.size)
	}
	if cap(k.comp) < int(size) {
		k.comp = make([]byte, size)
	}
	src := k.comp[:size]
	if m, err := k.r.ReadAt(src, int64(off)); m < len(src) {
		return truncatedf("page %#x: data at %#x: %v", addr, off, err)
	}
	if err := k.dec.decompress(flags, src, k.cache); err != nil {
		return corruptf("page %#x (%s, %d bytes at %#x): %v", addr, compressionName(flags), size, off, err)
	}
	k.cpfn, k.cok = pfn, true
	return nil
}
