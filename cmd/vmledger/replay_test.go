package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/cmd/vmledger/internal/agent"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/store"
)

// Acceptance tests of issue 4: the log as a time machine (docs/replay.md).

// replayStep is the projection of one domain recorded right after a step.
type replayStep struct {
	what   string
	seq    uint64
	time   time.Time
	domain string // what `info --json` printed then
	config string // what `config` printed then
}

// replayEvents returns the domain's events, as `history --json` prints them.
func replayEvents(t *testing.T, a *agentProc, ref string, extra ...string) []domains.Event {
	t.Helper()
	out := a.mustCLI(append([]string{"history", ref, "--json"}, extra...)...)
	var evs []domains.Event
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var e domains.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("history line %q: %v", line, err)
		}
		evs = append(evs, e)
	}
	return evs
}

func seqsOf(evs []domains.Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}

// checkAt asks for every recorded step by sequence and by time, with
// config and info, and wants exactly what was printed at the time.
func checkSteps(t *testing.T, a *agentProc, ref string, steps []replayStep) {
	t.Helper()
	for _, st := range steps {
		for _, at := range []string{fmt.Sprint(st.seq), st.time.Format(time.RFC3339Nano)} {
			if got := a.mustCLI("config", ref, "--at", at); got != st.config {
				t.Errorf("%s: config --at %s:\n%s\nwant (recorded then):\n%s", st.what, at, got, st.config)
			}
			if got := a.mustCLI("info", ref, "--at", at, "--json"); got != st.domain {
				t.Errorf("%s: info --at %s:\n%s\nwant (recorded then):\n%s", st.what, at, got, st.domain)
			}
		}
	}
}

const replayWeb = `{"name": "tm1", "uuid": "9d3c2b1a-0f4e-4d5c-8b7a-6e5f4d3c2b1a", "memory_mib": %d, "vcpus": %d,
 "clock": {"offset": "variable", "adjustment": %d, "basis": "utc"}}`

const replayOther = `{"name": "tm2", "uuid": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", "memory_mib": 32, "vcpus": 1}`

// Acceptance a (through a real agent and its CLI): a scripted history with
// the projection recorded after each step; config --at and info --at each
// step's sequence and time give exactly what was recorded then. The agent
// has no hypervisor here, so the history is built from define (a changed
// config is a config-updated) and undefine; TestReplayLifecycleAt covers
// start, RTC changes, pause, resume and stop.
func TestReplayConfigAtEveryStep(t *testing.T) {
	dir := t.TempDir()
	a := startAgent(t, filepath.Join(dir, "state"))
	define := func(name, body string) uint64 {
		var res domains.Result
		out := a.mustCLI("define", writeFile(t, dir, name, body), "--json")
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Seqs) != 1 {
			t.Fatalf("define %s: %v %s", name, err, out)
		}
		return res.Seqs[0]
	}
	var steps []replayStep
	record := func(what string, seq uint64) {
		evs := replayEvents(t, a, "tm1")
		last := evs[len(evs)-1]
		if last.Seq != seq {
			t.Fatalf("%s: the domain's last event is %d, want %d", what, last.Seq, seq)
		}
		steps = append(steps, replayStep{what: what, seq: seq, time: last.Time,
			domain: a.mustCLI("info", "tm1", "--json"), config: a.mustCLI("config", "tm1")})
	}
	record("defined", define("v1.json", fmt.Sprintf(replayWeb, 64, 1, 3600)))
	before := steps[0].seq
	record("memory 128", define("v2.json", fmt.Sprintf(replayWeb, 128, 1, 3600)))
	otherSeq := define("other.json", replayOther) // another domain's event in between
	record("2 vCPUs, clock +7200", define("v3.json", fmt.Sprintf(replayWeb, 128, 2, 7200)))
	a.mustCLI("undefine", "tm2")
	record("memory 256", define("v4.json", fmt.Sprintf(replayWeb, 256, 2, 7200)))

	checkSteps(t, a, "tm1", steps)
	checkSteps(t, a, "9d3c2b1a-0f4e-4d5c-8b7a-6e5f4d3c2b1a", steps) // by UUID too

	// The other domain's event lies between two steps: config at its
	// sequence is the earlier step's.
	if got := a.mustCLI("config", "tm1", "--at", fmt.Sprint(otherSeq)); got != steps[1].config {
		t.Errorf("config at %d (another domain's event):\n%s", otherSeq, got)
	}
	// Before the domain existed: not found.
	if before > 1 {
		t.Fatalf("tm1 was defined at %d", before)
	}
	checkExit(t, a, exitNotFound, "config", "tm1", "--at", steps[0].time.Add(-time.Nanosecond).Format(time.RFC3339Nano))
	// An undefined domain: unknown by name now, reachable by UUID.
	checkExit(t, a, exitNotFound, "config", "tm2", "--at", fmt.Sprint(otherSeq))
	var c domains.Config
	if err := json.Unmarshal([]byte(a.mustCLI("config", "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", "--at", fmt.Sprint(otherSeq))), &c); err != nil || c.Name != "tm2" {
		t.Fatalf("undefined tm2 by UUID: %v %+v", err, c)
	}
	checkExit(t, a, exitNotFound, "config", "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", "--at", fmt.Sprint(steps[3].seq))
	// A malformed point is a usage error, before and at the agent.
	for _, bad := range []string{"yesterday", "0", "-3", "2026-01-02"} {
		checkExit(t, a, exitUsage, "config", "tm1", "--at", bad)
	}

	// history: --since/--until by sequence and by time, and --type.
	all := seqsOf(replayEvents(t, a, "tm1"))
	tests := []struct {
		args []string
		want []uint64
	}{
		{[]string{"--since", fmt.Sprint(steps[1].seq)}, all[1:]},
		{[]string{"--until", fmt.Sprint(steps[2].seq)}, all[:3]},
		{[]string{"--since", fmt.Sprint(steps[1].seq + 1), "--until", fmt.Sprint(steps[3].seq - 1)}, all[2:3]},
		{[]string{"--since", steps[1].time.Format(time.RFC3339Nano), "--until", steps[2].time.Format(time.RFC3339Nano)}, all[1:3]},
		{[]string{"--until", steps[0].time.Add(-time.Second).Format(time.RFC3339Nano)}, nil},
		{[]string{"--type", "config-updated", "--until", fmt.Sprint(steps[2].seq)}, all[1:3]},
		{[]string{"--type", "defined"}, all[:1]},
	}
	for _, tc := range tests {
		if got := seqsOf(replayEvents(t, a, "tm1", tc.args...)); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("history %v: %v, want %v", tc.args, got, tc.want)
		}
	}
	checkExit(t, a, exitUsage, "history", "tm1", "--since", "last tuesday")
}

// Acceptance a, the lifecycle half: the agent has no QEMU in tests, so this
// history (define, start, RTC changes, pause, resume, a config change, a
// hot-plug, shutdown, stop) is appended to a state directory's log through
// the store, as the agent's service would have. Offline, `log inspect --at`
// shows each step; then an agent serves the same log and `config --at` /
// `info --at` each step's sequence and time give what was recorded.
func TestReplayLifecycleAt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	steps := seedLifecycle(t, dir)

	// Offline: the projection of every domain at each step.
	for _, st := range steps {
		for _, at := range []string{fmt.Sprint(st.seq), st.time.Format(time.RFC3339Nano)} {
			out, errs, code := runCLI(t, "log", "inspect", "--state-dir", dir, "--at", at, "--json")
			if code != 0 {
				t.Fatalf("log inspect --at %s: %d %s", at, code, errs)
			}
			var in struct {
				Domains []domains.Domain `json:"domains"`
			}
			if err := json.Unmarshal([]byte(out), &in); err != nil || len(in.Domains) != 1 {
				t.Fatalf("log inspect --at %s: %v %s", at, err, out)
			}
			got, _ := json.MarshalIndent(in.Domains[0], "", "  ")
			if string(got)+"\n" != st.domain {
				t.Errorf("%s: log inspect --at %s:\n%s\nwant:\n%s", st.what, at, got, st.domain)
			}
		}
	}

	a := startAgent(t, dir)
	checkSteps(t, a, "life1", steps)
	// Between two steps (a second after step 3): step 3 still holds.
	if got := a.mustCLI("info", "life1", "--at", steps[3].time.Add(time.Second).Format(time.RFC3339Nano), "--json"); got != steps[3].domain {
		t.Errorf("between steps 3 and 4:\n%s", got)
	}
	var d domains.Domain
	if err := json.Unmarshal([]byte(a.mustCLI("info", "life1", "--at", fmt.Sprint(steps[5].seq), "--json")), &d); err != nil ||
		d.State != domains.StateRunning || d.Live == nil || d.Live.RTC != 4200 || d.Config.Clock.Adjustment != 4200 || d.Config.MemoryMiB != 64 {
		t.Fatalf("after the second RTC change: %v %+v", err, d)
	}
	if out := a.mustCLI("info", "life1", "--at", fmt.Sprint(steps[3].seq)); !strings.Contains(out, "paused (user)") {
		t.Fatalf("info --at the pause:\n%s", out)
	}
}

// seedLifecycle writes a lifecycle history of domain life1 into a state
// directory's log through the store, as the agent's service would have,
// and returns the projection recorded after each step.
func seedLifecycle(t *testing.T, dir string) []replayStep {
	t.Helper()
	ctx := context.Background()
	id := uuid.MustParse("5e4d3c2b-1a09-4f8e-8d7c-6b5a49382716")
	cfg := domains.Config{Name: "life1", UUID: id, MemoryMiB: 64, VCPUs: 1, Machine: "pc",
		Clock: domains.Clock{Offset: domains.OffsetVariable, Adjustment: 3600, Basis: domains.BasisUTC}}
	big := cfg.Clone()
	big.MemoryMiB, big.Clock.Adjustment = 512, 4200
	script := []domains.Payload{
		domains.Defined{Config: cfg},
		domains.Started{Reason: domains.StartBooted, Accel: "tcg", PID: 777, ClockBase: 3600},
		domains.RTCChanged{Offset: 300, Adjustment: 3900},
		domains.Paused{Reason: domains.PauseUser},
		domains.Resumed{Reason: "user"},
		domains.RTCChanged{Offset: 600, Adjustment: 4200},
		domains.ConfigUpdated{Config: big},
		domains.DeviceAttached{Device: domains.Device{ID: "rng0", Driver: "virtio-rng-pci"}, Live: true},
		domains.Shutdown{Reason: domains.ShutdownGuest, QEMUReason: "guest-shutdown"},
		domains.Stopped{Reason: domains.StopShutdown},
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(filepath.Join(dir, agent.DBFile), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	proj := domains.NewProjection()
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	var steps []replayStep
	for i, p := range script {
		e := domains.NewEvent(id, t0.Add(time.Duration(i)*time.Minute+time.Duration(i)*time.Microsecond), fmt.Sprintf("cmd-%d", i), "testhost", p)
		req := store.AppendRequest{Domain: id, ExpectedVersion: uint64(i), Events: []domains.Event{e}}
		if _, err := s.Append(ctx, req); err != nil {
			t.Fatal(err)
		}
		if err := proj.Apply(req.Events[0]); err != nil {
			t.Fatal(err)
		}
		d, _ := proj.Get(id)
		info, _ := json.MarshalIndent(d, "", "  ")
		conf, _ := json.MarshalIndent(d.Config, "", "  ")
		steps = append(steps, replayStep{what: string(p.EventType()), seq: req.Events[0].Seq, time: req.Events[0].Time,
			domain: string(info) + "\n", config: string(conf) + "\n"})
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return steps
}
