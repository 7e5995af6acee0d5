package owner

import (
	"context"
	"io"

	"github.com/vmledger/vmledger/domains"
)

// Capabilities an asynchronous job asks of its guest (Job.Guest(), with a
// type assertion), beside the base port domains.Guest. hypervisor/qemu's
// Guest has them (checked at compile time in its capabilities_test.go).

// StreamOut is a save's or a migration source's: QEMU's migration stream
// written to w (through a pipe the agent reads), the byte count returned.
type StreamOut interface {
	StreamOut(ctx context.Context, w io.Writer) (int64, error)
}

// StreamIn is a restore's or a migration destination's: a saved stream
// fed to a QEMU waiting for it.
type StreamIn interface {
	StreamIn(ctx context.Context, r io.Reader) (int64, error)
}

// LiveSource is a live migration source's: QEMU streams straight to the
// destination's QEMU at uri, and returns once it completed (the guest is
// then paused here) or failed (the guest runs on).
type LiveSource interface {
	MigrateLiveTo(ctx context.Context, uri string, o domains.LiveMigrateOptions) (domains.MigrationStats, error)
}

// LiveIncoming is a live migration destination's, on a QEMU started for
// incoming: listen on host (an IP) and wait for the stream's end.
type LiveIncoming interface {
	ListenIncoming(ctx context.Context, host string) (string, error)
	WaitIncoming(ctx context.Context) error
}
