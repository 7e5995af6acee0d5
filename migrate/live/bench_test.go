package live_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/qemu"
	"github.com/vmledger/vmledger/hypervisor/qmp"
	"github.com/vmledger/vmledger/migrate/live"
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
		fill(b, g.Paths().RAM)
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
		b.StopTimer()
		src, srcMon := plainQEMU(b, dir, "src", img, "")
		fill(b, filepath.Join(dir, "src.ram"))
		port := freePort(b)
		b.StartTimer()
		t0 := time.Now()
		dst, dstMon := plainQEMU(b, dir, "dst", img, "tcp:127.0.0.1:"+strconv.Itoa(port))
		ctx := context.Background()
		must(b, srcMon.Execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": qmp.UnlimitedBandwidth}, nil))
		must(b, srcMon.Migrate(ctx, "tcp:127.0.0.1:"+strconv.Itoa(port)))
		var info struct {
			Status   string `json:"status"`
			Downtime int64  `json:"downtime"`
		}
		for info.Status != "completed" {
			time.Sleep(10 * time.Millisecond)
			must(b, srcMon.Execute(ctx, "query-migrate", nil, &info))
			if info.Status == "failed" {
				b.Fatal("migration failed")
			}
		}
		for {
			var st struct {
				Status string `json:"status"`
			}
			must(b, dstMon.Execute(ctx, "query-status", nil, &st))
			if st.Status != "inmigrate" {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		must(b, dstMon.Execute(ctx, "cont", nil, nil))
		_ = src.Process.Kill()
		_ = src.Wait()
		wall += time.Since(t0)
		b.StopTimer()
		down += time.Duration(info.Downtime) * time.Millisecond
		srcMon.Close()
		dstMon.Close()
		_ = dst.Process.Kill()
		_ = dst.Wait()
		b.StartTimer()
	}
	report(b, wall, down)
}

func report(b *testing.B, wall, down time.Duration) {
	b.ReportMetric(float64(wall.Microseconds())/1e3/float64(b.N), "ms/migration")
	b.ReportMetric(float64(down.Microseconds())/1e3/float64(b.N), "ms/downtime")
}

func must(b *testing.B, err error) {
	if err != nil {
		b.Helper()
		b.Fatal(err)
	}
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

// fill writes 8 MiB of non-zero bytes at the top of a 16 MiB RAM file.
func fill(b testing.TB, path string) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 8<<20)
	for i := range buf {
		buf[i] = byte(i*7 + i>>9 + 1)
	}
	if _, err := f.WriteAt(buf, 8<<20); err != nil {
		b.Fatal(err)
	}
}

// plainQEMU starts the tiny guest in a QEMU of its own (no driver), its
// RAM in dir/<name>.ram like the driver's, and connects to its QMP.
func plainQEMU(b *testing.B, dir, name, img, incoming string) (*exec.Cmd, *qmp.Client) {
	sock := filepath.Join(dir, name+".qmp")
	ram := filepath.Join(dir, name+".ram")
	os.Remove(sock)
	os.Remove(ram)
	args := []string{"-nodefaults", "-no-user-config", "-display", "none", "-machine", "pc,accel=tcg,memory-backend=ram0",
		"-object", "memory-backend-file,id=ram0,size=16M,mem-path=" + ram + ",share=on", "-m", "16M",
		"-drive", "file=" + img + ",format=raw,if=ide", "-qmp", "unix:" + sock + ",server=on,wait=off"}
	if incoming != "" {
		args = append(args, "-incoming", incoming)
	}
	cmd := exec.Command(qemu.DefaultBinary, args...)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }) // after a Fatal too; a no-op once reaped
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := qmp.Dial(context.Background(), "unix", sock)
		if err == nil {
			return cmd, c
		}
		if time.Now().After(deadline) {
			b.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func freePort(b testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
