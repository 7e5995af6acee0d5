package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
	"github.com/vmledger/vmledger/store"
)

// The fault harness's checks, run after every fault once the workload
// has stopped: they return what is wrong, "" when all agrees.

// settle waits until no guest has a job, none is half-way through a
// shutdown, and the QEMUs of the run directory are exactly those the log
// says run (a killed QEMU recorded as stopped, the reattached ones
// recorded with their PIDs), and returns the last disagreement if that
// does not happen within the deadline.
func (r *faultRig) settle(ctx context.Context) string {
	deadline := time.Now().Add(90 * time.Second)
	var why string
	for time.Now().Before(deadline) {
		if why = r.agreement(ctx); why == "" {
			return ""
		}
		time.Sleep(200 * time.Millisecond)
	}
	return "not settled after 90s: " + why + "\n" + r.tail(ctx, 40)
}

// tail shows the log's last events, for a failure message.
func (r *faultRig) tail(ctx context.Context, n int) string {
	evs, err := history(ctx, r.fc.c)
	if err != nil {
		return fmt.Sprintf("(history: %v)", err)
	}
	var b strings.Builder
	for _, e := range evs[max(0, len(evs)-n):] {
		fmt.Fprintf(&b, "  %d %s v%d %s cmd=%q %+v\n", e.Seq, e.Domain, e.Version, e.Type, e.CommandID, e.Payload)
	}
	return b.String()
}

func (r *faultRig) agreement(ctx context.Context) string {
	for _, g := range r.guests {
		job, err := r.fc.jobOf(ctx, g.name)
		if err != nil {
			return fmt.Sprintf("job-info %s: %v", g.name, err)
		}
		if job != nil {
			return fmt.Sprintf("%s still has job %s (%s)", g.name, job.ID, job.Kind)
		}
	}
	var want []int
	for _, g := range r.guests {
		d, err := r.info(ctx, g.name)
		if err != nil {
			return fmt.Sprintf("info %s: %v", g.name, err)
		}
		if d.State == domains.StateShutdown {
			return g.name + " is in shutdown"
		}
		if d.State.Active() {
			if d.Live == nil || d.Live.PID == 0 {
				return fmt.Sprintf("%s is %s without a recorded PID", g.name, d.State)
			}
			want = append(want, d.Live.PID)
		}
	}
	got := qemusOf(r.t, r.run)
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(want, got) {
		return fmt.Sprintf("the log says QEMUs %v run, the run directory has %v", want, got)
	}
	return ""
}

func (r *faultRig) info(ctx context.Context, name string) (domains.Domain, error) {
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var d domains.Domain
	err := r.fc.c.Call(cctx, api.VerbInfo, api.DomainRequest{Domain: name}, &d)
	return d, err
}

// history reads the whole log through the agent.
func history(ctx context.Context, c *bus.Client) ([]domains.Event, error) {
	var all []domains.Event
	for after := uint64(0); ; {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		page, err := c.History(cctx, bus.HistoryRequest{After: after})
		cancel()
		if err != nil {
			return nil, err
		}
		all = append(all, page.Events...)
		after = page.Next
		if !page.More {
			return all, nil
		}
	}
}

// checkLog: the log read back through the agent is gap-free from 1; it
// holds every acknowledged sequence as acknowledged (same domain, same
// command ID); every event the follower got is the log's event; the
// follower has caught up; and a fold of the log equals the agent's
// projection (list) and, for the guests, its live state (info).
func (r *faultRig) checkLog(ctx context.Context) string {
	var lr api.ListReply
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	err := r.fc.c.Call(cctx, api.VerbList, api.ListRequest{}, &lr)
	cancel()
	if err != nil {
		return fmt.Sprintf("list: %v", err)
	}
	evs, err := history(ctx, r.fc.c)
	if err != nil {
		return fmt.Sprintf("history: %v", err)
	}
	bySeq := make(map[uint64]domains.Event, len(evs))
	full := domains.NewProjection()
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			return fmt.Sprintf("log: event %d has seq %d", i+1, e.Seq)
		}
		bySeq[e.Seq] = e
		if e.Seq <= lr.LastSeq {
			if err := full.Apply(e); err != nil {
				return fmt.Sprintf("fold: %v", err)
			}
		}
	}
	if why := r.ledgerAgrees(bySeq); why != "" {
		return why
	}
	if why := r.followerCaughtUp(uint64(len(evs))); why != "" {
		return why
	}
	if full.LastSeq() != lr.LastSeq || full.Len() != len(lr.Domains) {
		return fmt.Sprintf("projection has %d domains at seq %d, the fold %d at %d", len(lr.Domains), lr.LastSeq, full.Len(), full.LastSeq())
	}
	for _, d := range lr.Domains {
		f, ok := full.Lookup(d.UUID)
		if !ok || f.Version != d.Version || f.State != d.State || f.Config.Name != d.Name {
			return fmt.Sprintf("projection %+v, fold %s v%d %s", d, f.Config.Name, f.Version, f.State)
		}
	}
	for _, g := range r.guests {
		d, err := r.info(ctx, g.name)
		if err != nil {
			return fmt.Sprintf("info %s: %v", g.name, err)
		}
		f, _ := full.Lookup(g.name)
		if d.Version != f.Version {
			continue // an event came after the list: compared next time
		}
		if (d.Live == nil) != (f.Live == nil) || d.Live != nil && d.Live.PID != f.Live.PID {
			return fmt.Sprintf("%s: agent has live %+v, the fold %+v", g.name, d.Live, f.Live)
		}
	}
	return ""
}

func (r *faultRig) ledgerAgrees(bySeq map[uint64]domains.Event) string {
	why, lost := r.fc.l.agrees(bySeq)
	r.lost += lost
	return why
}

// agrees compares the ledger with the log's events by sequence: every
// acknowledged sequence is there as acknowledged, every followed event
// is the log's. It returns what differs and how many acknowledged
// sequences are missing.
func (l *ledger) agrees(bySeq map[uint64]domains.Event) (string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.gaps) > 0 {
		return "follower: " + strings.Join(l.gaps, "; "), 0
	}
	lost, why := 0, ""
	for seq, a := range l.acked {
		e, ok := bySeq[seq]
		switch {
		case !ok:
			lost++
			why = fmt.Sprintf("%d acknowledged sequences are not in the log, e.g. %d (%s of %s)", lost, seq, a.verb, a.domain)
		case e.Domain != a.domain || e.CommandID != a.cmdID:
			why = fmt.Sprintf("seq %d holds %s of %s by command %q, acknowledged as %s of %s by %q", seq, e.Type, e.Domain, e.CommandID, a.verb, a.domain, a.cmdID)
		}
	}
	if why != "" {
		return why, lost
	}
	for seq, f := range l.followed {
		if seq > uint64(len(bySeq)) {
			continue // after the log was read
		}
		e, ok := bySeq[seq]
		if !ok || e.Domain != f.Domain || e.Version != f.Version || e.Type != f.Type || e.CommandID != f.CommandID {
			return fmt.Sprintf("the follower got seq %d as %s v%d %s, the log has %+v", seq, f.Domain, f.Version, f.Type, e), 0
		}
	}
	return "", 0
}

func (r *faultRig) followerCaughtUp(last uint64) string {
	deadline := time.Now().Add(30 * time.Second)
	for r.fc.l.followedUpTo() < last {
		if time.Now().After(deadline) {
			return fmt.Sprintf("the follower is at seq %d 30s after the log reached %d", r.fc.l.followedUpTo(), last)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return ""
}

// checkOffline opens the log the killed agent left: it checks out, a
// full replay is gap-free and holds every acknowledged sequence, and the
// snapshot plus tail equals the full replay.
func (r *faultRig) checkOffline(ctx context.Context, dbPath string) string {
	s, err := store.Open(dbPath, store.Options{})
	if err != nil {
		return fmt.Sprintf("open after SIGKILL: %v", err)
	}
	defer s.Close()
	if err := s.Check(ctx); err != nil {
		return fmt.Sprintf("check after SIGKILL: %v", err)
	}
	full := domains.NewProjection()
	bySeq := map[uint64]domains.Event{}
	err = s.Replay(ctx, 0, func(e domains.Event) error {
		if e.Seq != uint64(len(bySeq)+1) {
			return fmt.Errorf("sequence gap: got %d after %d", e.Seq, len(bySeq))
		}
		bySeq[e.Seq] = e
		return full.Apply(e)
	})
	if err != nil {
		return fmt.Sprintf("replay: %v", err)
	}
	if why := r.ledgerAgrees(bySeq); why != "" {
		return why
	}
	loaded, err := store.LoadProjection(ctx, s)
	if err != nil {
		return fmt.Sprintf("load projection: %v", err)
	}
	if ok, diff := full.Equal(loaded); !ok {
		return "snapshot+tail differs from full replay: " + diff
	}
	return ""
}
