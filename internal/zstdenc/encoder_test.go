package zstdenc

import (
	"bytes"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/vmledger/vmledger/migrate/pagemix"
)

// pages returns n pages of mix m (seed 1).
func pages(t testing.TB, m pagemix.Mix, n int) []byte {
	b := make([]byte, n*pagemix.PageSize)
	if _, err := m.Fill(b, 1); err != nil {
		t.Fatal(err)
	}
	return b
}

// encoders are New as each build uses it (libzstd with cgo) at the
// levels the writers use, and the pure-Go encoder as they configure it.
func encoders(t testing.TB) []struct {
	name string
	e    *Encoder
} {
	mk := func(e *Encoder, err error) *Encoder {
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	fallback := []zstd.EOption{zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(false), zstd.WithWindowSize(1 << 20)}
	return []struct {
		name string
		e    *Encoder
	}{
		{"new-level-1", mk(New(1, fallback...))},
		{"new-level-minus-1", mk(New(-1, fallback...))},
		{"new-level-3", mk(New(3, fallback...))},
		{"pure-go", mk(NewPureGo(fallback...))},
		{"pure-go-no-entropy", mk(NewPureGo(append(fallback, zstd.WithNoEntropyCompression(true))...))},
	}
}

// TestRoundTrip: every encoder's frames, for every kind of page and a
// chunk of the save's mix, decode with klauspost's decoder (the one our
// readers use) to the input, appended after what dst held, with the
// content size in the frame header that migrate's Scan checks.
func TestRoundTrip(t *testing.T) {
	inputs := []struct {
		name string
		src  []byte
	}{
		{"empty", nil},
		{"zero-page", pages(t, pagemix.Mix{Zero: 100}, 1)},
		{"text-page", pages(t, pagemix.Mix{Text: 100}, 1)},
		{"random-page", pages(t, pagemix.Mix{Random: 100}, 1)},
		{"one-byte", []byte{7}},
		{"mix-1MiB", pages(t, pagemix.Default, 256)},
		{"text-3MiB", pages(t, pagemix.Mix{Text: 100}, 768)}, // several blocks, beyond level 1's window
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	prefix := []byte("already there")
	for _, enc := range encoders(t) {
		for _, in := range inputs {
			t.Run(enc.name+"/"+in.name, func(t *testing.T) {
				dst := append(make([]byte, 0, 16), prefix...) // too small: Encode must grow it
				out, err := enc.e.Encode(dst, in.src)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out[:len(prefix)], prefix) {
					t.Fatalf("prefix overwritten: %q", out[:len(prefix)])
				}
				frame := out[len(prefix):]
				got, err := dec.DecodeAll(frame, nil)
				if err != nil {
					t.Fatalf("decode %d-byte frame: %v", len(frame), err)
				}
				if !bytes.Equal(got, in.src) {
					t.Fatalf("decoded %d bytes, differ from the %d given", len(got), len(in.src))
				}
				if len(in.src) == 0 {
					return
				}
				var h zstd.Header
				if err := h.Decode(frame); err != nil {
					t.Fatal(err)
				}
				// klauspost leaves the size out of a frame of a few bytes.
				noFCS := !h.HasFCS && len(in.src) >= pagemix.PageSize
				if noFCS || (h.HasFCS && h.FrameContentSize != uint64(len(in.src))) || h.HasCheckSum {
					t.Fatalf("frame header: content size %v %d, checksum %v; want %d, no checksum",
						h.HasFCS, h.FrameContentSize, h.HasCheckSum, len(in.src))
				}
			})
		}
	}
}

// TestNewUsesLibzstd: with cgo, New is libzstd (its frames differ from
// klauspost's, and are smaller on text); without, it is the pure-Go
// encoder with the options given.
func TestNewUsesLibzstd(t *testing.T) {
	text := pages(t, pagemix.Mix{Text: 100}, 16)
	opts := []zstd.EOption{zstd.WithEncoderLevel(zstd.SpeedFastest)}
	e, err := New(1, opts...)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPureGo(opts...)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := e.Encode(nil, text)
	b, _ := p.Encode(nil, text)
	if !Native {
		if e.Library() != p.Library() || !bytes.Equal(a, b) {
			t.Fatalf("without cgo New gave %s, %d bytes; want the pure-Go encoder's %d", e.Library(), len(a), len(b))
		}
		return
	}
	if e.Library() != "libzstd (cgo)" || bytes.Equal(a, b) || len(a) >= len(b) {
		t.Fatalf("New: %s, %d bytes; the pure-Go encoder %d bytes: want libzstd's smaller frames", e.Library(), len(a), len(b))
	}
}

// TestEncodeInPlace: given room, libzstd writes into dst (no allocation
// per frame: a dump encodes ~100,000 pages per GiB).
func TestEncodeInPlace(t *testing.T) {
	if !Native {
		t.Skip("built without cgo")
	}
	e, err := New(1)
	if err != nil {
		t.Fatal(err)
	}
	page := pages(t, pagemix.Mix{Text: 100}, 1)
	dst := make([]byte, 0, 2*len(page))
	if n := testing.AllocsPerRun(50, func() {
		out, err := e.Encode(dst[:10], page)
		if err != nil || &out[0] != &dst[:1][0] {
			t.Fatalf("not in place (err %v)", err)
		}
	}); n != 0 {
		t.Fatalf("%.1f allocations per page, want 0", n)
	}
}

func TestLevelOutOfRange(t *testing.T) {
	if !Native {
		t.Skip("built without cgo: the level does not apply")
	}
	for _, l := range []int{23, -(1 << 17) - 1} {
		if _, err := New(l); err == nil {
			t.Errorf("New(%d): no error", l)
		}
	}
}
