package coredump

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Options say what to write.
type Options struct {
	Format    Format
	Flattened bool // kdump only: makedumpfile's flattened stream (any io.Writer)
	// Workers compressing pages in parallel; 0 means GOMAXPROCS.
	Workers int
	// CPUs become an NT_PRSTATUS and a QEMU CPU state note each.
	CPUs []CPUState
	// VMCoreInfo is the guest kernel's vmcoreinfo text, if it published
	// one; it becomes the VMCOREINFO note (and the kdump header's release).
	VMCoreInfo []byte
	// Progress, if set, is called from the writing goroutine after each
	// batch with the pages done and the total.
	Progress func(done, total uint64)
	// Now stamps the kdump header; zero means time.Now().
	Now time.Time
}

// Stats describe a written dump.
type Stats struct {
	Format    Format        `json:"format"`
	Flattened bool          `json:"flattened"`
	Pages     uint64        `json:"pages"`
	ZeroPages uint64        `json:"zero_pages"` // kdump: pages sharing the one zero page
	Bytes     uint64        `json:"bytes"`      // file size (flattened: stream size)
	Duration  time.Duration `json:"duration_ns"`
}

// Write writes a dump of guest RAM: ram holds the memory-backend-file,
// m maps guest-physical addresses to offsets in it. ELF and flattened
// kdump stream to any io.Writer; plain kdump needs an io.WriterAt (a
// file), because its page descriptors precede the data they point to.
// The guest must not run meanwhile, or the dump is torn.
func Write(ctx context.Context, w io.Writer, ram io.ReaderAt, m MemoryMap, o Options) (Stats, error) {
	t0 := time.Now()
	if err := m.Validate(); err != nil {
		return Stats{}, err
	}
	notes := make([]Note, 0, 2*len(o.CPUs)+1)
	for _, c := range o.CPUs {
		notes = append(notes, c.PRStatus())
	}
	for _, c := range o.CPUs {
		notes = append(notes, c.QEMUState())
	}
	if len(o.VMCoreInfo) > 0 {
		notes = append(notes, VMCoreInfoNote(o.VMCoreInfo))
	}
	var st Stats
	var err error
	switch o.Format {
	case FormatELF:
		if o.Flattened {
			return Stats{}, errors.New("coredump: the flattened stream is a kdump format; ELF is written plain")
		}
		st, err = writeELF(ctx, w, ram, m, notes, o)
	default:
		flag, ferr := o.Format.kdumpFlag()
		if ferr != nil {
			return Stats{}, ferr
		}
		var out offsetWriter
		if o.Flattened {
			fw := newFlatWriter(w)
			out = fw
		} else {
			wa, ok := w.(io.WriterAt)
			if !ok {
				return Stats{}, fmt.Errorf("coredump: plain %s needs a seekable file (io.WriterAt); use the flattened stream for pipes", o.Format)
			}
			out = &plainWriter{w: wa}
		}
		st, err = writeKdump(ctx, out, ram, m, notes, flag, o)
	}
	st.Format, st.Flattened, st.Duration = o.Format, o.Flattened, time.Since(t0)
	return st, err
}

// countWriter counts what it passes on.
type countWriter struct {
	w io.Writer
	n uint64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += uint64(n)
	return n, err
}

// offsetWriter is where the kdump writer puts bytes at file offsets: a
// file (plain) or the flattened stream.
type offsetWriter interface {
	WriteAt(p []byte, off int64) (int, error)
	Close() error // flushes; the flattened stream gets its end marker
	Size() uint64
}

// plainWriter writes at offsets of a file.
type plainWriter struct {
	w   io.WriterAt
	end uint64
}

func (p *plainWriter) WriteAt(b []byte, off int64) (int, error) {
	n, err := p.w.WriteAt(b, off)
	p.end = max(p.end, uint64(off)+uint64(n))
	return n, err
}
func (p *plainWriter) Close() error { return nil }
func (p *plainWriter) Size() uint64 { return p.end }
