package domains_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

func TestTypesCatalogue(t *testing.T) {
	seen := map[domains.Type]bool{}
	for _, typ := range domains.Types() {
		if seen[typ] {
			t.Errorf("Types() lists %q twice", typ)
		}
		seen[typ] = true
		if !typ.Valid() {
			t.Errorf("%q.Valid() = false", typ)
		}
		p := samplePayload(typ)
		if p == nil {
			t.Fatalf("no sample payload for %q: add one to samplePayload", typ)
		}
		if p.EventType() != typ {
			t.Errorf("sample payload for %q says %q", typ, p.EventType())
		}
		if string(typ) != strings.ToLower(string(typ)) || strings.ContainsAny(string(typ), " ._*>") {
			t.Errorf("type %q: not a lower-case, subject-safe constant", typ)
		}
	}
	if len(seen) < 26 {
		t.Errorf("Types() has %d types, the catalogue has at least 26", len(seen))
	}
	for _, bad := range []domains.Type{"", "Defined", "started ", "domains.Started", "rtc_changed"} {
		if bad.Valid() {
			t.Errorf("%q.Valid() = true", bad)
		}
	}
}

func TestNewEvent(t *testing.T) {
	at := time.Date(2024, 3, 1, 8, 0, 0, 5, time.FixedZone("X", -5*3600))
	e := domains.NewEvent(uuidB, at, "c1", "h1", domains.Paused{Reason: "user"})
	if e.Type != domains.TypePaused || e.Domain != uuidB || e.CommandID != "c1" || e.Host != "h1" || e.Schema != 1 {
		t.Fatalf("NewEvent = %+v", e)
	}
	if e.Seq != 0 || e.Version != 0 {
		t.Errorf("NewEvent assigned seq %d version %d; the log does that", e.Seq, e.Version)
	}
	if e.Time.Location() != time.UTC || !e.Time.Equal(at) {
		t.Errorf("time %v: want %v in UTC", e.Time, at)
	}
}

func TestBinaryRoundTripEveryType(t *testing.T) {
	for i, typ := range domains.Types() {
		t.Run(string(typ), func(t *testing.T) {
			want := sampleEvent(typ, uint64(i)+1000)
			prefix := []byte("KEY:")
			b, err := want.MarshalBinary(append([]byte(nil), prefix...))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b, prefix) {
				t.Fatalf("MarshalBinary did not append to dst")
			}
			got, err := domains.UnmarshalEvent(want.Seq, b[len(prefix):])
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip:\n got %#v\nwant %#v", got, want)
			}
			// Re-encoding what was decoded gives the same bytes.
			if b2 := mustBinary(t, got); !bytes.Equal(b2, b[len(prefix):]) {
				t.Fatalf("re-encoding differs:\n%x\n%x", b2, b[len(prefix):])
			}
			// The sequence is not part of the bytes: it comes from the key.
			if got2, err := domains.UnmarshalEvent(7, b[len(prefix):]); err != nil || got2.Seq != 7 {
				t.Fatalf("seq from caller: %v %v", got2.Seq, err)
			}
		})
	}
}

func TestBinaryZeroValues(t *testing.T) {
	// Extreme and empty values survive too.
	mk := func(id uuid.UUID, version uint64, at time.Time, cmd, host string, p domains.Payload) domains.Event {
		e := domains.NewEvent(id, at, cmd, host, p)
		e.Seq, e.Version = 1, version
		return e
	}
	cases := []domains.Event{
		mk(uuid.Nil, 0, time.Unix(0, 0), "", "", domains.Undefined{}),
		mk(uuidA, ^uint64(0), time.Unix(0, -1), "", "", domains.RTCChanged{Offset: -1 << 62, Adjustment: 1<<63 - 1}),
		mk(uuidA, 1, time.Unix(1<<33, 999999999), "", "", domains.Started{PID: -1, ClockBase: -1 << 63}),
		mk(uuidA, 1, t0, "", "", domains.MigrationIteration{Pass: ^uint64(0), Remaining: 0, Sent: ^uint64(0)}),
		mk(uuidA, 2, t0, strings.Repeat("x", 300), "é\x00", domains.Reset{}),
		mk(uuidA, 2, t0, "", "", domains.Defined{}),
		mk(uuidA, 2, t0, "", "", domains.Shutdown{}),
	}
	for _, want := range cases {
		got, err := domains.UnmarshalEvent(1, mustBinary(t, want))
		if err != nil {
			t.Fatalf("%s: %v", want.Type, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round trip:\n got %#v\nwant %#v", got, want)
		}
	}
}

func TestMarshalBinaryRefusesMismatch(t *testing.T) {
	cases := map[string]domains.Event{
		"nil payload":      {Type: domains.TypeUndefined, Schema: 1},
		"type mismatch":    {Type: domains.TypeStarted, Schema: 1, Payload: domains.Paused{Reason: "user"}},
		"job kind differs": {Type: domains.TypeSaveStarted, Schema: 1, Payload: domains.TransferStarted{Kind: domains.TypeDumpStarted}},
		"job kind unset":   {Type: domains.TypeSaveStarted, Schema: 1, Payload: domains.TransferStarted{}},
	}
	for name, e := range cases {
		if b, err := e.MarshalBinary(nil); err == nil {
			t.Errorf("%s: MarshalBinary = %x, want an error", name, b)
		}
	}
}

// frame builds an event by hand, following the layout documented in
// codec.go, so that tests can write what MarshalBinary never would.
func frame(codec byte, id uuid.UUID, version uint64, typ string, schema uint64, nanos int64, cmd, host string, payload []byte) []byte {
	str := func(b []byte, s string) []byte { return append(binary.AppendUvarint(b, uint64(len(s))), s...) }
	b := []byte{codec}
	b = append(b, id[:]...)
	b = binary.AppendUvarint(b, version)
	b = str(b, typ)
	b = binary.AppendUvarint(b, schema)
	b = binary.AppendVarint(b, nanos)
	b = str(b, cmd)
	b = str(b, host)
	return append(b, payload...)
}

func TestBinaryLayoutIsAsDocumented(t *testing.T) {
	e := domains.NewEvent(uuidA, t0, "c", "h", domains.Paused{Reason: "user"})
	e.Version = 300
	payload := append(binary.AppendUvarint(nil, 4), "user"...)
	want := frame(1, uuidA, 300, "paused", 1, t0.UnixNano(), "c", "h", payload)
	if got := mustBinary(t, e); !bytes.Equal(got, want) {
		t.Fatalf("layout:\n got %x\nwant %x", got, want)
	}
}

func TestUnmarshalRefusesCorruptFrames(t *testing.T) {
	good := append(binary.AppendUvarint(nil, 4), "user"...)
	cases := map[string][]byte{
		"empty":            nil,
		"codec 0":          frame(0, uuidA, 1, "paused", 1, 0, "", "", good),
		"codec 2":          frame(2, uuidA, 1, "paused", 1, 0, "", "", good),
		"unknown type":     frame(1, uuidA, 1, "bogus", 1, 0, "", "", good),
		"empty type":       frame(1, uuidA, 1, "", 1, 0, "", "", good),
		"type case":        frame(1, uuidA, 1, "Paused", 1, 0, "", "", good),
		"schema 0":         frame(1, uuidA, 1, "paused", 0, 0, "", "", good),
		"schema 2":         frame(1, uuidA, 1, "paused", 2, 0, "", "", good),
		"schema 1+1<<16":   frame(1, uuidA, 1, "paused", 1+1<<16, 0, "", "", good),
		"trailing byte":    frame(1, uuidA, 1, "paused", 1, 0, "", "", append(append([]byte(nil), good...), 0)),
		"string too long":  frame(1, uuidA, 1, "paused", 1, 0, "", "", append(binary.AppendUvarint(nil, 1<<40), "user"...)),
		"huge length":      frame(1, uuidA, 1, "paused", 1, 0, "", "", binary.AppendUvarint(nil, ^uint64(0))),
		"bad bool":         frame(1, uuidA, 1, "reset", 1, 0, "", "", []byte{2, 0}),
		"bad json config":  frame(1, uuidA, 1, "defined", 1, 0, "", "", append(binary.AppendUvarint(nil, 5), "{nope"...)),
		"json wrong shape": frame(1, uuidA, 1, "defined", 1, 0, "", "", append(binary.AppendUvarint(nil, 19), `{"memory_mib":"x"}`+" "...)),
		"overlong uvarint": frame(1, uuidA, 1, "migration-iteration", 1, 0, "", "", bytes.Repeat([]byte{0xff}, 11)),
		"header only":      {1},
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			e, err := domains.UnmarshalEvent(9, b)
			if err == nil {
				t.Fatalf("decoded %+v, want an error", e)
			}
			if !errors.Is(err, domains.ErrCorrupt) {
				t.Fatalf("error %q does not wrap ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), "seq 9") {
				t.Errorf("error %q does not name the sequence", err)
			}
		})
	}
}

func TestUnmarshalTruncatedAndMangled(t *testing.T) {
	for i, typ := range domains.Types() {
		t.Run(string(typ), func(t *testing.T) {
			b := mustBinary(t, sampleEvent(typ, uint64(i)+1))
			// Every strict prefix is refused: nothing is optional.
			for n := 0; n < len(b); n++ {
				if _, err := domains.UnmarshalEvent(1, b[:n:n]); !errors.Is(err, domains.ErrCorrupt) {
					t.Fatalf("prefix of %d/%d bytes: err = %v, want ErrCorrupt", n, len(b), err)
				}
			}
			// Mangled bytes never panic; what fails, fails with ErrCorrupt.
			for pos := range b {
				for _, x := range []byte{0x01, 0x80, 0xff} {
					m := append([]byte(nil), b...)
					m[pos] ^= x
					if _, err := domains.UnmarshalEvent(1, m); err != nil && !errors.Is(err, domains.ErrCorrupt) {
						t.Fatalf("byte %d ^ %#x: error %q does not wrap ErrCorrupt", pos, x, err)
					}
				}
			}
		})
	}
}

func TestUnmarshalGarbage(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		b := make([]byte, r.IntN(96))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		if i%2 == 0 && len(b) > 0 {
			b[0] = 1 // get past the codec version byte half of the time
		}
		e, err := domains.UnmarshalEvent(uint64(i), b)
		if err != nil {
			if !errors.Is(err, domains.ErrCorrupt) {
				t.Fatalf("%x: error %q does not wrap ErrCorrupt", b, err)
			}
			continue
		}
		if e.Payload == nil || e.Payload.EventType() != e.Type {
			t.Fatalf("%x: decoded an event without a matching payload: %+v", b, e)
		}
	}
}

func TestPeekDomain(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 1 << 40, ^uint64(0)} {
		e := sampleEvent(domains.TypeStopped, 1)
		e.Domain, e.Version = uuidC, v
		id, ver, err := domains.PeekDomain(mustBinary(t, e))
		if err != nil || id != uuidC || ver != v {
			t.Errorf("PeekDomain(version %d) = %s, %d, %v", v, id, ver, err)
		}
	}
	// Only the head is needed.
	b := mustBinary(t, sampleEvent(domains.TypeDefined, 1))
	if id, ver, err := domains.PeekDomain(b[:18]); err != nil || id != uuidA || ver != 7 {
		t.Errorf("PeekDomain(head) = %s, %d, %v", id, ver, err)
	}
	bad := map[string][]byte{
		"nil":            nil,
		"short":          b[:17],
		"codec 2":        append([]byte{2}, b[1:]...),
		"unterminated":   append(append([]byte(nil), b[:17]...), 0x80),
		"overlong":       append(append([]byte(nil), b[:17]...), bytes.Repeat([]byte{0xff}, 11)...),
		"only the codec": {1},
	}
	for name, b := range bad {
		if _, _, err := domains.PeekDomain(b); !errors.Is(err, domains.ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
		}
	}
}

func TestJSONRoundTripEveryType(t *testing.T) {
	for i, typ := range domains.Types() {
		t.Run(string(typ), func(t *testing.T) {
			want := sampleEvent(typ, uint64(i)+1)
			b, err := json.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			var got domains.Event
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("%s: %v", b, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip of %s:\n got %#v\nwant %#v", b, got, want)
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			if string(m["type"]) != `"`+string(typ)+`"` {
				t.Errorf("type on the wire is %s, want the constant %q", m["type"], typ)
			}
			for _, k := range []string{"seq", "domain", "version", "type", "schema", "time", "command_id", "host", "payload"} {
				if _, ok := m[k]; !ok {
					t.Errorf("key %q missing from %s", k, b)
				}
			}
		})
	}
}

func TestJSONWireForm(t *testing.T) {
	e := domains.NewEvent(uuidA, time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC), "c1", "h", domains.Paused{Reason: "user"})
	e.Seq, e.Version = 5, 2
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"seq":5,"domain":"6f1c3c1e-4b9a-4f57-9f0e-1d2c3b4a5f60","version":2,"type":"paused","schema":1,` +
		`"time":"2024-01-02T03:04:05.000000006Z","command_id":"c1","host":"h","payload":{"reason":"user"}}`
	if string(b) != want {
		t.Fatalf("wire form changed:\n got %s\nwant %s", b, want)
	}
	e.CommandID = ""
	if b, _ := json.Marshal(e); strings.Contains(string(b), "command_id") {
		t.Errorf("empty command ID is rendered: %s", b)
	}
	// The JSON form of a job event carries its kind in the envelope only.
	j := sampleEvent(domains.TypeDumpFailed, 3)
	b, _ = json.Marshal(j)
	if strings.Contains(string(b), "Kind") || strings.Contains(string(b), `"kind"`) {
		t.Errorf("job kind leaks into the payload: %s", b)
	}
}

func TestJSONRefuses(t *testing.T) {
	const env = `{"seq":1,"domain":"6f1c3c1e-4b9a-4f57-9f0e-1d2c3b4a5f60","version":1,"time":"2024-01-02T03:04:05Z","host":"h",`
	ok := env + `"type":"paused","schema":1,"payload":{"reason":"user"}}`
	var e domains.Event
	if err := json.Unmarshal([]byte(ok), &e); err != nil {
		t.Fatalf("the valid base case fails: %v", err)
	}
	cases := map[string]string{
		"unknown type":          env + `"type":"bogus","schema":1,"payload":{}}`,
		"empty type":            env + `"type":"","schema":1,"payload":{}}`,
		"go type name":          env + `"type":"Paused","schema":1,"payload":{"reason":"user"}}`,
		"unknown payload field": env + `"type":"paused","schema":1,"payload":{"reason":"user","extra":1}}`,
		"other type's payload":  env + `"type":"paused","schema":1,"payload":{"offset":5}}`,
		"wrong field type":      env + `"type":"paused","schema":1,"payload":{"reason":5}}`,
		"schema 2":              env + `"type":"paused","schema":2,"payload":{"reason":"user"}}`,
		"schema 0":              env + `"type":"paused","schema":0,"payload":{"reason":"user"}}`,
		"schema missing":        env + `"type":"paused","payload":{"reason":"user"}}`,
		"payload missing":       env + `"type":"paused","schema":1}`,
		"payload null":          env + `"type":"paused","schema":1,"payload":null}`,
		"payload not object":    env + `"type":"paused","schema":1,"payload":"user"}`,
		"unknown config field":  env + `"type":"defined","schema":1,"payload":{"config":{"name":"x","colour":"red"}}}`,
		"job kind in payload":   env + `"type":"save-started","schema":1,"payload":{"path":"/x","Kind":"dump-started"}}`,
		"bad domain":            `{"seq":1,"domain":"nope","version":1,"type":"paused","schema":1,"payload":{"reason":"user"}}`,
		"not json":              `{"seq":`,
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			var e domains.Event
			if err := json.Unmarshal([]byte(in), &e); err == nil {
				t.Fatalf("accepted %s as %+v", in, e)
			}
		})
	}
	if _, err := json.Marshal(domains.Event{Type: domains.TypePaused}); err == nil {
		t.Error("MarshalJSON of an event without payload succeeded")
	}
}

// FuzzUnmarshalEvent: no input panics; an input that decodes re-encodes
// to bytes that decode to the same event, which re-encode to the same
// bytes (a fixed point), and whose JSON form decodes again.
func FuzzUnmarshalEvent(f *testing.F) {
	for i, typ := range domains.Types() {
		b, err := func() (b []byte, err error) {
			e := sampleEvent(typ, uint64(i)+1)
			return e.MarshalBinary(nil)
		}()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint64(i)+1, b)
	}
	f.Add(uint64(0), []byte{})
	f.Add(uint64(1), []byte{1})
	f.Add(uint64(2), frame(1, uuidB, 1, "defined", 1, -1, "c", "h", append(binary.AppendUvarint(nil, 2), "{}"...)))
	f.Fuzz(func(t *testing.T, seq uint64, b []byte) {
		e, err := domains.UnmarshalEvent(seq, b)
		if err != nil {
			if !errors.Is(err, domains.ErrCorrupt) {
				t.Fatalf("error %q does not wrap ErrCorrupt", err)
			}
			return
		}
		if e.Seq != seq || !e.Type.Valid() || e.Payload == nil || e.Payload.EventType() != e.Type {
			t.Fatalf("decoded an inconsistent event: %+v", e)
		}
		id, ver, err := domains.PeekDomain(b)
		if err != nil || id != e.Domain || ver != e.Version {
			t.Fatalf("PeekDomain = %s, %d, %v; event has %s, %d", id, ver, err, e.Domain, e.Version)
		}
		b2, err := e.MarshalBinary(nil)
		if err != nil {
			t.Fatalf("re-encoding a decoded event: %v", err)
		}
		e2, err := domains.UnmarshalEvent(seq, b2)
		if err != nil {
			t.Fatalf("re-encoded event does not decode: %v\n%x", err, b2)
		}
		b3, err := e2.MarshalBinary(nil)
		if err != nil || !bytes.Equal(b2, b3) {
			t.Fatalf("encoding is not a fixed point (%v):\n%x\n%x", err, b2, b3)
		}
		j, err := json.Marshal(e2)
		if err != nil {
			t.Fatalf("JSON of a decoded event: %v", err)
		}
		var e3 domains.Event
		if err := json.Unmarshal(j, &e3); err != nil {
			t.Fatalf("JSON %s does not decode: %v", j, err)
		}
		if e3.Type != e.Type || e3.Domain != e.Domain || e3.Version != e.Version || !e3.Time.Equal(e.Time) {
			t.Fatalf("JSON round trip changed the envelope: %+v -> %+v", e2, e3)
		}
	})
}
