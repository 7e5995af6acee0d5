package migrate

import (
	"context"
	"fmt"
	"io"
)

// Scan reads a whole image and checks everything that can be checked
// without expanding a chunk: the header and config (magic, CRCs, bounds),
// every chunk's record (flag, lengths against the chunk size and the
// codec) and its CRC-32C over the stored bytes, the codec's own length
// field (a snappy block's or a zstd frame's content size must be the
// chunk's raw length), and the end marker (its CRC, the chunk count, the
// raw byte count, nothing after it). What it does not check is that each
// compressed payload expands to the bytes the writer had, and so the
// stream's XXH64: the Summary's StreamXXH64 is the end marker's claim,
// which a Reader checks as the stream flows. Every byte of the image is
// under one of the CRCs checked here, so damage done to an image after it
// was written (a flipped bit, a cut, a torn save) is caught by Scan; an
// image whose payload was crafted with matching CRCs, or written by a
// faulty compressor, is caught only by Verify or the Reader.
//
// Scan costs one sequential read and a hardware CRC, about a tenth of
// Verify's CPU on a zstd image (docs/performance.md).
// ctx is checked between records: a scan of gigabytes can be given up.
func Scan(ctx context.Context, r io.Reader) (Summary, error) {
	rd, err := NewReader(r)
	if err != nil {
		return Summary{}, err
	}
	return rd.scan(ctx)
}

func (r *Reader) scan(ctx context.Context) (Summary, error) {
	if r.started {
		return Summary{}, fmt.Errorf("migrate: scan of a reader already read")
	}
	r.started = true // Read must not start the pipeline on what scan consumed
	r.err = fmt.Errorf("migrate: reader used by Scan")
	var raw, count uint64
	for index := uint64(0); ; index++ {
		if err := ctx.Err(); err != nil {
			return Summary{}, err
		}
		j := r.readRecord(index)
		if j.err != nil {
			return Summary{}, j.err
		}
		if e := j.end; e != nil {
			if err := r.checkCounts(j, count, raw); err != nil {
				return Summary{}, err
			}
			if err := r.checkNothingAfter(); err != nil {
				return Summary{}, err
			}
			return Summary{Header: r.hdr, Config: r.config, StreamBytes: int64(raw),
				Chunks: int64(count), StreamXXH64: e.xxh}, nil
		}
		if j.rec.flag == chunkCompressed {
			if err := claimedLen(r.hdr.Compression, j.payload, int(j.rec.rawLen)); err != nil {
				return Summary{}, corrupt(j.off, fmt.Sprintf("chunk %d", index), "%v", err)
			}
		}
		raw += uint64(j.rec.rawLen)
		count++
		r.putBuf(j.payload) // one buffer serves the whole scan
	}
}
