package live_test

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/qemu"
	"github.com/vmledger/vmledger/migrate/live"
	"github.com/vmledger/vmledger/migrate/live/livetest"
)

// BenchmarkLiveMigration: a 16 MiB tiny guest with 8 MiB of non-zero RAM
// migrated over loopback TCP, timed from the start of the destination's
// QEMU to the guest running there with the source's QEMU gone, through
// live.Run (both state machines, every transition recorded) and, as the
// reference in the same run, two plain QEMUs driven directly over QMP
// (-incoming tcp:, migrate, query-migrate every 10 ms, cont, kill).
//
//	go test -run '^$' -bench LiveMigration -benchtime 10x ./migrate/live/
func BenchmarkLiveMigration(b *testing.B) {
	b.Run("vmledger", benchVMLedger)
	b.Run("qmp-direct", benchDirect)
}

func benchVMLedger(b *testing.B) {
	src, dst := newBenchHost(b), newBenchHost(b)
	spec := liveTinySpec(b)
	var wall, down time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		spec.Config.UUID = uuid.New()
		g, err := src.StartGuest(context.Background(), spec)
		if err != nil {
			b.Fatal(err)
		}
		livetest.Fill(b, g.Paths().RAM)
		var dest *qemu.Guest
		rec := func(context.Context, domains.MigrationState) error { return nil }
		b.StartTimer()
		t0 := time.Now()
		out, err := live.Run(context.Background(), live.Plan{
			SourceHost: "a", DestHost: "b", Epoch: 1, Source: g, Address: "127.0.0.1",
			RecordSource: rec, RecordDest: rec,
			Prepare: func(ctx context.Context) (live.Destination, error) {
				d, err := dst.StartIncoming(ctx, spec)
				dest = d
				return d, err
			},
		})
		wall += time.Since(t0)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		down += out.Result.Downtime
		g.Detach()
		kill(dest)
		b.StartTimer()
	}
	report(b, wall, down)
}

func benchDirect(b *testing.B) {
	dir := shortDir(b)
	img := liveTinySpec(b).Config.Disks[0].Path
	var wall, down time.Duration
	for i := 0; i < b.N; i++ {
		w, d := livetest.Direct(b, dir, img)
		wall, down = wall+w, down+d
	}
	report(b, wall, down)
}

func report(b *testing.B, wall, down time.Duration) {
	b.ReportMetric(float64(wall.Microseconds())/1e3/float64(b.N), "ms/migration")
	b.ReportMetric(float64(down.Microseconds())/1e3/float64(b.N), "ms/downtime")
}

func newBenchHost(b *testing.B) *qemu.Driver {
	if _, err := exec.LookPath(qemu.DefaultBinary); err != nil {
		b.Skip(err)
	}
	d, err := qemu.New(qemu.Options{RunDir: shortDir(b), Accel: qemu.AccelTCG})
	if err != nil {
		b.Fatal(err)
	}
	return d
}

func shortDir(b testing.TB) string {
	dir, err := os.MkdirTemp("", "vb")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
