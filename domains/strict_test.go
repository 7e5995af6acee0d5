package domains_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// Decoding that calls itself strict refuses what encoding/json lets pass:
// keys in another case, keys given twice, trailing data, an explicit
// all-zero UUID (issue 7, defect 10).
func TestDecodeConfigStrict(t *testing.T) {
	refused := map[string]string{
		"key case":          `{"name":"a","NAME":"b"}`,
		"key case only":     `{"Name":"a"}`,
		"nested key case":   `{"name":"a","clock":{"Offset":"utc"}}`,
		"duplicate key":     `{"name":"a","name":"b"}`,
		"nested duplicate":  `{"name":"a","disks":[{"target":"vda","target":"vdb"}]}`,
		"duplicate prop":    `{"name":"a","devices":[{"id":"d0","driver":"x","props":{"k":"1","k":"2"}}]}`,
		"unknown field":     `{"name":"a","colour":"red"}`,
		"trailing object":   `{"name":"a"}{"name":"b"}`,
		"trailing garbage":  `{"name":"a"} x`,
		"zero uuid":         `{"name":"a","uuid":"00000000-0000-0000-0000-000000000000"}`,
		"zero uuid no dash": `{"name":"a","uuid":"00000000000000000000000000000000"}`,
		"empty":             ``,
		"truncated":         `{"name":"a"`,
		"not an object":     `["name"]`,
		"deep nesting":      `{"name":"a","devices":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`,
	}
	for name, in := range refused {
		t.Run(name, func(t *testing.T) {
			c, err := domains.DecodeConfig([]byte(in))
			if !errors.Is(err, domains.ErrInvalid) {
				t.Fatalf("DecodeConfig(%s) = %+v, %v; want an invalid error", in, c, err)
			}
		})
	}
	c, err := domains.DecodeConfig([]byte(`{"name":"a","memory_mib":16,"vcpus":1,"clock":{"offset":"utc"},"devices":[{"id":"d0","driver":"x","props":{"k":"1","K":"2"}}]}`))
	if err != nil || c.Name != "a" || c.UUID != uuid.Nil || c.Devices[0].Props["K"] != "2" {
		t.Fatalf("a well-formed config (props are free-form keys, so k and K differ): %+v, %v", c, err)
	}
	id := uuid.New()
	if c, err := domains.DecodeConfig([]byte(`{"name":"a","uuid":"` + id.String() + `"}`)); err != nil || c.UUID != id {
		t.Fatalf("explicit uuid: %+v, %v", c, err)
	}
}

// Errors about what the user sent quote a bounded prefix of it.
func TestDecodeErrorsAreBounded(t *testing.T) {
	long := strings.Repeat("K", 100000)
	for _, in := range []string{
		`{"` + long + `":1}`,
		`{"name":"a","disks":[{"target":"vda","` + long + `":1}]}`,
		`{"name":"` + long + `","name":"b"}`,
		`{"uuid":"` + long + `"}`,
	} {
		_, err := domains.DecodeConfig([]byte(in))
		if err == nil || len(err.Error()) > 1024 {
			t.Fatalf("error of %d bytes (want an error under 1 KiB): %.200v", len(err.Error()), err)
		}
	}
}

// FuzzDecodeConfig: whatever DecodeConfig accepts has no key twice and no
// key outside the schema, so re-encoding and decoding again gives the same
// config; and no input makes it panic or echo more than a bounded message.
func FuzzDecodeConfig(f *testing.F) {
	for _, s := range []string{`{"name":"a"}`, `{"name":"a","NAME":"b"}`, `{"name":"a","name":"b"}`,
		`{"disks":[{"target":"vda","path":"/x"}]}`, `{"devices":[{"id":"d","driver":"x","props":{"a":"b"}}]}`,
		`{"uuid":"00000000-0000-0000-0000-000000000000"}`, `{"clock":{"offset":"variable","adjustment":3}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := domains.DecodeConfig(b)
		if err != nil {
			if !errors.Is(err, domains.ErrInvalid) {
				t.Fatalf("error not coded invalid: %v", err)
			}
			if len(err.Error()) > 2048 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		again, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := domains.DecodeConfig(again)
		if err != nil {
			t.Fatalf("re-encoded config refused: %v\n%s", err, again)
		}
		if !reflect.DeepEqual(c.Normalize(), c2.Normalize()) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", c, c2)
		}
	})
}
