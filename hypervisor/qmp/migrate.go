package qmp

import (
	"context"
	"math"
)

// Migration states (QAPI MigrationStatus) that end a migration.
const (
	MigrationCompleted = "completed"
	MigrationFailed    = "failed"
	MigrationCancelled = "cancelled"
)

// MigrationDone reports whether status is final: nothing more will happen
// to this migration.
func MigrationDone(status string) bool {
	switch status {
	case MigrationCompleted, MigrationFailed, MigrationCancelled:
		return true
	}
	return false
}

// UnlimitedBandwidth is the max-bandwidth libvirt sets for save and dump
// (QEMU_DOMAIN_MIG_BANDWIDTH_MAX, in MiB/s, times 1 MiB): QEMU's default of
// 128 MiB/s is meant for a live migration sharing a network, and makes a
// save to a local pipe several times slower than it needs to be.
const UnlimitedBandwidth = (math.MaxInt64 / (1 << 20)) << 20

// MigrateSetMaxBandwidth sets the migration rate limit, in bytes per second.
func (c *Client) MigrateSetMaxBandwidth(ctx context.Context, bytesPerSec int64) error {
	args := struct {
		MaxBandwidth int64 `json:"max-bandwidth"`
	}{bytesPerSec}
	return c.Execute(ctx, "migrate-set-parameters", args, nil)
}

// Migrate starts an outgoing migration to uri (e.g. "fd:NAME" after GetFD).
// It returns once QEMU accepted it; QueryMigrate and MIGRATION events tell
// how it goes.
func (c *Client) Migrate(ctx context.Context, uri string) error {
	args := struct {
		URI string `json:"uri"`
	}{uri}
	return c.Execute(ctx, "migrate", args, nil)
}

// MigrateIncoming starts the incoming side of a QEMU started with
// -incoming defer, reading from uri (e.g. "fd:NAME").
func (c *Client) MigrateIncoming(ctx context.Context, uri string) error {
	args := struct {
		URI string `json:"uri"`
	}{uri}
	return c.Execute(ctx, "migrate-incoming", args, nil)
}

// MigrateCancel cancels the outgoing migration (QEMU goes on running, or
// stays paused, as before it).
func (c *Client) MigrateCancel(ctx context.Context) error {
	return c.Execute(ctx, "migrate_cancel", nil, nil)
}
