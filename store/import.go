package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// ErrImport marks an export that Import refused; the message names the line.
var ErrImport = errors.New("store: import refused")

// maxImportLine bounds one line of an export (one event); a config is
// a few KiB, so this only stops a runaway input.
const maxImportLine = 64 << 20

// importBatch bounds the events of one Append during an import.
const importBatch = 1024

// Import builds a new log at path from an export (JSON Lines, as Export
// writes them) and returns the number of events. The log gets the same
// sequences, versions, times, command IDs and hosts, so it replays to the
// same projections.
//
// Every line is checked before it is appended: it must decode, continue
// the sequence (1, 2, ...) and its domain's versions, and be accepted by a
// projection (a legal transition, a payload of its type). The first line
// that is not is refused with its number. Events are appended in order
// with ExpectedVersion = version-1, so the store itself re-checks them.
//
// The log is written to a temporary file beside path and linked into
// place only when everything succeeded: a refused import leaves no file.
// Import never replaces an existing file. The command table is not
// rebuilt (exports do not carry results): a retried command ID from
// before the import acts again.
func Import(ctx context.Context, path string, r io.Reader) (int, error) {
	if _, err := os.Lstat(path); err == nil {
		return 0, fmt.Errorf("store: import into %s: %w", path, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("store: import into %s: %w", path, err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".import-*")
	if err != nil {
		return 0, fmt.Errorf("store: import: %w", err)
	}
	tmp := f.Name()
	_ = f.Close()
	// Open creates a log only where no file is (an empty one is refused):
	// keep the random name, not the empty file.
	_ = os.Remove(tmp)
	defer os.Remove(tmp) // after the link below, only the temporary name goes

	// No fsync per commit: the file is not visible until it is complete,
	// and it is synced once, below, before it gets its real name.
	s, err := Open(tmp, Options{NoSync: true})
	if err != nil {
		return 0, fmt.Errorf("store: import: %w", err)
	}
	n, err := importLines(ctx, s, r)
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	if err := syncPath(tmp); err != nil {
		return 0, fmt.Errorf("store: import: sync %s: %w", tmp, err)
	}
	// Link, not rename: link fails if path appeared meanwhile, so an
	// import never clobbers a log.
	if err := os.Link(tmp, path); err != nil {
		return 0, fmt.Errorf("store: import into %s: %w", path, err)
	}
	if err := syncPath(filepath.Dir(path)); err != nil {
		return n, fmt.Errorf("store: import: sync directory of %s: %w", path, err)
	}
	return n, nil
}

// importer checks lines and groups them into appends of one domain.
type importer struct {
	proj     *domains.Projection
	next     uint64               // the sequence the next line must have
	versions map[uuid.UUID]uint64 // each domain's last version so far
	batch    importBatchOf
}

// importBatchOf is one Append's events and the line of the first.
type importBatchOf struct {
	line   int
	events []domains.Event
}

// importLines checks lines in this goroutine and appends them in another,
// in order: decoding JSON and committing then overlap (on two cores an
// import takes about half the time).
func importLines(ctx context.Context, s *Store, r io.Reader) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan importBatchOf, 16)
	appended := make(chan error, 1)
	go func() {
		var err error
		for b := range batches {
			if err == nil {
				if err = appendBatch(ctx, s, b); err != nil {
					cancel() // stop the reader; keep draining so it never blocks
				}
			}
		}
		appended <- err
	}()
	n, err := readLines(ctx, r, batches)
	close(batches)
	if aerr := <-appended; aerr != nil {
		return 0, aerr // an earlier line than any the reader was at
	}
	return n, err
}

func readLines(ctx context.Context, r io.Reader, batches chan<- importBatchOf) (int, error) {
	im := &importer{proj: domains.NewProjection(), next: 1, versions: map[uuid.UUID]uint64{}}
	send := func() error {
		if len(im.batch.events) == 0 {
			return nil
		}
		select {
		case batches <- im.batch:
		case <-ctx.Done():
			return fmt.Errorf("store: import: %w", ctx.Err())
		}
		im.batch = importBatchOf{}
		return nil
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxImportLine)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		e, err := im.check(line, b)
		if err != nil {
			return 0, err
		}
		if evs := im.batch.events; len(evs) > 0 && (evs[0].Domain != e.Domain || evs[0].CommandID != e.CommandID || len(evs) == importBatch) {
			if err := send(); err != nil {
				return 0, err
			}
		}
		if len(im.batch.events) == 0 {
			im.batch.line = line
		}
		im.batch.events = append(im.batch.events, e)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return 0, fmt.Errorf("%w: line %d: longer than %d bytes", ErrImport, line+1, maxImportLine)
		}
		return 0, fmt.Errorf("store: import: read line %d: %w", line+1, err)
	}
	if err := send(); err != nil {
		return 0, err
	}
	return int(im.next - 1), nil
}

// check decodes one line and refuses it unless it continues the log.
func (im *importer) check(line int, b []byte) (domains.Event, error) {
	var e domains.Event
	if err := json.Unmarshal(b, &e); err != nil {
		return e, fmt.Errorf("%w: line %d: %w", ErrImport, line, err)
	}
	switch {
	case e.Seq < im.next:
		return e, fmt.Errorf("%w: line %d: sequence %d, want %d: a line out of order or repeated", ErrImport, line, e.Seq, im.next)
	case e.Seq > im.next:
		return e, fmt.Errorf("%w: line %d: sequence %d, want %d: a gap (events missing) or lines out of order", ErrImport, line, e.Seq, im.next)
	case e.Domain == uuid.Nil:
		return e, fmt.Errorf("%w: line %d: sequence %d has no domain", ErrImport, line, e.Seq)
	}
	if want := im.versions[e.Domain] + 1; e.Version != want {
		return e, fmt.Errorf("%w: line %d: sequence %d: domain %s version %d, want %d", ErrImport, line, e.Seq, e.Domain, e.Version, want)
	}
	if err := im.proj.Apply(e); err != nil {
		return e, fmt.Errorf("%w: line %d: %w", ErrImport, line, err)
	}
	im.versions[e.Domain] = e.Version
	im.next++
	return e, nil
}

// appendBatch appends one batch; the store assigns the sequences and
// versions the lines carry, since the log is written by us alone.
func appendBatch(ctx context.Context, s *Store, b importBatchOf) error {
	first := b.events[0]
	req := AppendRequest{Domain: first.Domain, ExpectedVersion: first.Version - 1, Events: b.events}
	seqs, err := s.Append(ctx, req)
	if err != nil {
		return fmt.Errorf("store: import: line %d: append: %w", b.line, err)
	}
	if seqs[0] != first.Seq {
		return fmt.Errorf("store: import: line %d: the log gave sequence %d to sequence %d: %w", b.line, seqs[0], first.Seq, ErrCorrupt)
	}
	return nil
}

// syncPath fsyncs a file or a directory.
func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
