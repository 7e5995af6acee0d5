package coredump_test

import (
	"encoding/binary"
	"github.com/vmledger/vmledger/coredump"
	"math/rand/v2"
	"os"
	"testing"
)

// fillPage writes page i of the test mix: 45% zero, 35% text-like, 20%
// random, chosen and seeded by the page number so every run and every
// tool sees the same bytes.
func fillPage(dst []byte, i uint64) {
	r := rand.New(rand.NewPCG(i, 0x9e3779b97f4a7c15))
	switch k := r.IntN(100); {
	case k < 45:
		clear(dst)
	case k < 80:
		words := []string{"kernel ", "page ", "dump ", "vmledger ", "qemu ", "0x", "ffff8880", "\n", "struct ", "task "}
		n := 0
		for n < len(dst) {
			n += copy(dst[n:], words[r.IntN(len(words))])
		}
		binary.LittleEndian.PutUint64(dst, i) // no two text pages alike
	default:
		for j := 0; j < len(dst); j += 8 {
			binary.LittleEndian.PutUint64(dst[j:], r.Uint64())
		}
	}
}

// fillFile fills the pages [from, to) of f with the mix, page n getting
// fillPage(n) (zero pages are skipped, so a sparse file stays sparse).
func fillFile(t testing.TB, f *os.File, from, to uint64) {
	t.Helper()
	const chunk = 256
	buf := make([]byte, chunk*coredump.PageSize)
	for p := from; p < to; p += chunk {
		n := min(chunk, to-p)
		for i := range n {
			fillPage(buf[i*coredump.PageSize:(i+1)*coredump.PageSize], p+i)
		}
		if _, err := f.WriteAt(buf[:n*coredump.PageSize], int64(p*coredump.PageSize)); err != nil {
			t.Fatal(err)
		}
	}
}
