package owner_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/domainstest"
	"github.com/vmledger/vmledger/domains/owner"
	"github.com/vmledger/vmledger/hypervisor/guest"
	"github.com/vmledger/vmledger/hypervisor/qemu"
)

// With real QEMU (the tiny guest under TCG): while an asynchronous job
// holds the domain, the guest sets its RTC, and rtc-changed is recorded
// during the job, before the job ends. (Under a mutex held for the job,
// the hint would wait for it.)
func TestRealGuestRTCChangeDuringJob(t *testing.T) {
	if _, err := exec.LookPath(qemu.DefaultBinary); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but %s is missing", qemu.DefaultBinary)
		}
		t.Skip("QEMU not installed")
	}
	run, err := os.MkdirTemp("", "vlj")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	drv, err := qemu.New(qemu.Options{RunDir: run, Accel: "tcg", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "tiny.img")
	if err := guest.WriteImage(img); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := domainstest.NewMemLog()
	svc := owner.NewService(owner.Options{Log: log, Driver: drv, Host: "h"})
	t.Cleanup(svc.Close)
	cfg := domains.Config{Name: "tiny", UUID: uuid.New(), MemoryMiB: 16, VCPUs: 1,
		Clock: domains.Clock{Offset: domains.OffsetVariable, Basis: domains.BasisUTC},
		Disks: []domains.Disk{{Target: "hda", Path: img, Format: "raw", Bus: "ide"}}}
	if _, err := svc.Define(ctx, "", cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Start(ctx, "", "tiny", domains.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = svc.Destroy(dctx, "", "tiny")
	})
	con, err := qemu.OpenConsole(ctx, drv.ConsolePath(cfg.UUID))
	if err != nil {
		t.Fatal(err)
	}
	defer con.Close()
	lines := bufio.NewScanner(con)
	waitLine := func(prefix string) {
		for lines.Scan() {
			if strings.HasPrefix(strings.TrimLeft(lines.Text(), "\r"), prefix) {
				return
			}
		}
		t.Fatalf("console ended before a %q line: %v", prefix, lines.Err())
	}
	waitLine("RTC ") // the guest runs

	release := make(chan struct{})
	running := make(chan struct{})
	res, err := svc.RunAsync(ctx, "job-1", "tiny", domains.JobDump, nil, func(ctx context.Context, j *owner.Job) error {
		close(running)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	<-running
	if _, err := con.Write([]byte(guest.SetTimeCommand(time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)))); err != nil {
		t.Fatal(err)
	}
	var rtc domains.Event
	for rtc.Type == "" {
		next := log.Committed()
		evs, _ := log.ReadAfter(ctx, 0, 0)
		for _, e := range evs {
			switch e.Type {
			case domains.TypeRTCChanged:
				rtc = e
			case domains.TypeJobCompleted, domains.TypeJobFailed:
				t.Fatalf("the job ended before the RTC change was recorded: %v", e)
			}
		}
		if rtc.Type != "" {
			break
		}
		select {
		case <-next:
		case <-ctx.Done():
			t.Fatal("no rtc-changed while the job ran")
		}
	}
	if info, _ := svc.JobInfo("tiny"); info == nil || info.ID != res.Job {
		t.Fatalf("the job is not running while its domain's RTC change is recorded: %+v", info)
	}
	if d, _ := svc.Get("tiny"); d.Config.Clock.Adjustment < 100_000_000 {
		t.Fatalf("adjustment after the guest moved its RTC to 2031: %d", d.Config.Clock.Adjustment)
	}
	close(release)
}
