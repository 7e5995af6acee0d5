package owner_test

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/domainstest"
	"github.com/vmledger/vmledger/domains/owner"
)

// ExampleService drives the service over the in-memory fakes of
// domainstest: a command, then a hint from the guest.
func ExampleService() {
	ctx := context.Background()
	log := domainstest.NewMemLog()
	drv := domainstest.NewFakeDriver()
	svc := owner.NewService(owner.Options{
		Log: log, Driver: drv, Host: "host-a",
		Time: domainstest.NewFixedClock(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)),
	})
	defer svc.Close()

	cfg := domains.Config{Name: "web", UUID: uuid.New(), MemoryMiB: 512, VCPUs: 1,
		Clock: domains.Clock{Offset: domains.OffsetVariable, Adjustment: 600}}
	if _, err := svc.Define(ctx, "cmd-1", cfg); err != nil {
		fmt.Println(err)
		return
	}
	res, err := svc.Start(ctx, "cmd-2", "web", domains.StartOptions{})
	fmt.Println(res.Seqs, res.State, err)

	// The guest sets its RTC: QEMU reports +60 s relative to its start base.
	drv.Guest(cfg.UUID).Push(domains.GuestEvent{Kind: domains.GuestRTCChange, Offset: 60})
	_ = log.Wait(ctx, 3)

	evs, _ := log.ReadAfter(ctx, 0, 0)
	for _, e := range evs {
		fmt.Printf("%d %s %q\n", e.Seq, e.Type, e.CommandID)
	}
	fmt.Println(evs[2].Payload)
	// Output:
	// [2] running <nil>
	// 1 defined "cmd-1"
	// 2 started "cmd-2"
	// 3 rtc-changed ""
	// {60 660}
}
