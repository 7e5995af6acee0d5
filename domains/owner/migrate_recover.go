package owner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// Recovery of a migration whose finish could not be asked or answered at
// once: the destination's agent SIGKILLed (or restarting) in finish, a
// NATS node gone under either agent. After the hand-off the source may
// neither resume (it granted ownership) nor stop (the destination may not
// run the guest), so it keeps asking, and the destination answers a
// repeated finish from its log: finished, or the release of the grant.
// A destination agent that restarts in the middle tears its side down
// before anything else (recoverIncoming), so its answer is a release
// (docs/migration.md, Failures between agents).

// finishAttempt bounds one finish request: the destination resumes QEMU
// and makes two appends. A slower answer is asked again, and the
// repetition answered from the log once the destination's job ended.
const finishAttempt = 15 * time.Second

// askFinish asks the destination to finish until it answers with anything
// but unavailable (no responder: its agent restarting or its node gone;
// no answer in time), or finishTimeout passes.
func (r *outgoing) askFinish(ctx context.Context, req domains.MigrationFinish) (domains.MigrationFinished, error) {
	deadline := time.Now().Add(finishTimeout)
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishAttempt)
		fin, err := r.s.peers.Finish(actx, r.o.To, req)
		cancel()
		if err == nil || domains.CodeOf(err) != domains.CodeUnavailable || time.Now().After(deadline) {
			if err != nil && attempt > 1 {
				err = fmt.Errorf("%w (asked %d times)", err, attempt)
			}
			return fin, err
		}
		// The abort of a job cannot cut this wait short: after the grant
		// only the destination's answer decides where the guest runs.
		select {
		case <-time.After(500 * time.Millisecond):
		case <-r.s.closed:
			return fin, fmt.Errorf("%w (the agent is stopping)", err)
		}
	}
}

// finishedFromLog answers a finish that no prepared migration here waits
// for: a repetition after the job ended, or one after this agent
// restarted. Only what the log says decides: a finished migration of this
// grant runs here; a torn-down one, or a domain not defined here at all,
// does not, and gives the grant back. Anything else is not settled yet
// (unavailable: the source asks again).
func (s *Service) finishedFromLog(id uuid.UUID, req domains.MigrationFinish) (domains.MigrationFinished, error) {
	release := func(why string) (domains.MigrationFinished, error) {
		return domains.MigrationFinished{Release: &domains.MigrationRelease{Host: s.host, Epoch: req.Epoch,
			Reason: prefixReason(why)}}, nil
	}
	d, err := s.Get(id.String())
	if errors.Is(err, domains.ErrNotFound) {
		return release("the destination does not define the domain (its migration ended torn down)")
	}
	if err != nil {
		return domains.MigrationFinished{}, err
	}
	m := d.Migration
	if m == nil || m.Role != domains.RoleDestination || m.Peer != req.Source {
		if d.State.Active() {
			return domains.MigrationFinished{}, domains.Errorf(domains.CodeConflict, "domain %q runs here, not by a migration from %s", d.Config.Name, req.Source)
		}
		return release("the destination holds no migration of the domain from " + req.Source)
	}
	switch m.Phase {
	case domains.MigFinished:
		if m.Epoch != req.Epoch {
			return domains.MigrationFinished{}, domains.Errorf(domains.CodeConflict, "domain %q finished here at epoch %d, not %d", d.Config.Name, m.Epoch, req.Epoch)
		}
		return domains.MigrationFinished{Finished: true}, nil
	case domains.MigTornDown:
		if d.State.Active() {
			return domains.MigrationFinished{}, domains.Errorf(domains.CodeConflict, "domain %q is %s here after its tear-down", d.Config.Name, d.State)
		}
		return release(m.Reason)
	case domains.MigError:
		return domains.MigrationFinished{}, domains.Errorf(domains.CodeConflict, "domain %q: the incoming migration is in error here (%s): an operator decides", d.Config.Name, m.Reason)
	}
	return domains.MigrationFinished{}, domains.Errorf(domains.CodeUnavailable, "domain %q: the incoming migration is %s here and not settled yet", d.Config.Name, m.Phase)
}

func prefixReason(s string) string {
	if len(s) > domains.MaxMigrationReason {
		return strings.ToValidUTF8(s[:domains.MaxMigrationReason], "")
	}
	return s
}

// recoverIncoming tears down every incoming migration the last agent left
// unfinished (preparing, prepared, finishing: its job is gone, so nothing
// would ever finish it): the domain's QEMU is killed, before the start-up
// recovery could take a paused incoming QEMU for a started guest, and
// torn-down is recorded with the reason, which a repeated finish from the
// source then answers with the release of the grant.
func (s *Service) recoverIncoming(ctx context.Context) error {
	var errs []error
	for _, d := range s.List() {
		m := d.Migration
		if m == nil || m.Role != domains.RoleDestination || m.Phase.Terminal() {
			continue
		}
		if err := s.tearDownIncoming(ctx, d.Config.UUID); err != nil {
			errs = append(errs, fmt.Errorf("domain %q: incoming migration: %w", d.Config.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (s *Service) tearDownIncoming(ctx context.Context, id uuid.UUID) error {
	rctx, cancel := context.WithTimeout(ctx, recoverTimeout)
	defer cancel()
	d, release, err := s.acquire(rctx, id.String(), domains.JobRecover, "")
	if err != nil {
		return err
	}
	defer release()
	if s.driver != nil && s.guest(id) == nil {
		g, err := s.driver.Attach(rctx, d.Config)
		if errors.Is(err, domains.ErrNotFound) {
			g, err = s.settle(rctx, d.Config) // kills what it cannot hand back
		}
		if err != nil && !errors.Is(err, domains.ErrNotFound) {
			return fmt.Errorf("find its QEMU: %w", err)
		}
		if g != nil {
			if err := g.Kill(rctx); err != nil {
				return fmt.Errorf("kill its QEMU: %w", err)
			}
			select {
			case <-g.Done():
			case <-rctx.Done():
				return fmt.Errorf("kill its QEMU: %w", rctx.Err())
			}
		}
	}
	_, ev, err := d.Migration.Machine().Step(domains.MigTornDown,
		fmt.Errorf("the destination agent restarted during %s: its side is torn down", d.Migration.Phase))
	if err != nil {
		return err
	}
	_, err = s.commit(rctx, "", id, ev)
	return err
}
