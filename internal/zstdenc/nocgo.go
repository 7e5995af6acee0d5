//go:build !cgo

package zstdenc

import (
	"errors"

	"github.com/klauspost/compress/zstd"
)

// Native is true when New uses libzstd.
const Native = false

// New returns, in a build without cgo, klauspost's encoder with pureGo's
// options (level is libzstd's and does not apply).
func New(level int, pureGo ...zstd.EOption) (*Encoder, error) { return NewPureGo(pureGo...) }

// cContext stands in for libzstd's context, which this build lacks.
type cContext struct{}

func (cContext) encode(dst, _ []byte, _ int) ([]byte, error) {
	return dst, errors.New("zstdenc: built without cgo: no libzstd")
}
