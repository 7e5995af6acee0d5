package domains_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// A config updated while the guest runs is pending: the running config
// keeps what QEMU has, PendingChanges says what the next start changes,
// and a stop and start apply it.
func TestPendingChanges(t *testing.T) {
	id := uuid.New()
	cfg := domains.Config{Name: "web", UUID: id, MemoryMiB: 64, VCPUs: 1, Clock: domains.Clock{Offset: domains.OffsetUTC}}
	p := domains.NewProjection()
	seq := uint64(0)
	apply := func(pl domains.Payload) domains.Domain {
		t.Helper()
		seq++
		d, _ := p.Get(id)
		e := domains.NewEvent(id, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "", "h", pl)
		e.Seq, e.Version = seq, d.Version+1
		if err := p.Apply(e); err != nil {
			t.Fatal(err)
		}
		d, _ = p.Get(id)
		return d
	}
	if d := apply(domains.Defined{Config: cfg.Normalize()}); d.PendingChanges() != nil {
		t.Fatalf("shut off: pending %v", d.PendingChanges())
	}
	if d := apply(domains.Started{Reason: domains.StartBooted}); d.PendingChanges() != nil {
		t.Fatalf("just started: pending %v", d.PendingChanges())
	}
	next := cfg
	next.MemoryMiB, next.VCPUs = 128, 2
	d := apply(domains.ConfigUpdated{Config: next.Normalize()})
	want := []domains.Change{{Field: "memory_mib", Running: "64", Next: "128"}, {Field: "vcpus", Running: "1", Next: "2"}}
	if got := d.PendingChanges(); !reflect.DeepEqual(got, want) {
		t.Fatalf("pending %+v, want %+v", got, want)
	}
	if d.LiveConfig().MemoryMiB != 64 || d.Config.MemoryMiB != 128 {
		t.Fatalf("live %d MiB, next %d MiB", d.LiveConfig().MemoryMiB, d.Config.MemoryMiB)
	}
	apply(domains.Stopped{Reason: domains.StopDestroyed})
	if d := apply(domains.Started{Reason: domains.StartBooted}); d.PendingChanges() != nil || d.LiveConfig().MemoryMiB != 128 {
		t.Fatalf("after restart: pending %v, live %d MiB", d.PendingChanges(), d.LiveConfig().MemoryMiB)
	}
}
