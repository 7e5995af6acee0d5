package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/cmd/vmledger/internal/agent"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

// The fault harness's workload (TestFaultHarness): what a busy client
// does, and the client's own ledger of what the agent acknowledged.

// ackRec is one sequence an acknowledged command's result named.
type ackRec struct {
	domain uuid.UUID
	cmdID  string
	verb   string
}

// ledger is the client's record: every acknowledged sequence, and every
// event the follower delivered. The log must hold all of them, unchanged.
type ledger struct {
	mu       sync.Mutex
	acked    map[uint64]ackRec
	verbs    map[string]int // acknowledged commands per verb
	failed   map[string]int // commands that got an error (allowed under faults)
	followed map[uint64]domains.Event
	last     uint64 // the follower's last sequence
	gaps     []string
}

func newLedger() *ledger {
	return &ledger{acked: map[uint64]ackRec{}, verbs: map[string]int{}, failed: map[string]int{}, followed: map[uint64]domains.Event{}}
}

func (l *ledger) ack(verb, cmdID string, r domains.Result) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.verbs[verb]++
	for _, s := range r.Seqs {
		l.acked[s] = ackRec{domain: r.Domain, cmdID: cmdID, verb: verb}
	}
}

func (l *ledger) fail(verb string) {
	l.mu.Lock()
	l.failed[verb]++
	l.mu.Unlock()
}

// follow records one event from bus.Follow, which promises each sequence
// exactly once and in order: anything else is a defect.
func (l *ledger) follow(e domains.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.Seq != l.last+1 {
		l.gaps = append(l.gaps, fmt.Sprintf("follower got seq %d after %d", e.Seq, l.last))
	}
	l.followed[e.Seq] = e
	l.last = max(l.last, e.Seq)
	return nil
}

func (l *ledger) followedUpTo() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// runFollower follows the host's events for the whole test, picking up
// where it stopped whenever the agent or the server was away.
func runFollower(ctx context.Context, c *bus.Client, l *ledger) {
	for ctx.Err() == nil {
		_ = c.Follow(ctx, bus.FollowOptions{After: l.followedUpTo()}, l.follow)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// client sends commands as a user's program would, over a connection to
// the external server that outlives agents and server restarts.
type faultClient struct {
	c      *bus.Client
	nc     *nats.Conn
	host   string
	l      *ledger
	images string // an allowed directory for save images and dumps
	hpDisk string // a disk image to hot-plug
}

// call sends one command; an acknowledged result goes into the ledger.
func (fc *faultClient) call(ctx context.Context, verb string, req any, cmdID string) (domains.Result, error) {
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var r domains.Result
	if err := fc.c.Call(cctx, verb, req, &r); err != nil {
		fc.l.fail(verb)
		return r, err
	}
	fc.l.ack(verb, cmdID, r)
	return r, nil
}

func (fc *faultClient) domainCmd(ctx context.Context, verb, dom string) error {
	id := uuid.NewString()
	_, err := fc.call(ctx, verb, api.DomainRequest{CommandID: id, Domain: dom}, id)
	return err
}

// definer defines, redefines and undefines guests that never run, so
// that the log grows by many small commands.
func (fc *faultClient) definer(ctx context.Context, rng *rand.Rand, round int) {
	var live []domains.Config
	for n := 0; ctx.Err() == nil; n++ {
		switch {
		case len(live) > 0 && rng.IntN(4) == 0:
			i := rng.IntN(len(live))
			if fc.domainCmd(ctx, api.VerbUndefine, live[i].Name) == nil {
				live = append(live[:i], live[i+1:]...)
			}
		case len(live) > 0 && rng.IntN(2) == 0:
			cfg := live[rng.IntN(len(live))]
			cfg.MemoryMiB = 64 * (1 + rng.Uint64N(8))
			fc.define(ctx, cfg)
		default:
			cfg := domains.Config{Name: fmt.Sprintf("fd-%d-%d", round, n), UUID: uuid.New(), MemoryMiB: 64, VCPUs: 1,
				Clock: domains.Clock{Offset: "utc"}}
			if fc.define(ctx, cfg) == nil {
				live = append(live, cfg)
			}
		}
	}
}

func (fc *faultClient) define(ctx context.Context, cfg domains.Config) error {
	id := uuid.NewString()
	_, err := fc.call(ctx, api.VerbDefine, api.DefineRequest{CommandID: id, Config: cfg}, id)
	return err
}

// guestWorker drives one tiny guest through lifecycle commands, RTC
// changes typed into its console (guest-initiated QMP events) and the
// long jobs: save and restore, dump, hot-plug.
func (fc *faultClient) guestWorker(ctx context.Context, rng *rand.Rand, name string, id uuid.UUID) {
	for ctx.Err() == nil {
		switch op := rng.IntN(12); op {
		case 0, 1:
			_ = fc.domainCmd(ctx, api.VerbStart, name)
		case 2:
			_ = fc.domainCmd(ctx, api.VerbDestroy, name)
		case 3:
			_ = fc.domainCmd(ctx, api.VerbShutdown, name)
		case 4:
			_ = fc.domainCmd(ctx, api.VerbSuspend, name)
		case 5:
			_ = fc.domainCmd(ctx, api.VerbResume, name)
		case 6:
			_ = fc.domainCmd(ctx, api.VerbReset, name)
		case 7, 8:
			// RTC_CHANGE comes from the guest, not from a command: no ack.
			at := time.Date(2030, 1, 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), 0, 0, time.UTC)
			_ = fc.nc.Publish(agent.ConsoleSubject(fc.host, id, "in"), []byte(guestTimeCmd(at)+"\r"))
		case 9:
			fc.saveRestore(ctx, name)
		case 10:
			path := filepath.Join(fc.images, name+".elf")
			cid := uuid.NewString()
			if r, err := fc.call(ctx, api.VerbDump, api.DumpRequest{CommandID: cid, Domain: name, Path: path, Format: "elf"}, cid); err == nil {
				fc.waitJob(ctx, name, r)
			}
			os.Remove(path)
		case 11:
			fc.hotplug(ctx, name)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(rng.IntN(300)) * time.Millisecond):
		}
	}
}

func (fc *faultClient) saveRestore(ctx context.Context, name string) {
	path := filepath.Join(fc.images, name+".save")
	cid := uuid.NewString()
	r, err := fc.call(ctx, api.VerbSave, api.SaveRequest{CommandID: cid, Domain: name, Path: path, Compression: "snappy"}, cid)
	if err != nil {
		return
	}
	if !fc.waitJob(ctx, name, r) {
		return
	}
	cid = uuid.NewString()
	if r, err := fc.call(ctx, api.VerbRestore, api.RestoreRequest{CommandID: cid, Path: path}, cid); err == nil {
		fc.waitJob(ctx, name, r)
	}
}

func (fc *faultClient) hotplug(ctx context.Context, name string) {
	cid := uuid.NewString()
	spec := domains.DeviceSpec{Kind: "disk", ID: "hp1", Target: "sdb", Path: fc.hpDisk, Format: "raw", Bus: "usb"}
	if _, err := fc.call(ctx, api.VerbAttachDevice, api.DeviceRequest{CommandID: cid, Domain: name, Spec: &spec, Options: domains.DeviceOptions{Live: true}}, cid); err != nil {
		return
	}
	cid = uuid.NewString()
	_, _ = fc.call(ctx, api.VerbDetachDevice, api.DeviceRequest{CommandID: cid, Domain: name, ID: "hp1", Options: domains.DeviceOptions{Live: true}}, cid)
}

// waitJob waits until the domain has no job (the one r started ended),
// and reports whether it did before ctx ended or the agent went away.
func (fc *faultClient) waitJob(ctx context.Context, name string, r domains.Result) bool {
	if r.Job == "" {
		return true
	}
	for ctx.Err() == nil {
		job, err := fc.jobOf(ctx, name)
		if err != nil {
			return false
		}
		if job == nil {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

func (fc *faultClient) jobOf(ctx context.Context, name string) (*domains.JobInfo, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var jr api.JobReply
	if err := fc.c.Call(cctx, api.VerbJobInfo, api.DomainRequest{Domain: name}, &jr); err != nil {
		var de *domains.Error
		if errors.As(err, &de) && de.Code == domains.CodeNotFound {
			return nil, nil // restore has not defined it (yet)
		}
		return nil, err
	}
	return jr.Job, nil
}
