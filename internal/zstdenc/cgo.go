//go:build cgo

package zstdenc

import (
	"fmt"
	"slices"

	ddzstd "github.com/DataDog/zstd"
	"github.com/klauspost/compress/zstd"
)

// Native is true when New uses libzstd.
const Native = true

// New returns an encoder at libzstd's compression level (1 is its
// fastest standard level, negative levels trade size for speed). pureGo
// are the options of the pure-Go encoder that a build without cgo uses
// instead; this build ignores them.
func New(level int, pureGo ...zstd.EOption) (*Encoder, error) {
	if level < minLevel || level > maxLevel {
		return nil, fmt.Errorf("zstdenc: level %d: libzstd's levels are %d to %d", level, minLevel, maxLevel)
	}
	return &Encoder{c: cContext{ddzstd.NewCtx()}, level: level}, nil
}

// libzstd's ZSTD_minCLevel and ZSTD_maxCLevel.
const minLevel, maxLevel = -(1 << 17), 22

// cContext is one libzstd compression context, reused frame after frame
// (freed by DataDog/zstd's finalizer).
type cContext struct{ ctx ddzstd.Ctx }

func (c cContext) encode(dst, src []byte, level int) ([]byte, error) {
	n := len(dst)
	// CompressLevel writes in place when given room for the worst case,
	// else it allocates; grow dst once so that it never has to.
	dst = slices.Grow(dst, ddzstd.CompressBound(len(src)))
	out, err := c.ctx.CompressLevel(dst[n:], src, level)
	if err != nil {
		return dst[:n], fmt.Errorf("zstdenc: libzstd: %w", err)
	}
	if len(out) > 0 && &out[0] != &dst[n : n+1][0] { // not in place: cannot happen with the room above
		return append(dst[:n], out...), nil
	}
	return dst[:n+len(out)], nil
}
