package main

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/cmd/vmledger/internal/agent"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/guest"
)

// requireQEMU skips without QEMU, except under CI, where a missing QEMU is
// a failure: CI must prove the guest tests ran.
func requireQEMU(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but qemu-system-x86_64 is not installed")
		}
		t.Skip("qemu-system-x86_64 not installed")
	}
}

// kvmUsable reports whether /dev/kvm opens; under CI a machine without it
// fails the KVM test rather than silently testing TCG twice.
func kvmUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// guestAgent starts an agent with a hypervisor. Unix socket paths are
// limited to 108 bytes, so run files go to a short temporary directory.
func guestAgent(t testing.TB, stateDir, accel string, env ...string) *agentProc {
	t.Helper()
	return guestAgentIn(t, stateDir, shortRunDir(t), accel, env...)
}

func guestAgentIn(t testing.TB, stateDir, runDir, accel string, env ...string) *agentProc {
	t.Helper()
	requireQEMU(t)
	a := startAgentEnv(t, stateDir, env, "--accel", accel, "--run-dir", runDir)
	a.runDir = runDir
	return a
}

func shortRunDir(t testing.TB) string {
	t.Helper()
	run, err := os.MkdirTemp("", "vl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Guests a failed test left behind must not outlive it.
		_ = exec.Command("pkill", "-KILL", "-f", run+"/").Run()
		os.RemoveAll(run)
	})
	return run
}

// defineTiny defines the tiny guest with the given clock and returns its UUID.
func defineTiny(t testing.TB, a *agentProc, name, clock string) string {
	t.Helper()
	dir := diskDir(t)
	img := filepath.Join(dir, "tiny.img")
	if err := guest.WriteImage(img); err != nil {
		t.Fatal(err)
	}
	cfg := "name: " + name + "\nmemory_mib: 16\nvcpus: 1\nclock: " + clock +
		"\ndisks: [{target: hda, path: " + img + ", format: raw, bus: ide}]\n"
	var res domains.Result
	out := a.mustCLI("define", writeFile(t, dir, name+".yaml", cfg), "--json")
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	return res.Domain.String()
}

// natsConn connects plain nats.go to the agent.
func natsConn(t testing.TB, a *agentProc) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(a.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// plainEvent is how a program with only nats.go sees an event.
type plainEvent struct {
	Seq     uint64          `json:"seq"`
	Domain  string          `json:"domain"`
	Type    string          `json:"type"`
	Time    time.Time       `json:"time"`
	Payload json.RawMessage `json:"payload"`
	got     time.Time
}

// eventTap collects a domain's events from NATS with plain nats.go.
type eventTap struct {
	mu  sync.Mutex
	evs []plainEvent
	ch  chan plainEvent
}

func tapEvents(t testing.TB, nc *nats.Conn, host, domain string) *eventTap {
	t.Helper()
	tap := &eventTap{ch: make(chan plainEvent, 1024)}
	_, err := nc.Subscribe("vmledger.evt."+host+"."+domain+".>", func(m *nats.Msg) {
		var e plainEvent
		if json.Unmarshal(m.Data, &e) != nil {
			return
		}
		e.got = time.Now()
		tap.mu.Lock()
		tap.evs = append(tap.evs, e)
		tap.mu.Unlock()
		tap.ch <- e
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return tap
}

// next waits for the next event of type typ, skipping others.
func (tap *eventTap) next(t testing.TB, typ string, within time.Duration) plainEvent {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case e := <-tap.ch:
			if e.Type == typ {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s event within %s (seen: %v)", typ, within, tap.types())
		}
	}
}

func (tap *eventTap) types() []string {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	out := make([]string, len(tap.evs))
	for i, e := range tap.evs {
		out[i] = e.Type
	}
	return out
}

// consoleTap reads a domain's serial console lines from NATS.
type consoleTap struct {
	lines chan string
}

func tapConsole(t testing.TB, nc *nats.Conn, host, domain string) *consoleTap {
	t.Helper()
	c := &consoleTap{lines: make(chan string, 4096)}
	pr, pw := io.Pipe()
	_, err := nc.Subscribe(agent.ConsoleSubject(host, uuidOf(t, domain), "out"), func(m *nats.Msg) { _, _ = pw.Write(m.Data) })
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			select {
			case c.lines <- strings.TrimRight(sc.Text(), "\r"):
			default:
			}
		}
	}()
	t.Cleanup(func() { pw.Close() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitLine returns the first line with the prefix.
func (c *consoleTap) waitLine(t testing.TB, prefix string, within time.Duration) string {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case l := <-c.lines:
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-deadline:
			t.Fatalf("no console line starting %q within %s", prefix, within)
		}
	}
}

func sendConsole(t testing.TB, nc *nats.Conn, host, domain, line string) {
	t.Helper()
	if err := nc.Publish(agent.ConsoleSubject(host, uuidOf(t, domain), "in"), []byte(line+"\r")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func configOf(t testing.TB, a *agentProc, name string) domains.Config {
	t.Helper()
	var c domains.Config
	if err := json.Unmarshal([]byte(a.mustCLI("config", name)), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func infoOf(t testing.TB, a *agentProc, name string) domains.Domain {
	t.Helper()
	var d domains.Domain
	if err := json.Unmarshal([]byte(a.mustCLI("info", name, "--json")), &d); err != nil {
		t.Fatal(err)
	}
	return d
}
