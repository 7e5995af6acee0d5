package qemu

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmledger/vmledger/hypervisor/qmp"
)

const (
	// migratePoll is how often query-migrate is asked while a stream runs.
	// The pipe's end of file, not the poll, tells when the data is all
	// there, so this only bounds how late a failure is noticed.
	migratePoll = 20 * time.Millisecond

	// pipeSize is asked of the kernel for the migration pipe: the 64 KiB
	// default costs a context switch every 64 KiB at ~1 GB/s.
	pipeSize = 1 << 20

	// copyBuffer is the size of one read from or write to the pipe.
	copyBuffer = 1 << 20

	// cleanupTimeout bounds the commands that undo a failed stream
	// (migrate_cancel, closefd) when the caller's ctx is already done.
	cleanupTimeout = 5 * time.Second

	// settleTimeout bounds the wait, after an abort, for QEMU to report
	// the migration cancelled or failed.
	settleTimeout = 10 * time.Second
)

// StreamOut saves the guest's state: QEMU's migration stream goes through
// a pipe whose write end is passed to QEMU (getfd, then migrate fd:NAME),
// and everything read from the read end is written to w. The rate limit is
// lifted first, as libvirt does for save. It returns the number of stream
// bytes once QEMU reports the migration completed and the pipe reached end
// of file, so w has the whole stream.
//
// On success QEMU is left paused (postmigrate): the caller ends it, or
// resumes it to keep the guest. On failure (QEMU's error, w's error, ctx
// done: the migration is then cancelled) QEMU goes on as it was before,
// running if it ran.
func (g *Guest) StreamOut(ctx context.Context, w io.Writer) (int64, error) {
	if err := g.mon.MigrateSetMaxBandwidth(ctx, qmp.UnlimitedBandwidth); err != nil {
		return 0, fmt.Errorf("qemu: stream out: %w", err)
	}
	pr, pw, err := newPipe()
	if err != nil {
		return 0, fmt.Errorf("qemu: stream out: %w", err)
	}
	defer pr.Close()
	name := g.fdName("out")
	err = g.mon.GetFD(ctx, name, pw)
	pw.Close() // QEMU has its own copy; ours would hide QEMU's end of file
	if err != nil {
		return 0, fmt.Errorf("qemu: stream out: %w", err)
	}
	if err := g.mon.Migrate(ctx, "fd:"+name); err != nil {
		g.closeFD(name)
		return 0, fmt.Errorf("qemu: stream out: %w", err)
	}

	copied := make(chan copyResult, 1)
	go func() {
		n, err := copyOut(w, pr)
		copied <- copyResult{n, err}
	}()
	cr, err := g.waitMigration(ctx, copied, pr)
	if err != nil {
		return cr.n, fmt.Errorf("qemu: stream out: %w", err)
	}
	return cr.n, nil
}

// StreamIn feeds a saved stream to a QEMU started by StartIncoming: the
// read end of a pipe goes to QEMU (getfd, then migrate-incoming fd:NAME)
// and r is copied into the write end. It returns once QEMU reports the
// incoming migration completed; the guest is then paused, and Resume runs
// it. An error from r (a Reader that found the image damaged) ends the
// stream early, so QEMU fails the migration: QEMU 7.2 exits then, and the
// caller only has to make sure it is gone.
func (g *Guest) StreamIn(ctx context.Context, r io.Reader) (int64, error) {
	pr, pw, err := newPipe()
	if err != nil {
		return 0, fmt.Errorf("qemu: stream in: %w", err)
	}
	defer pw.Close()
	name := g.fdName("in")
	err = g.mon.GetFD(ctx, name, pr)
	pr.Close()
	if err != nil {
		return 0, fmt.Errorf("qemu: stream in: %w", err)
	}
	if err := g.mon.MigrateIncoming(ctx, "fd:"+name); err != nil {
		g.closeFD(name)
		return 0, fmt.Errorf("qemu: stream in: %w", err)
	}
	copied := make(chan copyResult, 1)
	go func() {
		n, err := io.CopyBuffer(pw, onlyReader{r}, make([]byte, copyBuffer))
		pw.Close() // end of file for QEMU, also after an error
		copied <- copyResult{n, err}
	}()
	cr, err := g.waitMigration(ctx, copied, pw)
	if err != nil {
		return cr.n, fmt.Errorf("qemu: stream in: %w", err)
	}
	return cr.n, nil
}

type copyResult struct {
	n   int64
	err error
}

// waitMigration waits until both QEMU says the migration is over and the
// copy has finished. A copy error, ctx's end or a broken monitor aborts:
// our end of the pipe (end) is closed, so that neither QEMU nor the copy
// can stay blocked on it, and the migration is cancelled. After an abort
// it waits at most settleTimeout for QEMU to settle.
func (g *Guest) waitMigration(ctx context.Context, copied <-chan copyResult, end *os.File) (copyResult, error) {
	var (
		cr        copyResult
		done      bool // copy finished
		status    qmp.MigrationInfo
		failure   error
		cancelled bool
		giveUp    <-chan time.Time
		ctxDone   = ctx.Done()
		qctx      = context.WithoutCancel(ctx) // keep asking after ctx ends
		tick      = time.NewTicker(migratePoll)
	)
	defer tick.Stop()
	abort := func(err error) {
		if failure == nil {
			failure = err
		}
		end.Close()
		if !cancelled {
			cancelled = true
			g.cancelMigration()
		}
		if giveUp == nil {
			giveUp = time.After(settleTimeout)
		}
	}
	for !done || !qmp.MigrationDone(status.Status) {
		select {
		case cr = <-copied:
			done, copied = true, nil
			if cr.err != nil && failure == nil {
				abort(fmt.Errorf("copying the stream: %w", cr.err))
			} else if cr.err == nil && !qmp.MigrationDone(status.Status) {
				// QEMU may have written its last byte and not yet said
				// so: ask now rather than a tick later.
				if st, err := g.queryMigrate(qctx); err == nil {
					status = st
				}
			}
		case <-tick.C:
			st, err := g.queryMigrate(qctx)
			if err != nil {
				abort(err)
				continue
			}
			status = st
			if qmp.MigrationDone(st.Status) && st.Status != qmp.MigrationCompleted {
				if failure == nil {
					failure = migrationFailure(st)
				}
				end.Close() // the copy may wait on a pipe QEMU abandoned
			}
		case <-g.proc.done:
			end.Close()
			if !done {
				cr = <-copied
			}
			return cr, fmt.Errorf("qemu exited (%s) during the migration; qemu.log: %s",
				describeExit(g.proc.exit), logTail(g.paths.Log, logTailBytes))
		case <-g.mon.Done():
			// Nobody left to ask or cancel: QEMU may still be writing, but
			// our end is closed, so it gets EPIPE and fails.
			end.Close()
			if !done {
				cr = <-copied
			}
			if failure == nil {
				failure = g.mon.Err()
			}
			return cr, fmt.Errorf("monitor lost during the migration: %w", failure)
		case <-ctxDone:
			ctxDone = nil
			abort(ctx.Err())
		case <-giveUp:
			if !done {
				cr = <-copied // end is closed: the copy ends at once
			}
			return cr, fmt.Errorf("%w (QEMU's migration did not settle within %v: status %q)", failure, settleTimeout, status.Status)
		}
	}
	switch {
	case failure != nil:
		return cr, failure
	case status.Status != qmp.MigrationCompleted:
		return cr, migrationFailure(status)
	}
	return cr, nil
}

func migrationFailure(st qmp.MigrationInfo) error {
	desc := st.ErrorDesc
	if desc == "" {
		desc = "no reason given"
	}
	return fmt.Errorf("migration %s: %s", st.Status, desc)
}

// queryMigrate bounds one query-migrate, so that a hung monitor cannot
// hold a cancelled stream forever.
func (g *Guest) queryMigrate(ctx context.Context) (qmp.MigrationInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
	defer cancel()
	return g.mon.QueryMigrate(ctx)
}

func (g *Guest) cancelMigration() {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if err := g.mon.MigrateCancel(ctx); err != nil {
		g.log.Warn().Err(err).Msg("migrate_cancel failed")
	}
}

func (g *Guest) closeFD(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if err := g.mon.CloseFD(ctx, name); err != nil {
		g.log.Debug().Err(err).Str("fd", name).Msg("closefd after a failed command")
	}
}

// fdName is unique per guest, so a leftover of a failed stream never
// stands in for the next one.
func (g *Guest) fdName(dir string) string {
	return fmt.Sprintf("vmledger-%s-%d", dir, g.fdSeq.Add(1))
}

// newPipe returns a pipe with a large buffer (best effort: the size is a
// hint, a smaller one only costs speed).
func newPipe() (r, w *os.File, err error) {
	r, w, err = os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	// Not w.Fd(): that would put the pipe in blocking mode, and a blocked
	// write could then not be interrupted by closing it.
	if rc, err := w.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize) })
	}
	return r, w, nil
}

// copyOut copies r to w in large reads (io.Copy would use os.File's
// WriterTo, which reads 32 KiB at a time).
func copyOut(w io.Writer, r io.Reader) (int64, error) {
	if sr, ok := w.(streamReader); ok {
		return sr.ReadStreamFrom(r) // no copy through our buffer
	}
	return io.CopyBuffer(onlyWriter{w}, onlyReader{r}, make([]byte, copyBuffer))
}

// streamReader is a w that reads the stream into its own buffers
// (migrate.Writer).
type streamReader interface {
	ReadStreamFrom(r io.Reader) (int64, error)
}

// onlyReader and onlyWriter hide ReaderFrom and WriterTo, so that
// io.CopyBuffer uses the given buffer.
type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }
