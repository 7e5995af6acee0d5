package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/guest"
)

// TestCLIDefineUpdatesByName (issue 15, point 2), on the tiny guest: a
// file without UUID, vcpus or machine gets virsh's defaults; defining it
// again is a no-op that says so (exit 0, no event); a changed file with
// the same name updates that domain, also while it runs, where the change
// is pending: info shows it, config has it, config --live shows what runs,
// and the next start applies it.
func TestCLIDefineUpdatesByName(t *testing.T) {
	a := guestAgent(t, t.TempDir(), "tcg")
	dir := diskDir(t)
	img := filepath.Join(dir, "tiny.img")
	if err := guest.WriteImage(img); err != nil {
		t.Fatal(err)
	}
	file := func(mib int) string {
		return writeFile(t, dir, "web.yaml", "name: web\nmemory_mib: "+itoa(mib)+"\ndisks: [{target: hda, path: "+img+", bus: ide}]\n")
	}
	// define runs the text form of define when text, else --json.
	define := func(mib int, text bool) (domains.Result, string) {
		t.Helper()
		if text {
			return domains.Result{}, a.mustCLI("define", file(mib))
		}
		var res domains.Result
		if err := json.Unmarshal([]byte(a.mustCLI("define", file(mib), "--json")), &res); err != nil {
			t.Fatal(err)
		}
		return res, ""
	}

	first := a.mustCLI("define", file(16))
	if !strings.Contains(first, "Domain web defined") {
		t.Fatalf("first define: %q", first)
	}
	c := configOf(t, a, "web")
	if c.VCPUs != 1 || c.Machine != "pc" {
		t.Fatalf("defaults: vcpus %d, machine %q; want 1, pc", c.VCPUs, c.Machine)
	}
	id := c.UUID

	seq := lastSeqCLI(t, a)
	res, _ := define(16, false)
	if !res.Unchanged || res.Domain != id || len(res.Seqs) != 0 {
		t.Fatalf("same file again: %+v; want unchanged, no event", res)
	}
	if _, text := define(16, true); !strings.Contains(text, "nothing changed") {
		t.Fatalf("same file again: %q", text)
	}
	if after := lastSeqCLI(t, a); after != seq {
		t.Fatalf("same file again appended events (%d -> %d)", seq, after)
	}

	// Shut off: a new memory size is the config at once.
	if _, text := define(20, true); !strings.Contains(text, "Domain web updated") {
		t.Fatalf("changed file: %q", text)
	}
	res, _ = define(24, false)
	if !res.Updated || res.Domain != id || len(res.Seqs) != 1 {
		t.Fatalf("changed file: %+v; want an update of %s", res, id)
	}
	if c := configOf(t, a, "web"); c.MemoryMiB != 24 || c.UUID != id {
		t.Fatalf("after update: %+v", c)
	}

	// Running: the change is pending until the next start.
	a.mustCLI("start", "web")
	if _, text := define(28, true); !strings.Contains(text, "next start") {
		t.Fatalf("update while running: %q", text)
	}
	res, _ = define(32, false)
	if !res.Updated || res.State != domains.StateRunning {
		t.Fatalf("update while running: %+v", res)
	}
	info := a.mustCLI("info", "web")
	if !strings.Contains(info, "Next start:") || !strings.Contains(info, "memory_mib 32 (running: 24)") || !regexp.MustCompile(`Memory:\s+24 MiB`).MatchString(info) {
		t.Fatalf("info while a change is pending:\n%s", info)
	}
	var live domains.Config
	if err := json.Unmarshal([]byte(a.mustCLI("config", "web", "--live")), &live); err != nil {
		t.Fatal(err)
	}
	if live.MemoryMiB != 24 || configOf(t, a, "web").MemoryMiB != 32 {
		t.Fatalf("config --live %d MiB, config %d MiB; want 24 and 32", live.MemoryMiB, configOf(t, a, "web").MemoryMiB)
	}
	d := infoOf(t, a, "web")
	if d.Running == nil || d.Running.MemoryMiB != 24 || d.Config.MemoryMiB != 32 {
		t.Fatalf("info --json: live_config %+v, config %d MiB", d.Running, d.Config.MemoryMiB)
	}

	// The next start applies it: nothing pending, QEMU has 32 MiB.
	a.mustCLI("destroy", "web")
	a.mustCLI("start", "web")
	deadline := time.Now().Add(30 * time.Second)
	for infoOf(t, a, "web").State != domains.StateRunning && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	info = a.mustCLI("info", "web")
	if strings.Contains(info, "Next start:") || !regexp.MustCompile(`Memory:\s+32 MiB`).MatchString(info) {
		t.Fatalf("info after a restart:\n%s", info)
	}
	a.mustCLI("destroy", "web")

	// A config naming another domain's UUID under this name still conflicts.
	other := writeFile(t, dir, "other.yaml", "name: web\nuuid: 6f1b9a52-2f4e-4d0b-9d7e-0a5c3e1f2b11\nmemory_mib: 16\n")
	checkExit(t, a, 4, "define", other)
}
