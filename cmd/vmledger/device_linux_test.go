package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/linuxguest/linuxguesttest"
)

// guestSays runs a shell command on the Linux guest's console and returns
// what it printed after a marker the echoed command line cannot match.
func guestSays(t *testing.T, a *agentProc, con *consoleTap, id, cmd string) string {
	t.Helper()
	n := time.Now().UnixNano() % 100000
	con.drain()
	sendConsole(t, natsConn(t, a), a.host, id, fmt.Sprintf("echo M$((%d+1))M $(%s)", n, cmd))
	mark := fmt.Sprintf("M%dM", n+1)
	return strings.TrimSpace(strings.TrimPrefix(con.waitLine(t, mark, linuxReply), mark))
}

// eventually polls the guest until want reports true.
func eventually(t *testing.T, what string, within time.Duration, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, last := f()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last: %s)", what, within, last)
		}
		time.Sleep(2 * time.Second)
	}
}

// TestDeviceHotplugLinux (issue 12, acceptance a): on the Linux guest a
// virtio-blk disk, a NIC and a DIMM are attached and seen by the guest
// (/sys/block, /sys/class/net, MemTotal), then detached: the guest ejects
// each, DEVICE_DELETED completes the detach, the events come in order and
// the live config follows at each step (docs/qemu.md, "Hotplug").
func TestDeviceHotplugLinux(t *testing.T) {
	a := guestAgent(t, t.TempDir(), "tcg")
	img := linuxguesttest.Image(t)
	cfg := map[string]any{"name": "lxhp", "memory_mib": 256, "vcpus": 1, "clock": map[string]any{"offset": "utc"},
		"os": img.OS(), "serial": map[string]any{"log": true}, "max_memory_mib": 1024, "memory_slots": 2}
	b, _ := json.Marshal(cfg)
	dir := diskDir(t)
	a.mustCLI("define", writeFile(t, dir, "lxhp.json", string(b)))
	dom := "lxhp"
	id := infoOf(t, a, dom).Config.UUID.String()
	nc := natsConn(t, a)
	con := tapConsole(t, nc, a.host, id)
	tap := tapEvents(t, nc, a.host, id)
	a.mustCLI("start", dom)
	waitReady(t, con, linuxBoot)

	disk := filepath.Join(dir, "data.img")
	if err := os.WriteFile(disk, make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	memTotal := func() int {
		v, _ := strconv.Atoi(guestSays(t, a, con, id, "awk '/MemTotal/{print $2}' /proc/meminfo"))
		return v
	}
	mem0 := memTotal()
	if mem0 == 0 {
		t.Fatal("cannot read MemTotal from the guest")
	}
	devs := []struct {
		id, spec string
		sees     func() (bool, string)
	}{
		{"blk1", "kind: disk\nid: blk1\ntarget: vdb\npath: " + disk + "\n", func() (bool, string) {
			s := guestSays(t, a, con, id, "ls /sys/block")
			return strings.Contains(s, "vda"), s // the first virtio disk of the guest
		}},
		{"nic1", "kind: nic\nid: nic1\nmode: user\n", func() (bool, string) {
			s := guestSays(t, a, con, id, "ls /sys/class/net")
			return strings.Contains(s, "eth0"), s
		}},
		{"dimm1", "kind: memory\nid: dimm1\nsize_mib: 256\n", func() (bool, string) {
			m := memTotal()
			return m >= mem0+200*1024, fmt.Sprint(m)
		}},
	}
	for _, d := range devs {
		a.mustCLI("attach-device", dom, writeFile(t, dir, d.id+".yaml", d.spec))
		tap.next(t, string(domains.TypeDeviceAttached), linuxReply)
		eventually(t, "the guest sees "+d.id, 90*time.Second, d.sees)
		var lc domains.Config
		if err := json.Unmarshal([]byte(a.mustCLI("config", dom, "--live")), &lc); err != nil {
			t.Fatal(err)
		}
		if _, ok := lc.FindDevice(d.id); !ok {
			t.Fatalf("config --live lacks %s", d.id)
		}
		if _, ok := configOf(t, a, dom).FindDevice(d.id); ok {
			t.Fatalf("a --live attach (the default on a running domain) reached the persistent config: %s", d.id)
		}
	}
	for _, d := range devs {
		a.mustCLI("detach-device", dom, d.id)
		tap.next(t, string(domains.TypeDeviceDetachRequested), linuxReply)
		tap.detached(t, d.id)
		eventually(t, "the guest lost "+d.id, 90*time.Second, func() (bool, string) {
			ok, s := d.sees()
			return !ok, s
		})
		if st := devState(infoOf(t, a, dom), d.id); st != "" {
			t.Fatalf("%s still %q", d.id, st)
		}
	}
	run := filepath.Join(a.runDir, id)
	if m, _ := filepath.Glob(filepath.Join(run, "dimm-*")); len(m) != 0 {
		t.Fatalf("DIMM files left: %v", m)
	}
	if d := infoOf(t, a, dom); d.State != domains.StateRunning {
		t.Fatalf("state %s after the detaches", d.State)
	}
	a.mustCLI("destroy", dom)
}
