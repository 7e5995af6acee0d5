package qemu

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/guest"
	"github.com/vmledger/vmledger/hypervisor/linuxguest"
	"github.com/vmledger/vmledger/hypervisor/linuxguest/linuxguesttest"
)

// bootLinux bounds the Linux guest's boot to its ready line under TCG
// (about 3-10 s on an idle machine; these machines are shared).
const bootLinux = 120 * time.Second

// linuxSpec boots the Linux guest directly from its kernel and initramfs.
func linuxSpec(t testing.TB, features ...string) domains.StartSpec {
	t.Helper()
	img := linuxguesttest.Image(t)
	id := uuid.New()
	return domains.StartSpec{Paused: true, Config: domains.Config{
		Name: "l" + id.String()[:8], UUID: id, MemoryMiB: 256, VCPUs: 1,
		Clock:    domains.Clock{Offset: domains.OffsetUTC},
		Serial:   &domains.Serial{Log: true},
		OS:       img.OS(),
		Features: features,
	}}
}

// startLinux starts the guest paused, connects its console, lets it run
// and waits for the ready line (so nothing it prints is missed).
func startLinux(t testing.TB, d *Driver, spec domains.StartSpec) (*Guest, *console) {
	t.Helper()
	g := startTest(t, d, spec)
	con := openTestConsole(t, g.Console())
	if err := g.Resume(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	con.waitLine(t, linuxguest.ReadyPrefix, bootLinux)
	rtc, err := guest.ParseRTC(con.waitLine(t, linuxguest.RTCPrefix, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	near(t, "the Linux guest's RTC", rtc, time.Now().UTC(), 5*time.Second)
	return g, con
}

// Issue 9, point 3: with features [vmcoreinfo] the guest kernel (its
// qemu_fw_cfg module) publishes VMCOREINFO and QEMU's ELF dump carries
// it; without the feature the dump has no such note.
func TestLinuxVMCOREINFO(t *testing.T) {
	for _, tt := range []struct {
		name     string
		features []string
		want     bool
	}{
		{"feature", []string{domains.FeatureVMCOREINFO}, true},
		{"none", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := newTestDriver(t, AccelTCG)
			spec := linuxSpec(t, tt.features...)
			g, _ := startLinux(t, d, spec)
			// qemu_fw_cfg writes the note's address when it probes, which
			// init does before the ready line.
			dump := filepath.Join(t.TempDir(), "core.elf")
			err := g.Monitor().Execute(ctxFor(t, 60*time.Second), "dump-guest-memory",
				map[string]any{"paging": false, "protocol": "file:" + dump, "format": "elf"}, nil)
			if err != nil {
				t.Fatalf("dump-guest-memory: %v", err)
			}
			info := vmcoreinfoNote(t, dump)
			if got := info != ""; got != tt.want {
				t.Fatalf("VMCOREINFO note present = %v, want %v (%.80q)", got, tt.want, info)
			}
			img := linuxguesttest.Image(t)
			if tt.want && !strings.Contains(info, "OSRELEASE="+img.Release+"\n") {
				t.Fatalf("VMCOREINFO does not name the kernel %s:\n%.400s", img.Release, info)
			}
		})
	}
}

// vmcoreinfoNote returns the desc of the ELF core's VMCOREINFO note, or "".
func vmcoreinfoNote(t testing.TB, path string) string {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		b, err := io.ReadAll(p.Open())
		if err != nil {
			t.Fatal(err)
		}
		for len(b) >= 12 {
			namesz, descsz := binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
			b = b[12:]
			nameEnd := align4(namesz)
			if uint64(len(b)) < uint64(nameEnd)+uint64(align4(descsz)) {
				break
			}
			name := string(bytes.TrimRight(b[:namesz], "\x00"))
			desc := b[nameEnd : nameEnd+descsz]
			if name == "VMCOREINFO" {
				return string(desc)
			}
			b = b[nameEnd+align4(descsz):]
		}
	}
	return ""
}

func align4(n uint32) uint32 { return (n + 3) &^ 3 }

// TestMain removes the Linux guest built for this run.
func TestMain(m *testing.M) {
	code := m.Run()
	linuxguesttest.Cleanup()
	os.Exit(code)
}
