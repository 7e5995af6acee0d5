package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
)

// Acceptance a with a real guest: the tiny guest under QEMU (TCG, which
// boots in a blink here), driven through the agent and its CLI: define, start,
// two RTC changes made by the guest, pause, resume, a config change, stop.
// The projection is recorded after each step; config --at and info --at
// each step's sequence and time return exactly what was recorded then.
func TestReplayGuestAt(t *testing.T) {
	// TCG: SeaBIOS takes seconds to tens of seconds under the nested KVM
	// of these machines; TestGuestBootsKVM covers KVM.
	a := guestAgent(t, t.TempDir(), "tcg")
	id := defineTiny(t, a, "tmg", "{offset: variable, adjustment: 0, basis: utc}")
	nc := natsConn(t, a)
	tap := tapEvents(t, nc, a.host, id)
	con := tapConsole(t, nc, a.host, id)

	var steps []replayStep
	// record reads info, the domain's history, then info again, and keeps
	// them only when nothing was appended in between.
	record := func(what string) {
		t.Helper()
		for range 50 {
			before := a.mustCLI("info", "tmg", "--json")
			evs := replayEvents(t, a, "tmg")
			cfg := a.mustCLI("config", "tmg")
			after := a.mustCLI("info", "tmg", "--json")
			var d domains.Domain
			if err := json.Unmarshal([]byte(after), &d); err != nil {
				t.Fatal(err)
			}
			last := evs[len(evs)-1]
			if before == after && d.LastSeq == last.Seq {
				steps = append(steps, replayStep{what: what, seq: last.Seq, time: last.Time, domain: after, config: cfg})
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("%s: the domain would not hold still", what)
	}

	record("defined")
	a.mustCLI("start", "tmg")
	tap.next(t, "started", 30*time.Second)
	con.waitLine(t, "RTC ", 60*time.Second)
	record("started")
	setRTC(t, a, tap, id, "tmg", time.Now().Add(49*time.Hour))
	record("rtc changed")
	setRTC(t, a, tap, id, "tmg", time.Now().Add(-3*time.Hour))
	record("rtc changed again")
	a.mustCLI("suspend", "tmg")
	tap.next(t, "paused", 10*time.Second)
	record("paused")
	a.mustCLI("resume", "tmg")
	tap.next(t, "resumed", 10*time.Second)
	record("resumed")
	c := configOf(t, a, "tmg")
	c.MemoryMiB = 32
	b, _ := json.Marshal(c)
	a.mustCLI("define", writeFile(t, t.TempDir(), "tmg.json", string(b)))
	tap.next(t, "config-updated", 10*time.Second)
	record("config updated")
	a.mustCLI("destroy", "tmg")
	tap.next(t, "stopped", 10*time.Second)
	record("stopped")

	checkSteps(t, a, "tmg", steps)
	checkSteps(t, a, id, steps)
	// The projection really moved: the RTC, the state and the memory differ
	// from step to step, so an answer from the wrong step cannot pass.
	seen := map[string]bool{}
	for _, st := range steps {
		if seen[st.domain] {
			t.Fatalf("two steps recorded the same projection:\n%s", st.domain)
		}
		seen[st.domain] = true
	}
}
