package domains_test

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/domains"
)

// TestMigrationTable feeds the machine every (role, from, to) pair: the
// pairs outside the table are each refused and change nothing; the pairs
// inside are taken exactly when the cause matches the row's kind.
func TestMigrationTable(t *testing.T) {
	legal := map[string]domains.MigrationRow{}
	for _, r := range domains.MigrationTable() {
		legal[fmt.Sprint(r.Role, r.From, r.To)] = r
	}
	cause := errors.New("qemu: migration stream cut")
	refused, taken := 0, 0
	for _, role := range []domains.MigrationRole{domains.RoleSource, domains.RoleDestination} {
		for _, from := range domains.MigrationPhases() {
			for _, to := range domains.MigrationPhases() {
				m := domains.Migration{Role: role, Phase: from, Peer: "host-b", Epoch: 4}
				row, ok := legal[fmt.Sprint(role, from, to)]
				for _, c := range []error{nil, cause} {
					next, ev, err := m.Step(to, c)
					wantOK := ok && (c != nil) == row.Recovery
					if ok && row.Recovery && role == domains.RoleSource && from == domains.MigHandedOff && to == domains.MigCancelled {
						wantOK = false // needs the destination's release, not any error
					}
					if !wantOK {
						if err == nil {
							t.Errorf("%s %s → %s (cause %v) accepted; the table does not allow it", role, from, to, c)
						}
						if next != m || ev != (domains.MigrationState{}) {
							t.Errorf("%s %s → %s refused but changed the machine: %+v %+v", role, from, to, next, ev)
						}
						if !ok && !errors.Is(err, domains.ErrConflict) {
							t.Errorf("%s %s → %s: %v, want a conflict", role, from, to, err)
						}
						refused++
						continue
					}
					if err != nil {
						t.Errorf("%s %s → %s (cause %v): %v", role, from, to, c, err)
						continue
					}
					taken++
					if next.Phase != to || ev.From != string(from) || ev.To != string(to) || ev.Role != string(role) || ev.Peer != "host-b" {
						t.Errorf("%s %s → %s: machine %+v event %+v", role, from, to, next, ev)
					}
					if (c != nil) != (ev.Reason == cause.Error()) {
						t.Errorf("%s %s → %s: reason %q, want the cause's text exactly when there is one", role, from, to, ev.Reason)
					}
				}
			}
		}
	}
	if taken != len(legal)-1 || refused == 0 {
		t.Errorf("taken %d of %d rows, refused %d", taken, len(legal), refused)
	}
}

// TestMigrationHandOffFencing: after the hand-off the source gets its
// guest back only with the destination's release of the very epoch it
// granted; a destination takes only a grant newer than it has seen.
func TestMigrationHandOffFencing(t *testing.T) {
	src := domains.Migration{Role: domains.RoleSource, Phase: domains.MigPerforming, Peer: "host-b", Epoch: 4}
	src, ev, err := src.Step(domains.MigHandedOff, nil)
	if err != nil || src.Epoch != 5 || ev.Epoch != 5 || src.MayRun() || src.Owns() {
		t.Fatalf("hand-off: %+v %+v %v", src, ev, err)
	}
	for name, c := range map[string]error{
		"plain error":   errors.New("destination silent"),
		"stale epoch":   &domains.MigrationRelease{Host: "host-b", Epoch: 4, Reason: "x"},
		"other host":    &domains.MigrationRelease{Host: "host-c", Epoch: 5, Reason: "x"},
		"wrapped stale": fmt.Errorf("reply: %w", &domains.MigrationRelease{Host: "host-b", Epoch: 6}),
	} {
		if _, _, err := src.Step(domains.MigCancelled, c); !errors.Is(err, domains.ErrConflict) {
			t.Errorf("%s: %v, want refused", name, err)
		}
	}
	back, ev, err := src.Step(domains.MigCancelled, fmt.Errorf("finish: %w", &domains.MigrationRelease{Host: "host-b", Epoch: 5, Reason: "qemu died"}))
	if err != nil || !back.MayRun() || back.Epoch != 6 || !strings.Contains(ev.Reason, "qemu died") {
		t.Fatalf("release: %+v %+v %v", back, ev, err)
	}

	dst := domains.Migration{Role: domains.RoleDestination, Phase: domains.MigPrepared, Peer: "host-a", Epoch: 5}
	for _, g := range []struct {
		from  string
		epoch uint64
	}{{"host-a", 5}, {"host-a", 3}, {"host-c", 9}} {
		if _, _, err := dst.Receive(g.from, g.epoch); !errors.Is(err, domains.ErrConflict) {
			t.Errorf("grant %v: %v, want refused", g, err)
		}
	}
	if rel := dst.Release("host-b", "x"); rel != nil {
		t.Errorf("release before the grant: %v", rel)
	}
}

func TestMigrationResume(t *testing.T) {
	m, err := domains.ResumeMigration(domains.MigrationState{Role: "source", From: "performing", To: "handed-off", Peer: "b", Epoch: 3})
	if err != nil || m.Phase != domains.MigHandedOff || m.Epoch != 3 || m.MayRun() {
		t.Fatalf("%+v %v", m, err)
	}
	for _, ev := range []domains.MigrationState{
		{Role: "source", To: "prepared"}, {Role: "witness", To: "begun"}, {Role: "destination", To: "bogus"},
	} {
		if _, err := domains.ResumeMigration(ev); !errors.Is(err, domains.ErrInvalid) {
			t.Errorf("%+v: %v, want invalid", ev, err)
		}
	}
}

// world is one configuration of the two-host model: each side's machine
// and the messages in flight (unordered: NATS gives no order between
// different request subjects).
type world struct {
	src, dst domains.Migration
	msgs     []string
	dropped  bool
}

func (w world) key() string {
	m := append([]string(nil), w.msgs...)
	sort.Strings(m)
	return fmt.Sprint(w.src, w.dst, m, w.dropped)
}

func (w world) with(src, dst domains.Migration, take int, send ...string) world {
	n := world{src: src, dst: dst, dropped: w.dropped}
	for i, m := range w.msgs {
		if i != take {
			n.msgs = append(n.msgs, m)
		}
	}
	n.msgs = append(n.msgs, send...)
	return n
}

// moves is every step either side may take in w: its protocol steps,
// a failure at any non-terminal phase, and the loss of any message
// (an agent killed, a NATS node gone).
func moves(w world) []world {
	var out []world
	fail := errors.New("injected failure")
	step := func(m domains.Migration, to domains.MigrationPhase, c error) (domains.Migration, bool) {
		n, _, err := m.Step(to, c)
		return n, err == nil
	}
	// Source's own moves.
	if n, ok := step(w.src, domains.MigBegun, nil); ok {
		out = append(out, w.with(n, w.dst, -1, "begin"))
	}
	if w.src.Phase == domains.MigPerforming {
		if n, ok := step(w.src, domains.MigHandedOff, nil); ok {
			out = append(out, w.with(n, w.dst, -1, fmt.Sprint("grant ", n.Epoch)))
		}
	}
	if n, ok := step(w.src, domains.MigCancelled, fail); ok {
		out = append(out, w.with(n, w.dst, -1, "cancel"))
	}
	// Destination's own moves.
	if n, ok := step(w.dst, domains.MigPrepared, nil); ok {
		out = append(out, w.with(w.src, n, -1, "prepared"))
	}
	if n, ok := step(w.dst, domains.MigFinished, nil); ok {
		out = append(out, w.with(w.src, n, -1, "finished"))
	}
	if n, ok := step(w.dst, domains.MigTornDown, fail); ok {
		msg := "failed"
		if rel := n.Release("host-b", "injected"); rel != nil {
			msg = fmt.Sprint("release ", rel.Epoch)
		}
		out = append(out, w.with(w.src, n, -1, msg))
	}
	// Deliveries and losses.
	for i, msg := range w.msgs {
		lost := w.with(w.src, w.dst, i)
		lost.dropped = true
		out = append(out, lost)
		var epoch uint64
		switch {
		case msg == "begin":
			if n, ok := step(w.dst, domains.MigPreparing, nil); ok {
				out = append(out, w.with(w.src, n, i))
			}
		case msg == "prepared":
			if n, ok := step(w.src, domains.MigPerforming, nil); ok {
				out = append(out, w.with(n, w.dst, i))
			}
		case msg == "cancel":
			n, ok := step(w.dst, domains.MigTornDown, errors.New("source cancelled"))
			if !ok {
				n = w.dst
			}
			out = append(out, w.with(w.src, n, i))
		case msg == "failed":
			n, ok := step(w.src, domains.MigCancelled, errors.New("destination failed"))
			if !ok {
				n = w.src
			}
			out = append(out, w.with(n, w.dst, i))
		case msg == "finished":
			if n, ok := step(w.src, domains.MigConfirmed, nil); ok {
				out = append(out, w.with(n, w.dst, i))
			}
		case sscan(msg, "grant %d", &epoch):
			if n, _, err := w.dst.Receive("host-a", epoch); err == nil {
				out = append(out, w.with(w.src, n, i))
			}
		case sscan(msg, "release %d", &epoch):
			if n, ok := step(w.src, domains.MigCancelled, &domains.MigrationRelease{Host: "host-b", Epoch: epoch}); ok {
				out = append(out, w.with(n, w.dst, i))
			}
		}
	}
	return out
}

func sscan(s, format string, v *uint64) bool {
	_, err := fmt.Sscanf(s, format, v)
	return err == nil
}

// TestMigrationNoSplitDecision explores every interleaving of the two
// sides, with a failure injected at any phase and any message lost: in no
// reachable configuration do both hosts own the domain or both let the
// guest run; and when nothing was lost and all is delivered, exactly one
// host runs it.
func TestMigrationNoSplitDecision(t *testing.T) {
	src, _ := domains.NewMigration(domains.RoleSource, "host-b", 4)
	dst, _ := domains.NewMigration(domains.RoleDestination, "host-a", 4)
	seen := map[string]bool{}
	queue := []world{{src: src, dst: dst}}
	endings := map[string]bool{}
	for len(queue) > 0 {
		w := queue[0]
		queue = queue[1:]
		if seen[w.key()] {
			continue
		}
		seen[w.key()] = true
		if w.src.MayRun() && w.dst.MayRun() {
			t.Fatalf("both run the guest: %+v", w)
		}
		if w.src.Owns() && w.dst.Owns() {
			t.Fatalf("both own the domain: %+v", w)
		}
		next := moves(w)
		if len(next) == 0 {
			endings[fmt.Sprint(w.src.Phase, "/", w.dst.Phase, " dropped=", w.dropped)] = true
			if !w.dropped && w.src.MayRun() == w.dst.MayRun() {
				t.Errorf("quiescent with no loss, but runs on %v/%v: %+v", w.src.MayRun(), w.dst.MayRun(), w)
			}
		}
		queue = append(queue, next...)
	}
	for _, want := range []string{"confirmed/finished dropped=false", "cancelled/torn-down dropped=false"} {
		if !endings[want] {
			t.Errorf("ending %s never reached; endings: %v", want, endings)
		}
	}
	t.Logf("%d configurations, endings %v", len(seen), endings)
}
