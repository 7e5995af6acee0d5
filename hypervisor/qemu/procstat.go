package qemu

import (
	"os"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// PIDOf returns the pid of domain id's live QEMU, for per-process metrics:
// the pid file's, and only if that process's command line still names
// this pid file and UUID (a pid left by a dead QEMU may be recycled).
func (d *Driver) PIDOf(id uuid.UUID) (int, bool) {
	p := d.Paths(id)
	b, err := os.ReadFile(p.PID)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	if ok, err := hasArgs(pid, "-pidfile", p.PID, "-uuid", id.String()); err != nil || !ok {
		return 0, false
	}
	return pid, true
}
