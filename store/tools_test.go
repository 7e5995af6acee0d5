package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/store"
)

// Tests of the offline tools: Export, Import, Verify.

func openRO(t *testing.T, path string) *store.Store {
	t.Helper()
	s, err := store.OpenReadOnly(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func exportOf(t *testing.T, s *store.Store) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := store.Export(context.Background(), s, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func replayOf(t *testing.T, s *store.Store) *domains.Projection {
	t.Helper()
	p := domains.NewProjection()
	if err := s.Replay(context.Background(), 0, p.Apply); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustVerify(t *testing.T, s *store.Store) {
	t.Helper()
	rep, err := store.Verify(context.Background(), s)
	if err != nil || !rep.OK() {
		t.Fatalf("verify %s: %v %+v", s.Path(), err, rep)
	}
}

func TestExportImportRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	orig := filepath.Join(dir, "orig.db")
	writeReleaseLog(t, orig) // three domains, every type, schema-1 shutdowns
	src := openRO(t, orig)
	mustVerify(t, src)
	exp := exportOf(t, src)
	if lines := bytes.Count(exp, []byte("\n")); uint64(lines) != src.LastSeq() {
		t.Fatalf("%d lines for %d events", lines, src.LastSeq())
	}

	copyPath := filepath.Join(dir, "sub", "events.db")
	if err := os.Mkdir(filepath.Dir(copyPath), 0o700); err != nil {
		t.Fatal(err)
	}
	n, err := store.Import(ctx, copyPath, bytes.NewReader(exp))
	if err != nil || uint64(n) != src.LastSeq() {
		t.Fatalf("import: %d %v", n, err)
	}
	dst := openRO(t, copyPath)
	mustVerify(t, dst)

	// Same events, field by field (the export of the copy is the export of
	// the original, byte for byte), and the same projections.
	if again := exportOf(t, dst); !bytes.Equal(again, exp) {
		t.Fatalf("the copy exports differently")
	}
	a, err := src.ReadAfter(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := dst.ReadAfter(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) {
		t.Fatalf("%d events, copy %d", len(a), len(b))
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Seq != y.Seq || x.Version != y.Version || x.Domain != y.Domain || !x.Time.Equal(y.Time) ||
			x.CommandID != y.CommandID || x.Host != y.Host || x.Type != y.Type || fmt.Sprint(x.Payload) != fmt.Sprint(y.Payload) {
			t.Fatalf("event %d differs:\n%+v\n%+v", i, x, y)
		}
	}
	if ok, diff := replayOf(t, src).Equal(replayOf(t, dst)); !ok {
		t.Fatalf("projections differ: %s", diff)
	}
	// Nothing but the log is left in the directory.
	if ents, _ := os.ReadDir(filepath.Dir(copyPath)); len(ents) != 1 {
		t.Fatalf("directory holds %v", ents)
	}
	// Per-domain reads work on the copy (its index was built by appends).
	for _, id := range []string{relWeb.String(), relDB.String(), relCache.String()} {
		d, ok := replayOf(t, dst).Lookup(id)
		evs, err := dst.ReadDomain(ctx, d.Config.UUID, 0, 0)
		if ok && (err != nil || uint64(len(evs)) != d.Version) {
			t.Fatalf("ReadDomain %s: %d events, version %d, %v", id, len(evs), d.Version, err)
		}
	}
}

// tamper edits the lines of an export (0-based indexes).
type tamper func(lines []string) []string

func TestImportRefusesTamperedExports(t *testing.T) {
	dir := t.TempDir()
	orig := filepath.Join(dir, "orig.db")
	writeReleaseLog(t, orig)
	exp := string(exportOf(t, openRO(t, orig)))
	lines := strings.Split(strings.TrimSuffix(exp, "\n"), "\n")
	// Line 7 (index 6) is web1's "paused" at seq 7; check the premise.
	if !strings.Contains(lines[6], `"seq":7,`) || !strings.Contains(lines[6], `"type":"paused"`) {
		t.Fatalf("line 7 is %s", lines[6])
	}
	tests := []struct {
		name string
		edit tamper
		want string // in the error, besides the line number
		line int
	}{
		{"gap", func(l []string) []string { return append(l[:6:6], l[7:]...) }, "a gap", 7},
		{"reordered", func(l []string) []string { l[6], l[7] = l[7], l[6]; return l }, "a gap", 7},
		{"repeated", func(l []string) []string { return append(l[:7:7], l[6:]...) }, "out of order or repeated", 8},
		{"broken payload", func(l []string) []string {
			l[6] = strings.Replace(l[6], `"payload":{"reason":"user"}`, `"payload":{"reason":"user",`, 1)
			return l
		}, "", 7},
		{"payload of another type", func(l []string) []string {
			l[6] = strings.Replace(l[6], `"payload":{"reason":"user"}`, `"payload":{"offset":5}`, 1)
			return l
		}, "unknown field", 7},
		{"unknown type", func(l []string) []string {
			l[6] = strings.Replace(l[6], `"type":"paused"`, `"type":"frozen"`, 1)
			return l
		}, "unknown event type", 7},
		{"old schema in JSON", func(l []string) []string { l[6] = strings.Replace(l[6], `"schema":1`, `"schema":0`, 1); return l }, "schema", 7},
		{"version gap", func(l []string) []string {
			l[6] = strings.Replace(l[6], `"version":4,`, `"version":5,`, 1)
			return l
		}, "version 5, want 4", 7},
		{"illegal transition", func(l []string) []string {
			l[6] = strings.Replace(l[6], `"type":"paused","schema":1,"time"`, `"type":"resumed","schema":1,"time"`, 1)
			return l
		}, "illegal", 7},
		{"not JSON", func(l []string) []string { l[0] = "seq 1 defined"; return l }, "", 1},
		{"truncated last line", func(l []string) []string { l[len(l)-1] = l[len(l)-1][:40]; return l }, "", len(lines)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := strings.Join(tc.edit(append([]string(nil), lines...)), "\n") + "\n"
			if in == exp {
				t.Fatal("the edit changed nothing")
			}
			sub := t.TempDir()
			path := filepath.Join(sub, "events.db")
			n, err := store.Import(context.Background(), path, strings.NewReader(in))
			if !errors.Is(err, store.ErrImport) || n != 0 {
				t.Fatalf("got %d, %v; want ErrImport", n, err)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("line %d:", tc.line)) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q: want line %d and %q", err, tc.line, tc.want)
			}
			if ents, _ := os.ReadDir(sub); len(ents) != 0 {
				t.Fatalf("a refused import left %v behind", ents)
			}
		})
	}
}

func TestImportNeverReplaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Import(context.Background(), path, strings.NewReader("")); !errors.Is(err, os.ErrExist) {
		t.Fatalf("got %v, want ErrExist", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Fatalf("the file was touched: %q", b)
	}
	// An empty export is an empty log.
	empty := filepath.Join(t.TempDir(), "events.db")
	if n, err := store.Import(context.Background(), empty, strings.NewReader("\n")); n != 0 || err != nil {
		t.Fatalf("empty import: %d %v", n, err)
	}
	mustVerify(t, openRO(t, empty))
}

// rawEdit changes a closed log file with bbolt directly, the way damage
// (or an old tool) would.
func rawEdit(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(fn)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestVerifyFindsProblems(t *testing.T) {
	events, snapshots := []byte("events"), []byte("snapshots")
	reencode := func(tx *bolt.Tx, seq uint64, edit func(*domains.Event)) error {
		e, err := domains.UnmarshalEvent(seq, tx.Bucket(events).Get(seqKey(seq)))
		if err != nil {
			return err
		}
		edit(&e)
		b, err := e.MarshalBinary(nil)
		if err != nil {
			return err
		}
		return tx.Bucket(events).Put(seqKey(seq), b)
	}
	tests := []struct {
		name string
		edit func(tx *bolt.Tx) error
		want []string
	}{
		{"gap", func(tx *bolt.Tx) error { return tx.Bucket(events).Delete(seqKey(7)) }, []string{"sequence 8 follows 6: a gap of 1"}},
		{"undecodable", func(tx *bolt.Tx) error { return tx.Bucket(events).Put(seqKey(9), []byte{1, 2, 3}) }, []string{"event 9 does not decode"}},
		{"version gap", func(tx *bolt.Tx) error {
			return reencode(tx, 7, func(e *domains.Event) { e.Version = 9 })
		}, []string{"event 7: domain " + relWeb.String() + " version 9, want 4", "event 7 does not fold"}},
		{"illegal transition", func(tx *bolt.Tx) error {
			return reencode(tx, 7, func(e *domains.Event) { e.Type, e.Payload = domains.TypeResumed, domains.Resumed{Reason: "user"} })
		}, []string{"event 7 does not fold", "illegal"}},
		{"snapshot differs", func(tx *bolt.Tx) error {
			c := tx.Bucket(snapshots).Cursor()
			k, v := c.First()
			return tx.Bucket(snapshots).Put(k, bytes.Replace(v, []byte(`"memory_mib":32`), []byte(`"memory_mib":33`), 1))
		}, []string{"differs from a fresh replay"}},
		{"snapshot undecodable", func(tx *bolt.Tx) error {
			k, _ := tx.Bucket(snapshots).Cursor().First()
			return tx.Bucket(snapshots).Put(k, []byte("{"))
		}, []string{"does not decode"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.db")
			writeReleaseLog(t, path)
			rawEdit(t, path, tc.edit)
			s := openRO(t, path)
			rep, err := store.Verify(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() {
				t.Fatalf("verify passed a damaged log: %+v", rep)
			}
			all := strings.Join(rep.Problems, "\n")
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("problems lack %q:\n%s", w, all)
				}
			}
		})
	}
}
