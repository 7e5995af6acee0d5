// Package zstdenc is the zstd encoder that vmledger's writers share: the
// reference C libzstd (through cgo, github.com/DataDog/zstd, which bundles
// zstd's C sources) when the binary is built with cgo, and
// klauspost/compress/zstd otherwise. Both write standard zstd frames;
// decoding always uses klauspost's decoder, which is fast.
//
// Why C: on the text-like pages that dominate a dump's and a save's CPU,
// libzstd's level 1 takes 1.3x to 1.5x less CPU than klauspost's fastest
// level for a smaller output (docs/performance.md, "C zstd through cgo").
package zstdenc

import (
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// Encoder writes one zstd frame per call. It is not safe for concurrent
// use: each worker owns one (it reuses its compression context).
type Encoder struct {
	pure  *zstd.Encoder // the pure-Go encoder; nil when libzstd is used
	c     cContext      // libzstd's context (cgo builds only)
	level int
}

// NewPureGo returns klauspost's encoder with opts, whatever the build:
// the fallback of New without cgo, and the reference in benchmarks.
// It starts no goroutines of its own.
func NewPureGo(opts ...zstd.EOption) (*Encoder, error) {
	e, err := zstd.NewWriter(nil, append([]zstd.EOption{zstd.WithEncoderConcurrency(1)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("zstdenc: %w", err)
	}
	return &Encoder{pure: e}, nil
}

// Encode appends to dst one zstd frame holding src (no checksum; its
// content size in the frame header, except, from the pure-Go encoder,
// for inputs of a few bytes) and returns the extended slice. An empty
// src gives an empty frame with libzstd and no bytes with the pure-Go
// encoder; both decode to nothing.
func (e *Encoder) Encode(dst, src []byte) ([]byte, error) {
	if e.pure != nil {
		return e.pure.EncodeAll(src, dst), nil
	}
	return e.c.encode(dst, src, e.level)
}

// Library says which implementation e uses, for benchmarks and logs.
func (e *Encoder) Library() string {
	if e.pure != nil {
		return "klauspost/compress (pure Go)"
	}
	return "libzstd (cgo)"
}
