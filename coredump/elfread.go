package coredump

import (
	"encoding/binary"
	"fmt"
	"io"
	"sort"
)

// maxNotes bounds the note segment a reader loads (QEMU's notes for 1024
// vCPUs are under 1 MiB).
const maxNotes = 64 << 20

// elfLoad is one PT_LOAD: memory [addr, addr+memsz), of which the first
// filesz bytes are at off in the file and the rest read as zero.
type elfLoad struct {
	addr, memsz, off, filesz uint64
}

type elfReader struct {
	r     io.ReaderAt
	loads []elfLoad
}

// elfClass is where ELF32 and ELF64 keep the fields the reader needs.
type elfClass struct {
	ehsize, phentsize, shentsize                uint64
	phoff, shoff, phentsizeAt, phnumAt, shentAt int
	pOffset, pPaddr, pFilesz, pMemsz, shInfo    int
	word                                        int // 4 or 8
}

var (
	elf64 = elfClass{ehsize: 64, phentsize: 56, shentsize: 64, phoff: 32, shoff: 40, phentsizeAt: 54, phnumAt: 56, shentAt: 58,
		pOffset: 8, pPaddr: 24, pFilesz: 32, pMemsz: 40, shInfo: 44, word: 8}
	// QEMU writes ELF32 for a guest not in long mode with RAM below 4 GiB.
	elf32 = elfClass{ehsize: 52, phentsize: 32, shentsize: 40, phoff: 28, shoff: 32, phentsizeAt: 42, phnumAt: 44, shentAt: 46,
		pOffset: 4, pPaddr: 12, pFilesz: 16, pMemsz: 20, shInfo: 28, word: 4}
)

func (c elfClass) get(b []byte, at int) uint64 {
	if c.word == 4 {
		return uint64(binary.LittleEndian.Uint32(b[at:]))
	}
	return binary.LittleEndian.Uint64(b[at:])
}

// openELF reads an ELF core (ELF64, or ELF32 as QEMU writes for a guest
// outside long mode), little-endian: program headers wherever e_phoff
// says (QEMU 7.2 puts its section header first), PN_XNUM with the count
// in section header 0, notes from PT_NOTE, memory from PT_LOAD.
func openELF(r io.ReaderAt, size int64) (*File, error) {
	id, err := readSection(r, size, 0, 16, "ELF ident")
	if err != nil {
		return nil, err
	}
	var c elfClass
	switch id[4] {
	case elfClass64:
		c = elf64
	case 1:
		c = elf32
	default:
		return nil, fmt.Errorf("%w: ELF class %d", ErrFormat, id[4])
	}
	if id[5] != elfData2LSB {
		return nil, fmt.Errorf("%w: ELF data encoding %d (only little-endian)", ErrFormat, id[5])
	}
	eh, err := readSection(r, size, 0, c.ehsize, "ELF header")
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	if t := le.Uint16(eh[16:]); t != etCore {
		return nil, fmt.Errorf("%w: ELF type %d is not a core file (ET_CORE=4)", ErrFormat, t)
	}
	phoff := c.get(eh, c.phoff)
	shoff := c.get(eh, c.shoff)
	phentsize := uint64(le.Uint16(eh[c.phentsizeAt:]))
	phnum := uint64(le.Uint16(eh[c.phnumAt:]))
	if phentsize != c.phentsize {
		return nil, corruptf("ELF e_phentsize %d, want %d", phentsize, c.phentsize)
	}
	if phnum == pnXNum {
		if shentsize := uint64(le.Uint16(eh[c.shentAt:])); shentsize != c.shentsize || shoff == 0 {
			return nil, corruptf("ELF e_phnum is PN_XNUM but there is no section header 0 (e_shoff %#x, e_shentsize %d)", shoff, shentsize)
		}
		sh, err := readSection(r, size, shoff, c.shentsize, "ELF section header 0 (PN_XNUM)")
		if err != nil {
			return nil, err
		}
		phnum = uint64(le.Uint32(sh[c.shInfo:]))
	}
	if phnum == 0 {
		return nil, corruptf("ELF core with no program headers")
	}
	if phnum > uint64(size)/c.phentsize {
		return nil, truncatedf("%d program headers cannot fit in a %d-byte file", phnum, size)
	}
	ph, err := readSection(r, size, phoff, phnum*c.phentsize, "ELF program headers")
	if err != nil {
		return nil, err
	}
	f := &File{Format: "elf", Compression: "none", PageSize: PageSize}
	er := &elfReader{r: r}
	for i := range phnum {
		p := ph[i*c.phentsize:]
		typ := le.Uint32(p)
		off, paddr := c.get(p, c.pOffset), c.get(p, c.pPaddr)
		filesz, memsz := c.get(p, c.pFilesz), c.get(p, c.pMemsz)
		switch typ {
		case ptNote:
			if filesz > maxNotes {
				return nil, corruptf("PT_NOTE of %d bytes (limit %d)", filesz, maxNotes)
			}
			nb, err := readSection(r, size, off, filesz, "PT_NOTE")
			if err != nil {
				return nil, err
			}
			notes, err := ParseNotes(nb)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
			}
			f.Notes = append(f.Notes, notes...)
		case ptLoad:
			if memsz == 0 {
				continue
			}
			if filesz > memsz {
				return nil, corruptf("PT_LOAD %d: p_filesz %#x exceeds p_memsz %#x", i, filesz, memsz)
			}
			if off > uint64(size) || filesz > uint64(size)-off {
				return nil, truncatedf("PT_LOAD %d at %#x needs file bytes up to %#x, the file has %#x", i, paddr, off+filesz, size)
			}
			if paddr+memsz < paddr {
				return nil, corruptf("PT_LOAD %d: [%#x + %#x) overflows", i, paddr, memsz)
			}
			er.loads = append(er.loads, elfLoad{addr: paddr, memsz: memsz, off: off, filesz: filesz})
		}
	}
	sort.Slice(er.loads, func(i, j int) bool { return er.loads[i].addr < er.loads[j].addr })
	for i, l := range er.loads {
		if i > 0 && l.addr < er.loads[i-1].addr+er.loads[i-1].memsz {
			return nil, corruptf("PT_LOADs at %#x and %#x overlap", er.loads[i-1].addr, l.addr)
		}
		if n := len(f.Extents); n > 0 && f.Extents[n-1].End() == l.addr {
			f.Extents[n-1].Size += l.memsz
		} else {
			f.Extents = append(f.Extents, Extent{l.addr, l.memsz})
		}
	}
	f.impl = er
	return f, nil
}

func (e *elfReader) readAt(p []byte, addr uint64) (int, error) {
	n := 0
	for n < len(p) {
		a := addr + uint64(n)
		i := sort.Search(len(e.loads), func(i int) bool { return e.loads[i].addr+e.loads[i].memsz > a })
		if i == len(e.loads) || e.loads[i].addr > a {
			return n, &HoleError{Addr: a}
		}
		l := e.loads[i]
		in := a - l.addr
		chunk := min(uint64(len(p)-n), l.memsz-in)
		dst := p[n : n+int(chunk)]
		if in < l.filesz {
			fromFile := min(chunk, l.filesz-in)
			if m, err := e.r.ReadAt(dst[:fromFile], int64(l.off+in)); m < int(fromFile) {
				return n + m, truncatedf("memory at %#x: %v", a+uint64(m), err)
			}
			clear(dst[fromFile:])
		} else {
			clear(dst)
		}
		n += int(chunk)
	}
	return n, nil
}
