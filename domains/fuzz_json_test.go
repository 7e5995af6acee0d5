package domains_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/vmledger/vmledger/domains"
)

// FuzzEventJSON: the JSON wire form (NATS, exports) never panics; an
// event it accepts re-encodes to JSON that decodes to the same bytes
// again (a fixed point), and either encodes in the binary codec to an
// event with the same JSON or is refused by it as an error (never a
// panic): Import relies on both.
func FuzzEventJSON(f *testing.F) {
	for i, typ := range domains.Types() {
		b, err := json.Marshal(sampleEvent(typ, uint64(i)+1))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"type":"paused","payload":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var e domains.Event
		if err := json.Unmarshal(b, &e); err != nil {
			if len(err.Error()) > 4096 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		j, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("accepted event does not re-encode: %v", err)
		}
		var e2 domains.Event
		if err := json.Unmarshal(j, &e2); err != nil {
			t.Fatalf("re-encoded %s does not decode: %v", j, err)
		}
		j2, err := json.Marshal(e2)
		if err != nil || !bytes.Equal(j, j2) {
			t.Fatalf("JSON is not a fixed point (%v):\n%s\n%s", err, j, j2)
		}
		bin, err := e2.MarshalBinary(nil)
		if err != nil {
			return
		}
		e3, err := domains.UnmarshalEvent(e2.Seq, bin)
		if err != nil {
			t.Fatalf("binary form of %s does not decode: %v", j, err)
		}
		j3, err := json.Marshal(e3)
		if err != nil || !bytes.Equal(j, j3) {
			t.Fatalf("binary round trip changed the event (%v):\n%s\n%s", err, j, j3)
		}
	})
}
