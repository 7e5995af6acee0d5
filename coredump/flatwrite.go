package coredump

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// makedumpfile's flattened format: a 4096-byte header, then records of
// (offset, size) big-endian int64s followed by size bytes to be put at
// offset of the real file; a record of two -1s ends it. `makedumpfile -R
// FILE < stream` rebuilds the file. It lets a kdump file go through a
// pipe although its descriptors precede the data they point to.
const (
	flatSignature  = "makedumpfile"
	flatHeaderSize = 4096
	flatTypeHeader = 1
	flatVersion    = 1
	flatRecordHead = 16
)

type flatWriter struct {
	bw  *bufio.Writer
	cw  *countWriter
	err error
	hdr bool
	end uint64
}

func newFlatWriter(w io.Writer) *flatWriter {
	cw := &countWriter{w: w}
	return &flatWriter{cw: cw, bw: bufio.NewWriterSize(cw, 1<<20)}
}

func (f *flatWriter) WriteAt(p []byte, off int64) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	if !f.hdr {
		h := make([]byte, flatHeaderSize)
		copy(h, flatSignature)
		binary.BigEndian.PutUint64(h[16:], flatTypeHeader)
		binary.BigEndian.PutUint64(h[24:], flatVersion)
		f.write(h)
		f.hdr = true
	}
	var rh [flatRecordHead]byte
	binary.BigEndian.PutUint64(rh[:], uint64(off))
	binary.BigEndian.PutUint64(rh[8:], uint64(len(p)))
	f.write(rh[:])
	f.write(p)
	if f.err != nil {
		return 0, f.err
	}
	f.end = max(f.end, uint64(off)+uint64(len(p)))
	return len(p), nil
}

func (f *flatWriter) write(b []byte) {
	if f.err == nil {
		if _, err := f.bw.Write(b); err != nil {
			f.err = fmt.Errorf("flattened stream: %w", err)
		}
	}
}

// Close writes the end marker and flushes.
func (f *flatWriter) Close() error {
	var end [flatRecordHead]byte
	for i := range end {
		end[i] = 0xff
	}
	f.write(end[:])
	if f.err == nil {
		if err := f.bw.Flush(); err != nil {
			f.err = fmt.Errorf("flattened stream: %w", err)
		}
	}
	return f.err
}

func (f *flatWriter) Size() uint64 { return f.cw.n }
