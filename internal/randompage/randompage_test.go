package randompage

import (
	"encoding/binary"
	"testing"

	"github.com/klauspost/compress"

	"github.com/vmledger/vmledger/migrate/pagemix"
)

const pageSize = pagemix.PageSize

func mixPage(t testing.TB, m pagemix.Mix) []byte {
	p := make([]byte, pageSize)
	if _, err := m.Fill(p, 1); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestIs: random pages are stored without trying zstd; text,
// zero, a byte ramp, counters and a half-random page are compressed.
func TestIs(t *testing.T) {
	ramp, counters, half := make([]byte, pageSize), make([]byte, pageSize), make([]byte, pageSize)
	for i := range ramp {
		ramp[i] = byte(i)
	}
	for i := 0; i < pageSize; i += 8 {
		binary.LittleEndian.PutUint64(counters[i:], uint64(i/8))
	}
	copy(half, mixPage(t, pagemix.Mix{Random: 100})[:pageSize/2])
	for _, c := range []struct {
		name string
		page []byte
		want bool
	}{
		{"random", mixPage(t, pagemix.Mix{Random: 100}), true},
		{"text", mixPage(t, pagemix.Mix{Text: 100}), false},
		{"zero", make([]byte, pageSize), false},
		{"ramp", ramp, false},
		{"counters", counters, false},
		{"half-random", half, false},
	} {
		if got := Is(c.page); got != c.want {
			t.Errorf("%s: Is %v, want %v", c.name, got, c.want)
		}
	}
}

// TestIsEveryRandomPage: the early exit a quarter of the way
// through the samples never takes a random page for compressible (4,096
// pages of random bytes, each from its own seed), and never passes a text
// page.
func TestIsEveryRandomPage(t *testing.T) {
	buf := make([]byte, 4096*pageSize)
	for _, c := range []struct {
		mix  pagemix.Mix
		want bool
	}{{pagemix.Mix{Random: 100}, true}, {pagemix.Mix{Text: 100}, false}} {
		if _, err := c.mix.Fill(buf, 42); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(buf); i += pageSize {
			if got := Is(buf[i : i+pageSize]); got != c.want {
				t.Fatalf("%+v: page %d: Is %v, want %v", c.mix, i/pageSize, got, c.want)
			}
		}
	}
}

// BenchmarkIs: the test against klauspost's Estimate (the save writer's
// test before, at its threshold of 0.2), on text and random pages.
func BenchmarkIs(b *testing.B) {
	for _, m := range []struct {
		name string
		mix  pagemix.Mix
	}{{"text", pagemix.Mix{Text: 100}}, {"random", pagemix.Mix{Random: 100}}} {
		page := mixPage(b, m.mix)
		b.Run(m.name+"/Is", func(b *testing.B) {
			b.SetBytes(pageSize)
			for b.Loop() {
				Is(page)
			}
		})
		b.Run(m.name+"/Estimate", func(b *testing.B) {
			b.SetBytes(pageSize)
			for b.Loop() {
				_ = compress.Estimate(page) < 0.2
			}
		})
	}
}

// TestIsShortInput: fewer bytes than a page (nil, a few random bytes, a
// page's first half of random bytes) are never called random, and never
// panic: the thresholds hold for 4 KiB only.
func TestIsShortInput(t *testing.T) {
	random := mixPage(t, pagemix.Mix{Random: 100})
	for _, b := range [][]byte{nil, random[:1], random[:7], random[:1023], random[:pageSize/2]} {
		if Is(b) {
			t.Errorf("%d random bytes taken for a random page", len(b))
		}
	}
}
