package qemu

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/vmledger/vmledger/coredump"
)

// CPUStates reads every vCPU's registers for a core dump's notes. QEMU
// 7.2 has no QMP command that returns registers (query-cpus-fast gives
// ids and threads only), so this parses HMP "info registers -a", the
// same x86_cpu_dump_state text QEMU's own dump takes its values from.
// Pause the guest first, or the values are a moving target.
func (g *Guest) CPUStates(ctx context.Context) ([]coredump.CPUState, error) {
	out, err := g.mon.HumanMonitorCommand(ctx, "info registers -a")
	if err != nil {
		return nil, fmt.Errorf("qemu: registers: %w", err)
	}
	cpus, err := ParseRegisters(out)
	if err != nil {
		return nil, fmt.Errorf("qemu: registers: %w", err)
	}
	return cpus, nil
}

var (
	cpuHeaderRE = regexp.MustCompile(`^CPU#(\d+)`)
	regRE       = regexp.MustCompile(`([A-Z][A-Z0-9]*) ?=([0-9a-fA-F]+)`)
	segRE       = regexp.MustCompile(`^(ES|CS|SS|DS|FS|GS|LDT|TR|GDT|IDT) *=(.*)$`)
)

// ParseRegisters parses the output of "info registers -a" for x86 (16-,
// 32- and 64-bit modes print EAX or RAX; both are taken).
func ParseRegisters(text string) ([]coredump.CPUState, error) {
	var cpus []coredump.CPUState
	var cur *coredump.CPUState
	seen := map[string]bool{}
	finish := func() error {
		if cur == nil {
			return nil
		}
		for _, need := range []string{"IP", "SP", "CS", "CR0"} {
			if !seen[need] {
				return fmt.Errorf("CPU#%d: no %s in the monitor's output", cur.Index, need)
			}
		}
		cpus = append(cpus, *cur)
		return nil
	}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, "\r ")
		if m := cpuHeaderRE.FindStringSubmatch(line); m != nil {
			if err := finish(); err != nil {
				return nil, err
			}
			n, _ := strconv.Atoi(m[1])
			cur, seen = &coredump.CPUState{Index: n}, map[string]bool{}
			continue
		}
		if cur == nil {
			if regRE.MatchString(line) { // "info registers" without -a: one CPU, no header
				cur, seen = &coredump.CPUState{}, map[string]bool{}
			} else {
				continue
			}
		}
		if m := segRE.FindStringSubmatch(line); m != nil {
			s, err := parseSegment(m[1], m[2])
			if err != nil {
				return nil, err
			}
			*segField(cur, m[1]) = s
			seen[m[1]] = true
			continue
		}
		for _, m := range regRE.FindAllStringSubmatch(line, -1) {
			v, err := strconv.ParseUint(m[2], 16, 64)
			if err != nil {
				return nil, fmt.Errorf("register %s=%q: %w", m[1], m[2], err)
			}
			if p, key := regField(cur, m[1]); p != nil {
				*p = v
				seen[key] = true
			}
		}
	}
	if err := finish(); err != nil {
		return nil, err
	}
	if len(cpus) == 0 {
		return nil, fmt.Errorf("no CPU in the monitor's output %q", firstLine(text))
	}
	return cpus, nil
}

// parseSegment reads "sel base limit flags ..." (GDT and IDT: "base limit").
func parseSegment(name, rest string) (coredump.Segment, error) {
	f := strings.Fields(rest)
	hex := func(s string) (uint64, error) { return strconv.ParseUint(s, 16, 64) }
	var s coredump.Segment
	if name == "GDT" || name == "IDT" {
		if len(f) < 2 {
			return s, fmt.Errorf("%s: %q: want base and limit", name, rest)
		}
		b, err1 := hex(f[0])
		l, err2 := hex(f[1])
		if err1 != nil || err2 != nil {
			return s, fmt.Errorf("%s: %q: not hex", name, rest)
		}
		return coredump.Segment{Base: b, Limit: uint32(l)}, nil
	}
	if len(f) < 4 {
		return s, fmt.Errorf("%s: %q: want selector, base, limit, flags", name, rest)
	}
	var v [4]uint64
	for i := range v {
		x, err := hex(f[i])
		if err != nil {
			return s, fmt.Errorf("%s: %q: %w", name, rest, err)
		}
		v[i] = x
	}
	return coredump.Segment{Selector: uint32(v[0]), Base: v[1], Limit: uint32(v[2]), Flags: uint32(v[3])}, nil
}

func segField(c *coredump.CPUState, name string) *coredump.Segment {
	switch name {
	case "ES":
		return &c.ES
	case "CS":
		return &c.CS
	case "SS":
		return &c.SS
	case "DS":
		return &c.DS
	case "FS":
		return &c.FS
	case "GS":
		return &c.GS
	case "LDT":
		return &c.LDT
	case "TR":
		return &c.TR
	case "GDT":
		return &c.GDT
	}
	return &c.IDT
}

// regField maps a register name (64- or 32-bit spelling) to its field and
// the key that says it was seen.
func regField(c *coredump.CPUState, name string) (*uint64, string) {
	fields := map[string]*uint64{
		"AX": &c.RAX, "BX": &c.RBX, "CX": &c.RCX, "DX": &c.RDX, "SI": &c.RSI, "DI": &c.RDI,
		"BP": &c.RBP, "SP": &c.RSP, "IP": &c.RIP, "FL": &c.RFlags,
		"R8": &c.R8, "R9": &c.R9, "R10": &c.R10, "R11": &c.R11, "R12": &c.R12, "R13": &c.R13, "R14": &c.R14, "R15": &c.R15,
		"CR0": &c.CR[0], "CR2": &c.CR[2], "CR3": &c.CR[3], "CR4": &c.CR[4], "EFER": &c.EFER,
	}
	key := name
	if len(name) == 3 && (name[0] == 'R' || name[0] == 'E') && name[1] >= 'A' {
		key = name[1:] // RAX, EAX -> AX; RFL, EFL -> FL
	}
	if p, ok := fields[key]; ok {
		return p, key
	}
	return nil, ""
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}
