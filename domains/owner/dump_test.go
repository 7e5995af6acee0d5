package owner_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/owner"
)

// anyPath is a PathGuard that allows every path (the real checks are
// hypervisor/confine's, tested there and through the agent).
type anyPath struct{}

func (anyPath) Resolve(path string, _ bool) (string, error) { return path, nil }

// Error paths of the dump job that QEMU does not produce on demand: no
// allowed directories (refused, nothing recorded); a guest whose memory
// cannot be read (the job fails before it pauses anything, no
// dump-started, no file, the guest still running).
func TestDumpRefusals(t *testing.T) {
	e := newEnv(t)
	cfg := e.define("web", clockUTC)
	e.start(cfg)
	path := filepath.Join(t.TempDir(), "web.kdump")
	o := domains.DumpOptions{Path: path, Format: domains.DumpKdumpZstd}
	before := len(e.eventsAfter(0))
	if _, err := e.svc.Dump(e.ctx, "", "web", o); domains.CodeOf(err) != domains.CodeUnavailable {
		t.Fatalf("dump without allowed directories: %v, want unavailable", err)
	}
	bad := domains.DumpOptions{Path: path, Format: "lzo"}
	if _, err := e.svc.Dump(e.ctx, "", "web", bad); domains.CodeOf(err) != domains.CodeInvalid {
		t.Fatalf("dump with format lzo: %v, want invalid", err)
	}
	if n := len(e.eventsAfter(0)); n != before {
		t.Fatalf("refused dumps recorded %d events", n-before)
	}

	// A second service, with allowed directories, over its own log.
	e = newEnv(t)
	e.svc.Close()
	svc := owner.NewService(owner.Options{Log: e.log, Driver: e.drv, Time: e.clk, Host: "host-a", Images: anyPath{}})
	e.svc = svc
	t.Cleanup(func() { svc.Close() })
	cfg = e.define("web", clockUTC)
	e.start(cfg)
	res, err := svc.Dump(e.ctx, "", "web", o)
	if err != nil {
		t.Fatal(err)
	}
	end := e.waitJobEnd(cfg, res.Job)
	p, ok := end.Payload.(domains.JobFailed)
	if !ok || !strings.Contains(p.Error, "memory cannot be read") {
		t.Fatalf("job end %s %+v", end.Type, end.Payload)
	}
	for _, ev := range e.eventsAfter(res.Seqs[0]) {
		if ev.Type == domains.TypeDumpStarted || ev.Type == domains.TypePaused {
			t.Fatalf("%s recorded by a dump that could not read memory", ev.Type)
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("a file at %s: %v", path, err)
	}
	if d := e.get("web"); d.State != domains.StateRunning {
		t.Fatalf("state %s", d.State)
	}
}
