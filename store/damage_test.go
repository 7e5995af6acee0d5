package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/store/storetest"
)

// sampleLog writes a closed log of n events (with a snapshot) and returns
// its path.
func sampleLog(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < n; i += 10 {
		g := newGen(i)
		if _, err := s.Append(ctx, AppendRequest{Domain: g.id, Events: g.batch(10, "")}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := LoadProjection(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	data, err := p.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSnapshot(ctx, s.LastSeq(), data); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func size(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// Issue 7, defect 7: a log cut short (head -c 8192) or emptied is refused
// at open, for writing and for reading, with ErrCorrupt and a message that
// says what is wrong, before bbolt maps it (it would fault: SIGBUS); the
// file is left as it was (an empty one is not turned into a new log).
func TestOpenRefusesTruncatedOrEmptyLog(t *testing.T) {
	for _, tc := range []struct {
		name string
		keep int64
		want string
	}{
		{"head -c 8192", 8192, "truncated"},
		{"head -c 100000", 100000, "truncated"},
		{"one meta page", 4096, "truncated"},
		{"empty", 0, "empty (0 bytes)"},
		{"partial first page", 50, "neither of its two meta pages is valid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := sampleLog(t, 2000)
			if err := storetest.Truncate(path, tc.keep); err != nil {
				t.Fatal(err)
			}
			for _, open := range []func(string, Options) (*Store, error){Open, OpenReadOnly} {
				s, err := open(path, Options{})
				if err == nil {
					s.Close()
					t.Fatalf("opened a damaged log")
				}
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
					t.Errorf("err = %v, want ErrCorrupt saying %q and naming the file", err, tc.want)
				}
				if got := size(t, path); got != tc.keep {
					t.Fatalf("the file is now %d bytes, was %d", got, tc.keep)
				}
			}
		})
	}
}

// A new log appears at its path only complete: the file is built under a
// temporary name and linked into place (no empty events.db, no leftover).
func TestOpenCreatesCompleteLog(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, filepath.Join(dir, "events.db"), Options{NoSync: true})
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "events.db" {
		t.Fatalf("directory holds %v", entries)
	}
	if _, err := checkFile(s.Path(), true); err != nil {
		t.Fatal(err)
	}
}

// A damaged freelist page makes bbolt panic (a page of the wrong type) or
// fault (a count that runs past the file) where it reads it: in Open for
// writing, in Check (in a goroutine of bbolt's own) for reading. Open for
// writing refuses with ErrCorrupt; read-only, Verify reports the damage as
// a problem and replay still reads every event.
func TestDamagedFreelist(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind int
	}{
		{"not a freelist page", storetest.NotAFreelist},
		{"huge count", storetest.HugeFreelist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := sampleLog(t, 3000)
			if err := storetest.CorruptFreelist(path, tc.kind); err != nil {
				t.Fatal(err)
			}
			if s, err := Open(path, Options{}); err == nil {
				s.Close()
				t.Fatal("opened for writing a log with a damaged freelist")
			} else if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v, want ErrCorrupt", err)
			}
			s, err := OpenReadOnly(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			rep, err := Verify(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() || !strings.Contains(strings.Join(rep.Problems, "\n"), "freelist") {
				t.Fatalf("verify: %+v", rep.Problems)
			}
			if err := s.Check(ctx); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Check: %v", err)
			}
			n := 0
			if err := s.Replay(ctx, 0, func(e domains.Event) error { n++; return nil }); err != nil || n != 3000 {
				t.Fatalf("replay: %d events, %v", n, err)
			}
		})
	}
}

// A fault while reading (the file cut short under an open store: pages it
// maps are gone) is an error wrapping ErrCorrupt, not a SIGBUS that kills
// the process; so is bbolt's assertion on a page that is not what its
// parent says.
func TestReadFaultIsAnError(t *testing.T) {
	ctx := context.Background()
	t.Run("file cut under the map", func(t *testing.T) {
		path := sampleLog(t, 3000)
		s, err := OpenReadOnly(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := storetest.Truncate(path, 8192); err != nil {
			t.Fatal(err)
		}
		err = s.Replay(ctx, 0, func(domains.Event) error { return nil })
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "damaged") {
			t.Fatalf("replay: %v", err)
		}
		if _, err := s.ReadAfter(ctx, 0, 10); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("ReadAfter: %v", err)
		}
		rep, err := Verify(ctx, s)
		if err != nil || rep.OK() {
			t.Fatalf("verify: %v, %+v", err, rep.Problems)
		}
	})
	t.Run("live store, file cut under it", func(t *testing.T) {
		path := sampleLog(t, 3000)
		s, err := Open(path, Options{NoSync: true, RecoverEvery: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := storetest.Truncate(path, 8192); err != nil {
			t.Fatal(err)
		}
		g := newGen(5000)
		if _, err := s.Append(ctx, AppendRequest{Domain: g.id, Events: g.batch(2, "")}); err == nil {
			t.Fatal("appended to a log cut short")
		}
		// The store is broken, and its retries find the file truncated.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if h := s.Health(); errors.Is(h, ErrBroken) && strings.Contains(h.Error(), "truncated") {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("health: %v", h)
			}
		}
		if _, err := s.ReadDomain(ctx, newGen(0).id, 0, 0); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("ReadDomain: %v", err)
		}
		if _, err := s.ReadAfter(ctx, 100, 10); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("ReadAfter: %v", err)
		}
		_ = s.Close() // may fail; must not fault
	})
	t.Run("page that is not itself", func(t *testing.T) {
		path := sampleLog(t, 3000)
		// Overwrite a page in the middle of the events with a copy of
		// another: its header names the other page.
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		page := make([]byte, 4096)
		if _, err := f.ReadAt(page, 10*4096); err != nil {
			t.Fatal(err)
		}
		for id := int64(11); id < 40; id++ {
			if _, err := f.WriteAt(page, id*4096); err != nil {
				t.Fatal(err)
			}
		}
		f.Close()
		s, err := OpenReadOnly(path, Options{})
		if err != nil {
			if errors.Is(err, ErrCorrupt) {
				return // refused at open: as good
			}
			t.Fatal(err)
		}
		defer s.Close()
		rep, err := Verify(ctx, s)
		if err != nil || rep.OK() {
			t.Fatalf("verify: %v, %+v", err, rep.Problems)
		}
	})
}
