package migrate

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/vmledger/vmledger/migrate/pagemix"
)

// Every chunk the writer's codec compresses expands again through the
// reader's decoder with the reader's limits (WithDecoderMaxMemory of the
// chunk size), whatever the chunk size the header allows and however
// short the chunk (the last one of a stream is): both the libzstd frames
// of a cgo build and the pure-Go encoder's.
func TestZstdChunksWithinReaderLimits(t *testing.T) {
	for _, chunk := range []int{minChunkSize, 5000, 100 << 10, 1 << 20, 3 << 19, MaxChunkSize} {
		mix := make([]byte, (chunk+pagemix.PageSize-1)/pagemix.PageSize*pagemix.PageSize)
		if _, err := pagemix.Default.Fill(mix, 1); err != nil {
			t.Fatal(err)
		}
		c, err := newCodec(Zstd, chunk)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{1, 100, 1024, 1025, 4096, chunk - 1, chunk} {
			for _, kind := range []string{"zero", "mix"} {
				raw := make([]byte, n)
				if kind == "mix" {
					copy(raw, mix)
				}
				t.Run(fmt.Sprintf("chunk-%d/len-%d/%s", chunk, n, kind), func(t *testing.T) {
					out := c.compress(make([]byte, 0, maxStoredLen(chunk)), raw)
					if len(out) >= len(raw) {
						return // stored raw by the writer
					}
					if err := claimedLen(Zstd, out, n); err != nil {
						t.Fatal(err)
					}
					got, err := c.expand(nil, out, n)
					if err != nil {
						t.Fatalf("%d-byte frame: %v", len(out), err)
					}
					if !bytes.Equal(got, raw) {
						t.Fatal("expands to other bytes")
					}
				})
			}
		}
	}
}
