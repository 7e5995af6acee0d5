package pagemix

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestMix: the fill is deterministic, close to the asked shares, every
// kind looks like its name, and the verifier finds a single changed byte.
func TestMix(t *testing.T) {
	b := make([]byte, 16<<20)
	c, err := Default.Fill(b, 42)
	if err != nil {
		t.Fatal(err)
	}
	n := float64(len(b) / PageSize)
	for k, want := range map[Kind]int{Zero: 45, Text: 35, Random: 20} {
		if got := 100 * float64(c[k]) / n; got < float64(want)-2 || got > float64(want)+2 {
			t.Errorf("%s pages: %.1f%%, want %d%% ± 2", k, got, want)
		}
	}
	t.Log(c)
	again := make([]byte, len(b))
	Default.Fill(again, 42)
	if !bytes.Equal(b, again) {
		t.Fatal("the same seed gave different memory")
	}
	other := make([]byte, len(b))
	Default.Fill(other, 43)
	if bytes.Equal(b, other) {
		t.Fatal("another seed gave the same memory")
	}
	if err := Default.Verify(b, 42); err != nil {
		t.Fatal(err)
	}
	b[12345*7] ^= 1
	if err := Default.Verify(b, 42); err == nil || !strings.Contains(err.Error(), "byte") {
		t.Fatalf("Verify after a flipped byte = %v", err)
	}
	// Text compresses (like text), random does not.
	var text, random []byte
	for i := uint64(0); len(text) < 1<<20 || len(random) < 1<<20; i++ {
		p := make([]byte, PageSize)
		switch Default.fillPage(p, 42, i) {
		case Text:
			text = append(text, p...)
		case Random:
			random = append(random, p...)
		}
	}
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if r := float64(len(enc.EncodeAll(text, nil))) / float64(len(text)); r > 0.4 {
		t.Errorf("text pages compress to %.2f of their size, want under 0.4", r)
	}
	if r := float64(len(enc.EncodeAll(random, nil))) / float64(len(random)); r < 0.99 {
		t.Errorf("random pages compress to %.2f of their size", r)
	}
}

func TestFillFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ram")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Default.FillFile(path, 1); err != nil {
		t.Fatal(err)
	}
	if err := Default.VerifyFile(path, 1); err != nil {
		t.Fatal(err)
	}
	if err := Default.VerifyFile(path, 2); err == nil {
		t.Fatal("verified against the wrong seed")
	}
	if _, err := (Mix{Zero: 50, Text: 50, Random: 10}).Fill(make([]byte, PageSize), 1); err == nil {
		t.Fatal("a mix over 100% accepted")
	}
	if _, err := Default.Fill(make([]byte, 100), 1); err == nil {
		t.Fatal("a partial page accepted")
	}
}
