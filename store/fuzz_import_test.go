package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/store"
)

// FuzzImport: the export format (JSON Lines, docs/replay.md) read by
// Import never panics; a refused export leaves no file and says which
// line; an accepted one builds a log that verifies and exports back as
// the canonical form of the lines it read.
func FuzzImport(f *testing.F) {
	src, err := store.OpenReadOnly(filepath.Join("testdata", "release-0.1.db"), store.Options{})
	if err != nil {
		f.Fatal(err)
	}
	var exp bytes.Buffer
	err = store.Export(context.Background(), src, &exp)
	src.Close()
	if err != nil {
		f.Fatal(err)
	}
	lines := bytes.SplitAfter(exp.Bytes(), []byte("\n"))
	f.Add(exp.Bytes())
	for _, n := range []int{1, 2, 5} {
		f.Add(bytes.Join(lines[:n], nil))
	}
	f.Add(append(append([]byte{}, lines[1]...), lines[0]...)) // out of order
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "events.db")
		n, err := store.Import(context.Background(), path, bytes.NewReader(in))
		if err != nil {
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Fatalf("refused import (%v) left %v", err, ents)
			}
			if len(err.Error()) > 4096 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		var want bytes.Buffer
		for _, l := range bytes.Split(in, []byte("\n")) {
			if l = bytes.TrimSpace(l); len(l) == 0 {
				continue
			}
			var e domains.Event
			if err := json.Unmarshal(l, &e); err != nil {
				t.Fatalf("Import accepted a line JSON refuses: %v", err)
			}
			b, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			want.Write(append(b, '\n'))
		}
		s, err := store.OpenReadOnly(path, store.Options{})
		if err != nil {
			t.Fatalf("imported log does not open: %v", err)
		}
		defer s.Close()
		if uint64(n) != s.LastSeq() {
			t.Fatalf("Import said %d events, the log has %d", n, s.LastSeq())
		}
		rep, err := store.Verify(context.Background(), s)
		if err != nil || !rep.OK() {
			t.Fatalf("imported log does not verify: %v %+v", err, rep)
		}
		var got bytes.Buffer
		if err := store.Export(context.Background(), s, &got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("export of the import differs:\n%s\nwant\n%s", got.Bytes(), want.Bytes())
		}
	})
}
