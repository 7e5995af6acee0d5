package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
)

// TestStartFailure: a start that fails leaves no process and no sockets,
// and the error carries what QEMU said.
func TestStartFailure(t *testing.T) {
	requireQEMU(t)
	tests := []struct {
		name   string
		binary string // "" for QEMU
		edit   func(*domains.StartSpec)
		want   string
	}{
		// Well formed (define takes it) but not in this QEMU.
		{name: "bad machine", edit: func(s *domains.StartSpec) { s.Config.Machine = "pc-q35-99.0" },
			want: "unsupported machine type"},
		{name: "bad device", edit: func(s *domains.StartSpec) {
			s.Config.Devices = []domains.Device{{ID: "x0", Driver: "no-such-device"}}
		}, want: "'no-such-device' is not a valid device model name"},
		{name: "missing disk", edit: func(s *domains.StartSpec) { s.Config.Disks[0].Path = "/nonexistent/disk.img" },
			want: "No such file or directory"},
		{name: "not qemu", binary: "/bin/false", want: "exited (exit status 1) before its monitor answered"},
		{name: "invalid config", edit: func(s *domains.StartSpec) { s.Config.VCPUs = 1 << 20 }, want: "vcpus 1048576"}, // 0 is no longer invalid: it defaults to 1
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := New(Options{RunDir: shortTempDir(t), Binary: tt.binary, Accel: AccelTCG, Log: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			spec := tinySpec(t)
			if tt.edit != nil {
				tt.edit(&spec)
			}
			g, err := d.Start(ctxFor(t, startBudget), spec)
			if err == nil {
				g.Kill(context.Background())
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start error = %v\nwant it to contain %q", err, tt.want)
			}
			t.Log(err)
			assertNoLeftovers(t, d.Paths(spec.Config.UUID), spec.Config.UUID)
		})
	}
}

// TestStartBadBinary: a binary that does not exist is refused by New.
func TestStartBadBinary(t *testing.T) {
	_, err := New(Options{RunDir: shortTempDir(t), Binary: "/nonexistent/qemu"})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/qemu") {
		t.Fatalf("New with a bogus binary: %v", err)
	}
	long := filepath.Join(shortTempDir(t), strings.Repeat("d", 80))
	if _, err := New(Options{RunDir: long}); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Fatalf("New with a long run dir: %v", err)
	}
}

// TestVersion: the real QEMU says its version; a binary that runs but is
// not QEMU, or fails, is refused (the agent checks this at start).
func TestVersion(t *testing.T) {
	requireQEMU(t)
	for _, tt := range []struct{ binary, want string }{
		{"", "QEMU emulator version "},
		{"/bin/true", "is not QEMU"},
		{"/bin/false", "exit status 1"},
	} {
		d, err := New(Options{RunDir: shortTempDir(t), Binary: tt.binary, Accel: AccelTCG, Log: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		v, err := d.Version(ctxFor(t, 30*time.Second))
		if got := fmt.Sprint(v, err); !strings.Contains(got, tt.want) || (tt.binary == "") != (err == nil) {
			t.Errorf("%q: Version = %q, %v; want %q", tt.binary, v, err, tt.want)
		}
	}
}

// TestStartTimeout: ctx bounds the start; QEMU is killed when it expires.
func TestStartTimeout(t *testing.T) {
	requireQEMU(t)
	dir := shortTempDir(t)
	// A "QEMU" that never opens its monitor.
	fake := filepath.Join(dir, "sleepy")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nexec sleep 30\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	d, err := New(Options{RunDir: filepath.Join(dir, "run"), Binary: fake, Accel: AccelTCG, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	spec := tinySpec(t)
	t0 := time.Now()
	_, err = d.Start(ctxFor(t, 300*time.Millisecond), spec)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start = %v, want DeadlineExceeded", err)
	}
	if took := time.Since(t0); took > 5*time.Second {
		t.Errorf("Start gave up after %v", took)
	}
	assertNoLeftovers(t, d.Paths(spec.Config.UUID), spec.Config.UUID)
}

// TestStartConflict: a second QEMU for the same domain would share its
// disks; Start refuses while the first runs, and works once it is gone.
func TestStartConflict(t *testing.T) {
	t.Parallel()
	d := newTestDriver(t, AccelTCG)
	spec := tinySpec(t)
	spec.Paused = true
	g := startTest(t, d, spec)
	_, err := d.Start(ctxFor(t, startBudget), spec)
	if !errors.Is(err, domains.ErrConflict) {
		t.Fatalf("second Start = %v, want ErrConflict", err)
	}
	if err := g.Kill(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	g2 := startTest(t, d, spec)
	if g2.PID() == g.PID() {
		t.Fatal("same pid")
	}
	if _, err := os.Stat(d.Paths(spec.Config.UUID).Log + ".old"); err != nil {
		t.Errorf("previous qemu.log not kept: %v", err)
	}
}

// TestStartDevices: the device mappings of the golden files are accepted
// by the real QEMU (started paused, so nothing needs to boot).
func TestStartDevices(t *testing.T) {
	t.Parallel()
	d := newTestDriver(t, AccelTCG)
	dir := t.TempDir()
	img := func(name, format string) string {
		p := filepath.Join(dir, name)
		out, err := exec.Command("qemu-img", "create", "-f", format, p, "1M").CombinedOutput()
		if err != nil {
			t.Skipf("qemu-img: %v: %s", err, out)
		}
		return p
	}
	for _, machine := range []string{"pc", "q35"} {
		t.Run(machine, func(t *testing.T) {
			spec := tinySpec(t)
			spec.Paused = true
			c := &spec.Config
			c.Machine, c.MemoryMiB = machine, 64
			c.Disks = append(c.Disks,
				domains.Disk{Target: "vda", Path: img(machine+"a.qcow2", "qcow2"), Format: "qcow2"},
				domains.Disk{Target: "vdb", Path: img(machine+"b.raw", "raw"), ReadOnly: true},
				domains.Disk{Target: "sda", Path: img(machine+"c.qcow2", "qcow2"), Format: "qcow2", Bus: "sata"},
			)
			c.NICs = []domains.NIC{{ID: "net0"}, {ID: "net1", Model: "e1000", MAC: "52:54:00:00:00:01"}, {ID: "net2", Mode: "none"}}
			c.Devices = []domains.Device{{ID: "rng0", Driver: "virtio-rng-pci", Props: map[string]string{"max-bytes": "1024", "period": "1000"}}}
			g := startTest(t, d, spec)
			st, err := g.Status(ctxFor(t, 5*time.Second))
			if err != nil || st.Status != "prelaunch" || st.Running {
				t.Fatalf("Status = %+v, %v; want prelaunch", st, err)
			}
			var devs []struct {
				Name string `json:"name"`
			}
			if err := g.Monitor().Execute(ctxFor(t, 5*time.Second), "qom-list", map[string]string{"path": "/machine/peripheral"}, &devs); err != nil {
				t.Fatal(err)
			}
			have := map[string]bool{}
			for _, d := range devs {
				have[d.Name] = true
			}
			for _, id := range []string{"hda", "vda", "vdb", "sda", "net0", "net1", "net2", "rng0"} {
				if !have[id] {
					t.Errorf("device %s missing from /machine/peripheral (have %v)", id, have)
				}
			}
		})
	}
}
