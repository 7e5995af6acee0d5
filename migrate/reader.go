package migrate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// Reader reads a save image and verifies all of it: the header and config
// when it is made, each chunk before its bytes are returned, and the end
// marker (chunk count, stream length, XXH64 of the stream, no trailing
// bytes) before Read returns io.EOF. Any damage is a *FormatError naming
// the offset and what was expected, wrapping ErrCorrupt, ErrIncomplete or
// ErrNotImage; a read error of the underlying file is returned as is.
//
// Bytes of the stream are returned before the end marker is checked:
// whoever must not act on a damaged stream checks first (Scan for the
// stored bytes, Verify for the expansion too).
// Chunks are expanded in parallel, read ahead of the consumer. Close the
// Reader when abandoning it early.
type Reader struct {
	hdr    Header
	config []byte

	src  *countingReader
	opts readOptions

	started bool
	order   chan *rjob
	stopCh  chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup

	bufs  sync.Pool // payload and expansion buffers, reused across chunks
	cur   []byte    // the buffer rest points into, back to bufs when used up
	rest  []byte
	hash  *xxhash.Digest
	raw   uint64
	count uint64
	err   error // sticky
}

type readOptions struct{ workers int }

type rjob struct {
	index   uint64
	off     int64
	rec     chunkHeader
	payload []byte
	out     []byte
	err     error
	end     *endRecord // set on the end record
	done    chan struct{}
}

type chunkHeader struct {
	flag, rawLen, storedLen, crc uint32
}

// readBuffer is the Reader's buffer on its source. It serves the small
// reads (record headers); a payload larger than it is read straight into
// its own buffer once the buffered bytes are used, rather than copied
// through a buffer the size of a chunk.
const readBuffer = 64 << 10

// NewReader reads and checks the header and config from r.
func NewReader(r io.Reader) (*Reader, error) {
	src := &countingReader{r: bufio.NewReaderSize(r, readBuffer)}
	b := make([]byte, headerSize)
	if err := src.full(b, "header", 0); err != nil {
		return nil, err
	}
	h, err := decodeHeader(b)
	if err != nil {
		return nil, err
	}
	config := make([]byte, h.ConfigLen)
	if err := src.full(config, "config", headerSize); err != nil {
		return nil, err
	}
	if got := crc(config); got != h.ConfigCRC {
		return nil, corrupt(headerSize, "config", "checksum of %d bytes is %#08x, the header says %#08x", len(config), got, h.ConfigCRC)
	}
	return &Reader{hdr: h, config: config, src: src, hash: xxhash.New(),
		opts: readOptions{workers: runtime.GOMAXPROCS(0)}}, nil
}

// Header is the image's header.
func (r *Reader) Header() Header { return r.hdr }

// Config is the domain config as recorded in the image.
func (r *Reader) Config() []byte { return r.config }

// Read returns stream bytes.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if !r.started {
		r.start()
	}
	for len(r.rest) == 0 {
		if r.cur != nil {
			r.putBuf(r.cur)
			r.cur = nil
		}
		if err := r.next(); err != nil {
			r.err = err
			r.Close()
			return 0, err
		}
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	return n, nil
}

// next moves to the next chunk, checking the end marker at the end.
func (r *Reader) next() error {
	j, ok := <-r.order
	if !ok {
		return errors.New("migrate: reader closed")
	}
	<-j.done
	if j.err != nil {
		return j.err
	}
	if j.end != nil {
		return r.finish(j)
	}
	r.hash.Write(j.out)
	r.raw += uint64(len(j.out))
	r.count++
	r.rest, r.cur = j.out, j.out
	return nil
}

// getBuf returns a buffer of length n, from the pool when one is big
// enough. Only what a record needs is allocated (at most the chunk size,
// checked before), so a hostile header's chunk size costs nothing by
// itself; in steady state the few buffers in flight are reused and no
// chunk costs an allocation or the page faults of fresh memory.
func (r *Reader) getBuf(n int) []byte {
	if b, ok := r.bufs.Get().([]byte); ok && cap(b) >= n {
		return b[:n]
	}
	return make([]byte, n)
}

func (r *Reader) putBuf(b []byte) { r.bufs.Put(b[:0]) }

func (r *Reader) finish(j *rjob) error {
	if err := r.checkCounts(j, r.count, r.raw); err != nil {
		return err
	}
	if e := j.end; e.xxh != r.hash.Sum64() {
		return corrupt(j.off, "end marker", "stream XXH64 is %#016x, the end marker says %#016x", r.hash.Sum64(), e.xxh)
	}
	if err := r.checkNothingAfter(); err != nil {
		return err
	}
	return io.EOF
}

// checkCounts compares the end marker with the chunks seen before it.
func (r *Reader) checkCounts(j *rjob, count, raw uint64) error {
	switch e := j.end; {
	case e.chunks != count:
		return corrupt(j.off, "end marker", "says %d chunks, the stream has %d", e.chunks, count)
	case e.rawBytes != raw:
		return corrupt(j.off, "end marker", "says %d stream bytes, the chunks hold %d", e.rawBytes, raw)
	}
	return nil
}

// checkNothingAfter: the image ends with its end marker.
func (r *Reader) checkNothingAfter() error {
	var one [1]byte
	if n, _ := io.ReadFull(r.src, one[:]); n > 0 {
		return corrupt(r.src.n-1, "end marker", "data after the end marker (the image must end at offset %d)", r.src.n-1)
	}
	return nil
}

// Close stops the read-ahead. Idempotent.
func (r *Reader) Close() error {
	if r.started {
		r.stopped.Do(func() { close(r.stopCh) })
		r.wg.Wait()
	}
	return nil
}

func (r *Reader) start() {
	r.started = true
	n := r.opts.workers
	r.order = make(chan *rjob, 2*n)
	work := make(chan *rjob, 2*n)
	r.stopCh = make(chan struct{})
	for range n {
		c, err := newCodec(r.hdr.Compression, r.hdr.ChunkSize)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for j := range work {
				if err != nil {
					j.err = err
				} else {
					r.expand(c, j)
				}
				close(j.done)
			}
		}()
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(work)
		defer close(r.order)
		for index := uint64(0); ; index++ {
			j := r.readRecord(index)
			select {
			case r.order <- j:
			case <-r.stopCh:
				return
			}
			if j.err != nil || j.end != nil {
				close(j.done)
				return
			}
			work <- j
		}
	}()
}

// readRecord reads one record (a chunk or the end marker) in stream order.
func (r *Reader) readRecord(index uint64) *rjob {
	off := r.src.n
	part := fmt.Sprintf("chunk %d", index)
	j := &rjob{index: index, off: off, done: make(chan struct{})}
	var b [chunkHeaderSize]byte
	if err := r.src.full(b[:4], part, off); err != nil {
		j.err = endMissing(err, off)
		return j
	}
	flag := le.Uint32(b[0:])
	if flag == chunkEnd {
		var e [endRecordSize]byte
		copy(e[:], b[:4])
		if err := r.src.full(e[4:], "end marker", off); err != nil {
			j.err = err
			return j
		}
		if got, want := crc(e[:28]), le.Uint32(e[28:]); got != want {
			j.err = corrupt(off, "end marker", "checksum is %#08x, the record says %#08x", got, want)
			return j
		}
		j.end = &endRecord{chunks: le.Uint64(e[4:]), rawBytes: le.Uint64(e[12:]), xxh: le.Uint64(e[20:])}
		return j
	}
	if err := r.src.full(b[4:], part, off); err != nil {
		j.err = err
		return j
	}
	h := chunkHeader{flag: flag, rawLen: le.Uint32(b[4:]), storedLen: le.Uint32(b[8:]), crc: le.Uint32(b[12:])}
	switch {
	case flag != chunkCompressed && flag != chunkStored:
		j.err = corrupt(off, part, "flag %d, want %d (compressed), %d (stored) or %d (end)", flag, chunkCompressed, chunkStored, chunkEnd)
	case h.rawLen == 0 || int(h.rawLen) > r.hdr.ChunkSize:
		j.err = corrupt(off, part, "raw length %d, want 1 to %d (the chunk size)", h.rawLen, r.hdr.ChunkSize)
	case flag == chunkStored && h.storedLen != h.rawLen:
		j.err = corrupt(off, part, "stored chunk of %d bytes holds %d raw bytes, want equal", h.storedLen, h.rawLen)
	case flag == chunkCompressed && (h.storedLen == 0 || h.storedLen >= h.rawLen):
		j.err = corrupt(off, part, "compressed length %d, want 1 to %d (less than raw)", h.storedLen, h.rawLen-1)
	case flag == chunkCompressed && r.hdr.Compression == None:
		j.err = corrupt(off, part, "compressed chunk in an image without compression")
	}
	if j.err != nil {
		return j
	}
	j.payload = r.getBuf(int(h.storedLen))
	if err := r.src.full(j.payload, part, off); err != nil {
		j.err = err
		return j
	}
	if got := crc32.Update(crc(b[:12]), castagnoli, j.payload); got != h.crc {
		j.err = corrupt(off, part, "checksum is %#08x, the chunk says %#08x", got, h.crc)
		return j
	}
	j.rec = h
	return j
}

func (r *Reader) expand(c codec, j *rjob) {
	if j.rec.flag == chunkStored {
		j.out = j.payload
		return
	}
	out, err := c.expand(r.getBuf(int(j.rec.rawLen)), j.payload, int(j.rec.rawLen))
	r.putBuf(j.payload)
	j.payload = nil
	if err != nil {
		j.err = corrupt(j.off, fmt.Sprintf("chunk %d", j.index), "%v", err)
		return
	}
	j.out = out
}

// endMissing turns a clean end of file where a record should start into
// the message a torn image deserves.
func endMissing(err error, off int64) error {
	var fe *FormatError
	if errors.As(err, &fe) && fe.Msg == "image ends here" {
		return corrupt(off, "end marker", "missing: the image ends after the last complete chunk")
	}
	return err
}

// countingReader tracks the offset and turns short reads into FormatErrors.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// full reads len(b) bytes of part (which starts at off) or says where the
// image ended.
func (c *countingReader) full(b []byte, part string, off int64) error {
	start := c.n
	n, err := io.ReadFull(c, b)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF) && n == 0 && start == off:
		return corrupt(off, part, "image ends here")
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return corrupt(off, part, "truncated: needs %d more bytes, the image ends at offset %d", len(b)-n, c.n)
	}
	return fmt.Errorf("migrate: reading %s at offset %d: %w", part, off, err)
}

// Summary is what Verify found.
type Summary struct {
	Header      Header
	Config      []byte
	StreamBytes int64
	Chunks      int64
	StreamXXH64 uint64
}

// Verify reads a whole image and checks everything in it. ctx is
// checked between reads: a verify of gigabytes can be given up.
func Verify(ctx context.Context, r io.Reader) (Summary, error) {
	rd, err := NewReader(r)
	if err != nil {
		return Summary{}, err
	}
	defer rd.Close()
	if _, err := io.Copy(io.Discard, ctxReader{ctx, rd}); err != nil {
		return Summary{}, err
	}
	return rd.summary(), nil
}

// ctxReader ends a copy once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (r *Reader) summary() Summary {
	return Summary{Header: r.hdr, Config: r.config, StreamBytes: int64(r.raw),
		Chunks: int64(r.count), StreamXXH64: r.hash.Sum64()}
}
