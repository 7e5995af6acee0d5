package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/vmledger/vmledger/domains"
)

// A command's digest is kept with its result in the same transaction and
// returned by Command; a value written without one (as every log before
// digests was) reads as a legacy record with its result intact.
func TestCommandDigest(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{})
	g1, g2 := newGen(1), newGen(2)
	digest := sha256.Sum256([]byte("define vm-1"))
	if _, err := s.Append(ctx, AppendRequest{Domain: g1.id, Events: g1.batch(1, "new"), CommandID: "new",
		Result: []byte(`{"r":1}`), CommandDigest: digest[:]}); err != nil {
		t.Fatal(err)
	}
	// A legacy value, exactly as older versions wrote it: sequence + result.
	legacy := binary.BigEndian.AppendUint64(nil, 0)
	legacy = append(legacy, `{"r":2}`...)
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketCommands).Put([]byte("old"), legacy) }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, AppendRequest{Domain: g2.id, Events: g2.batch(1, "plain"), CommandID: "plain", Result: []byte(`{"r":3}`)}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id     string
		result string
		digest []byte
		first  uint64
	}{{"new", `{"r":1}`, digest[:], 1}, {"old", `{"r":2}`, nil, 0}, {"plain", `{"r":3}`, nil, 2}} {
		rec, found, err := s.EventLog().Command(ctx, c.id)
		if err != nil || !found || string(rec.Result) != c.result || !bytes.Equal(rec.Digest, c.digest) || rec.FirstSeq != c.first {
			t.Fatalf("%s: %+v %v %v", c.id, rec, found, err)
		}
		if res, _, err := s.Command(ctx, c.id); err != nil || string(res) != c.result {
			t.Fatalf("%s: Store.Command = %q, %v", c.id, res, err)
		}
	}
	// A digest of the wrong size, or without an ID, is refused.
	for _, req := range []AppendRequest{
		{Domain: g2.id, Events: g2.batch(1, "x"), CommandID: "x", CommandDigest: []byte("short")},
		{Domain: g2.id, Events: g2.batch(1, ""), CommandDigest: digest[:]},
	} {
		if _, err := s.Append(ctx, req); !errors.Is(err, domains.ErrInvalid) {
			t.Fatalf("bad digest: %v, want invalid", err)
		}
	}
}

// Check reports a command value whose digest is cut short.
func TestCheckCommandDigestCut(t *testing.T) {
	s := openTest(t, Options{})
	g := newGen(1)
	if _, err := s.Append(context.Background(), AppendRequest{Domain: g.id, Events: g.batch(1, "")}); err != nil {
		t.Fatal(err)
	}
	cut := append(binary.BigEndian.AppendUint64(nil, 1), digestMark, 1, 2, 3)
	put := func(v []byte) {
		if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketCommands).Put([]byte("c"), v) }); err != nil {
			t.Fatal(err)
		}
	}
	put(cut)
	if err := s.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "digest cut short") {
		t.Fatalf("Check: %v, want the cut digest reported", err)
	}
	put(binary.BigEndian.AppendUint64(nil, 1)) // leave a valid log for the cleanup's checks
}
