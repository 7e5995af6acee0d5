package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
	"github.com/vmledger/vmledger/hypervisor/guest"
	"github.com/vmledger/vmledger/migrate/live/livetest"
)

// BenchmarkMigrateAgents: the migrate verb between two agents (alpha and
// beta on a three-node cluster of Debian's nats-server) and, paired with
// each one in the same iteration so both see the same load, the same
// migration driven directly over QMP (livetest.Direct): a 16 MiB tiny
// guest under TCG with 8 MiB of its RAM non-zero, over loopback TCP.
// vmledger's time runs from the migrate request (over NATS, as a program
// sends it) to the source's job-completed event on the bus: the
// destination's QEMU started, prepared, streamed, resumed and recorded,
// the source's QEMU gone and its definition undefined. The guest goes back
// and forth. Downtime is QEMU's own figure (the source's stopped event
// carries it). overhead is the ratio of the sums.
//
//	go test -run '^$' -bench MigrateAgents -benchtime 10x ./cmd/vmledger/
func BenchmarkMigrateAgents(b *testing.B) {
	requireQEMU(b)
	dir := shortRunDir(b)
	img := filepath.Join(dir, "tiny.img")
	if err := guest.WriteImage(img); err != nil {
		b.Fatal(err)
	}
	var qmpWall, qmpDown time.Duration
	wall, down := benchAgents(b, func() {
		w, d := livetest.Direct(b, dir, img)
		qmpWall, qmpDown = qmpWall+w, qmpDown+d
	})
	n := float64(b.N)
	b.ReportMetric(float64(wall.Microseconds())/1e3/n, "ms/migration")
	b.ReportMetric(float64(down.Microseconds())/1e3/n, "ms/downtime")
	b.ReportMetric(float64(qmpWall.Microseconds())/1e3/n, "qmp-ms/migration")
	b.ReportMetric(float64(qmpDown.Microseconds())/1e3/n, "qmp-ms/downtime")
	b.ReportMetric(float64(wall)/float64(qmpWall), "overhead")
}

// benchAgents migrates b.N times between the agents, running reference
// after each, and returns the migrations' wall time and downtime.
func benchAgents(b *testing.B, reference func()) (wall, down time.Duration) {
	p := startMigrationPair(b, "tcg")
	id := defineTiny(b, p.src, "bm", "{offset: utc}")
	p.src.mustCLI("start", "bm")
	livetest.Fill(b, ramPath(p.src, id))
	ends := make(chan domains.Event, 16)
	sub, err := p.nc.Subscribe("vmledger.evt.*."+id+".>", func(m *nats.Msg) {
		var e struct {
			Type    domains.Type    `json:"type"`
			Payload json.RawMessage `json:"payload"`
		}
		if json.Unmarshal(m.Data, &e) == nil && (e.Type == domains.TypeJobCompleted || e.Type == domains.TypeJobFailed || e.Type == domains.TypeStopped) {
			ev := domains.Event{Type: e.Type}
			if e.Type == domains.TypeStopped {
				var st domains.Stopped
				_ = json.Unmarshal(e.Payload, &st)
				ev.Payload = st
			}
			ends <- ev
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe() //nolint:errcheck
	from, to := p.src, p.dst
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		var res domains.Result
		err := bus.NewClient(p.nc, from.host).Call(ctx, api.VerbMigrate, api.MigrateRequest{Domain: id, To: to.host}, &res)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		var st domains.Stopped
	wait:
		for {
			select {
			case e := <-ends:
				switch e.Type {
				case domains.TypeStopped:
					st, _ = e.Payload.(domains.Stopped)
				case domains.TypeJobFailed:
					b.Fatalf("migration %d failed", i)
				case domains.TypeJobCompleted:
					if st.Reason == domains.StopMigrated {
						break wait // the source's (the destination's came before its stopped)
					}
				}
			case <-time.After(60 * time.Second):
				b.Fatalf("migration %d did not end", i)
			}
		}
		wall += time.Since(t0)
		var total, ms int64
		if _, err := fmt.Sscanf(st.Detail, "migrated to "+to.host+": QEMU total %d ms, downtime %d ms", &total, &ms); err != nil {
			b.Fatalf("stopped detail %q: %v", st.Detail, err)
		}
		down += time.Duration(ms) * time.Millisecond
		from, to = to, from
		reference()
	}
	b.StopTimer()
	from.mustCLI("destroy", "bm")
	return wall, down
}
