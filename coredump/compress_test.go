package coredump

import (
	"bytes"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/vmledger/vmledger/migrate/pagemix"
)

func mixPage(t *testing.T, m pagemix.Mix) []byte {
	p := make([]byte, PageSize)
	if _, err := m.Fill(p, 1); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestZstdCompressorPages: the kdump-zstd compressor stores a random page
// raw, compresses text, a ramp and a half-random page into one zstd frame
// each, appended to what the batch held, that decodes to the page.
func TestZstdCompressorPages(t *testing.T) {
	comp, err := newCompressor(FlagZstd)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	ramp, half := make([]byte, PageSize), make([]byte, PageSize)
	for i := range ramp {
		ramp[i] = byte(i)
	}
	copy(half, mixPage(t, pagemix.Mix{Random: 100})[:PageSize/2])
	prefix := []byte("earlier pages")
	for _, c := range []struct {
		name   string
		page   []byte
		stored bool // compressed
	}{
		{"random", mixPage(t, pagemix.Mix{Random: 100}), false},
		{"text", mixPage(t, pagemix.Mix{Text: 100}), true},
		{"ramp", ramp, true},
		{"half-random", half, true},
	} {
		out, ok := comp.compress(append([]byte(nil), prefix...), c.page)
		if ok != c.stored || !bytes.Equal(out[:len(prefix)], prefix) {
			t.Fatalf("%s: compressed %v (want %v), prefix %q", c.name, ok, c.stored, out[:min(len(out), len(prefix))])
		}
		if !ok {
			if len(out) != len(prefix) {
				t.Fatalf("%s: stored raw but %d bytes appended", c.name, len(out)-len(prefix))
			}
			continue
		}
		got, err := dec.DecodeAll(out[len(prefix):], nil)
		if err != nil || !bytes.Equal(got, c.page) {
			t.Fatalf("%s: %d-byte frame decodes to %d bytes (%v), not the page", c.name, len(out)-len(prefix), len(got), err)
		}
	}
}
