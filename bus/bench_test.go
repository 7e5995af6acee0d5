package bus_test

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/bus/bustest"
)

// minSamples: latency percentiles need samples, whatever -benchtime says
// (the Makefile runs benchmarks with -benchtime 1x).
const minSamples = 1000

// BenchmarkCommitToSubscriber measures how long a committed event takes to
// reach a plain NATS subscriber through the relay and the embedded server,
// with the real store syncing to disk, and beside it the floor: a bare
// publish → subscribe round on the same kind of server.
//
// raw-nats publishes back to back; raw-nats-idle waits 2ms between
// publishes, as the relay path does while the store fsyncs: it shows what
// waking parked threads costs on this machine, apart from the relay.
func BenchmarkCommitToSubscriber(b *testing.B) {
	b.Run("relay", benchRelay)
	b.Run("raw-nats", func(b *testing.B) { benchRaw(b, 0) })
	b.Run("raw-nats-idle", func(b *testing.B) { benchRaw(b, 2*time.Millisecond) })
}

func benchRelay(b *testing.B) {
	st := testLog(openBolt(b, false)) // fsync on, as in the agent
	if os.Getenv("BENCH_NOSYNC") != "" {
		st = openBolt(b, true) // to see what fsync's idle gaps cost
	}
	e, pub := agentConn(b)
	runRelay(b, pub, st, bus.RelayOptions{})
	sub := bustest.Connect(b, e.ClientURL())
	got := make(chan received, 16)
	if _, err := sub.Subscribe("vmledger.evt."+host+".>", func(m *nats.Msg) {
		at := time.Now()
		seq, _ := strconv.ParseUint(m.Header.Get(bus.HeaderSeq), 10, 64)
		got <- received{seq, at}
	}); err != nil {
		b.Fatal(err)
	}
	_ = sub.Flush()
	dom := domainsN(1)[0]
	ctx := context.Background()
	n := max(b.N, minSamples)
	fromAppend := make([]time.Duration, 0, n) // just before Append → receipt
	fromCommit := make([]time.Duration, 0, n) // Append returned → receipt
	appendTook := make([]time.Duration, 0, n) // the fsynced commit itself
	b.ResetTimer()
	for i := range n {
		t0 := time.Now()
		seq, err := st.appendEvent(ctx, bustest.Event(dom, host, int64(i)))
		t1 := time.Now()
		if err != nil {
			b.Fatal(err)
		}
		r := <-got
		if r.seq != seq {
			b.Fatalf("received seq %d, appended %d", r.seq, seq)
		}
		fromAppend = append(fromAppend, r.at.Sub(t0))
		fromCommit = append(fromCommit, r.at.Sub(t1))
		appendTook = append(appendTook, t1.Sub(t0))
	}
	b.StopTimer()
	report(b, "append→sub", fromAppend)
	p99 := report(b, "commit→sub", fromCommit)
	report(b, "append", appendTook)
	b.ReportMetric(float64(mean(fromAppend).Nanoseconds()), "ns/op")
	if p99 >= 2*time.Millisecond {
		b.Errorf("commit→subscriber p99 %s, want under 2ms", p99)
	}
}

func benchRaw(b *testing.B, gap time.Duration) {
	e, pub := agentConn(b)
	sub := bustest.Connect(b, e.ClientURL())
	got := make(chan time.Time, 16)
	if _, err := sub.Subscribe("raw.>", func(*nats.Msg) { got <- time.Now() }); err != nil {
		b.Fatal(err)
	}
	_ = sub.Flush()
	// A body the size of a real event, so the comparison is fair.
	body, _ := json.Marshal(bustest.Event(domainsN(1)[0], host, 1))
	n := max(b.N, minSamples)
	lat := make([]time.Duration, 0, n)
	b.ResetTimer()
	for range n {
		if gap > 0 {
			time.Sleep(gap)
		}
		t0 := time.Now()
		if err := pub.Publish("raw.evt", body); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, (<-got).Sub(t0))
	}
	b.StopTimer()
	report(b, "pub→sub", lat)
	b.ReportMetric(float64(mean(lat).Nanoseconds()), "ns/op")
}

// agentConn connects as the agent does to its embedded server: in-process.
// Subscribers use TCP, like any other program.
func agentConn(b *testing.B) (*bus.Embedded, *nats.Conn) {
	e, _ := embedded(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := e.Connect(ctx, bus.ConnectOptions{Name: "bench-agent"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	return e, nc
}

type received struct {
	seq uint64
	at  time.Time
}

// report adds p50 and p99 of d (in µs) to the benchmark's output and
// returns p99.
func report(b *testing.B, name string, d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	p := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	b.Logf("%s: p50 %s p90 %s p99 %s max %s", name, p(.5), p(.9), p(.99), s[len(s)-1])
	b.ReportMetric(float64(p(0.50).Nanoseconds())/1e3, name+"-p50-µs")
	b.ReportMetric(float64(p(0.99).Nanoseconds())/1e3, name+"-p99-µs")
	return p(0.99)
}

func mean(d []time.Duration) time.Duration {
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return sum / time.Duration(max(len(d), 1))
}
