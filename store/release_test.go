package store_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/store"
)

// The release file: a log written by release 0.1, kept forever. Every later
// release must replay it to the projections recorded beside it; that is
// the promise of schema evolution (docs/replay.md). Regenerate it only in
// the release that made it: `go test ./store -run TestReleaseLog -update`.
var update = flag.Bool("update", false, "regenerate testdata/release-0.1.* (only in the release that made them)")

const (
	releaseDB   = "testdata/release-0.1.db"
	releaseProj = "testdata/release-0.1.projection.json"
)

var (
	relWeb   = uuid.MustParse("a1e0c6d2-7b7e-4f6a-9d61-0c1b2a3f4e01")
	relDB    = uuid.MustParse("b2f1d7e3-8c8f-4a7b-8e72-1d2c3b4a5f02")
	relCache = uuid.MustParse("c3a2e8f4-9d90-4b8c-9f83-2e3d4c5b6a03")
	relT0    = time.Date(2026, 1, 15, 9, 30, 0, 0, time.UTC)
)

// relStep is one append of the scripted history.
type relStep struct {
	domain uuid.UUID
	cmd    string // command ID; "" for guest-initiated facts
	host   string
	events []domains.Payload
	v1     bool // rewrite the (single shutdown) event as schema-1 bytes
}

func relConfigs() (web, db, cache domains.Config) {
	web = domains.Config{Name: "web1", UUID: relWeb, MemoryMiB: 64, VCPUs: 1, Machine: "pc",
		Clock: domains.Clock{Offset: domains.OffsetVariable, Adjustment: 3600, Basis: domains.BasisUTC},
		Disks: []domains.Disk{{Target: "vda", Path: "/var/lib/images/web1.qcow2", Format: "qcow2", Bus: "virtio"}},
		NICs:  []domains.NIC{{ID: "net0", Model: "virtio-net-pci", MAC: "52:54:00:00:00:01", Mode: "user"}},
	}
	db = domains.Config{Name: "db1", UUID: relDB, MemoryMiB: 128, VCPUs: 2, Machine: "q35",
		Clock: domains.Clock{Offset: domains.OffsetLocaltime}}
	cache = domains.Config{Name: "cache1", UUID: relCache, MemoryMiB: 32, VCPUs: 1, Machine: "pc",
		Clock:   domains.Clock{Offset: domains.OffsetUTC},
		Devices: []domains.Device{{ID: "rng0", Driver: "virtio-rng-pci", Props: map[string]string{"max-bytes": "1024"}}},
	}
	return web, db, cache
}

// relScript is release 0.1's history over three domains: every event type
// of the catalogue, two shutdowns in the schema-1 shape, an undefine and a
// redefinition, two hosts, commands with and without IDs.
func relScript() []relStep {
	web, db, cache := relConfigs()
	web2 := web.Clone()
	web2.MemoryMiB = 128
	web2.Clock.Adjustment = 3660 // as the rtc-changed before it left it
	cache2 := cache.Clone()
	cache2.VCPUs = 2
	db2 := db.Clone()
	db2.MemoryMiB = 256
	rng := domains.Device{ID: "rng1", Driver: "virtio-rng-pci"}
	blk := domains.Device{ID: "disk9", Driver: "virtio-blk-pci", Props: map[string]string{"drive": "drv9"}}
	const save = "/var/lib/vmledger/save/cache1.img"
	return []relStep{
		{domain: relWeb, cmd: "c-01", events: []domains.Payload{domains.Defined{Config: web}}},
		{domain: relDB, cmd: "c-02", events: []domains.Payload{domains.Defined{Config: db}}},
		{domain: relCache, cmd: "c-03", events: []domains.Payload{domains.Defined{Config: cache}}},
		{domain: relWeb, cmd: "c-04", events: []domains.Payload{domains.Started{Reason: domains.StartBooted, Accel: "kvm", PID: 1001, ClockBase: 3600}}},
		{domain: relWeb, events: []domains.Payload{domains.RTCChanged{Offset: 60, Adjustment: 3660}}},
		{domain: relDB, cmd: "c-06", events: []domains.Payload{domains.Started{Reason: domains.StartBooted, Accel: "tcg", PID: 1002, ClockBase: -18000}}},
		{domain: relWeb, cmd: "c-07", events: []domains.Payload{domains.Paused{Reason: domains.PauseUser}}},
		{domain: relWeb, cmd: "c-08", events: []domains.Payload{domains.Resumed{Reason: "user"}}},
		{domain: relWeb, cmd: "c-09", events: []domains.Payload{domains.ConfigUpdated{Config: web2}}},
		{domain: relWeb, cmd: "c-10", events: []domains.Payload{domains.DeviceAttached{Device: rng, Live: true}}},
		{domain: relCache, cmd: "c-11", events: []domains.Payload{domains.ConfigUpdated{Config: cache2}}},
		{domain: relWeb, cmd: "c-12", events: []domains.Payload{domains.DeviceDetachRequested{ID: "rng1"}}},
		{domain: relWeb, events: []domains.Payload{domains.DeviceDetached{ID: "rng1"}}},
		{domain: relDB, events: []domains.Payload{domains.Reset{Guest: true, Reason: "guest-reset"}}},
		{domain: relDB, events: []domains.Payload{domains.Crashed{Reason: "guest-panicked", Action: "pause", Info: "hyper-v: arg1=0x1"}}},
		{domain: relDB, cmd: "c-16", events: []domains.Payload{domains.Stopped{Reason: domains.StopCrashed, Detail: "destroyed after panic"}}},
		{domain: relCache, cmd: "c-17", events: []domains.Payload{domains.Started{Reason: domains.StartBooted, Accel: "kvm", PID: 1003}}},
		{domain: relCache, cmd: "c-18", events: []domains.Payload{
			domains.TransferStarted{Kind: domains.TypeSaveStarted, Path: save, Format: "zstd"},
			domains.TransferFailed{Kind: domains.TypeSaveFailed, Path: save, Error: "no space left on device"},
		}},
		{domain: relCache, cmd: "c-19", events: []domains.Payload{
			domains.TransferStarted{Kind: domains.TypeSaveStarted, Path: save, Format: "zstd"},
			domains.Paused{Reason: domains.PauseSave},
			domains.TransferCompleted{Kind: domains.TypeSaveCompleted, Path: save, Bytes: 33554432, Digest: "sha256:5d41402abc4b2a76"},
			domains.Stopped{Reason: domains.StopSaved},
		}},
		{domain: relCache, cmd: "c-20", events: []domains.Payload{
			domains.TransferStarted{Kind: domains.TypeRestoreStarted, Path: save, Format: "zstd"},
			domains.TransferFailed{Kind: domains.TypeRestoreFailed, Path: save, Error: "checksum mismatch"},
		}},
		{domain: relCache, cmd: "c-21", events: []domains.Payload{
			domains.TransferStarted{Kind: domains.TypeRestoreStarted, Path: save, Format: "zstd"},
			domains.Started{Reason: domains.StartRestored, Accel: "kvm", PID: 1004},
			domains.TransferCompleted{Kind: domains.TypeRestoreCompleted, Path: save, Bytes: 33554432, Digest: "sha256:5d41402abc4b2a76"},
		}},
		{domain: relCache, cmd: "c-22", events: []domains.Payload{domains.TransferStarted{Kind: domains.TypeDumpStarted, Path: "/var/crash/cache1.kdump", Format: "kdump-zstd"}}},
		{domain: relCache, events: []domains.Payload{domains.DumpCompleted{Path: "/var/crash/cache1.kdump", Format: "kdump-zlib", Bytes: 1048576, DurationMS: 120}}},
		{domain: relCache, cmd: "c-24", events: []domains.Payload{domains.TransferFailed{Kind: domains.TypeDumpFailed, Path: "/var/crash/cache1.elf", Error: "disk full"}}},
		{domain: relWeb, cmd: "c-25", events: []domains.Payload{domains.DeviceAttached{Device: blk, Live: true}}},
		{domain: relWeb, cmd: "c-26", events: []domains.Payload{domains.DeviceDetachRequested{ID: "disk9"}}},
		{domain: relWeb, events: []domains.Payload{domains.DeviceDetachFailed{ID: "disk9", Error: "guest did not release the device in 5s"}}},
		{domain: relCache, cmd: "c-28", events: []domains.Payload{
			domains.MigrationState{Role: "source", From: "active", To: "precopy", Peer: "node2"},
			domains.MigrationIteration{Pass: 1, Remaining: 4096, Sent: 33554432},
			domains.MigrationIteration{Pass: 2, Remaining: 0, Sent: 65536},
			domains.Paused{Reason: domains.PauseMigration},
			domains.MigrationState{Role: "source", From: "precopy", To: "completed", Peer: "node2", Reason: "converged"},
			domains.Stopped{Reason: domains.StopMigrated, Detail: "to node2"},
		}},
		{domain: relWeb, events: []domains.Payload{domains.Shutdown{Reason: domains.ShutdownGuest, QEMUReason: "guest-shutdown"}}, v1: true},
		{domain: relWeb, events: []domains.Payload{domains.Stopped{Reason: domains.StopShutdown}}},
		{domain: relDB, cmd: "c-31", events: []domains.Payload{domains.Started{Reason: domains.StartBooted, Accel: "tcg", PID: 1005, ClockBase: -18000}}},
		{domain: relDB, cmd: "c-32", events: []domains.Payload{domains.Shutdown{Reason: domains.ShutdownHost, QEMUReason: "host-qmp-system-powerdown"}}, v1: true},
		{domain: relDB, events: []domains.Payload{domains.Shutdown{Reason: domains.ShutdownGuest, QEMUReason: "guest-shutdown"}}},
		{domain: relDB, events: []domains.Payload{domains.Stopped{Reason: domains.StopShutdown}}},
		{domain: relDB, cmd: "c-35", events: []domains.Payload{domains.Undefined{}}},
		{domain: relWeb, cmd: "c-36", host: "node2", events: []domains.Payload{domains.Started{Reason: domains.StartMigrated, Accel: "kvm", PID: 2001, ClockBase: 3660}}},
		{domain: relWeb, host: "node2", events: []domains.Payload{domains.RTCChanged{Offset: -60, Adjustment: 3600}}},
		{domain: relDB, cmd: "c-38", events: []domains.Payload{domains.Defined{Config: db2}}},
	}
}

// afterRelease01 are the types added after release 0.1 wrote its file.
var afterRelease01 = map[domains.Type]bool{domains.TypeJobStarted: true, domains.TypeJobCompleted: true, domains.TypeJobFailed: true,
	domains.TypeManagedSaveRemoved: true, domains.TypeAutostartSet: true, domains.TypeMonitorCommand: true}

// writeReleaseLog builds the release file at path: appends through the
// store with fixed times, a snapshot in the middle, then the schema-1
// rewrites done the way an old release's tool would have: raw bytes.
func writeReleaseLog(t *testing.T, path string) *domains.Projection {
	t.Helper()
	ctx := context.Background()
	// A small first map: bbolt grows a file in 16 MiB steps once its map
	// is larger than that, and this file is committed to the repository.
	s, err := store.Open(path, store.Options{InitialMmapSize: 32 << 10})
	if err != nil {
		t.Fatal(err)
	}
	proj := domains.NewProjection()
	versions := map[uuid.UUID]uint64{}
	types := map[domains.Type]bool{}
	var v1 []domains.Event
	n := 0
	for i, st := range relScript() {
		host := st.host
		if host == "" {
			host = "node1"
		}
		evs := make([]domains.Event, len(st.events))
		for j, p := range st.events {
			// Sub-second parts, so time precision is part of the promise.
			at := relT0.Add(time.Duration(n)*1500*time.Millisecond + time.Duration(n)*time.Microsecond)
			evs[j] = domains.NewEvent(st.domain, at, st.cmd, host, p)
			types[p.EventType()] = true
			n++
		}
		req := store.AppendRequest{Domain: st.domain, ExpectedVersion: versions[st.domain], Events: evs, CommandID: st.cmd}
		if _, err := s.Append(ctx, req); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		for _, e := range req.Events {
			if err := proj.Apply(e); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
		}
		versions[st.domain] += uint64(len(evs))
		if st.v1 {
			v1 = append(v1, req.Events[0])
		}
		if i == 20 {
			data, err := proj.MarshalSnapshot()
			if err != nil {
				t.Fatal(err)
			}
			if err := s.SaveSnapshot(ctx, proj.LastSeq(), data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, typ := range domains.Types() {
		if !types[typ] && !afterRelease01[typ] {
			t.Fatalf("the release script lacks a %s event", typ)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, e := range v1 {
			if err := tx.Bucket([]byte("events")).Put(seqKey(e.Seq), shutdownV1Bytes(e)); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return proj
}

// shutdownV1Bytes is a shutdown event as release 0.1's codec wrote it at
// schema 1: the envelope of docs/events.md, then `bool guest, string
// qemu_reason`.
func shutdownV1Bytes(e domains.Event) []byte {
	sd := e.Payload.(domains.Shutdown)
	str := func(b []byte, s string) []byte { return append(binary.AppendUvarint(b, uint64(len(s))), s...) }
	b := append([]byte{1}, e.Domain[:]...)
	b = binary.AppendUvarint(b, e.Version)
	b = str(b, string(domains.TypeShutdown))
	b = binary.AppendUvarint(b, 1)
	b = binary.AppendVarint(b, e.Time.UnixNano())
	b = str(b, e.CommandID)
	b = str(b, e.Host)
	guest := byte(0)
	if sd.Reason == domains.ShutdownGuest {
		guest = 1
	}
	return str(append(b, guest), sd.QEMUReason)
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// copyFile gives each test its own copy: the release file is never opened
// in place, not even read-only.
func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestReleaseLog(t *testing.T) {
	if *update {
		tmp := filepath.Join(t.TempDir(), "release.db")
		proj := writeReleaseLog(t, tmp)
		data, err := proj.MarshalSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, data, "", "  "); err != nil {
			t.Fatal(err)
		}
		pretty.WriteByte('\n')
		copyFile(t, tmp, releaseDB)
		if err := os.WriteFile(releaseProj, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s and %s", releaseDB, releaseProj)
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	copyFile(t, releaseDB, path)
	want, err := os.ReadFile(releaseProj)
	if err != nil {
		t.Fatal(err)
	}
	wantProj, err := domains.UnmarshalSnapshot(want)
	if err != nil {
		t.Fatal(err)
	}

	// The file really holds schema-1 payloads: this test covers upcasting.
	if n := countRawSchema(t, path, domains.TypeShutdown, 1); n != 2 {
		t.Fatalf("%d schema-1 shutdown events in %s, want 2", n, releaseDB)
	}

	s, err := store.OpenReadOnly(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	got := domains.NewProjection()
	if err := s.Replay(ctx, 0, got.Apply); err != nil {
		t.Fatal(err)
	}
	if ok, diff := wantProj.Equal(got); !ok {
		t.Fatalf("%s no longer replays to %s: %s", releaseDB, releaseProj, diff)
	}
	// The agent's way in (the release's snapshot, then the tail) agrees.
	loaded, err := store.LoadProjection(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if ok, diff := wantProj.Equal(loaded); !ok {
		t.Fatalf("LoadProjection differs: %s", diff)
	}
	rep, err := store.Verify(ctx, s)
	if err != nil || !rep.OK() || len(rep.Snapshots) != 1 || !rep.Snapshots[0].OK {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	// The upcast events read as the current shape.
	evs, err := s.ReadDomain(ctx, relDB, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, e := range evs {
		if sd, ok := e.Payload.(domains.Shutdown); ok {
			reasons = append(reasons, sd.Reason+"/"+sd.QEMUReason)
		}
	}
	if len(reasons) != 2 || reasons[0] != "host/host-qmp-system-powerdown" || reasons[1] != "guest/guest-shutdown" {
		t.Fatalf("db1's shutdowns read as %v", reasons)
	}
}

// countRawSchema counts events of type t stored at payload schema version
// schema, reading the raw envelope (docs/events.md) with bbolt directly.
func countRawSchema(t *testing.T, path string, typ domains.Type, schema uint64) int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	err = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("events")).ForEach(func(_, v []byte) error {
			r := v[1+16:]
			_, k := binary.Uvarint(r) // version
			r = r[k:]
			l, k := binary.Uvarint(r)
			name := string(r[k : k+int(l)])
			r = r[k+int(l):]
			sv, _ := binary.Uvarint(r)
			if name == string(typ) && sv == schema {
				n++
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
