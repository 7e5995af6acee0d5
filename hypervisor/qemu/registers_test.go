package qemu

import (
	"os"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/coredump"
)

func TestParseRegisters(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	long, err := ParseRegisters(read("registers-long.txt"))
	if err != nil {
		t.Fatal(err)
	}
	c := long[0]
	want := coredump.CPUState{Index: 0, RAX: 1, RBX: 0xffffffff82a13940, RSI: 0x87, RDI: 0x87,
		RBP: 0xffffffff82a03e28, RSP: 0xffffffff82a03e08, R8: 0xffff88803ec1e7a0, R10: 1, R15: 0xf,
		RIP: 0xffffffff81f2e5ab, RFlags: 0x246,
		CS:  coredump.Segment{Selector: 0x10, Limit: 0xffffffff, Flags: 0xa09b00},
		SS:  coredump.Segment{Selector: 0x18, Limit: 0xffffffff, Flags: 0xc09300},
		GS:  coredump.Segment{Base: 0xffff88803ec00000},
		LDT: coredump.Segment{Flags: 0x8200},
		TR:  coredump.Segment{Selector: 0x40, Base: 0xfffffe0000003000, Limit: 0x4087, Flags: 0x8900},
		GDT: coredump.Segment{Base: 0xfffffe0000001000, Limit: 0x7f},
		IDT: coredump.Segment{Base: 0xfffffe0000000000, Limit: 0xfff},
		CR:  [5]uint64{0x80050033, 0, 0x7f0a1c2d3000, 0x2a0e000, 0x350ef0}, EFER: 0xd01}
	if len(long) != 1 || c != want {
		t.Errorf("long mode:\n got %+v\nwant %+v", long, want)
	}

	real, err := ParseRegisters(read("registers-real.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(real) != 2 || real[0].RIP != 0x7c52 || real[0].RSP != 0x7c00 || real[0].RAX != 0xff || real[0].IDT.Limit != 0x3ff ||
		real[1].Index != 1 || real[1].RIP != 0xfd09a || real[1].CS.Selector != 8 || real[1].GDT.Base != 0xf6180 || real[1].CR[0] != 0x11 {
		t.Errorf("real/protected mode: %+v", real)
	}

	for name, text := range map[string]string{
		"empty":      "",
		"hmp error":  "unknown command: 'info registerz'\r\n",
		"no rip":     strings.Replace(read("registers-long.txt"), "RIP=", "XIP=", 1),
		"bad seg":    strings.Replace(read("registers-long.txt"), "CS =0010 0000000000000000 ffffffff 00a09b00", "CS =0010 zz", 1),
		"short gdt":  strings.Replace(read("registers-long.txt"), "GDT=     fffffe0000001000 0000007f", "GDT=     fffffe0000001000", 1),
		"second bad": read("registers-real.txt") + "CPU#2\nEAX=00000000\n",
	} {
		if cpus, err := ParseRegisters(text); err == nil {
			t.Errorf("%s: parsed as %+v, want an error", name, cpus)
		}
	}
}
