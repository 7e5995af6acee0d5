package domains_test

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// shutdownV1 builds, byte by byte, a shutdown event as release 0.1's codec
// wrote it at schema 1: `bool guest, string qemu_reason`. It is written out
// by hand on purpose: the old Go struct no longer exists, its bytes do.
func shutdownV1(id uuid.UUID, version uint64, at time.Time, guest byte, qemuReason string, extra ...byte) []byte {
	str := func(b []byte, s string) []byte { return append(binary.AppendUvarint(b, uint64(len(s))), s...) }
	b := []byte{1} // codec version
	b = append(b, id[:]...)
	b = binary.AppendUvarint(b, version)
	b = str(b, "shutdown")
	b = binary.AppendUvarint(b, 1) // schema 1
	b = binary.AppendVarint(b, at.UnixNano())
	b = str(b, "cmd-1")
	b = str(b, "node1")
	b = append(b, guest) // 0 or 1
	b = str(b, qemuReason)
	return append(b, extra...)
}

func TestUpcastShutdownV1(t *testing.T) {
	id := uuid.MustParse("0b7e4f0e-6a52-4c1b-9a3e-2f1d0c9b8a71")
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	tests := []struct {
		name       string
		guest      byte
		qemuReason string
		want       domains.Shutdown
	}{
		{"guest", 1, "guest-shutdown", domains.Shutdown{Reason: domains.ShutdownGuest, QEMUReason: "guest-shutdown"}},
		{"host", 0, "host-qmp-system-powerdown", domains.Shutdown{Reason: domains.ShutdownHost, QEMUReason: "host-qmp-system-powerdown"}},
		{"host, no qemu reason", 0, "", domains.Shutdown{Reason: domains.ShutdownHost}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := domains.UnmarshalEvent(9, shutdownV1(id, 3, at, tc.guest, tc.qemuReason))
			if err != nil {
				t.Fatal(err)
			}
			if e.Payload != tc.want {
				t.Fatalf("payload %#v, want %#v", e.Payload, tc.want)
			}
			// Read at schema 1, handed out at the current schema: JSON and a
			// re-encoding carry schema 2 only.
			if e.Schema != 2 || domains.CurrentSchema(domains.TypeShutdown) != 2 {
				t.Fatalf("schema %d after upcast, current %d", e.Schema, domains.CurrentSchema(domains.TypeShutdown))
			}
			if e.Seq != 9 || e.Domain != id || e.Version != 3 || !e.Time.Equal(at) || e.CommandID != "cmd-1" || e.Host != "node1" {
				t.Fatalf("envelope %+v", e)
			}
			js, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			var back domains.Event
			if err := json.Unmarshal(js, &back); err != nil || back.Payload != tc.want {
				t.Fatalf("JSON round trip %s: %v %#v", js, err, back.Payload)
			}
			b, err := e.MarshalBinary(nil)
			if err != nil {
				t.Fatal(err)
			}
			if again, err := domains.UnmarshalEvent(9, b); err != nil || again.Payload != tc.want {
				t.Fatalf("v2 round trip: %v %#v", err, again.Payload)
			}
		})
	}
}

func TestUpcastShutdownV1Refuses(t *testing.T) {
	id := uuid.New()
	good := shutdownV1(id, 1, time.Unix(0, 0), 1, "guest-shutdown")
	tests := map[string][]byte{
		"trailing byte": shutdownV1(id, 1, time.Unix(0, 0), 1, "guest-shutdown", 0),
		"bool is 2":     shutdownV1(id, 1, time.Unix(0, 0), 2, "guest-shutdown"),
		"truncated":     good[:len(good)-3],
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := domains.UnmarshalEvent(1, b); !errors.Is(err, domains.ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
		})
	}
	// A schema no release wrote is refused, not guessed at.
	b := shutdownV1(id, 1, time.Unix(0, 0), 1, "x")
	b[1+16+1+1+len("shutdown")] = 3
	if _, err := domains.UnmarshalEvent(1, b); !errors.Is(err, domains.ErrCorrupt) {
		t.Fatalf("schema 3: %v", err)
	}
}
