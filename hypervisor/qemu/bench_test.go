package qemu

import (
	"bufio"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// BenchmarkFirstSerialLine measures define-to-first-serial-line: from
// asking for a guest to its first "RTC" line on the console, through
// vmledger (Start paused, connect the console, cont: the order that loses
// no output) and, as the reference in the same run, a plain QEMU with the
// same guest and no monitor, no pause and no RAM file, reading its serial
// port on stdout.
//
//	go test -run '^$' -bench FirstSerialLine -benchtime 5x ./hypervisor/qemu/
func BenchmarkFirstSerialLine(b *testing.B) {
	for _, accel := range []string{AccelKVM, AccelTCG} {
		b.Run(accel+"/vmledger", func(b *testing.B) { benchVMLedger(b, accel) })
		b.Run(accel+"/plain-qemu", func(b *testing.B) { benchPlain(b, accel) })
	}
}

func benchVMLedger(b *testing.B, accel string) {
	d := newTestDriver(b, accel)
	spec := tinySpec(b)
	var total, starting time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		spec.Config.UUID = uuid.New()
		spec.Paused = true
		ctx, cancel := context.WithTimeout(context.Background(), bootKVM)
		t0 := time.Now()
		g, err := d.StartGuest(ctx, spec)
		if err != nil {
			b.Fatal(err)
		}
		starting += time.Since(t0)
		con, err := OpenConsole(ctx, g.Console())
		if err != nil {
			b.Fatal(err)
		}
		if err := g.Resume(ctx); err != nil {
			b.Fatal(err)
		}
		if err := firstRTCLine(ctx, bufio.NewReader(con)); err != nil {
			b.Fatal(err)
		}
		total += time.Since(t0)
		b.StopTimer()
		con.Close()
		g.Kill(ctx)
		g.Detach()
		cancel()
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "ms/first-line")
	b.ReportMetric(float64(starting.Microseconds())/1e3/float64(b.N), "ms/start")
}

func benchPlain(b *testing.B, accel string) {
	requireQEMU(b)
	if accel == AccelKVM {
		requireKVM(b)
	}
	spec := tinySpec(b)
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), bootKVM)
		t0 := time.Now()
		cmd := exec.Command(DefaultBinary, "-nodefaults", "-no-user-config", "-display", "none",
			"-machine", "pc,accel="+accel, "-m", "16M", "-serial", "stdio",
			"-drive", "file="+spec.Config.Disks[0].Path+",format=raw,if=ide")
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		err = firstRTCLine(ctx, bufio.NewReader(out))
		total += time.Since(t0)
		b.StopTimer()
		cmd.Process.Kill()
		cmd.Wait()
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "ms/first-line")
}

// firstRTCLine reads until a line starting with "RTC " or ctx ends.
func firstRTCLine(ctx context.Context, r *bufio.Reader) error {
	found := make(chan error, 1)
	go func() {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				found <- err
				return
			}
			if strings.HasPrefix(line, "RTC ") {
				found <- nil
				return
			}
		}
	}()
	select {
	case err := <-found:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
