package qemu

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/vmledger/vmledger/hypervisor/qmp"
)

// Live migration, QEMU to QEMU over TCP (libvirt's native migration): the
// destination, started with StartIncoming, listens; the source streams to
// it directly, with no copy through the agent. The orchestration (phases,
// ownership, the log) is the caller's: docs/migration.md.

// livePoll is how often query-migrate is asked during a live migration:
// it is the progress report's resolution and how late the end (and a
// failure) shows: QMP answers it in well under a millisecond.
const livePoll = 10 * time.Millisecond

// LiveOptions tunes an outgoing live migration.
type LiveOptions struct {
	// Bandwidth caps the stream in bytes per second; 0 lifts QEMU's
	// 128 MiB/s default (the link is the caller's to share).
	Bandwidth int64
	// MaxDowntime is the pause QEMU may take to copy the last dirty pages
	// (downtime-limit); 0 keeps QEMU's default of 300 ms.
	MaxDowntime time.Duration
	// Progress, when set, gets each poll's figures (from the poll's
	// goroutine: it must not block).
	Progress func(LiveProgress)
}

// LiveProgress is one query-migrate of a running live migration.
type LiveProgress struct {
	Status    string // QAPI MigrationStatus: setup, active, device, completed, ...
	Pass      uint64 // dirty-sync-count: the RAM iteration
	Sent      uint64 // RAM bytes transferred
	Remaining uint64 // RAM bytes still to send in this pass
	Total     uint64 // guest RAM bytes
	DirtyRate uint64 // pages dirtied per second (dirty-pages-rate)
}

// LiveResult is what QEMU reports once a live migration completed.
type LiveResult struct {
	LiveProgress
	TotalTime time.Duration // QEMU's total-time: migrate to completed
	Downtime  time.Duration // QEMU's downtime: guest paused on neither side
}

// liveInfo is query-migrate with the members a live migration needs
// (qmp.MigrationInfo keeps only what every stream needs).
type liveInfo struct {
	Status    string `json:"status"`
	ErrorDesc string `json:"error-desc"`
	TotalTime int64  `json:"total-time"` // ms
	Downtime  int64  `json:"downtime"`   // ms
	RAM       struct {
		Transferred    uint64 `json:"transferred"`
		Remaining      uint64 `json:"remaining"`
		Total          uint64 `json:"total"`
		DirtySyncCount uint64 `json:"dirty-sync-count"`
		DirtyPagesRate uint64 `json:"dirty-pages-rate"`
	} `json:"ram"`
	SocketAddress []struct {
		Type string `json:"type"`
		Host string `json:"host"`
		Port string `json:"port"`
	} `json:"socket-address"`
}

func (i liveInfo) progress() LiveProgress {
	return LiveProgress{Status: i.Status, Pass: i.RAM.DirtySyncCount, Sent: i.RAM.Transferred,
		Remaining: i.RAM.Remaining, Total: i.RAM.Total, DirtyRate: i.RAM.DirtyPagesRate}
}

func (g *Guest) liveQuery(ctx context.Context) (liveInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
	defer cancel()
	var i liveInfo
	err := g.mon.Execute(ctx, "query-migrate", nil, &i)
	return i, err
}

// ListenIncoming makes a QEMU started by StartIncoming listen for a live
// migration on host (an IP address; loopback in tests) at a port the
// kernel picks, and returns the URI the source migrates to
// ("tcp:HOST:PORT"). QEMU accepts one connection.
func (g *Guest) ListenIncoming(ctx context.Context, host string) (string, error) {
	ip := net.ParseIP(host)
	if ip == nil {
		return "", fmt.Errorf("qemu: listen incoming: %q is not an IP address", host)
	}
	uri := "tcp:" + net.JoinHostPort(ip.String(), "0")
	if err := g.mon.MigrateIncoming(ctx, uri); err != nil {
		return "", fmt.Errorf("qemu: listen incoming on %s: %w", uri, err)
	}
	// QEMU reports the port it got as the incoming side's socket-address.
	i, err := g.liveQuery(ctx)
	if err != nil {
		return "", fmt.Errorf("qemu: listen incoming: %w", err)
	}
	for _, a := range i.SocketAddress {
		if a.Type == "inet" && a.Port != "" && a.Port != "0" {
			return "tcp:" + net.JoinHostPort(ip.String(), a.Port), nil
		}
	}
	return "", fmt.Errorf("qemu: listen incoming: query-migrate names no listening port (%+v)", i.SocketAddress)
}

// WaitIncoming waits until the incoming live migration completed; the
// guest is then paused, and Resume runs it. QEMU 7.2 exits when an
// incoming migration fails, which ends the wait with its log's reason.
func (g *Guest) WaitIncoming(ctx context.Context) error {
	tick := time.NewTicker(livePoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("qemu: incoming migration: %w", ctx.Err())
		case <-g.proc.done:
			return fmt.Errorf("qemu: exited (%s) during the incoming migration; qemu.log: %s",
				describeExit(g.proc.exit), logTail(g.paths.Log, logTailBytes))
		case <-tick.C:
		}
		i, err := g.liveQuery(ctx)
		if err != nil {
			continue // QEMU exiting shows on proc.done; a slow monitor on ctx
		}
		switch i.Status {
		case qmp.MigrationCompleted:
			return nil
		case qmp.MigrationFailed, qmp.MigrationCancelled:
			return fmt.Errorf("qemu: incoming %w", migrationFailure(qmp.MigrationInfo{Status: i.Status, ErrorDesc: i.ErrorDesc}))
		}
	}
}

// MigrateLive migrates the running guest to uri (ListenIncoming's) and
// returns once QEMU reports it completed: the guest is then paused here
// (postmigrate) and whole on the destination. On failure or when ctx ends
// (the migration is cancelled then) QEMU goes on as before, running.
func (g *Guest) MigrateLive(ctx context.Context, uri string, o LiveOptions) (LiveResult, error) {
	bw := o.Bandwidth
	if bw <= 0 {
		bw = qmp.UnlimitedBandwidth
	}
	params := map[string]any{"max-bandwidth": bw}
	if o.MaxDowntime > 0 {
		params["downtime-limit"] = o.MaxDowntime.Milliseconds()
	}
	if err := g.mon.Execute(ctx, "migrate-set-parameters", params, nil); err != nil {
		return LiveResult{}, fmt.Errorf("qemu: live migration: %w", err)
	}
	if err := g.mon.Migrate(ctx, uri); err != nil {
		return LiveResult{}, fmt.Errorf("qemu: live migration to %s: %w", uri, err)
	}
	tick := time.NewTicker(livePoll)
	defer tick.Stop()
	qctx := context.WithoutCancel(ctx) // keep asking after ctx ends
	var cause error
	var giveUp <-chan time.Time
	ctxDone := ctx.Done()
	for {
		select {
		case <-ctxDone:
			ctxDone, cause = nil, ctx.Err()
			g.cancelMigration()
			giveUp = time.After(settleTimeout)
		case <-giveUp:
			return LiveResult{}, fmt.Errorf("qemu: live migration: %w (QEMU did not settle within %v)", cause, settleTimeout)
		case <-g.proc.done:
			return LiveResult{}, fmt.Errorf("qemu: exited (%s) during the live migration; qemu.log: %s",
				describeExit(g.proc.exit), logTail(g.paths.Log, logTailBytes))
		case <-tick.C:
		}
		i, err := g.liveQuery(qctx)
		if err != nil {
			continue
		}
		if o.Progress != nil {
			o.Progress(i.progress())
		}
		switch i.Status {
		case qmp.MigrationCompleted:
			// Also when ctx ended but the cancel came too late: the guest
			// is paused here and whole there, as on success.
			return LiveResult{LiveProgress: i.progress(), TotalTime: time.Duration(i.TotalTime) * time.Millisecond,
				Downtime: time.Duration(i.Downtime) * time.Millisecond}, nil
		case qmp.MigrationFailed, qmp.MigrationCancelled:
			err := migrationFailure(qmp.MigrationInfo{Status: i.Status, ErrorDesc: i.ErrorDesc})
			if cause != nil {
				err = fmt.Errorf("%w (%w)", cause, err)
			}
			return LiveResult{}, fmt.Errorf("qemu: live migration: %w", err)
		}
	}
}
