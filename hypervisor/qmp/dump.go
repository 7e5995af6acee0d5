package qmp

import "context"

// DumpInfo is query-dump's answer.
type DumpInfo struct {
	Status    string `json:"status"` // none | active | completed | failed
	Completed uint64 `json:"completed"`
	Total     uint64 `json:"total"`
}

// DumpGuestMemoryDetached starts QEMU's own dump to protocol ("fd:NAME"
// for a descriptor passed with GetFD, or "file:PATH") and returns at
// once; QueryDump follows it. QEMU keeps the guest paused until the dump
// ends and resumes it after if it ran. QEMU 7.2 cannot cancel a dump.
func (c *Client) DumpGuestMemoryDetached(ctx context.Context, protocol, format string) error {
	args := struct {
		Paging   bool   `json:"paging"`
		Protocol string `json:"protocol"`
		Detach   bool   `json:"detach"`
		Format   string `json:"format,omitempty"`
	}{false, protocol, true, format}
	return c.Execute(ctx, "dump-guest-memory", args, nil)
}

// QueryDump reports the progress of a detached dump.
func (c *Client) QueryDump(ctx context.Context) (DumpInfo, error) {
	var d DumpInfo
	err := c.Execute(ctx, "query-dump", nil, &d)
	return d, err
}
