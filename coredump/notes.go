package coredump

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Note types and names used in dumps.
const (
	NTPRStatus     = 1 // NT_PRSTATUS, name "CORE": one per vCPU
	NTQEMUCPUState = 0 // QEMU's own CPU state note, name "QEMU"
	NTVMCoreInfo   = 0 // name "VMCOREINFO": the guest kernel's vmcoreinfo text

	NameCore       = "CORE"
	NameQEMU       = "QEMU"
	NameVMCoreInfo = "VMCOREINFO"
)

// Note is one ELF note.
type Note struct {
	Name string
	Type uint32
	Desc []byte
}

func align4(n int) int { return (n + 3) &^ 3 }

// noteSize is the encoded size of n (header, name with NUL, desc, each
// padded to 4 bytes as Linux core notes are, in ELF64 too).
func noteSize(n Note) int { return 12 + align4(len(n.Name)+1) + align4(len(n.Desc)) }

// EncodeNotes lays notes out as an ELF note segment.
func EncodeNotes(notes []Note) []byte {
	size := 0
	for _, n := range notes {
		size += noteSize(n)
	}
	b := make([]byte, 0, size)
	for _, n := range notes {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(n.Name)+1))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(n.Desc)))
		b = binary.LittleEndian.AppendUint32(b, n.Type)
		b = append(b, n.Name...)
		b = append(b, make([]byte, align4(len(n.Name)+1)-len(n.Name))...)
		b = append(b, n.Desc...)
		b = append(b, make([]byte, align4(len(n.Desc))-len(n.Desc))...)
	}
	return b
}

// ParseNotes decodes an ELF note segment. Trailing zero padding is allowed
// (kdump files round the note area up).
func ParseNotes(b []byte) ([]Note, error) {
	var notes []Note
	for off := 0; off < len(b); {
		if len(b)-off < 12 {
			if allZero(b[off:]) {
				break
			}
			return notes, fmt.Errorf("coredump: note at %d: truncated header", off)
		}
		namesz := binary.LittleEndian.Uint32(b[off:])
		descsz := binary.LittleEndian.Uint32(b[off+4:])
		typ := binary.LittleEndian.Uint32(b[off+8:])
		if namesz == 0 && descsz == 0 && typ == 0 && allZero(b[off:]) {
			break
		}
		rest := uint64(len(b) - off - 12)
		nlen, dlen := (uint64(namesz)+3)&^3, (uint64(descsz)+3)&^3
		if nlen > rest || dlen > rest-nlen {
			return notes, fmt.Errorf("coredump: note at %d: name %d + desc %d bytes overrun the %d left", off, namesz, descsz, rest)
		}
		name := b[off+12 : off+12+int(namesz)]
		name = bytes.TrimRight(name, "\x00")
		d := off + 12 + int(nlen)
		notes = append(notes, Note{Name: string(name), Type: typ, Desc: b[d : d+int(descsz) : d+int(descsz)]})
		off = d + int(dlen)
	}
	return notes, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Segment is an x86 segment register as QEMU reports it.
type Segment struct {
	Selector uint32
	Base     uint64
	Limit    uint32
	Flags    uint32
}

// CPUState is one vCPU's x86_64 registers, the input of the register
// notes. hypervisor/qemu fills it from QEMU's monitor.
type CPUState struct {
	Index                                  int // QEMU's cpu_index, 0-based
	RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11, R12, R13, R14, R15   uint64
	RIP, RFlags                            uint64
	CS, DS, ES, FS, GS, SS, LDT, TR        Segment
	GDT, IDT                               Segment // Base and Limit only
	CR                                     [5]uint64
	EFER                                   uint64
}

// prstatusSize is sizeof(struct elf_prstatus) on x86_64.
const (
	prstatusSize  = 336
	prstatusPID   = 32
	prstatusRegs  = 112
	qemuStateSize = 440 // QEMUCPUState version 1 with kernel_gs_base
)

// PRStatus is the NT_PRSTATUS note of c: struct elf_prstatus with pr_pid
// set to index+1 (as QEMU does, so pid 0 never appears) and pr_reg in
// user_regs_struct order.
func (c CPUState) PRStatus() Note {
	d := make([]byte, prstatusSize)
	binary.LittleEndian.PutUint32(d[prstatusPID:], uint32(c.Index+1))
	regs := []uint64{
		c.R15, c.R14, c.R13, c.R12, c.RBP, c.RBX, c.R11, c.R10, c.R9, c.R8,
		c.RAX, c.RCX, c.RDX, c.RSI, c.RDI, c.RAX /* orig_rax */, c.RIP,
		uint64(c.CS.Selector), c.RFlags, c.RSP, uint64(c.SS.Selector),
		c.FS.Base, c.GS.Base,
		uint64(c.DS.Selector), uint64(c.ES.Selector), uint64(c.FS.Selector), uint64(c.GS.Selector),
	}
	for i, r := range regs {
		binary.LittleEndian.PutUint64(d[prstatusRegs+8*i:], r)
	}
	return Note{Name: NameCore, Type: NTPRStatus, Desc: d}
}

// QEMUState is QEMU's "QEMU" note (QEMUCPUState, version 1). crash uses
// its CR3 and IDT to find the kernel's KASLR offset.
func (c CPUState) QEMUState() Note {
	b := make([]byte, 0, qemuStateSize)
	le := binary.LittleEndian
	b = le.AppendUint32(b, 1)
	b = le.AppendUint32(b, qemuStateSize)
	for _, r := range []uint64{c.RAX, c.RBX, c.RCX, c.RDX, c.RSI, c.RDI, c.RSP, c.RBP,
		c.R8, c.R9, c.R10, c.R11, c.R12, c.R13, c.R14, c.R15, c.RIP, c.RFlags} {
		b = le.AppendUint64(b, r)
	}
	for _, s := range []Segment{c.CS, c.DS, c.ES, c.FS, c.GS, c.SS, c.LDT, c.TR, c.GDT, c.IDT} {
		b = le.AppendUint32(b, s.Selector)
		b = le.AppendUint32(b, s.Limit)
		b = le.AppendUint32(b, s.Flags)
		b = le.AppendUint32(b, 0)
		b = le.AppendUint64(b, s.Base)
	}
	for _, r := range c.CR {
		b = le.AppendUint64(b, r)
	}
	b = le.AppendUint64(b, 0) // kernel_gs_base: not in QEMU's monitor output
	return Note{Name: NameQEMU, Type: NTQEMUCPUState, Desc: b}
}

// PRStatusInfo is what dump-info shows of an NT_PRSTATUS note.
type PRStatusInfo struct {
	PID uint32 `json:"pid"`
	RIP uint64 `json:"rip"`
	RSP uint64 `json:"rsp"`
}

// ParsePRStatus decodes the parts of an x86_64 NT_PRSTATUS desc that
// identify the vCPU and where it was.
func ParsePRStatus(desc []byte) (PRStatusInfo, error) {
	if len(desc) < prstatusRegs+27*8 {
		return PRStatusInfo{}, fmt.Errorf("coredump: NT_PRSTATUS of %d bytes, x86_64 has %d", len(desc), prstatusSize)
	}
	le := binary.LittleEndian
	return PRStatusInfo{
		PID: le.Uint32(desc[prstatusPID:]),
		RIP: le.Uint64(desc[prstatusRegs+16*8:]),
		RSP: le.Uint64(desc[prstatusRegs+19*8:]),
	}, nil
}

// VMCoreInfoNote wraps the guest kernel's vmcoreinfo text.
func VMCoreInfoNote(text []byte) Note {
	return Note{Name: NameVMCoreInfo, Type: NTVMCoreInfo, Desc: text}
}

// VMCoreInfoValue returns KEY's value from vmcoreinfo text ("OSRELEASE").
func VMCoreInfoValue(text []byte, key string) (string, bool) {
	for _, line := range strings.Split(string(text), "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

// findVMCoreInfo returns the VMCOREINFO note's desc, if any.
func findVMCoreInfo(notes []Note) []byte {
	for _, n := range notes {
		if n.Name == NameVMCoreInfo {
			return n.Desc
		}
	}
	return nil
}

// ErrNoNote is returned when a dump has no note of the kind asked for.
var ErrNoNote = errors.New("coredump: no such note")
