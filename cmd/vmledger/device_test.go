package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/guest"
)

func devState(d domains.Domain, id string) string {
	for _, s := range d.Devices() {
		if s.ID == id {
			return s.State
		}
	}
	return ""
}

// detached waits for device-detached of id.
func (tap *eventTap) detached(t *testing.T, id string) {
	t.Helper()
	for {
		e := tap.next(t, string(domains.TypeDeviceDetached), 20*time.Second)
		if strings.Contains(string(e.Payload), `"id":"`+id+`"`) {
			return
		}
	}
}

func fdCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func dirFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && !strings.HasSuffix(p, "qemu.log") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestDeviceHotplugTinyGuest: the boot-sector guest never ejects, so a
// PCI (virtio) detach stays pending, and a USB disk goes at once; bad
// specs change nothing; a persistent disk survives destroy and start;
// attach/detach cycles leave QEMU's and the agent's descriptors and files
// where they were (docs/qemu.md, "Hotplug").
func TestDeviceHotplugTinyGuest(t *testing.T) {
	requireQEMU(t)
	a := guestAgent(t, t.TempDir(), "tcg")
	dom := "hp"
	uid := defineTiny(t, a, dom, "{offset: utc}")
	t.Cleanup(func() { // before the run directory goes: QEMU's own account
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(a.runDir, uid, "qemu.log"))
			t.Logf("qemu.log (last 3000 bytes):\n%s", b[max(0, len(b)-3000):])
		}
	})
	a.mustCLI("start", dom)
	nc := natsConn(t, a)
	tap := tapEvents(t, nc, a.host, uuidOf(t, infoOf(t, a, dom).Config.UUID.String()).String())
	dir := diskDir(t)
	img := filepath.Join(dir, "usb.img")
	blk := filepath.Join(dir, "blk.img")
	for _, f := range []string{img, blk} {
		if err := os.WriteFile(f, make([]byte, 1<<20), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	spec := func(name, body string) string { return writeFile(t, dir, name, body) }
	usb := spec("usb.yaml", "kind: disk\nid: usb1\ntarget: sdb\npath: "+img+"\nformat: raw\nbus: usb\n")

	// e: bad specs: clear errors, no event.
	before := infoOf(t, a, dom).Version
	bad := []struct{ name, body, want string }{
		{"bus", "kind: disk\nid: d1\ntarget: vdz\npath: " + img + "\nbus: scsi\n", "must be virtio, ide, sata or usb"},
		{"kind", "kind: gpu\nid: g1\n", "must be disk, nic, serial or memory"},
		{"missing", "kind: disk\nid: d2\ntarget: vdy\npath: " + dir + "/nope.img\n", "nope.img"},
		{"protected", "kind: disk\nid: d3\ntarget: vdx\npath: " + a.stateDir + "/events.db\n", "not allowed"}, // outside --allow-dir
		{"memory", "kind: memory\nid: m1\nsize_mib: 128\n", "memory hotplug needs both"},
		{"otherfields", "kind: nic\nid: n1\npath: /x\n", "fields that a nic does not have"},
		{"unknownfield", "kind: nic\nid: n1\ncolour: red\n", "unknown field"},
	}
	for _, b := range bad {
		out, errs, code := a.cli("attach-device", dom, spec(b.name+".yaml", b.body))
		if code == 0 || !strings.Contains(errs, b.want) {
			t.Errorf("%s: exit %d, want an error with %q\nstdout: %s\nstderr: %s", b.name, code, b.want, out, errs)
		}
	}
	a.mustCLI("attach-device", dom, usb)
	if _, errs, code := a.cli("attach-device", dom, usb); code == 0 || !strings.Contains(errs, "already has a device") {
		t.Errorf("duplicate id: exit %d, %s", code, errs)
	}
	if v := infoOf(t, a, dom).Version; v != before+1 {
		t.Fatalf("version %d after bad specs and one attach, want %d", v, before+1)
	}
	tap.next(t, string(domains.TypeDeviceAttached), 10*time.Second)

	// b: USB detaches at once.
	a.mustCLI("detach-device", dom, "usb1")
	tap.next(t, string(domains.TypeDeviceDetachRequested), 10*time.Second)
	tap.detached(t, "usb1")
	if st := devState(infoOf(t, a, dom), "usb1"); st != "" {
		t.Fatalf("usb1 still %q after DEVICE_DELETED", st)
	}

	// b: a virtio (PCI) disk: the guest has no OS to eject it.
	a.mustCLI("attach-device", dom, spec("blk.yaml", "kind: disk\nid: blk1\ntarget: vdb\npath: "+blk+"\n"))
	a.mustCLI("detach-device", dom, "blk1", "--timeout", "3s")
	if st := devState(infoOf(t, a, dom), "blk1"); st != domains.DeviceStateDetachPending {
		t.Fatalf("blk1 is %q, want %s", st, domains.DeviceStateDetachPending)
	}
	if out := a.mustCLI("info", dom); !strings.Contains(out, "blk1 (disk): detach-pending") {
		t.Fatalf("info does not show the pending detach:\n%s", out)
	}
	if _, errs, code := a.cli("detach-device", dom, "blk1"); code == 0 || !strings.Contains(errs, "pending already") {
		t.Errorf("second detach: exit %d, %s", code, errs)
	}
	f := tap.next(t, string(domains.TypeDeviceDetachFailed), 20*time.Second)
	if !strings.Contains(string(f.Payload), "timeout") {
		t.Fatalf("detach-failed payload %s", f.Payload)
	}
	if st := devState(infoOf(t, a, dom), "blk1"); st != domains.DeviceStateAttached {
		t.Fatalf("blk1 is %q after the timeout, want attached", st)
	}
	// The next reset: QEMU 7.2 completes a pending ACPI PCI unplug then
	// (DEVICE_DELETED), and the log says so: reset, then device-detached.
	a.mustCLI("detach-device", dom, "blk1")
	tap.next(t, string(domains.TypeDeviceDetachRequested), 10*time.Second)
	a.mustCLI("reset", dom)
	tap.next(t, string(domains.TypeReset), 10*time.Second)
	tap.detached(t, "blk1")
	d := infoOf(t, a, dom)
	if st := devState(d, "blk1"); st != "" {
		t.Fatalf("blk1 after reset: %q", st)
	}

	// d: cycles of a USB disk: QEMU's fds, the run dir and the agent's fds
	// come back to where they started.
	pid := d.Live.PID
	agentPID := a.cmd.Process.Pid
	runDir := filepath.Join(a.runDir, d.Config.UUID.String())
	fd0, afd0, files0, state0 := fdCount(t, pid), fdCount(t, agentPID), dirFiles(t, runDir), dirFiles(t, a.stateDir)
	cycles := 200
	if testing.Short() {
		cycles = 20
	}
	for i := 0; i < cycles; i++ {
		a.mustCLI("attach-device", dom, usb)
		a.mustCLI("detach-device", dom, "usb1")
		tap.detached(t, "usb1")
	}
	if got := infoOf(t, a, dom); got.Live.PID != pid || got.State != domains.StateRunning {
		t.Fatalf("after %d cycles: %s pid %d (was %d)", cycles, got.State, got.Live.PID, pid)
	}
	// The agent's descriptor count moves by the CLI's own NATS connections
	// coming and going: a leak per cycle would be hundreds, not two.
	if fd, afd, files, state := fdCount(t, pid), fdCount(t, agentPID), dirFiles(t, runDir), dirFiles(t, a.stateDir); fd != fd0 || afd > afd0+2 ||
		strings.Join(files, " ") != strings.Join(files0, " ") || strings.Join(state, " ") != strings.Join(state0, " ") {
		t.Fatalf("after %d cycles: qemu fds %d (were %d), agent fds %d (were %d), run files %v (were %v), state files %v (were %v)",
			cycles, fd, fd0, afd, afd0, files, files0, state, state0)
	}

	// c: a persistent disk survives destroy and start.
	a.mustCLI("attach-device", dom, usb, "--persistent")
	var cfg domains.Config
	if err := json.Unmarshal([]byte(a.mustCLI("config", dom)), &cfg); err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg.FindDevice("usb1"); !ok {
		t.Fatalf("config after --persistent attach: %+v", cfg.Disks)
	}
	a.mustCLI("destroy", dom)
	a.mustCLI("start", dom)
	d = infoOf(t, a, dom)
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", d.Live.PID))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cmdline), "usb-storage,bus=xhci0.0,port=1,drive=x-usb1,id=usb1") || devState(d, "usb1") != domains.DeviceStateAttached {
		t.Fatalf("restarted without usb1: %q, devices %+v", cmdline, d.Devices())
	}
	// And it is released like a hot-plugged one.
	a.mustCLI("detach-device", dom, "usb1", "--persistent")
	tap.detached(t, "usb1")
	if err := json.Unmarshal([]byte(a.mustCLI("config", dom)), &cfg); err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg.FindDevice("usb1"); ok {
		t.Fatalf("usb1 still in the config")
	}

	// c: a disk attached live survives save and restore: the image records
	// the config QEMU runs with, so the restored QEMU has the disk.
	a.mustCLI("attach-device", dom, usb, "--live")
	simg := filepath.Join(imagesDir(a), "hp.save")
	a.mustCLI("save", dom, simg)
	tap.next(t, "job-completed", 60*time.Second)
	a.mustCLI("restore", simg)
	tap.next(t, "restore-completed", 60*time.Second)
	d = infoOf(t, a, dom)
	if cmdline, err = os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", d.Live.PID)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cmdline), "id=usb1") || devState(d, "usb1") != domains.DeviceStateAttached || d.State != domains.StateRunning {
		t.Fatalf("restored without usb1 (%s): devices %+v", d.State, d.Devices())
	}
	a.mustCLI("detach-device", dom, "usb1")
	tap.detached(t, "usb1")
	a.mustCLI("destroy", dom)
}

// TestDeviceSetReReadOnReconnect: a PCI detach left pending completes
// while the agent is down (the tiny guest resets itself, and QEMU then
// finishes the unplug); the next agent re-reads the device set from QEMU
// (qom-list /machine/peripheral) and records device-detached, as it does
// for the clock (docs/events.md, device events).
func TestDeviceSetReReadOnReconnect(t *testing.T) {
	requireQEMU(t)
	state, run := t.TempDir(), shortRunDir(t)
	a := guestAgentIn(t, state, run, "tcg")
	dom := "rr"
	uid := defineTiny(t, a, dom, "{offset: utc}")
	a.mustCLI("start", dom)
	dir := diskDir(t)
	blk := filepath.Join(dir, "blk.img")
	if err := os.WriteFile(blk, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	a.mustCLI("attach-device", dom, writeFile(t, dir, "blk.yaml", "kind: disk\nid: blk1\ntarget: vdb\npath: "+blk+"\n"))
	a.mustCLI("detach-device", dom, "blk1")
	if st := devState(infoOf(t, a, dom), "blk1"); st != domains.DeviceStateDetachPending {
		t.Fatalf("blk1 %q", st)
	}
	a.stop()

	// The guest resets itself; nobody hears QEMU's DEVICE_DELETED.
	conn, err := net.Dial("unix", filepath.Join(run, uid, "serial.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	time.Sleep(time.Second) // the guest prints its RTC each second: it is listening
	if _, err := conn.Write([]byte(guest.CmdReset)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 4096)
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	for !strings.Contains(string(buf), "OK R") {
		tmp := make([]byte, 512)
		n, err := conn.Read(tmp)
		if err != nil {
			t.Fatalf("reading the console: %v (got %q)", err, buf)
		}
		buf = append(buf, tmp[:n]...)
	}
	time.Sleep(3 * time.Second) // the reset, then QEMU's unplug
	conn.Close()

	b := guestAgentIn(t, state, run, "tcg")
	d := infoOf(t, b, dom)
	if st := devState(d, "blk1"); st != "" || d.State != domains.StateRunning {
		t.Fatalf("after reconnect: %s, blk1 %q", d.State, st)
	}
	hist := b.mustCLI("history", dom, "--type", "device-detached", "--json")
	if !strings.Contains(hist, `"blk1"`) {
		t.Fatalf("no device-detached for blk1 in the history:\n%s", hist)
	}
	b.mustCLI("destroy", dom)
}
