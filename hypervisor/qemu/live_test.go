package qemu

import (
	"bytes"
	"context"
	"math/rand"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
)

// liveSpec is tinySpec with its RTC set to 2030-01-01 (a variable clock).
func liveSpec(t *testing.T) (domains.StartSpec, time.Time) {
	spec := tinySpec(t)
	want := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	spec.Config.Clock = domains.Clock{Offset: domains.OffsetVariable, Basis: domains.OffsetUTC, Adjustment: want.Unix() - time.Now().Unix() + 1}
	spec.ClockBase = spec.Config.Clock.Adjustment // what the owner passes for a variable UTC clock
	return spec, want
}

// fillRAM writes n pseudo-random bytes at the top of the guest's RAM
// through its shared memory file (the tiny guest never touches it) and
// returns them.
func fillRAM(t *testing.T, g *Guest, n int) []byte {
	t.Helper()
	f, err := os.OpenFile(g.Paths().RAM, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	rand.New(rand.NewSource(13)).Read(b)
	if _, err := f.WriteAt(b, st.Size()-int64(n)); err != nil {
		t.Fatal(err)
	}
	return b
}

// startLivePair starts spec on one driver and a QEMU waiting for it on
// another (their own run directories: two hosts), listening on loopback.
func startLivePair(t *testing.T, spec domains.StartSpec) (src, dst *Guest, uri string) {
	t.Helper()
	src = startTest(t, newTestDriver(t, AccelTCG), spec)
	dst, err := newTestDriver(t, AccelTCG).StartIncoming(ctxFor(t, startBudget), spec)
	if err != nil {
		t.Fatalf("StartIncoming: %v", err)
	}
	t.Cleanup(func() { killAndDetach(t, dst) })
	uri, err = dst.ListenIncoming(ctxFor(t, 10*time.Second), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(uri, "tcp:127.0.0.1:") {
		t.Fatalf("listen URI %q", uri)
	}
	return src, dst, uri
}

// TestLiveMigrationRealQEMU: a running guest whose RTC says 2030 goes
// QEMU to QEMU over loopback TCP; progress is reported; at the end both
// sides are paused and their RAM files are byte-identical (the pattern
// written through the source's memory file included); resumed, the
// destination prints 2030 plus the time that passed.
func TestLiveMigrationRealQEMU(t *testing.T) {
	spec, _ := liveSpec(t)
	src, dst, uri := startLivePair(t, spec)
	con := openTestConsole(t, src.Console())
	before := con.waitRTC(t, bootTCG)
	seenAt := time.Now()
	if before.Year() != 2030 {
		t.Fatalf("source RTC %v, want 2030", before)
	}
	pattern := fillRAM(t, src, 4<<20)

	incoming := make(chan error, 1)
	go func() { incoming <- dst.WaitIncoming(ctxFor(t, 120*time.Second)) }()
	var mu sync.Mutex
	var polls []LiveProgress
	res, err := src.MigrateLive(ctxFor(t, 120*time.Second), uri, LiveOptions{MaxDowntime: 300 * time.Millisecond,
		Progress: func(p LiveProgress) { mu.Lock(); polls = append(polls, p); mu.Unlock() }})
	if err != nil {
		t.Fatalf("MigrateLive: %v", err)
	}
	if err := <-incoming; err != nil {
		t.Fatalf("WaitIncoming: %v", err)
	}
	if res.Status != "completed" || res.Total < 16<<20 || res.Sent == 0 || res.TotalTime <= 0 {
		t.Errorf("result %+v", res)
	}
	mu.Lock()
	if len(polls) == 0 || polls[len(polls)-1].Status != "completed" {
		t.Errorf("progress polls %+v", polls)
	}
	mu.Unlock()
	for name, g := range map[string]*Guest{"source": src, "destination": dst} {
		st, err := g.Status(ctxFor(t, 10*time.Second))
		if err != nil || st.Running {
			t.Fatalf("%s after the migration: %+v %v; want paused", name, st, err)
		}
	}
	a, err := os.ReadFile(src.Paths().RAM)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dst.Paths().RAM)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("RAM files differ (%d and %d bytes)", len(a), len(b))
	}
	if !bytes.HasSuffix(b, pattern) {
		t.Fatal("the destination's RAM lacks the pattern")
	}

	con2 := openTestConsole(t, dst.Console())
	if err := dst.Resume(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	after := con2.waitRTC(t, eventWait)
	near(t, "destination RTC", after, before.Add(time.Since(seenAt)), 5*time.Second)
	t.Logf("total %v, downtime %v, %d bytes, %d passes", res.TotalTime, res.Downtime, res.Sent, res.Pass)
}

// TestLiveMigrationFailuresRealQEMU: an abort during perform (bandwidth
// limited so there is time) and a cut stream (destination QEMU killed)
// each leave the source running and the destination gone.
func TestLiveMigrationFailuresRealQEMU(t *testing.T) {
	for _, tc := range []string{"abort", "destination killed"} {
		t.Run(tc, func(t *testing.T) {
			spec, _ := liveSpec(t)
			src, dst, uri := startLivePair(t, spec)
			con := openTestConsole(t, src.Console())
			con.waitRTC(t, bootTCG)
			fillRAM(t, src, 8<<20) // random: 8 s at 1 MiB/s

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			started := make(chan struct{})
			var once sync.Once
			go func() {
				<-started
				if tc == "abort" {
					cancel()
				} else {
					killAndDetach(t, dst)
				}
			}()
			_, err := src.MigrateLive(ctx, uri, LiveOptions{Bandwidth: 1 << 20, Progress: func(p LiveProgress) {
				if p.Sent > 0 {
					once.Do(func() { close(started) })
				}
			}})
			if err == nil {
				t.Fatal("MigrateLive succeeded")
			}
			t.Logf("%s: %v", tc, err)
			st, err := src.Status(ctxFor(t, 10*time.Second))
			if err != nil || !st.Running {
				t.Fatalf("source after %s: %+v %v; want running", tc, st, err)
			}
			con.waitRTC(t, eventWait)
			waitDone(t, dst, 30*time.Second) // QEMU 7.2 exits when its incoming migration fails
		})
	}
}
