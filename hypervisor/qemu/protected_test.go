package qemu

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/vmledger/vmledger/domains"
)

// A guest disk may not point into the run directory (other guests' RAM
// files and sockets) or a protected directory (the agent's event log),
// directly or through a symbolic link.
func TestStartRefusesProtectedDisks(t *testing.T) {
	requireQEMU(t)
	run, err := os.MkdirTemp("", "vp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	state := t.TempDir()
	d, err := New(Options{RunDir: run, Accel: AccelTCG, Protected: []string{state}, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "innocent.img")
	if err := os.Symlink(filepath.Join(state, "events.db"), link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		filepath.Join(run, "0b5e8a1c-0000-4000-8000-000000000001", "guest.ram"),
		filepath.Join(state, "events.db"),
		filepath.Join(state, "sub", "..", "events.db"),
		link,
	} {
		// The same confinement holds for a direct boot's kernel and initrd.
		for what, edit := range map[string]func(*domains.Config){
			"disk":      func(c *domains.Config) { c.Disks = []domains.Disk{{Target: "hda", Path: path, Format: "raw"}} },
			"os.kernel": func(c *domains.Config) { c.OS = &domains.OS{Kernel: path} },
			"os.initrd": func(c *domains.Config) { c.OS = &domains.OS{Kernel: "/boot/vmlinuz", Initrd: path} },
		} {
			cfg := baseConfig()
			edit(&cfg)
			_, err := d.StartGuest(t.Context(), domains.StartSpec{Config: cfg})
			if !errors.Is(err, domains.ErrInvalid) || !strings.Contains(err.Error(), what) {
				t.Errorf("%s %s: err %v, want invalid naming %s", what, path, err, what)
			}
		}
	}
	if ents, _ := os.ReadDir(run); len(ents) != 0 {
		t.Fatalf("refused starts left %d entries in the run dir", len(ents))
	}
}
