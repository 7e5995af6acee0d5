package bus

import (
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/bus/bustest"
	"github.com/vmledger/vmledger/domains"
)

// DecodeEvent tells a placeholder from an event by its top-level
// "truncated" key only: text that looks like one inside a payload's
// strings does not fool it, and EncodeEvent/DecodeEvent round-trip both.
func TestDecodeEventPlaceholders(t *testing.T) {
	dom := uuid.New()
	tricky := bustest.BigDefined(dom, "h", "x", 1)
	cfg := tricky.Payload.(domains.Defined).Config
	cfg.Disks[0].Path = `/a"truncated":{"bytes":1}`
	tricky.Payload = domains.Defined{Config: cfg}
	tricky.Seq, tricky.Version = 7, 1
	big := bustest.BigDefined(dom, "h", "big", 300<<10)
	big.Seq, big.Version = 8, 2

	b, err := EncodeEvent(tricky)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeEvent(b)
	if err != nil || !reflect.DeepEqual(got, tricky) {
		t.Fatalf("tricky event: %+v, %v", got, err)
	}

	ph, size, truncated := wireEvent(&big, 1<<20)
	if !truncated || size < 1800<<10 || len(ph) > 2<<10 {
		t.Fatalf("wireEvent: truncated %v, size %d, %d bytes", truncated, size, len(ph))
	}
	got, err = DecodeEvent(ph)
	tr, ok := got.Payload.(Truncated)
	if err != nil || !ok || got.Seq != 8 || got.Version != 2 || got.Type != domains.TypeDefined || got.Domain != dom || tr.Bytes != size {
		t.Fatalf("placeholder: %+v, %v", got, err)
	}
	again, _ := EncodeEvent(got)
	if string(again) != string(ph) {
		t.Fatalf("placeholder does not round-trip:\n%s\n%s", again, ph)
	}
	bad := strings.Replace(string(ph), `"type":"defined"`, `"type":"exploded"`, 1)
	if _, err := DecodeEvent([]byte(bad)); err == nil {
		t.Fatal("a placeholder of an unknown type decoded")
	}
}
