package owner_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/domainstest"
	"github.com/vmledger/vmledger/domains/owner"
)

// managedsave-remove records managed-save-removed and the image is gone;
// when the append fails, the image stays where it was (the log and the
// file never disagree) and nothing is recorded; a retry under the same
// command ID answers from the command table.
func TestManagedSaveRemoveRecorded(t *testing.T) {
	ctx := context.Background()
	log := domainstest.NewMemLog()
	dir := t.TempDir()
	svc := owner.NewService(owner.Options{Log: log, Driver: domainstest.NewFakeDriver(), Host: "h", ManagedSaveDir: dir})
	t.Cleanup(svc.Close)
	cfg := domains.Config{Name: "vm", MemoryMiB: 16, VCPUs: 1, Clock: domains.Clock{Offset: domains.OffsetUTC}}
	res, err := svc.Define(ctx, "", cfg)
	if err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(dir, res.Domain.String()+".save")
	if err := os.WriteFile(image, []byte("image"), 0o600); err != nil {
		t.Fatal(err)
	}

	log.FailAppends(errors.New("disk full"))
	if _, err := svc.ManagedSaveRemove(ctx, "rm-1", "vm"); err == nil {
		t.Fatal("removed although the append failed")
	}
	log.FailAppends(nil)
	if _, err := os.Stat(image); err != nil || !svc.HasManagedSave(res.Domain) {
		t.Fatalf("after a failed append the image is gone: %v", err)
	}
	if d, _ := svc.Get("vm"); d.Version != 1 {
		t.Fatalf("version %d after a failed remove", d.Version)
	}

	first, err := svc.ManagedSaveRemove(ctx, "rm-2", "vm")
	if err != nil {
		t.Fatal(err)
	}
	if svc.HasManagedSave(res.Domain) {
		t.Fatal("the image is still there")
	}
	if es, _ := filepath.Glob(filepath.Join(dir, "*")); len(es) != 0 {
		t.Fatalf("left in the managed save directory: %v", es)
	}
	evs, err := log.ReadDomain(ctx, res.Domain, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	last := evs[len(evs)-1]
	p, ok := last.Payload.(domains.ManagedSaveRemoved)
	if !ok || p.Path != image || p.Reason != domains.ManagedSaveRemovedByUser || last.CommandID != "rm-2" {
		t.Fatalf("last event %s %+v", last.Type, last.Payload)
	}
	again, err := svc.ManagedSaveRemove(ctx, "rm-2", "vm")
	if err != nil || again.Domain != first.Domain || len(again.Seqs) != 1 || again.Seqs[0] != first.Seqs[0] {
		t.Fatalf("retry: %+v, %v; first %+v", again, err, first)
	}
	if _, err := svc.ManagedSaveRemove(ctx, "rm-3", "vm"); domains.CodeOf(err) != domains.CodeNotFound {
		t.Fatalf("remove with no image: %v", err)
	}
}
