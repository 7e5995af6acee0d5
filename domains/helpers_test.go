package domains_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

var (
	uuidA = uuid.MustParse("6f1c3c1e-4b9a-4f57-9f0e-1d2c3b4a5f60")
	uuidB = uuid.MustParse("0b7e7f6a-2222-4c3d-8e9f-a0b1c2d3e4f5")
	uuidC = uuid.MustParse("9a8b7c6d-3333-4e5f-8a7b-c6d5e4f3a2b1")

	t0 = time.Date(2024, 1, 15, 17, 0, 0, 123456789, time.UTC)
)

// minimalConfig is the smallest config Validate accepts.
func minimalConfig() domains.Config {
	return domains.Config{
		Name: "min", UUID: uuidA, MemoryMiB: 64, VCPUs: 1,
		Clock: domains.Clock{Offset: domains.OffsetUTC},
	}
}

// fullConfig uses every field, in normalized form.
func fullConfig() domains.Config {
	return domains.Config{
		Name:      "web-1",
		UUID:      uuidA,
		MemoryMiB: 2048,
		VCPUs:     4,
		Machine:   "pc-q35-8.2",
		Clock:     domains.Clock{Offset: domains.OffsetVariable, Adjustment: -3600, Basis: domains.BasisLocaltime},
		Disks: []domains.Disk{
			{Target: "vda", Path: "/var/lib/vmledger/web-1.qcow2", Format: "qcow2", Bus: "virtio", Boot: true},
			{Target: "vdc", Path: "/srv/iso/install.iso", Format: "raw", Bus: "virtio", ReadOnly: true},
		},
		NICs:    []domains.NIC{{ID: "net0", Model: "virtio-net-pci", MAC: "52:54:00:12:34:56", Mode: "user"}},
		Serial:  &domains.Serial{Log: true},
		Devices: []domains.Device{{ID: "rng0", Driver: "virtio-rng-pci", Props: map[string]string{"max-bytes": "1024", "period": "1000"}}},
	}
}

// samplePayload returns a representative payload for every event type,
// with every field set to something other than its zero value.
func samplePayload(t domains.Type) domains.Payload {
	switch t {
	case domains.TypeDefined:
		return domains.Defined{Config: fullConfig()}
	case domains.TypeUndefined:
		return domains.Undefined{}
	case domains.TypeConfigUpdated:
		c := fullConfig()
		c.MemoryMiB = 4096
		return domains.ConfigUpdated{Config: c}
	case domains.TypeStarted:
		return domains.Started{Reason: domains.StartBooted, Accel: "kvm", PID: 4242, ClockBase: -18000}
	case domains.TypePaused:
		return domains.Paused{Reason: domains.PauseIOError}
	case domains.TypeResumed:
		return domains.Resumed{Reason: "user"}
	case domains.TypeShutdown:
		return domains.Shutdown{Reason: domains.ShutdownGuest, QEMUReason: "guest-shutdown"}
	case domains.TypeStopped:
		return domains.Stopped{Reason: domains.StopCrashed, Detail: "QEMU exited with status 1"}
	case domains.TypeReset:
		return domains.Reset{Guest: true, Reason: "guest-reset"}
	case domains.TypeCrashed:
		return domains.Crashed{Reason: "guest-panicked", Action: "pause", Info: "hyper-v: arg1=0x1"}
	case domains.TypeRTCChanged:
		return domains.RTCChanged{Offset: -7201, Adjustment: 189302400}
	case domains.TypeDeviceAttached:
		return domains.DeviceAttached{Live: true, Persist: true, Spec: &domains.DeviceSpec{Kind: domains.KindDisk, ID: "disk9", Target: "vdz", Path: "/var/lib/vm/d9.img", Format: "raw"}}
	case domains.TypeDeviceDetachRequested:
		return domains.DeviceDetachRequested{ID: "disk9", Persist: true}
	case domains.TypeDeviceDetached:
		return domains.DeviceDetached{ID: "disk9", Live: true, Persist: true}
	case domains.TypeDeviceDetachFailed:
		return domains.DeviceDetachFailed{ID: "disk9", Error: "guest did not release the device in 5s"}
	case domains.TypeSaveStarted, domains.TypeRestoreStarted, domains.TypeDumpStarted:
		return domains.TransferStarted{Kind: t, Path: "/var/lib/vmledger/save/" + string(t), Format: "zstd"}
	case domains.TypeDumpCompleted:
		return domains.DumpCompleted{Path: "/var/lib/vmledger/dumps/web.kdump", Format: "kdump-zstd", Bytes: 1<<33 + 7, DurationMS: 4210}
	case domains.TypeSaveCompleted, domains.TypeRestoreCompleted:
		return domains.TransferCompleted{Kind: t, Path: "/var/lib/vmledger/save/" + string(t), Bytes: 1<<33 + 7, Digest: "sha256:0123abcd"}
	case domains.TypeSaveFailed, domains.TypeRestoreFailed, domains.TypeDumpFailed:
		return domains.TransferFailed{Kind: t, Path: "/var/lib/vmledger/save/" + string(t), Error: "no space left on device"}
	case domains.TypeManagedSaveRemoved:
		return domains.ManagedSaveRemoved{Path: "/var/lib/vmledger/managed/web.save", Reason: domains.ManagedSaveRemovedByUser}
	case domains.TypeMigrationState:
		return domains.MigrationState{Role: "source", From: "performing", To: "cancelled", Peer: "host-b", Reason: "stream cut", Epoch: 7}
	case domains.TypeMigrationIteration:
		return domains.MigrationIteration{Pass: 3, Remaining: 1 << 20, Sent: 1 << 40}
	case domains.TypeJobStarted:
		return domains.JobStarted{ID: "8c0a3c5e-job", Kind: domains.JobSave}
	case domains.TypeJobCompleted:
		return domains.JobCompleted{ID: "8c0a3c5e-job", Kind: domains.JobSave}
	case domains.TypeJobFailed:
		return domains.JobFailed{ID: "8c0a3c5e-job", Kind: domains.JobMigrate, Reason: domains.JobAborted, Error: "migration cancelled"}
	case domains.TypeAutostartSet:
		return domains.AutostartSet{Enabled: true}
	case domains.TypeMonitorCommand:
		return domains.MonitorCommand{Execute: "query-status", ArgsBytes: 2, ArgsDigest: "sha256:44136fa3", Error: "GenericError: nope"}
	}
	return nil
}

// sampleEvent is a sequenced event of type t, as read back from a log.
func sampleEvent(t domains.Type, seq uint64) domains.Event {
	at := time.Date(2024, 7, 4, 9, 30, 15, 987654321, time.FixedZone("CEST", 2*3600))
	e := domains.NewEvent(uuidA, at, "cmd-"+strings.ReplaceAll(string(t), "-", ""), "host-a", samplePayload(t))
	e.Seq, e.Version = seq, seq+6
	return e
}

func mustBinary(t testing.TB, e domains.Event) []byte {
	t.Helper()
	b, err := e.MarshalBinary(nil)
	if err != nil {
		t.Fatalf("MarshalBinary(%s): %v", e.Type, err)
	}
	return b
}
