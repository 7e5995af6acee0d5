package coredump

import (
	"encoding/binary"
	"io"
	"sort"
)

// flatRecord is a stretch of the rebuilt file stored in the stream.
type flatRecord struct {
	off, size, at uint64 // logical offset, length, position in the stream
}

// flatReader presents a flattened stream as the file makedumpfile -R
// would rebuild: bytes no record wrote read as zero.
type flatReader struct {
	r       io.ReaderAt
	records []flatRecord
	size    int64  // of the rebuilt file
	stored  uint64 // bytes the records hold
}

func openFlat(r io.ReaderAt, size int64) (*flatReader, error) {
	h, err := readSection(r, size, 0, flatHeaderSize, "makedumpfile header")
	if err != nil {
		return nil, err
	}
	be := binary.BigEndian
	if t, v := be.Uint64(h[16:]), be.Uint64(h[24:]); t != flatTypeHeader || v < 1 {
		return nil, corruptf("makedumpfile header type %d version %d (want type 1)", int64(t), int64(v))
	}
	fr := &flatReader{r: r}
	at := uint64(flatHeaderSize)
	var rh [flatRecordHead]byte
	for {
		if m, _ := r.ReadAt(rh[:], int64(at)); m < len(rh) {
			return nil, truncatedf("flattened stream ends at %#x after %d records without its end marker", at, len(fr.records))
		}
		off, n := be.Uint64(rh[:]), be.Uint64(rh[8:])
		if off == ^uint64(0) && n == ^uint64(0) {
			break
		}
		at += flatRecordHead
		if int64(off) < 0 || int64(n) < 0 || off+n < off || int64(off+n) < 0 {
			return nil, corruptf("flattened record %d at %#x: offset %#x size %#x", len(fr.records), at-flatRecordHead, off, n)
		}
		if n > uint64(size)-at {
			return nil, truncatedf("flattened record %d at %#x: %d bytes, the stream has %d left", len(fr.records), at-flatRecordHead, n, uint64(size)-at)
		}
		if n > 0 {
			fr.records = append(fr.records, flatRecord{off: off, size: n, at: at})
			fr.stored += n
		}
		fr.size = max(fr.size, int64(off+n))
		at += n
	}
	sort.SliceStable(fr.records, func(i, j int) bool { return fr.records[i].off < fr.records[j].off })
	for i := 1; i < len(fr.records); i++ {
		a, b := fr.records[i-1], fr.records[i]
		if b.off < a.off+a.size {
			return nil, corruptf("flattened records overlap at file offset %#x", b.off)
		}
	}
	return fr, nil
}

func (f *flatReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= f.size {
		return 0, io.EOF
	}
	want := len(p)
	eof := false
	if int64(want) > f.size-off {
		want, eof = int(f.size-off), true
	}
	n := 0
	for n < want {
		o := uint64(off) + uint64(n)
		i := sort.Search(len(f.records), func(i int) bool { return f.records[i].off+f.records[i].size > o })
		if i == len(f.records) {
			clear(p[n:want])
			break
		}
		rec := f.records[i]
		if rec.off > o { // a gap: zeros, as in the sparse file -R writes
			g := min(uint64(want-n), rec.off-o)
			clear(p[n : n+int(g)])
			n += int(g)
			continue
		}
		c := min(uint64(want-n), rec.off+rec.size-o)
		m, err := f.r.ReadAt(p[n:n+int(c)], int64(rec.at+o-rec.off))
		n += m
		if m < int(c) {
			return n, err
		}
	}
	if eof {
		return want, io.EOF
	}
	return want, nil
}
