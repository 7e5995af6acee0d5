package live_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/guest"
	"github.com/vmledger/vmledger/hypervisor/qemu"
	"github.com/vmledger/vmledger/migrate/live"
)

// liveLog is one side's log of migration-state events.
type liveLog struct {
	mu  sync.Mutex
	evs []domains.MigrationState
}

func (l *liveLog) record(_ context.Context, ev domains.MigrationState) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, ev)
	return nil
}

// path is the logged phases, "idle>begun>...", each recovery with "!".
func (l *liveLog) path() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for i, ev := range l.evs {
		if i == 0 {
			b.WriteString(ev.From)
		}
		b.WriteString(">" + ev.To)
		if ev.Reason != "" {
			b.WriteString("!")
		}
	}
	return b.String()
}

type liveHost struct {
	d   *qemu.Driver
	log liveLog
}

func newLiveHost(t *testing.T) *liveHost {
	t.Helper()
	if _, err := exec.LookPath(qemu.DefaultBinary); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but %s is missing: %v", qemu.DefaultBinary, err)
		}
		t.Skipf("%s not installed: %v", qemu.DefaultBinary, err)
	}
	dir, err := os.MkdirTemp("", "vl") // short: unix socket paths
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d, err := qemu.New(qemu.Options{RunDir: dir, Accel: qemu.AccelTCG, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	return &liveHost{d: d}
}

func liveTinySpec(t testing.TB) domains.StartSpec {
	img := filepath.Join(t.TempDir(), "tiny.img")
	if err := guest.WriteImage(img); err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	return domains.StartSpec{Config: domains.Config{
		Name: "m" + id.String()[:8], UUID: id, MemoryMiB: 16, VCPUs: 1,
		Clock: domains.Clock{Offset: domains.OffsetUTC},
		Disks: []domains.Disk{{Target: "hda", Path: img, Format: "raw", Bus: "ide", Boot: true}},
	}}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func kill(g *qemu.Guest) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = g.Kill(ctx)
	g.Detach()
}

// fillRandom makes n bytes at the top of the guest's RAM non-zero, so the
// stream carries them (QEMU sends no zero pages) and a 1 MiB/s limit
// leaves time to interfere.
func fillRandom(t *testing.T, g *qemu.Guest, n int) {
	f, err := os.OpenFile(g.Paths().RAM, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>9 + 1)
	}
	if _, err := f.WriteAt(b, st.Size()-int64(n)); err != nil {
		t.Fatal(err)
	}
}

// flakyDest injects a failure into a real destination.
type flakyDest struct {
	*qemu.Guest
	failWait error
}

func (f flakyDest) WaitIncoming(ctx context.Context) error {
	if err := f.Guest.WaitIncoming(ctx); err != nil {
		return err
	}
	return f.failWait
}

// TestLiveStateMachineRealQEMU runs the phases with two real QEMUs on two
// drivers (two hosts) and a failure at each phase. Each case checks both
// logs' transitions in order, where the guest runs at the end (exactly
// one host), that no destination QEMU is left, and that the error
// carries the reason.
func TestLiveStateMachineRealQEMU(t *testing.T) {
	const ok = "idle>begun>performing>handed-off>confirmed"
	cases := []struct {
		name              string
		srcPath, dstPath  string
		runs              string
		reason            string
		killDestInPrepare bool
		cutInPerform      bool
		abortInPerform    bool
		failFinish        bool
	}{
		{name: "success", srcPath: ok, dstPath: "idle>preparing>prepared>finishing>finished", runs: "host-b"},
		{name: "destination QEMU killed in prepare", killDestInPrepare: true,
			srcPath: "idle>begun>cancelled!", dstPath: "idle>preparing>torn-down!", runs: "host-a", reason: "prepare"},
		{name: "stream cut in perform", cutInPerform: true,
			srcPath: "idle>begun>performing>cancelled!", dstPath: "idle>preparing>prepared>torn-down!", runs: "host-a", reason: "perform"},
		{name: "abort in perform", abortInPerform: true,
			srcPath: "idle>begun>performing>cancelled!", dstPath: "idle>preparing>prepared>torn-down!", runs: "host-a", reason: "context canceled"},
		{name: "finish fails", failFinish: true,
			srcPath: "idle>begun>performing>handed-off>cancelled!", dstPath: "idle>preparing>prepared>finishing>torn-down!", runs: "host-a", reason: "injected finish failure"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newLiveHost(t), newLiveHost(t)
			spec := liveTinySpec(t)
			src, err := a.d.StartGuest(ctxT(t, 30*time.Second), spec)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { kill(src) })
			var dest *qemu.Guest
			t.Cleanup(func() {
				if dest != nil {
					kill(dest)
				}
			})
			ctx, cancel := context.WithCancel(ctxT(t, 120*time.Second))
			defer cancel()
			opts := qemu.LiveOptions{MaxDowntime: 300 * time.Millisecond}
			if tc.cutInPerform || tc.abortInPerform {
				fillRandom(t, src, 8<<20)
				var once sync.Once
				opts.Bandwidth = 1 << 20
				opts.Progress = func(p qemu.LiveProgress) {
					if p.Sent > 0 {
						once.Do(func() {
							if tc.abortInPerform {
								cancel()
							} else {
								go kill(dest)
							}
						})
					}
				}
			}
			out, err := live.Run(ctx, live.Plan{
				SourceHost: "host-a", DestHost: "host-b", Epoch: 1, Source: src, Address: "127.0.0.1", Options: opts,
				RecordSource: a.log.record, RecordDest: b.log.record,
				Prepare: func(ctx context.Context) (live.Destination, error) {
					g, err := b.d.StartIncoming(ctx, spec)
					if err != nil {
						return nil, err
					}
					dest = g
					if tc.killDestInPrepare {
						kill(g)
					}
					if tc.failFinish {
						return flakyDest{Guest: g, failWait: errors.New("injected finish failure")}, nil
					}
					return g, nil
				},
			})
			if tc.reason == "" && err != nil {
				t.Fatalf("Live: %v", err)
			}
			if tc.reason != "" && (err == nil || !strings.Contains(err.Error(), tc.reason)) {
				t.Fatalf("Live: %v, want an error naming %q", err, tc.reason)
			}
			t.Logf("err: %v", err)
			if got := a.log.path(); got != tc.srcPath {
				t.Errorf("source log %s, want %s", got, tc.srcPath)
			}
			if got := b.log.path(); got != tc.dstPath {
				t.Errorf("destination log %s, want %s", got, tc.dstPath)
			}
			if out.Runs() != tc.runs {
				t.Errorf("runs on %q, want %q (%+v)", out.Runs(), tc.runs, out)
			}
			// The machines' word against QEMU's: exactly one runs it.
			running := func(g *qemu.Guest) bool {
				select {
				case <-g.Done():
					return false
				default:
				}
				st, err := g.Status(ctxT(t, 10*time.Second))
				return err == nil && st.Running
			}
			srcRuns, dstRuns := running(src), dest != nil && running(dest)
			if srcRuns == dstRuns || srcRuns != (tc.runs == "host-a") {
				t.Errorf("QEMU: source running %v, destination running %v; want only %s", srcRuns, dstRuns, tc.runs)
			}
			// No stray QEMU: the side that does not run the guest has none.
			loser := src
			if tc.runs == "host-a" {
				loser = dest
			}
			if loser != nil {
				select {
				case <-loser.Done():
				case <-time.After(10 * time.Second):
					t.Errorf("the QEMU on the host that does not run the guest is still there")
				}
			}
			if tc.runs == "host-b" && (out.Result.Status != "completed" || out.Source.Epoch != 2 || out.Dest.Epoch != 2) {
				t.Errorf("outcome %+v", out)
			}
		})
	}
}
