// Package randompage tells pages of random bytes (encrypted or compressed
// guest memory) from pages a codec can shrink, cheaply, so that the dump
// and save writers store them raw without spending a codec's CPU on them.
// Written by hand because it is cheaper than klauspost's Estimate, which
// the save writer used before: Estimate reads every byte of the page, Is
// every 7th, and stops a quarter of the way on text (BenchmarkIs has both).
package randompage

import "math/bits"

// Is says that page (4 KiB, a guest page or a sample of a stream) holds
// random bytes (encrypted or compressed memory), which no codec shrinks: at least 210 distinct
// values among every 7th byte (585 samples, across every byte of 8-byte
// words), and as many among the differences of those bytes to the ones
// before them, so that a periodic ramp (0, 1, ..., 255, 0, ...) is not
// taken for random. Random bytes give 230 ± 4 on both. Text gives about
// 35; on the pages of the qemu, go and libc binaries at most 0.04% of
// what zstd saves would be lost (their few pages of near-uniform bytes);
// 99% of an initramfs's pages (compressed) are detected. The second count is only
// taken on pages that pass the first.
func Is(page []byte) bool {
	const stride, threshold = 7, 210
	var seen [4]uint64
	for i := 0; i < len(page); i += stride {
		c := page[i]
		seen[c>>6] |= 1 << (c & 63)
		// A quarter of the way (147 samples), random bytes show 112 ± 6
		// distinct values and text about 30: stop looking at text there
		// (it was 8% of a kdump-zstd dump's CPU). A page that fails here
		// and would have passed is compressed, which only costs time.
		if i == earlyLook && distinct(&seen) < earlyThreshold {
			return false
		}
	}
	if distinct(&seen) < threshold {
		return false
	}
	seen = [4]uint64{}
	for i := stride; i < len(page); i += stride {
		c := page[i] - page[i-1]
		seen[c>>6] |= 1 << (c & 63)
	}
	return distinct(&seen) >= threshold
}

// The early exit of Is: after sample 147 (byte 1022), fewer than
// 64 distinct values.
const earlyLook, earlyThreshold = 146 * 7, 64

func distinct(seen *[4]uint64) int {
	return bits.OnesCount64(seen[0]) + bits.OnesCount64(seen[1]) + bits.OnesCount64(seen[2]) + bits.OnesCount64(seen[3])
}
