package coredump

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
)

// batchPages is how many pages a worker reads and compresses at once
// (1 MiB): big enough for cheap reads, small enough to keep order cheap.
const batchPages = 256

// batch is a run of pages of one memory range.
type batch struct {
	addr, off uint64 // guest-physical address, RAM file offset
	pages     int
	res       chan *batchResult
}

// batchResult is a worker's output: for each page its stored size and
// flags (size 0 for a zero page), and the stored bytes back to back.
type batchResult struct {
	buf   []byte // for reading the pages when they are not mapped
	raw   []byte // the pages (in buf or the mapping), read-only
	data  []byte
	sizes []uint32
	flags []uint32
	err   error
}

var zeroPage = make([]byte, PageSize)

// runPipeline reads m's pages from ram in batches, has workers process
// them in parallel, and hands results to sink strictly in address order.
// sink's error or ctx stops everything.
func runPipeline(parent context.Context, ram io.ReaderAt, m MemoryMap, workers int, compress bool, flag uint32,
	sink func(b *batch, r *batchResult) error) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	src := newSource(ram)
	defer src.close()
	ctx, cancel := context.WithCancel(parent)
	defer cancel()

	pool := sync.Pool{New: func() any {
		// data has a page of slack: an encoder wants room for its worst
		// case (a little over a page) even for the last page of a batch.
		return &batchResult{buf: make([]byte, batchPages*PageSize), data: make([]byte, 0, (batchPages+1)*PageSize),
			sizes: make([]uint32, batchPages), flags: make([]uint32, batchPages)}
	}}
	jobs := make(chan *batch, workers)
	order := make(chan *batch, 2*workers)

	var wg sync.WaitGroup
	for range workers {
		var comp pageCompressor
		if compress {
			c, err := newCompressor(flag)
			if err != nil {
				cancel()
				wg.Wait()
				return err
			}
			comp = c
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range jobs {
				r := pool.Get().(*batchResult)
				work(src, b, r, comp, flag)
				b.res <- r
			}
		}()
	}

	go func() { // dispatcher
		defer close(jobs)
		defer close(order)
		for _, rg := range m {
			for p := uint64(0); p < rg.Size/PageSize; p += batchPages {
				n := min(batchPages, rg.Size/PageSize-p)
				b := &batch{addr: rg.Addr + p*PageSize, off: rg.Offset + p*PageSize, pages: int(n), res: make(chan *batchResult, 1)}
				select {
				case order <- b:
				case <-ctx.Done():
					return
				}
				select {
				case jobs <- b:
				case <-ctx.Done():
					return
				}
			}
		}
	}()

	var err error
	for b := range order {
		var r *batchResult
		select {
		case r = <-b.res:
		case <-ctx.Done():
		}
		if r == nil {
			break
		}
		if r.err != nil {
			err = r.err
			pool.Put(r)
			break
		}
		err = sink(b, r)
		pool.Put(r)
		if err != nil {
			break
		}
	}
	cancel()
	for range order { // let the dispatcher finish
	}
	wg.Wait()
	if err == nil {
		err = parent.Err()
	}
	return err
}

// work reads a batch and, with comp, compresses each page.
func work(src ramSource, b *batch, r *batchResult, comp pageCompressor, flag uint32) {
	r.err = nil
	raw, err := src.pages(b.off, uint64(b.pages)*PageSize, r.buf)
	if err != nil {
		r.err = fmt.Errorf("coredump: read guest RAM for address %#x: %w", b.addr, err)
		return
	}
	r.raw = raw
	if comp == nil { // ELF: only say which pages are zero, for sparse output
		for i := range b.pages {
			r.sizes[i] = PageSize
			if bytes.Equal(raw[i*PageSize:(i+1)*PageSize], zeroPage) {
				r.sizes[i] = 0
			}
		}
		return
	}
	r.data = r.data[:0]
	for i := range b.pages {
		page := raw[i*PageSize : (i+1)*PageSize]
		if bytes.Equal(page, zeroPage) {
			r.sizes[i], r.flags[i] = 0, 0
			continue
		}
		n := len(r.data)
		var ok bool
		r.data, ok = comp.compress(r.data, page)
		if ok {
			r.sizes[i], r.flags[i] = uint32(len(r.data)-n), flag
			continue
		}
		r.data = append(r.data[:n], page...)
		r.sizes[i], r.flags[i] = PageSize, 0
	}
}
