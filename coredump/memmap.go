package coredump

import (
	"errors"
	"fmt"
	"strings"
)

// PageSize is the x86 page size, the block size of the kdump files written.
const PageSize = 4096

// Range is guest-physical memory [Addr, Addr+Size) backed by the RAM file
// at [Offset, Offset+Size).
type Range struct {
	Addr   uint64 `json:"addr"`
	Size   uint64 `json:"size"`
	Offset uint64 `json:"offset"` // in the RAM file (memory-backend-file)
}

// End is the first address after the range.
func (r Range) End() uint64 { return r.Addr + r.Size }

// MemoryMap is guest RAM as seen by the guest: sorted, disjoint,
// page-aligned ranges. Addresses between them are holes (the PCI hole
// below 4 GiB, the legacy VGA window).
type MemoryMap []Range

// Validate checks the map is sorted, disjoint, page-aligned and non-empty.
func (m MemoryMap) Validate() error {
	if len(m) == 0 {
		return errors.New("coredump: empty memory map")
	}
	for i, r := range m {
		if r.Size == 0 {
			return fmt.Errorf("coredump: memory range %d is empty", i)
		}
		if r.Addr%PageSize != 0 || r.Size%PageSize != 0 || r.Offset%PageSize != 0 {
			return fmt.Errorf("coredump: memory range %d %s is not page-aligned", i, r)
		}
		if r.End() < r.Addr || r.Offset+r.Size < r.Offset {
			return fmt.Errorf("coredump: memory range %d %s overflows", i, r)
		}
		if i > 0 && r.Addr < m[i-1].End() {
			return fmt.Errorf("coredump: memory ranges %d and %d overlap or are out of order", i-1, i)
		}
	}
	return nil
}

// Pages is the number of pages in the map.
func (m MemoryMap) Pages() uint64 {
	var n uint64
	for _, r := range m {
		n += r.Size / PageSize
	}
	return n
}

// End is the first address after the last range.
func (m MemoryMap) End() uint64 {
	if len(m) == 0 {
		return 0
	}
	return m[len(m)-1].End()
}

func (r Range) String() string {
	return fmt.Sprintf("[%#x-%#x) @%#x", r.Addr, r.End(), r.Offset)
}

// Extent is guest-physical [Addr, Addr+Size): memory a dump holds, or a
// hole.
type Extent struct {
	Addr uint64 `json:"addr"`
	Size uint64 `json:"size"`
}

// End is the first address after the extent.
func (e Extent) End() uint64 { return e.Addr + e.Size }

// Holes lists the gaps between sorted extents (and before the first one).
func Holes(es []Extent) []Extent {
	var hs []Extent
	var at uint64
	for _, e := range es {
		if e.Addr > at {
			hs = append(hs, Extent{at, e.Addr - at})
		}
		at = e.End()
	}
	return hs
}

// Boundaries of QEMU's x86 machines (hw/i386/pc_piix.c, pc_q35.c in 7.2).
const (
	fourGiB        = 1 << 32
	piixLowMax     = 0xe0000000 // pc: RAM up to 3.5 GiB stays below 4 GiB
	piixLowAligned = 0xc0000000 // pc: otherwise 3 GiB (gigabyte_align)
	q35LowMax      = 0xb0000000 // q35: RAM up to 2.75 GiB stays below 4 GiB
	q35LowSplit    = 0x80000000 // q35: otherwise 2 GiB
)

// X86Map returns the guest-physical layout QEMU 7.2 gives ram bytes of RAM
// on machine ("pc", "q35", or their versioned names such as pc-q35-7.2):
// RAM from 0 up to the low limit, the rest from 4 GiB. The RAM file holds
// the low part first, then the high part (one memory backend, split by
// two aliases). The legacy 0xa0000-0xfffff window stays in the map: the
// RAM file holds bytes there and QEMU itself maps most of it to RAM once
// the BIOS has shadowed its ROM.
func X86Map(machine string, ram uint64) (MemoryMap, error) {
	if ram == 0 || ram%PageSize != 0 {
		return nil, fmt.Errorf("coredump: RAM size %d is not a positive multiple of %d", ram, PageSize)
	}
	var low uint64
	switch {
	case machine == "q35" || strings.HasPrefix(machine, "pc-q35"):
		low = ram
		if ram >= q35LowMax {
			low = q35LowSplit
		}
	case machine == "pc" || strings.HasPrefix(machine, "pc-i440fx"):
		low = ram
		if ram >= piixLowMax {
			low = piixLowAligned
		}
	default:
		return nil, fmt.Errorf("coredump: machine %q: no known memory layout (pc or q35)", machine)
	}
	m := MemoryMap{{Addr: 0, Size: low, Offset: 0}}
	if ram > low {
		m = append(m, Range{Addr: fourGiB, Size: ram - low, Offset: low})
	}
	return m, nil
}

// Extents are the map's ranges without file offsets.
func (m MemoryMap) Extents() []Extent {
	es := make([]Extent, len(m))
	for i, r := range m {
		es[i] = Extent{r.Addr, r.Size}
	}
	return es
}
