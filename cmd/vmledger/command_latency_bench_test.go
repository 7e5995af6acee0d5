package main

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
	"github.com/vmledger/vmledger/hypervisor/guest"
)

// BenchmarkCommandLatency: define, info and start of the tiny guest as a
// program sends them, one nats.go request to vmledger.cmd.<host>.<verb>
// each, until the agent's reply (start replies once the guest runs). Each
// sample defines a fresh domain; destroy and undefine between samples are
// not measured.
//
// With VMLEDGER_REF_BINARY naming another build of vmledger (the reference,
// e.g. main before a change), a second agent runs that build and the
// samples alternate between the two, so both see the same machine load.
func BenchmarkCommandLatency(b *testing.B) {
	type side struct {
		name string
		a    *agentProc
		c    *bus.Client
		lat  map[string][]time.Duration
	}
	bins := [][2]string{{"this", binary}}
	if ref := os.Getenv("VMLEDGER_REF_BINARY"); ref != "" {
		bins = append(bins, [2]string{"ref", ref})
	}
	requireQEMU(b)
	img := filepath.Join(diskDir(b), "tiny.img")
	if err := guest.WriteImage(img); err != nil {
		b.Fatal(err)
	}
	var sides []*side
	for _, bin := range bins {
		run := shortRunDir(b)
		a := startAgentBin(b, bin[1], b.TempDir(), nil, "--accel", "tcg", "--run-dir", run)
		a.runDir = run
		sides = append(sides, &side{name: bin[0], a: a, c: bus.NewClient(natsConn(b, a), a.host), lat: map[string][]time.Duration{}})
	}
	call := func(s *side, verb string, req any) time.Duration {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		t := time.Now()
		if err := s.c.Call(ctx, verb, req, nil); err != nil {
			b.Fatalf("%s: %s: %v", s.name, verb, err)
		}
		return time.Since(t)
	}
	b.ResetTimer()
	for i := 0; i < min(max(b.N, 20), 500); i++ {
		for _, s := range sides {
			cfg := domains.Config{Name: "lat", MemoryMiB: 16, VCPUs: 1, Clock: domains.Clock{Offset: domains.OffsetUTC},
				Disks: []domains.Disk{{Target: "hda", Path: img, Format: "raw", Bus: "ide"}}}
			ref := api.DomainRequest{Domain: "lat"}
			s.lat[api.VerbDefine] = append(s.lat[api.VerbDefine], call(s, api.VerbDefine, api.DefineRequest{Config: cfg}))
			s.lat[api.VerbInfo] = append(s.lat[api.VerbInfo], call(s, api.VerbInfo, ref))
			s.lat[api.VerbStart] = append(s.lat[api.VerbStart], call(s, api.VerbStart, ref))
			call(s, api.VerbDestroy, ref)
			call(s, api.VerbUndefine, ref)
		}
	}
	b.StopTimer()
	for _, s := range sides {
		for _, verb := range []string{api.VerbDefine, api.VerbInfo, api.VerbStart} {
			lat := s.lat[verb]
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) }
			b.ReportMetric(p(0.50), s.name+"-"+verb+"-p50-µs")
			b.ReportMetric(p(0.99), s.name+"-"+verb+"-p99-µs")
			b.Logf("%s %s: n=%d p50=%.0fµs p99=%.0fµs", s.name, verb, len(lat), p(0.5), p(0.99))
		}
	}
	b.ReportMetric(0, "ns/op")
}
