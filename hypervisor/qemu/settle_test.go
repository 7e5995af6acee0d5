package qemu

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
)

// TestSettle: what an agent that died during a start (or while a guest
// died) leaves is resolved by a new driver on the same run directory: a
// QEMU that completed its start is handed back, any other is killed, and
// a dead guest's run files are removed.
func TestSettle(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		leave func(t *testing.T, d *Driver, spec domains.StartSpec) // what the dead agent left
		adopt bool
	}{
		{"running", func(t *testing.T, d *Driver, spec domains.StartSpec) {
			startTest(t, d, spec).Detach()
		}, true},
		{"prelaunch", func(t *testing.T, d *Driver, spec domains.StartSpec) {
			spec.Paused = true // -S and no cont: as if the agent died before cont
			startTest(t, d, spec).Detach()
		}, false},
		{"prelaunch without pid file", func(t *testing.T, d *Driver, spec domains.StartSpec) {
			spec.Paused = true // as if QEMU had not yet written it
			g := startTest(t, d, spec)
			g.Detach()
			if err := os.Remove(g.Paths().PID); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"died while nobody watched", func(t *testing.T, d *Driver, spec domains.StartSpec) {
			g := startTest(t, d, spec)
			g.Detach()
			if err := syscall.Kill(g.PID(), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			for i := 0; alive(g.PID()); i++ {
				if i > 1000 {
					t.Fatal("QEMU did not die")
				}
				time.Sleep(10 * time.Millisecond)
			}
		}, false},
		{"ram file, no qemu", func(t *testing.T, d *Driver, spec domains.StartSpec) {
			l := &launch{d: d, spec: spec, paths: d.Paths(spec.Config.UUID)}
			if err := l.runDir(ctxFor(t, time.Second)); err != nil {
				t.Fatal(err)
			}
			if err := l.ramFile(ctxFor(t, time.Second)); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"nothing", func(*testing.T, *Driver, domains.StartSpec) {}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newTestDriver(t, AccelTCG)
			spec := tinySpec(t)
			tc.leave(t, d, spec)

			d2, err := New(Options{RunDir: d.RunDir(), Accel: AccelTCG, Log: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			g, err := d2.SettleGuest(ctxFor(t, 30*time.Second), spec.Config)
			if !tc.adopt {
				if !errors.Is(err, domains.ErrNotFound) || g != nil {
					t.Fatalf("Settle = %v, %v; want ErrNotFound", g, err)
				}
				assertNoLeftovers(t, d.Paths(spec.Config.UUID), spec.Config.UUID)
				return
			}
			if err != nil {
				t.Fatalf("Settle: %v", err)
			}
			t.Cleanup(func() { killAndDetach(t, g) })
			st, err := g.Status(ctxFor(t, 5*time.Second))
			if err != nil || !st.Running {
				t.Fatalf("adopted guest: %+v, %v; want running", st, err)
			}
			killAndDetach(t, g)
			assertNoLeftovers(t, d.Paths(spec.Config.UUID), spec.Config.UUID)
		})
	}
}
