package coredump_test

import (
	"os"
	"path/filepath"
	"testing"
)

// fuzzSeeds adds the committed seed files (testdata/seeds, small dumps
// of each kind) to f.
func fuzzSeeds(f *testing.F, glob string) {
	names, err := filepath.Glob(filepath.Join("testdata", "seeds", glob))
	if err != nil || len(names) == 0 {
		f.Fatalf("no seeds %s: %v", glob, err)
	}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// fuzzRead: Open and reads never panic, and every error is a known one.
func fuzzRead(t *testing.T, b []byte) { _ = readAll(t, b) }

func FuzzELF(f *testing.F)       { fuzzSeeds(f, "*.elf"); f.Fuzz(fuzzRead) }
func FuzzKdump(f *testing.F)     { fuzzSeeds(f, "*.kdump"); f.Fuzz(fuzzRead) }
func FuzzFlattened(f *testing.F) { fuzzSeeds(f, "*.flat"); f.Fuzz(fuzzRead) }

// TestSeedsCurrent keeps the committed seeds equal in kind to what the
// writer makes (regenerate with VMLEDGER_WRITE_SEEDS=1).
func TestSeedsCurrent(t *testing.T) {
	seeds := map[string][]byte{}
	for _, c := range allFormats {
		name := string(c.f)
		switch {
		case c.flat:
			name += ".flat"
		case c.f == "elf":
			name += ".elf"
		default:
			name += ".kdump"
		}
		seeds[name] = tinyDump(t, c.f, c.flat)
	}
	dir := filepath.Join("testdata", "seeds")
	if os.Getenv("VMLEDGER_WRITE_SEEDS") == "1" {
		os.MkdirAll(dir, 0o755)
		for n, b := range seeds {
			if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for n := range seeds {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatalf("seed %s: %v (VMLEDGER_WRITE_SEEDS=1 writes them)", n, err)
		}
		if err := readAll(t, b); err != nil {
			t.Errorf("seed %s: %v", n, err)
		}
	}
}
