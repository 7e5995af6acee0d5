package migrate

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// Options configure a Writer.
type Options struct {
	Compression Compression
	WasRunning  bool
	// ChunkSize is the raw bytes per chunk; 0 means DefaultChunkSize.
	ChunkSize int
	// Workers compress chunks in parallel; 0 means GOMAXPROCS.
	Workers int
}

// File is what a Writer writes to: an *os.File, or anything that can be
// written in order, patched at offset 0 and synced.
type File interface {
	io.Writer
	io.WriterAt
	Sync() error
}

// Writer writes a save image. The stream is given to Write (it is an
// io.Writer for QEMU's migration data); Commit finishes the image, Abort
// gives up. Write is not safe for concurrent use; Abort may be called from
// any goroutine.
type Writer struct {
	f     File
	opts  Options
	buf   []byte // the chunk being filled
	hash  *xxhash.Digest
	raw   uint64
	count uint64

	order chan *job // chunks in stream order, for the writer goroutine
	work  chan *job // chunks to compress, for the workers
	wg    sync.WaitGroup
	done  chan struct{} // the writer goroutine returned

	mu       sync.Mutex
	err      error // first failure; ends everything
	finished bool
	pool     sync.Pool
	stored   int64 // bytes written to f, for Stats
}

type job struct {
	raw  []byte
	out  []byte
	flag uint32
	done chan struct{}
}

// Stats are a Writer's counters.
type Stats struct {
	RawBytes   int64 // QEMU's stream
	ImageBytes int64 // the image file
	Chunks     int64
}

// NewWriter writes the header (under the partial magic) and config to f
// and returns a Writer for the stream.
func NewWriter(f File, config []byte, o Options) (*Writer, error) {
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.ChunkSize < minChunkSize || o.ChunkSize > MaxChunkSize {
		return nil, fmt.Errorf("migrate: chunk size %d: must be %d to %d", o.ChunkSize, minChunkSize, MaxChunkSize)
	}
	if len(config) > MaxConfigSize {
		return nil, fmt.Errorf("migrate: config of %d bytes: at most %d", len(config), MaxConfigSize)
	}
	if o.Compression > Snappy {
		return nil, fmt.Errorf("migrate: unknown compression %d", o.Compression)
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	codecs := make([]codec, o.Workers)
	for i := range codecs {
		c, err := newCodec(o.Compression, o.ChunkSize)
		if err != nil {
			return nil, err
		}
		codecs[i] = c
	}
	h := Header{Version: Version, WasRunning: o.WasRunning, Compression: o.Compression,
		ChunkSize: o.ChunkSize, ConfigLen: len(config), ConfigCRC: crc(config)}
	if _, err := f.Write(encodeHeader(h, magicPartial)); err != nil {
		return nil, fmt.Errorf("migrate: write header: %w", err)
	}
	if _, err := f.Write(config); err != nil {
		return nil, fmt.Errorf("migrate: write config: %w", err)
	}
	w := &Writer{
		f: f, opts: o, hash: xxhash.New(),
		order:  make(chan *job, 2*o.Workers),
		work:   make(chan *job, 2*o.Workers),
		done:   make(chan struct{}),
		stored: int64(headerSize + len(config)),
	}
	// Room for the worst case of any codec, so that no compression grows
	// its output buffer and every buffer in the pool serves every use.
	bufCap := maxStoredLen(o.ChunkSize)
	w.pool.New = func() any { return make([]byte, 0, bufCap) }
	w.buf = w.getBuf()
	for _, c := range codecs {
		w.wg.Add(1)
		go w.compressLoop(c)
	}
	go w.writeLoop()
	return w, nil
}

func (w *Writer) getBuf() []byte { return w.pool.Get().([]byte)[:0] }

// Write adds stream bytes. It returns the first error of the pipeline
// (a failed write to the file), after which the image is unusable.
func (w *Writer) Write(p []byte) (int, error) {
	if err := w.failed(); err != nil {
		return 0, err
	}
	n := len(p)
	for len(p) > 0 {
		room := w.opts.ChunkSize - len(w.buf)
		k := min(room, len(p))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == w.opts.ChunkSize {
			if err := w.flush(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

// ReadStreamFrom reads the stream from r until its end straight into the
// chunk buffers, saving Write's copy of every byte (the save pipeline's
// largest cost after the codec); hypervisor/qemu's StreamOut uses it.
// It returns the bytes read and the first error of r or the pipeline.
func (w *Writer) ReadStreamFrom(r io.Reader) (int64, error) {
	var n int64
	for {
		if err := w.failed(); err != nil {
			return n, err
		}
		k, err := r.Read(w.buf[len(w.buf):w.opts.ChunkSize])
		w.buf = w.buf[:len(w.buf)+k]
		n += int64(k)
		if len(w.buf) == w.opts.ChunkSize {
			if ferr := w.flush(); ferr != nil {
				return n, ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// flush hands the current chunk to the pipeline. The bounded channels
// are the back-pressure: QEMU's pipe fills when the disk is slow.
func (w *Writer) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	w.hash.Write(w.buf)
	w.raw += uint64(len(w.buf))
	w.count++
	j := &job{raw: w.buf, done: make(chan struct{})}
	w.buf = w.getBuf()
	select {
	case w.order <- j:
	case <-w.done:
		return w.failed()
	}
	w.work <- j // never blocks long: workers drain it while order has room
	return nil
}

func (w *Writer) compressLoop(c codec) {
	defer w.wg.Done()
	for j := range w.work {
		if w.opts.Compression == None || incompressible(j.raw) {
			j.flag, j.out = chunkStored, nil
		} else {
			out := c.compress(w.pool.Get().([]byte), j.raw)
			if len(out) < len(j.raw) {
				j.flag, j.out = chunkCompressed, out
			} else { // incompressible (random pages): keep it raw
				w.pool.Put(out[:0])
				j.flag = chunkStored
			}
		}
		close(j.done)
	}
}

// writeLoop writes chunks in stream order as they are ready.
func (w *Writer) writeLoop() {
	defer close(w.done)
	for j := range w.order {
		<-j.done
		if w.failed() != nil {
			continue // drain so that flush and the workers never block
		}
		payload := j.raw
		if j.flag == chunkCompressed {
			payload = j.out
		}
		hdr := encodeChunkHeader(j.flag, len(j.raw), len(payload), payload)
		if err := w.writeChunk(hdr, payload); err != nil {
			w.fail(fmt.Errorf("migrate: write chunk: %w", err))
		}
		w.pool.Put(j.raw[:0])
		if j.out != nil {
			w.pool.Put(j.out[:0])
		}
	}
}

// writeChunk writes one record. The lock only matters to a test that
// looks at the file while the pipeline runs; it is never contended.
func (w *Writer) writeChunk(hdr, payload []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.f.Write(hdr); err != nil {
		return err
	}
	if _, err := w.f.Write(payload); err != nil {
		return err
	}
	w.stored += int64(len(hdr) + len(payload))
	return nil
}

func (w *Writer) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

func (w *Writer) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// errAborted is the pipeline's error after Abort.
var errAborted = errors.New("migrate: save aborted")

// stop ends the pipeline and waits for it.
func (w *Writer) stop() {
	w.mu.Lock()
	if w.finished {
		w.mu.Unlock()
		return
	}
	w.finished = true
	w.mu.Unlock()
	close(w.order)
	close(w.work)
	w.wg.Wait()
	<-w.done
}

// Commit finishes the image: the last chunk, the end marker, fsync, then
// the final magic at offset 0, and fsync again. Only after the second
// fsync does the file count as an image; a crash anywhere before leaves
// the partial magic.
func (w *Writer) Commit() (Stats, error) {
	if err := w.flush(); err != nil {
		w.stop()
		return Stats{}, err
	}
	w.stop()
	if err := w.failed(); err != nil {
		return Stats{}, err
	}
	end := encodeEnd(endRecord{chunks: w.count, rawBytes: w.raw, xxh: w.hash.Sum64()})
	if _, err := w.f.Write(end); err != nil {
		return Stats{}, fmt.Errorf("migrate: write end marker: %w", err)
	}
	if err := w.f.Sync(); err != nil {
		return Stats{}, fmt.Errorf("migrate: sync image: %w", err)
	}
	if _, err := w.f.WriteAt(magicFinal[:], 0); err != nil {
		return Stats{}, fmt.Errorf("migrate: write final magic: %w", err)
	}
	if err := w.f.Sync(); err != nil {
		return Stats{}, fmt.Errorf("migrate: sync image: %w", err)
	}
	return Stats{RawBytes: int64(w.raw), ImageBytes: w.stored + endRecordSize, Chunks: int64(w.count)}, nil
}

// Abort stops the pipeline; the file keeps its partial magic. Idempotent.
func (w *Writer) Abort() {
	w.fail(errAborted)
	w.stop()
}

// Create makes a new image file at path (never replacing one: O_EXCL)
// and a Writer on it. Finish with CommitFile or AbortFile.
func Create(path string, config []byte, o Options) (*FileWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	w, err := NewWriter(f, config, o)
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return &FileWriter{Writer: w, file: f, path: path}, nil
}

// FileWriter is a Writer that owns its file.
type FileWriter struct {
	*Writer
	file      *os.File
	path      string
	committed bool
}

// Commit finishes the image, closes the file and syncs its directory, so
// the name is durable too. On failure the file is removed.
func (fw *FileWriter) Commit() (Stats, error) {
	st, err := fw.Writer.Commit()
	if cerr := fw.file.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("migrate: close image: %w", cerr)
	}
	if err == nil {
		err = syncDir(filepath.Dir(fw.path))
	}
	if err != nil {
		os.Remove(fw.path)
		return Stats{}, err
	}
	fw.committed = true
	return st, nil
}

// Abort stops, closes and removes the file. Idempotent.
func (fw *FileWriter) Abort() {
	if fw.committed {
		return // a finished image is the caller's to remove
	}
	fw.Writer.Abort()
	fw.file.Close()
	os.Remove(fw.path)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("migrate: sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("migrate: sync directory: %w", err)
	}
	return nil
}
