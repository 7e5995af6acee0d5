// Package pagemix fills guest RAM with a known, deterministic mix of pages
// (by default 45% zero, 35% text-like, 20% random, the mix the save
// benchmark and the memory tests use) and checks it back, page by page.
//
// Every page's kind and content are a function of the seed and the page's
// index alone, so a fill can run in parallel and a verifier needs nothing
// but the seed.
package pagemix

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// PageSize is the x86 page, QEMU's unit of RAM migration.
const PageSize = 4096

// Kind of a page.
type Kind uint8

const (
	Zero Kind = iota
	Text
	Random
)

func (k Kind) String() string {
	return [...]string{"zero", "text", "random"}[k]
}

// Mix is the share of each kind, in percent; Zero+Text+Random must be 100.
type Mix struct{ Zero, Text, Random int }

// Default is the mix of issue 10's benchmark.
var Default = Mix{Zero: 45, Text: 35, Random: 20}

func (m Mix) check() error {
	if m.Zero < 0 || m.Text < 0 || m.Random < 0 || m.Zero+m.Text+m.Random != 100 {
		return fmt.Errorf("pagemix: mix %+v: shares must be non-negative and add up to 100", m)
	}
	return nil
}

// kind of page i: a hash of seed and index, so neighbours differ.
func (m Mix) kind(seed, i uint64) Kind {
	h := splitmix(seed ^ splitmix(i))
	switch p := int(h % 100); {
	case p < m.Zero:
		return Zero
	case p < m.Zero+m.Text:
		return Text
	}
	return Random
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// vocabulary is what text pages are made of: the words of kernel logs,
// configs and source, picked with a skew so that some are frequent, as in
// real text.
var vocabulary = []string{
	"the", "of", "and", "to", "in", "is", "for", "on", "with", "that", "this", "be", "by",
	"kernel", "memory", "page", "device", "driver", "error", "return", "struct", "int",
	"static", "void", "const", "if", "else", "while", "for", "NULL", "0x0", "pci", "irq",
	"usb", "net", "eth0", "disk", "sda1", "mount", "ext4", "systemd", "started", "stopped",
	"service", "unit", "config", "value", "name", "type", "size", "offset", "buffer",
	"vmledger", "qemu", "guest", "domain", "clock", "rtc", "save", "restore", "migrate",
	"January", "user", "root", "home", "var", "log", "lib", "usr", "bin", "etc", "tmp",
	"request", "response", "http", "GET", "POST", "200", "404", "content", "length",
	"function", "module", "init", "exit", "probe", "remove", "status", "ok", "failed",
}

// fillPage writes page i's content into p (len PageSize).
func (m Mix) fillPage(p []byte, seed, i uint64) Kind {
	k := m.kind(seed, i)
	switch k {
	case Zero:
		clear(p)
	case Random:
		rng := rand.NewPCG(seed, i)
		for o := 0; o < len(p); o += 8 {
			v := rng.Uint64()
			for b := 0; b < 8; b++ {
				p[o+b] = byte(v >> (8 * b))
			}
		}
	case Text:
		rng := rand.New(rand.NewPCG(seed^0x7465787400000000, i))
		o := 0
		for col := 0; o < len(p); {
			w := vocabulary[rng.IntN(rng.IntN(len(vocabulary))+1)]
			o += copy(p[o:], w)
			col += len(w)
			if o < len(p) {
				sep := byte(' ')
				if col > 60+rng.IntN(20) {
					sep, col = '\n', 0
				}
				p[o] = sep
				o++
			}
		}
	}
	return k
}

// Counts are how many pages of each kind a fill wrote.
type Counts [3]int64

func (c Counts) String() string {
	n := c[Zero] + c[Text] + c[Random]
	if n == 0 {
		return "no pages"
	}
	return fmt.Sprintf("%d pages: %.1f%% zero, %.1f%% text, %.1f%% random", n,
		100*float64(c[Zero])/float64(n), 100*float64(c[Text])/float64(n), 100*float64(c[Random])/float64(n))
}

// Fill writes the mix into b (a multiple of PageSize), in parallel.
func (m Mix) Fill(b []byte, seed uint64) (Counts, error) {
	var c Counts
	err := m.pages(b, func(p []byte, i uint64, local *Counts) error {
		local[m.fillPage(p, seed, i)]++
		return nil
	}, &c)
	return c, err
}

// Verify checks that b holds exactly what Fill(b, seed) wrote; the error
// names the first bad page, its kind and the first differing byte.
func (m Mix) Verify(b []byte, seed uint64) error {
	var c Counts
	return m.pages(b, func(p []byte, i uint64, local *Counts) error {
		want := make([]byte, PageSize)
		k := m.fillPage(want, seed, i)
		for o := range p {
			if p[o] != want[o] {
				return fmt.Errorf("pagemix: page %d (%s, at offset %#x): byte %d is %#02x, want %#02x",
					i, k, i*PageSize, o, p[o], want[o])
			}
		}
		return nil
	}, &c)
}

// pages runs fn over every page, spread over the CPUs; the first error
// (lowest page among the failing stripes' first) is returned.
func (m Mix) pages(b []byte, fn func(p []byte, i uint64, c *Counts) error, total *Counts) error {
	if err := m.check(); err != nil {
		return err
	}
	if len(b)%PageSize != 0 {
		return fmt.Errorf("pagemix: %d bytes is not a whole number of %d-byte pages", len(b), PageSize)
	}
	n := uint64(len(b) / PageSize)
	workers := uint64(runtime.GOMAXPROCS(0))
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs = make([]error, workers)
	)
	per := (n + workers - 1) / workers
	for w := uint64(0); w < workers; w++ {
		lo, hi := w*per, min((w+1)*per, n)
		if lo >= hi {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local Counts
			for i := lo; i < hi; i++ {
				if err := fn(b[i*PageSize:(i+1)*PageSize], i, &local); err != nil {
					errs[w] = err
					return
				}
			}
			mu.Lock()
			for k := range local {
				total[k] += local[k]
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// FillFile maps the file at path (a guest's memory-backend-file, shared
// with a QEMU that has it mapped too) and fills it with the mix.
func (m Mix) FillFile(path string, seed uint64) (Counts, error) {
	var c Counts
	err := mapFile(path, true, func(b []byte) error {
		var err error
		c, err = m.Fill(b, seed)
		return err
	})
	return c, err
}

// VerifyFile checks the file at path against the mix.
func (m Mix) VerifyFile(path string, seed uint64) error {
	return mapFile(path, false, func(b []byte) error { return m.Verify(b, seed) })
}

func mapFile(path string, write bool, fn func([]byte) error) error {
	flag, prot := os.O_RDONLY, unix.PROT_READ
	if write {
		flag, prot = os.O_RDWR, unix.PROT_READ|unix.PROT_WRITE
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return fmt.Errorf("pagemix: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("pagemix: %w", err)
	}
	if fi.Size() == 0 {
		return fmt.Errorf("pagemix: %s is empty", path)
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), prot, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("pagemix: mmap %s: %w", path, err)
	}
	defer unix.Munmap(b)
	return fn(b)
}
