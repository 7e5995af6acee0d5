package qemu

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
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

// Paths lie: a hard link to the event log, the token or a run directory
// file has an innocent path. Disks are compared by device and inode with
// every file of the protected directories, through symbolic links too, and
// with the files other running guests hold, where only read-only sharing
// is allowed (issue 7, defect 6).
func TestStartRefusesHardLinkedProtectedFiles(t *testing.T) {
	requireQEMU(t)
	run := shortTempDir(t)
	state := t.TempDir()
	d, err := New(Options{RunDir: run, Accel: AccelTCG, Protected: []string{state}, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := t.TempDir()
	link := func(target, name string) string {
		p := filepath.Join(elsewhere, name)
		if err := os.Link(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, f := range []string{"events.db", "nats.token"} {
		if err := os.WriteFile(filepath.Join(state, f), make([]byte, 4096), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	stale := filepath.Join(run, uuid.NewString())
	if err := os.MkdirAll(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "guest.ram"), make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	logLink := link(filepath.Join(state, "events.db"), "x.img")
	sym := filepath.Join(elsewhere, "sym.img")
	if err := os.Symlink(logLink, sym); err != nil {
		t.Fatal(err)
	}
	refuse := func(what string, disk domains.Disk) {
		t.Helper()
		spec := tinySpec(t)
		spec.Config.Disks = append(spec.Config.Disks, disk)
		g, err := d.StartGuest(ctxFor(t, startBudget), spec)
		if err == nil {
			killAndDetach(t, g)
		}
		if !errors.Is(err, domains.ErrInvalid) {
			t.Errorf("%s (%s): err %v, want invalid", what, disk.Path, err)
		}
	}
	refuse("hard link to the log", domains.Disk{Target: "vdb", Path: logLink, Format: "raw"})
	refuse("hard link to the token", domains.Disk{Target: "vdb", Path: link(filepath.Join(state, "nats.token"), "t.img"), Format: "raw"})
	refuse("hard link to a RAM file", domains.Disk{Target: "vdb", Path: link(filepath.Join(stale, "guest.ram"), "r.img"), Format: "raw"})
	refuse("symlink to a hard link", domains.Disk{Target: "vdb", Path: sym, Format: "raw", ReadOnly: true})

	// Another running guest's disk, by a hard link: refused read-write,
	// and read-only while the other writes it; a read-only shared disk is fine.
	shared := filepath.Join(elsewhere, "shared.img")
	if err := os.WriteFile(shared, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	a := tinySpec(t)
	a.Config.Disks = append(a.Config.Disks, domains.Disk{Target: "vdb", Path: shared, Format: "raw"})
	ga := startTest(t, d, a)
	refuse("other guest's disk", domains.Disk{Target: "vdb", Path: link(shared, "s1.img"), Format: "raw"})
	refuse("other guest's rw disk, read-only", domains.Disk{Target: "vdb", Path: shared, Format: "raw", ReadOnly: true})
	killAndDetach(t, ga)

	iso := filepath.Join(elsewhere, "cd.iso")
	if err := os.WriteFile(iso, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	b := tinySpec(t)
	b.Config.Disks = append(b.Config.Disks, domains.Disk{Target: "vdb", Path: iso, Format: "raw", ReadOnly: true})
	startTest(t, d, b)
	c := tinySpec(t)
	c.Config.Disks = append(c.Config.Disks, domains.Disk{Target: "vdb", Path: link(iso, "cd2.iso"), Format: "raw", ReadOnly: true})
	startTest(t, d, c)
	refuse("read-only shared disk, written", domains.Disk{Target: "vdb", Path: iso, Format: "raw"})
}
