package qmp

import (
	"context"
	"errors"
)

// Status is the answer to query-status.
type Status struct {
	Status  string `json:"status"` // QAPI RunState: "prelaunch", "running", "paused", "shutdown", ...
	Running bool   `json:"running"`
}

// QueryStatus returns the VM's run state.
func (c *Client) QueryStatus(ctx context.Context) (Status, error) {
	var s Status
	err := c.Execute(ctx, "query-status", nil, &s)
	return s, err
}

// Cont starts or resumes the vCPUs (QEMU emits RESUME).
func (c *Client) Cont(ctx context.Context) error { return c.Execute(ctx, "cont", nil, nil) }

// Stop pauses the vCPUs (QEMU emits STOP unless already stopped).
func (c *Client) Stop(ctx context.Context) error { return c.Execute(ctx, "stop", nil, nil) }

// SystemReset resets the machine (QEMU emits RESET).
func (c *Client) SystemReset(ctx context.Context) error {
	return c.Execute(ctx, "system_reset", nil, nil)
}

// SystemPowerdown presses the ACPI power button (QEMU emits POWERDOWN; the
// guest decides whether to shut down).
func (c *Client) SystemPowerdown(ctx context.Context) error {
	return c.Execute(ctx, "system_powerdown", nil, nil)
}

// Quit makes QEMU exit (it emits SHUTDOWN, replies, and hangs up). A
// disconnect after the command was sent counts as success: QEMU may close
// the socket before its reply is read, and it closing is what was asked for.
func (c *Client) Quit(ctx context.Context) error {
	sent, err := c.execute(ctx, "quit", "quit", nil, nil)
	if sent && errors.Is(err, ErrDisconnected) && !errors.Is(err, ErrProtocol) {
		return nil
	}
	return err
}

// MigrationInfo is the part of query-migrate vmledger uses.
type MigrationInfo struct {
	// Status is the QAPI MigrationStatus; "none" when no migration was ever
	// started (QEMU then omits the member).
	Status string       `json:"status"`
	RAM    MigrationRAM `json:"ram"` // zero until a migration starts
	// ErrorDesc is QEMU's reason when Status is "failed" (may be empty).
	ErrorDesc string `json:"error-desc"`
}

// MigrationRAM is the RAM progress of a migration, in bytes.
type MigrationRAM struct {
	Transferred int64 `json:"transferred"`
	Remaining   int64 `json:"remaining"`
	Total       int64 `json:"total"`
}

// QueryMigrate returns the state of the current or last migration.
func (c *Client) QueryMigrate(ctx context.Context) (MigrationInfo, error) {
	var m MigrationInfo
	if err := c.Execute(ctx, "query-migrate", nil, &m); err != nil {
		return MigrationInfo{}, err
	}
	if m.Status == "" {
		m.Status = "none"
	}
	return m, nil
}

// QOMGet reads property prop of the QOM object at path into result.
func (c *Client) QOMGet(ctx context.Context, path, prop string, result any) error {
	args := struct {
		Path     string `json:"path"`
		Property string `json:"property"`
	}{path, prop}
	_, err := c.execute(ctx, "qom-get "+path+" "+prop, "qom-get", args, result)
	return err
}

// HumanMonitorCommand runs an HMP command line and returns its output.
// vmledger uses it only where QMP has no equivalent (in QEMU 7.2 the
// vCPU registers: query-cpus-fast has none).
func (c *Client) HumanMonitorCommand(ctx context.Context, line string) (string, error) {
	var out string
	args := struct {
		Line string `json:"command-line"`
	}{line}
	_, err := c.execute(ctx, "human-monitor-command "+line, "human-monitor-command", args, &out)
	return out, err
}

// DumpGuestMemory has QEMU write its own dump of guest memory to path
// (format "elf", "kdump-zlib", ...; QEMU 7.2 here offers elf, kdump-zlib
// and win-dmp). It returns when QEMU has finished: QEMU pauses the guest
// meanwhile and resumes it after if it was running.
func (c *Client) DumpGuestMemory(ctx context.Context, path, format string) error {
	args := struct {
		Paging   bool   `json:"paging"`
		Protocol string `json:"protocol"`
		Format   string `json:"format,omitempty"`
	}{false, "file:" + path, format}
	_, err := c.execute(ctx, "dump-guest-memory "+format, "dump-guest-memory", args, nil)
	return err
}
