package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

func TestAppendContext(t *testing.T) {
	g8 := newGate()
	s := openTest(t, Options{Observer: g8})
	t.Cleanup(func() { close(g8.hold) })
	g := newGen(1)

	// Cancelled before the call: nothing is written.
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Append(cctx, AppendRequest{Domain: g.id, Events: g.batch(1, "")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: %v", err)
	}
	g.n = 0

	// Hold the writer after a commit of its own.
	held := newGen(2)
	go func() {
		if _, err := s.Append(context.Background(), AppendRequest{Domain: held.id, Events: held.batch(1, "")}); err != nil {
			t.Error(err)
		}
	}()
	<-g8.batches

	// Cancelled while queued: the writer drops it, nothing is written.
	qctx, qcancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		_, err := s.Append(qctx, AppendRequest{Domain: g.id, Events: g.batch(1, ""), CommandID: "queued"})
		res <- err
	}()
	waitQueued(t, s, 1)
	qcancel()
	if err := <-res; !errors.Is(err, context.Canceled) || errors.Is(err, ErrMaybeCommitted) {
		t.Fatalf("cancelled while queued: %v", err)
	}
	g.n = 0

	// Taken by the writer, then cancelled: the caller hears "maybe", and
	// here it did commit (the writer is held after the commit).
	g8.hold <- struct{}{}
	tctx, tcancel := context.WithCancel(context.Background())
	go func() {
		_, err := s.Append(tctx, AppendRequest{Domain: g.id, Events: g.batch(1, ""), CommandID: "taken"})
		res <- err
	}()
	<-g8.batches // committed, writer held before replying
	tcancel()
	if err := <-res; !errors.Is(err, ErrMaybeCommitted) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled after taken: %v", err)
	}
	g8.hold <- struct{}{}

	ctx := context.Background()
	if _, found, _ := s.Command(ctx, "queued"); found {
		t.Fatal("append cancelled while queued was written")
	}
	if _, found, _ := s.Command(ctx, "taken"); !found {
		t.Fatal("append taken by the writer was not written")
	}
	if s.LastSeq() != 2 {
		t.Fatalf("LastSeq %d, want 2", s.LastSeq())
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "log.db")
	s := openAt(t, path, Options{})
	g := newGen(1)
	mustAppend(t, s, AppendRequest{Domain: g.id, Events: g.batch(3, "c"), CommandID: "c", Result: []byte("r")})
	if err := s.SaveSnapshot(ctx, 2, []byte("snap")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRelayPosition(ctx, 3); err != nil {
		t.Fatal(err)
	}
	want, _ := s.ReadAfter(ctx, 0, 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Append(ctx, AppendRequest{Domain: g.id, Events: g.batch(1, "")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	g.n = 3

	s = openAt(t, path, Options{})
	got, err := s.ReadAfter(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	sameEvents(t, got, want)
	if s.LastSeq() != 3 {
		t.Fatalf("LastSeq %d after reopen", s.LastSeq())
	}
	if res, found, _ := s.Command(ctx, "c"); !found || string(res) != "r" {
		t.Fatal("command lost")
	}
	if seq, data, _ := s.LatestSnapshot(ctx); seq != 2 || string(data) != "snap" {
		t.Fatal("snapshot lost")
	}
	if pos, _ := s.RelayPosition(ctx); pos != 3 {
		t.Fatal("relay position lost")
	}
	seqs := mustAppend(t, s, AppendRequest{Domain: g.id, ExpectedVersion: 3, Events: g.batch(1, "")})
	if seqs[0] != 4 {
		t.Fatalf("sequence after reopen %d, want 4", seqs[0])
	}
}

func TestLocking(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	s := openAt(t, path, Options{})
	g := newGen(1)
	mustAppend(t, s, AppendRequest{Domain: g.id, Events: g.batch(1, "")})
	for _, tc := range []struct {
		name string
		open func(string, Options) (*Store, error)
	}{{"read-only", OpenReadOnly}, {"read-write", Open}} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := tc.open(path, Options{})
			if !errors.Is(err, ErrLocked) {
				t.Fatalf("open while held: %v", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("took %v to report the lock", d)
			}
		})
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenReadOnly(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	ctx := context.Background()
	if _, err := ro.Append(ctx, AppendRequest{Domain: g.id, ExpectedVersion: 1, Events: g.batch(1, "")}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("append on read-only: %v", err)
	}
	if err := ro.SetRelayPosition(ctx, 1); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("relay on read-only: %v", err)
	}
	if evs, err := ro.ReadAfter(ctx, 0, 0); err != nil || len(evs) != 1 || ro.LastSeq() != 1 {
		t.Fatalf("read-only read: %v %v", evs, err)
	}
	if _, err := OpenReadOnly(filepath.Join(t.TempDir(), "missing.db"), Options{}); err == nil {
		t.Fatal("read-only open of a missing file succeeded")
	}
}

func TestRebaseMatchesEncoder(t *testing.T) {
	// AnyVersion appends are encoded as versions 1.. and spliced by the
	// writer; the result must equal a fresh encoding at the real versions,
	// including where the uvarint grows (127 → 128 → 16384).
	g := newGen(1)
	evs := g.batch(3, "cmd")
	s := &Store{}
	for _, base := range []uint64{0, 1, 126, 127, 16382, 1 << 40} {
		r, err := s.encode(AppendRequest{Domain: g.id, ExpectedVersion: AnyVersion, Events: evs})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.rebase(base); err != nil {
			t.Fatal(err)
		}
		for i := range evs {
			e := evs[i]
			e.Version = base + uint64(i) + 1
			want, _ := e.MarshalBinary(nil)
			if got := r.event(i); string(got) != string(want) {
				t.Fatalf("base %d event %d:\n got %x\nwant %x", base, i, got, want)
			}
		}
	}
}

func TestCheckFindsCorruption(t *testing.T) {
	ctx := context.Background()
	g := newGen(1)
	other := newGen(2)
	evs := g.batch(4, "")
	foreign := other.batch(1, "")
	foreign[0].Version = 2
	foreignVal, err := foreign[0].MarshalBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	indexKey := func(id uuid.UUID, v uint64) []byte { return append(append([]byte{}, id[:]...), u64(v)...) }
	tests := []struct {
		name   string
		damage func(tx *bolt.Tx) error
	}{
		{"undecodable value", func(tx *bolt.Tx) error { return tx.Bucket(bucketEvents).Put(u64(2), []byte{1, 2, 3}) }},
		{"unknown codec", func(tx *bolt.Tx) error { return tx.Bucket(bucketEvents).Put(u64(3), []byte{9}) }},
		{"gap", func(tx *bolt.Tx) error { return tx.Bucket(bucketEvents).Delete(u64(2)) }},
		{"event of another domain", func(tx *bolt.Tx) error { return tx.Bucket(bucketEvents).Put(u64(2), foreignVal) }},
		{"index points elsewhere", func(tx *bolt.Tx) error { return tx.Bucket(bucketIndex).Put(indexKey(g.id, 2), u64(3)) }},
		{"index entry missing", func(tx *bolt.Tx) error { return tx.Bucket(bucketIndex).Delete(indexKey(g.id, 4)) }},
		{"index version gap", func(tx *bolt.Tx) error { return tx.Bucket(bucketIndex).Delete(indexKey(g.id, 2)) }},
		{"extra index entry", func(tx *bolt.Tx) error { return tx.Bucket(bucketIndex).Put(indexKey(g.id, 5), u64(4)) }},
		{"command beyond the log", func(tx *bolt.Tx) error { return tx.Bucket(bucketCommands).Put([]byte("x"), u64(99)) }},
		{"relay beyond the log", func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(metaRelay, u64(99)) }},
		{"indexed mark behind the index", func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(metaIndexed, u64(2)) }},
		{"unindexed event out of order", func(tx *bolt.Tx) error {
			ix := tx.Bucket(bucketIndex)
			for v := uint64(2); v <= 4; v++ {
				if err := ix.Delete(indexKey(g.id, v)); err != nil {
					return err
				}
			}
			if err := tx.Bucket(bucketMeta).Put(metaIndexed, u64(1)); err != nil {
				return err
			}
			return tx.Bucket(bucketEvents).Put(u64(3), foreignVal) // other domain, version 2
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log.db")
			s, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			mustAppend(t, s, AppendRequest{Domain: g.id, Events: evs})
			if err := s.Check(ctx); err != nil {
				t.Fatalf("healthy log: %v", err)
			}
			s.Close()
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(tc.damage); err != nil {
				t.Fatal(err)
			}
			db.Close()
			s, err = OpenReadOnly(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			err = s.Check(ctx)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Check: %v, want corruption", err)
			}
			t.Logf("reported: %v", err)
		})
	}
}

func TestOpenRefusesForeignFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Update(func(tx *bolt.Tx) error {
		m, _ := tx.CreateBucketIfNotExists(bucketMeta)
		return m.Put(metaFormat, u64(99))
	})
	db.Close()
	if _, err := Open(path, Options{}); !errors.Is(err, ErrFormat) {
		t.Fatalf("Open of a foreign format: %v", err)
	}
}

func TestIndexLag(t *testing.T) {
	// Index entries wait in memory until indexFlushAt of them gathered:
	// reads merge them; a copy of the file taken while they wait (as after
	// a crash) opens with them rebuilt; a flush writes them all.
	ctx := context.Background()
	dir := t.TempDir()
	s := openAt(t, filepath.Join(dir, "log.db"), Options{NoSync: true})
	gens := []*gen{newGen(1), newGen(2), newGen(3)}
	appendRound := func(s *Store, perDomain int) {
		for _, g := range gens {
			v := uint64(g.n)
			mustAppend(t, s, AppendRequest{Domain: g.id, ExpectedVersion: v, Events: g.batch(perDomain, "")})
		}
	}
	indexEntries := func(s *Store) (n int, mark uint64) {
		_ = s.db.View(func(tx *bolt.Tx) error {
			n = tx.Bucket(bucketIndex).Stats().KeyN
			mark, _ = seqOf(tx.Bucket(bucketMeta).Get(metaIndexed))
			return nil
		})
		return n, mark
	}
	verify := func(s *Store, what string) {
		t.Helper()
		for _, g := range gens {
			if v, err := s.DomainVersion(ctx, g.id); err != nil || v != uint64(g.n) {
				t.Fatalf("%s: DomainVersion %d %v, want %d", what, v, err, g.n)
			}
			for _, after := range []uint64{0, 3, uint64(g.n) - 1} {
				evs, err := s.ReadDomain(ctx, g.id, after, 0)
				if err != nil || len(evs) != g.n-int(after) || evs[len(evs)-1].Version != uint64(g.n) {
					t.Fatalf("%s: ReadDomain after %d: %d events, %v", what, after, len(evs), err)
				}
			}
		}
		if err := s.Check(ctx); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	appendRound(s, 10)
	if n, mark := indexEntries(s); n != 0 || mark != 0 {
		t.Fatalf("index written early: %d entries, mark %d", n, mark)
	}
	verify(s, "lagging")

	data, err := os.ReadFile(filepath.Join(dir, "log.db"))
	if err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(dir, "crashed.db")
	if err := os.WriteFile(crashed, data, 0o600); err != nil {
		t.Fatal(err)
	}
	c := openAt(t, crashed, Options{})
	if c.lag.n != 30 {
		t.Fatalf("rebuilt lag of %d entries, want 30", c.lag.n)
	}
	verify(c, "rebuilt")

	for n, _ := indexEntries(s); n == 0; n, _ = indexEntries(s) {
		appendRound(s, 100)
	}
	appendRound(s, 1)
	if n, mark := indexEntries(s); n < indexFlushAt || uint64(n) != mark {
		t.Fatalf("after flush: %d entries, mark %d", n, mark)
	}
	verify(s, "flushed")
}

func TestLegacyIndexMark(t *testing.T) {
	// A file from before the lag has no "indexed" mark and a complete
	// index. Read-only, it checks clean; opened for writing, the mark is
	// set to the end of the log before anything is appended.
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "log.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := newGen(1)
	mustAppend(t, s, AppendRequest{Domain: g.id, Events: g.batch(5, "")})
	s.Close() // flushes the index
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(metaIndexed) })
	db.Close()

	ro, err := OpenReadOnly(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ro.Check(ctx); err != nil {
		t.Fatalf("read-only check of a legacy file: %v", err)
	}
	if v, _ := ro.DomainVersion(ctx, g.id); v != 5 || ro.lag.n != 0 {
		t.Fatalf("legacy read-only: version %d, lag %d", v, ro.lag.n)
	}
	ro.Close()

	s = openAt(t, path, Options{})
	mustAppend(t, s, AppendRequest{Domain: g.id, ExpectedVersion: 5, Events: g.batch(2, "")})
	var mark uint64
	_ = s.db.View(func(tx *bolt.Tx) error { mark, _ = seqOf(tx.Bucket(bucketMeta).Get(metaIndexed)); return nil })
	if mark != 5 || s.lag.n != 2 {
		t.Fatalf("mark %d, lag %d; want 5, 2", mark, s.lag.n)
	}
}
