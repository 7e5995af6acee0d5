package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

// firstRepress is when shutdown presses the power button again if the
// guest has not begun to power off; each further press waits twice as
// long, up to maxRepress. A press while the guest cannot see it (the
// firmware runs after a reset, the vCPUs are paused) is dropped, and the
// ACPI button has no queue; pressing again is what a person would do.
const (
	firstRepress = 3 * time.Second
	maxRepress   = 30 * time.Second
)

func newShutdownCmd(g *globals) *cobra.Command {
	var cmdID string
	var wait time.Duration
	var force bool
	cmd := &cobra.Command{
		Use:   "shutdown DOMAIN [--timeout D] [--force]",
		Short: "Ask the guest to power off (ACPI) and wait until it has",
		Long: `Press the guest's ACPI power button (virsh shutdown) and wait until the
guest has powered off (stopped, shutdown). While it has not begun to,
the button is pressed again after 3s, then 6s, 12s, ... (at most every
30s): a press the guest could not see (its firmware running after a
reset, its vCPUs paused) is otherwise lost.

If the guest is still running after --timeout (default 60s), shutdown
says so and exits 5; with --force it then destroys the domain (as virsh
destroy) and exits 0. --timeout 0 only presses the button and returns,
as virsh shutdown does. Here --timeout is the wait for the guest (it
shadows the global --timeout: the wait for the agent stays 30s).`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if wait < 0 {
				return usagef("--timeout %s: must not be negative", wait)
			}
			if force && wait == 0 {
				return usagef("--force needs a --timeout to wait for the guest first")
			}
			return g.shutdown(cmd, args[0], orRandom(cmdID), wait, force)
		},
	}
	cmd.Flags().DurationVar(&wait, "timeout", 60*time.Second, "how long to wait for the guest to power off (0: press the button and return)")
	cmd.Flags().BoolVar(&force, "force", false, "destroy the domain if it has not powered off within --timeout")
	addCommandID(cmd, &cmdID)
	addJSON(cmd, g)
	return cmd
}

// shutdown presses the button and, with wait > 0, follows the domain's
// events until it stopped, pressing again while the guest shows no sign
// of powering off.
func (g *globals) shutdown(cmd *cobra.Command, ref, cmdID string, wait time.Duration, force bool) error {
	ctx := cmd.Context()
	nc, c, err := g.dial(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	call := func(verb, id string, res *domains.Result) error {
		cctx, cancel := context.WithTimeout(ctx, g.timeout)
		defer cancel()
		return c.Call(cctx, verb, api.DomainRequest{CommandID: id, Domain: ref}, res)
	}
	if wait == 0 {
		var res domains.Result
		if err := call(api.VerbShutdown, cmdID, &res); err != nil {
			return err
		}
		return g.printResult(cmd, res, "is being shut down")
	}
	var d domains.Domain
	cctx, cancel := context.WithTimeout(ctx, g.timeout)
	err = c.Call(cctx, api.VerbInfo, api.DomainRequest{Domain: ref}, &d)
	cancel()
	if err != nil {
		return err
	}
	// Follow from the domain's last event, subscribed before the press,
	// so its shutdown and stopped cannot fall between.
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	evs := make(chan domains.Event, 64)
	followed := make(chan error, 1)
	go func() {
		followed <- c.Follow(fctx, bus.FollowOptions{After: d.LastSeq, Domain: d.Config.UUID}, func(e domains.Event) error {
			select {
			case evs <- e:
				return nil
			case <-fctx.Done():
				return fctx.Err()
			}
		})
	}()
	res := domains.Result{Domain: d.Config.UUID, Name: d.Config.Name, State: d.State, Seqs: []uint64{}}
	began := false
	if err := call(api.VerbShutdown, cmdID, &res); err != nil {
		if d.State != domains.StateShutdown || !errors.Is(err, domains.ErrConflict) {
			return err
		}
		began = true // powering off already: wait for it
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	every := firstRepress
	again := time.NewTimer(every)
	defer again.Stop()
	presses := 1
	for {
		select {
		case e := <-evs:
			switch e.Type {
			case domains.TypeShutdown:
				began = true // the guest is powering off: no more presses
				res.Seqs = append(res.Seqs, e.Seq)
			case domains.TypeStopped:
				res.Seqs, res.State = append(res.Seqs, e.Seq), domains.StateShutoff
				p, _ := e.Payload.(domains.Stopped)
				return g.printResult(cmd, res, "is shut off ("+p.Reason+")")
			}
		case <-again.C:
			if began {
				continue
			}
			presses++
			var r domains.Result
			err := call(api.VerbShutdown, fmt.Sprintf("%s/press-%d", cmdID, presses), &r)
			if err != nil && !errors.Is(err, domains.ErrConflict) {
				return err // a conflict: it is shutting down or off; the events say which
			}
			every = min(2*every, maxRepress)
			again.Reset(every)
		case <-deadline.C:
			if !force {
				return domains.Errorf(domains.CodeUnavailable, "domain %s did not power off within %s (%d presses of the power button; does the guest obey ACPI? --force destroys it after --timeout)", domains.Quote(d.Config.Name), wait, presses)
			}
			var r domains.Result
			if err := call(api.VerbDestroy, cmdID+"/destroy", &r); err != nil {
				if errors.Is(err, domains.ErrConflict) {
					continue // it stopped meanwhile: its stopped event follows
				}
				return err
			}
			r.Seqs = append(res.Seqs, r.Seqs...)
			return g.printResult(cmd, r, fmt.Sprintf("did not power off within %s: destroyed", wait))
		case err := <-followed:
			if ctx.Err() != nil {
				return domains.Errorf(domains.CodeUnavailable, "interrupted while waiting for domain %s to power off: %w", domains.Quote(d.Config.Name), ctx.Err())
			}
			return domains.Errorf(domains.CodeUnavailable, "following domain %s's events: %w", domains.Quote(d.Config.Name), err)
		}
	}
}
