package bus

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// resultEnvelope writes what json.Marshal(reply{Result: ...}) writes.
func TestResultEnvelope(t *testing.T) {
	for _, v := range []any{nil, "a<b>&c", 42, map[string]any{"k": []int{1, 2}}, struct{}{}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(reply{Result: b})
		if got := resultEnvelope(b); !bytes.Equal(got, want) {
			t.Errorf("resultEnvelope(%s) = %s, want %s", b, got, want)
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
