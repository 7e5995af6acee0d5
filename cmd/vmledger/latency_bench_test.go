package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/vmledger/vmledger/hypervisor/guest"
	"github.com/vmledger/vmledger/hypervisor/qmp"
)

// BenchmarkRTCEventToSubscriber: the guest sets its RTC; how long from
// QEMU's RTC_CHANGE (its own timestamp, which the event carries) until a
// plain nats.go subscriber has the rtc-changed event: QMP, fold, durable
// append, relay, NATS. Beside it, in the same run, the floor: the same
// QMP event read by a bare QMP client from a bare QEMU.
//
// QEMU rate-limits RTC_CHANGE to one a second and stamps a delayed event
// with the time it was raised, so samples are spaced by more than that.
func BenchmarkRTCEventToSubscriber(b *testing.B) {
	b.Run("vmledger", func(b *testing.B) {
		bt := b
		a := guestAgent(bt, b.TempDir(), "tcg")
		id := defineTiny(bt, a, "lat", "{offset: variable, adjustment: 0, basis: utc}")
		nc := natsConn(bt, a)
		con := tapConsole(bt, nc, a.host, id)
		tap := tapEvents(bt, nc, a.host, id)
		a.mustCLI("start", "lat")
		con.waitLine(bt, "RTC ", 60*time.Second)
		var lat []time.Duration
		b.ResetTimer()
		for i := 0; i < samples(b); i++ {
			time.Sleep(throttle)
			sendConsole(bt, nc, a.host, id, guestTimeCmd(time.Date(2030, 1, 1, 0, 0, i%60, 0, time.UTC)))
			e := tap.next(bt, "rtc-changed", 5*time.Second)
			lat = append(lat, e.got.Sub(e.Time))
		}
		report(b, lat)
	})
	b.Run("raw-qmp", func(b *testing.B) {
		bt := b
		requireQEMU(bt)
		dir := shortRunDir(bt)
		img := filepath.Join(dir, "g.img")
		if err := guest.WriteImage(img); err != nil {
			b.Fatal(err)
		}
		qsock, ssock := filepath.Join(dir, "q.sock"), filepath.Join(dir, "s.sock")
		cmd := exec.Command("qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none",
			"-machine", "pc", "-accel", "tcg", "-m", "16", "-drive", "file="+img+",format=raw,if=ide",
			"-qmp", "unix:"+qsock+",server=on,wait=off",
			"-chardev", "socket,id=s0,path="+ssock+",server=on,wait=off", "-serial", "chardev:s0")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var c *qmp.Client
		var ser net.Conn
		for ctx.Err() == nil {
			var err error
			if c, err = qmp.Dial(ctx, "unix", qsock); err == nil {
				if ser, err = net.Dial("unix", ssock); err == nil {
					break
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		if c == nil || ser == nil {
			b.Fatal("bare QEMU did not come up")
		}
		defer c.Close()
		readUntil(bt, ser, "RTC ", 30*time.Second)
		go func() { _, _ = io.Copy(io.Discard, ser) }() // keep the guest's output flowing
		var lat []time.Duration
		misses := 0
		b.ResetTimer()
		for i := 0; i < samples(b); i++ {
			time.Sleep(throttle)
			if _, err := ser.Write([]byte(guestTimeCmd(time.Date(2030, 1, 1, 0, 0, i%60, 0, time.UTC)) + "\r")); err != nil {
				b.Fatal(err)
			}
			deadline := time.After(5 * time.Second)
		wait:
			for {
				select {
				case ev, ok := <-c.Events():
					if !ok {
						b.Fatalf("QMP closed: %v", c.Err())
					}
					if ev.Name == qmp.EventRTCChange {
						lat = append(lat, time.Since(ev.Timestamp))
						break wait
					}
				case <-deadline:
					misses++ // the guest missed the line; QEMU did nothing to measure
					break wait
				}
			}
		}
		if misses > len(lat)/4 {
			b.Fatalf("%d of %d RTC changes produced no QMP event", misses, misses+len(lat))
		}
		report(b, lat)
	})
}

// throttle spaces samples past QEMU's RTC_CHANGE rate limit (1 s).
const throttle = 1100 * time.Millisecond

func samples(b *testing.B) int { return min(max(b.N, 20), 40) }

func report(b *testing.B, lat []time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(p(0.50), "p50-µs")
	b.ReportMetric(p(0.99), "p99-µs")
	b.ReportMetric(0, "ns/op")
	b.Logf("n=%d p50=%.0fµs p99=%.0fµs max=%s", len(lat), p(0.5), p(0.99), fmt.Sprint(lat[len(lat)-1]))
}
