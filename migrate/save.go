package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// Source streams a guest's state out (a *qemu.Guest does: StreamOut).
type Source interface {
	StreamOut(ctx context.Context, w io.Writer) (int64, error)
}

// Target takes a guest's state in (a *qemu.Guest started with
// StartIncoming does: StreamIn).
type Target interface {
	StreamIn(ctx context.Context, r io.Reader) (int64, error)
}

// Save streams src's state into a new image at path (never replacing a
// file: it must not exist), with config recorded in it. The image is
// complete and durable when Save returns nil; on any failure (src's,
// the disk's, ctx's) the file is removed, and even a crash before that
// leaves only a partial image that no reader accepts.
func Save(ctx context.Context, src Source, path string, config []byte, o Options) (Stats, error) {
	fw, err := Create(path, config, o)
	if err != nil {
		return Stats{}, err
	}
	if _, err := src.StreamOut(ctx, fw); err != nil {
		fw.Abort()
		return Stats{}, fmt.Errorf("migrate: save %s: %w", path, err)
	}
	if err := ctx.Err(); err != nil {
		fw.Abort()
		return Stats{}, fmt.Errorf("migrate: save %s: %w", path, err)
	}
	st, err := fw.Commit()
	if err != nil {
		return Stats{}, fmt.Errorf("migrate: save %s: %w", path, err)
	}
	return st, nil
}

// VerifyFile is Verify on the file at path.
func VerifyFile(ctx context.Context, path string) (Summary, error) {
	return checkFile(ctx, path, Verify)
}

// ScanFile is Scan on the file at path.
func ScanFile(ctx context.Context, path string) (Summary, error) {
	return checkFile(ctx, path, Scan)
}

func checkFile(ctx context.Context, path string, check func(context.Context, io.Reader) (Summary, error)) (Summary, error) {
	f, err := os.Open(path)
	if err != nil {
		return Summary{}, fmt.Errorf("migrate: %w", err)
	}
	defer f.Close()
	s, err := check(ctx, f)
	if err != nil {
		return Summary{}, fmt.Errorf("migrate: %s: %w", path, err)
	}
	return s, nil
}

// StartFunc starts the destination of a restore from the checked image's
// header and config (define or update the domain, start QEMU with
// -incoming defer). It is only called for an image that passed the
// check before start (Scan, or Verify with RestoreOptions.FullVerify).
type StartFunc func(ctx context.Context, s Summary) (Target, error)

// ErrChanged means the image was modified between its check and the
// restore's second read.
var ErrChanged = errors.New("save image changed while it was restored")

// RestoreOptions tune RestoreWith.
type RestoreOptions struct {
	// FullVerify runs Verify (every chunk expanded, the stream's XXH64
	// compared) before start, instead of Scan (structure and every CRC
	// over the stored bytes). It costs a second expansion of the whole
	// stream; it also refuses, before start, a payload that has valid
	// CRCs but does not expand to what the end marker's hash says, which
	// only a faulty writer or a crafted image produces.
	FullVerify bool
}

// Restore is RestoreWith with the default options: the image is scanned
// whole before start (Scan), and fully verified as the stream flows.
func Restore(ctx context.Context, path string, start StartFunc) (Summary, error) {
	return RestoreWith(ctx, path, start, RestoreOptions{})
}

// RestoreWith checks the whole image at path first (Scan, or Verify with
// o.FullVerify), and only then starts the destination and feeds it the
// stream (Feed). It returns the checked summary. When start succeeded and
// the feed fails, the target is left for the caller to tear down: it must
// never be resumed.
func RestoreWith(ctx context.Context, path string, start StartFunc, o RestoreOptions) (Summary, error) {
	check := ScanFile
	if o.FullVerify {
		check = VerifyFile
	}
	s, err := check(ctx, path)
	if err != nil {
		return Summary{}, err
	}
	if err := ctx.Err(); err != nil {
		return Summary{}, fmt.Errorf("migrate: restore %s: %w", path, err)
	}
	if err := Feed(ctx, path, s, func(ctx context.Context) (Target, error) { return start(ctx, s) }); err != nil {
		return Summary{}, err
	}
	return s, nil
}

// Feed is the second half of a restore, for a caller that checked the
// image itself (ScanFile or VerifyFile) before acting on its config: it
// reopens the image, checks that its header and config are still those of
// s, calls start, and feeds the target the stream, which a Reader checks
// in full as it flows: every chunk's CRC again, its expansion, and the
// stream's XXH64 and counts at the end marker, before the last read
// returns. Any finding fails the feed (the target got a stream that ends
// in a read error); a stream other than the one s describes is ErrChanged.
func Feed(ctx context.Context, path string, s Summary, start func(ctx context.Context) (Target, error)) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("migrate: restore: %w", err)
	}
	defer f.Close()
	rd, err := NewReader(f)
	if err != nil {
		return fmt.Errorf("migrate: restore %s: %w", path, err)
	}
	defer rd.Close()
	if rd.Header() != s.Header || !bytes.Equal(rd.Config(), s.Config) {
		return fmt.Errorf("migrate: restore %s: %w (header or config)", path, ErrChanged)
	}
	t, err := start(ctx)
	if err != nil {
		return fmt.Errorf("migrate: restore %s: start: %w", path, err)
	}
	if _, err := t.StreamIn(ctx, ctxReader{ctx, rd}); err != nil {
		return fmt.Errorf("migrate: restore %s: %w", path, err)
	}
	// The Reader checked its end marker before its last read returned
	// io.EOF; a target that stopped reading early never got that far.
	if rd.err != io.EOF {
		return fmt.Errorf("migrate: restore %s: the target stopped reading before the end of the stream", path)
	}
	if got := rd.summary(); got.StreamXXH64 != s.StreamXXH64 || got.StreamBytes != s.StreamBytes || got.Chunks != s.Chunks {
		return fmt.Errorf("migrate: restore %s: %w (stream)", path, ErrChanged)
	}
	return nil
}
