package bus

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// resultEnvelope writes what json.Marshal(reply{Result: json.Marshal(v)})
// writes, whatever the buffer held.
func TestResultEnvelope(t *testing.T) {
	for _, v := range []any{nil, "a<b>&c", 42, map[string]any{"k": []int{1, 2}}, struct{}{}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(reply{Result: b})
		buf := bytes.NewBufferString("left from the reply before")
		if err := resultEnvelope(buf, v); err != nil || !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("resultEnvelope(%s) = %s, %v; want %s", b, buf.Bytes(), err, want)
		}
	}
}

// wireEvent's direct MarshalJSON writes what json.Marshal(e) writes
// (escaping included): the bus form did not change.
func TestWireEventAsMarshal(t *testing.T) {
	e := domains.Event{Seq: 7, Domain: uuid.New(), Version: 1, Type: domains.TypeDefined, Host: "h&1",
		Payload: domains.Defined{Config: domains.Config{Name: "a<b>", UUID: uuid.New()}}}
	want, err := json.Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	got, _, truncated := wireEvent(&e, 1<<20)
	if truncated || !bytes.Equal(got, want) {
		t.Fatalf("wireEvent = %s (truncated %v), want %s", got, truncated, want)
	}
}

// BenchmarkReplyEncode: an info reply (a domain with a small config)
// as the command service encoded it before (json.Marshal of the result,
// then of the envelope) and now (resultEnvelope into a pooled buffer).
func BenchmarkReplyEncode(b *testing.B) {
	d := domains.Domain{Config: domains.Config{Name: "ld01234", UUID: uuid.New(), MemoryMiB: 64, VCPUs: 1,
		Clock: domains.Clock{Offset: "utc"}, Disks: []domains.Disk{{Target: "hda", Path: "/var/lib/vmledger/images/a.img", Format: "raw", Bus: "ide"}}},
		State: domains.StateShutoff, Version: 3}
	b.Run("marshal-twice", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r, _ := json.Marshal(d)
			if _, err := json.Marshal(reply{Result: r}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pooled-envelope", func(b *testing.B) {
		b.ReportAllocs()
		var s CommandService
		for b.Loop() {
			buf, _ := s.bufs.Get().(*bytes.Buffer)
			if buf == nil {
				buf = new(bytes.Buffer)
			}
			if err := resultEnvelope(buf, d); err != nil {
				b.Fatal(err)
			}
			s.bufs.Put(buf)
		}
	})
}
