package qmptest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"time"
)

// Step is one action of a script. A Step that returns an error ends the
// script and fails the test, unless the server was closed meanwhile.
// Custom steps are plain functions over the Peer.
type Step func(p *Peer) error

// DefaultGreeting is what QEMU 7.2 sends, give or take the package string.
const DefaultGreeting = `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "qmptest"}, "capabilities": ["oob"]}}`

// Greet sends DefaultGreeting.
func Greet() Step { return Send(DefaultGreeting) }

// Handshake is the usual start: greet, then accept qmp_capabilities.
func Handshake() Step {
	return Steps(Greet(), Expect("qmp_capabilities", Empty()))
}

// Steps runs several steps as one.
func Steps(steps ...Step) Step {
	return func(p *Peer) error {
		for _, s := range steps {
			if err := s(p); err != nil {
				return err
			}
			if p.hungUp {
				return nil
			}
		}
		return nil
	}
}

// Send sends line verbatim (plus a newline): a greeting, garbage, a huge line.
func Send(line string) Step {
	return func(p *Peer) error { return p.WriteLine([]byte(line)) }
}

// Expect reads the next command, checks its name and answers it.
func Expect(cmd string, r Reply) Step {
	return ExpectArgs(cmd, "", r)
}

// ExpectArgs is Expect that also checks the arguments, given as JSON and
// compared by value ("" skips the check).
func ExpectArgs(cmd, args string, r Reply) Step {
	return func(p *Peer) error {
		c, err := p.expect(cmd)
		if err != nil {
			return err
		}
		if args != "" {
			if err := sameJSON(c.Arguments, args); err != nil {
				return fmt.Errorf("%s: arguments: %w", cmd, err)
			}
		}
		return p.Reply(c, r)
	}
}

// ExpectFile reads the next command, checks its name and that exactly one
// descriptor came with it, calls use with that file (nil use skips it), and
// answers. A command without a descriptor is a script failure, the way QEMU
// answers getfd without one with an error.
func ExpectFile(cmd string, use func(*os.File) error, r Reply) Step {
	return func(p *Peer) error {
		c, err := p.expect(cmd)
		if err != nil {
			return err
		}
		if len(c.Files) != 1 {
			return fmt.Errorf("%s: got %d file descriptors, want 1", cmd, len(c.Files))
		}
		if use != nil {
			if err := use(c.Files[0]); err != nil {
				return fmt.Errorf("%s: %w", cmd, err)
			}
		}
		return p.Reply(c, r)
	}
}

// Receive reads the next command, checks its name, and holds it unanswered
// (for ReplyTo, or never: a command QEMU does not answer).
func Receive(cmd string) Step {
	return func(p *Peer) error {
		c, err := p.expect(cmd)
		if err != nil {
			return err
		}
		p.held = append(p.held, c)
		return nil
	}
}

// ReplyTo answers the oldest held command named cmd; replying in another
// order than Receive tests out-of-order replies.
func ReplyTo(cmd string, r Reply) Step {
	return func(p *Peer) error {
		for i, c := range p.held {
			if c.Execute == cmd {
				p.held = append(p.held[:i], p.held[i+1:]...)
				return p.Reply(c, r)
			}
		}
		return fmt.Errorf("ReplyTo(%s): no such command held", cmd)
	}
}

// Event sends an event with the current time; data nil omits "data".
func Event(name string, data any) Step {
	return func(p *Peer) error {
		now := time.Now()
		msg := map[string]any{
			"event": name,
			"timestamp": map[string]int64{
				"seconds":      now.Unix(),
				"microseconds": int64(now.Nanosecond() / 1000),
			},
		}
		if data != nil {
			msg["data"] = data
		}
		line, err := json.Marshal(msg)
		if err != nil {
			return fmt.Errorf("encode event: %w", err)
		}
		return p.WriteLine(line)
	}
}

// Hangup closes the connection, e.g. in the middle of a command.
func Hangup() Step { return func(p *Peer) error { return p.Hangup() } }

// WaitFor blocks until ch is closed (or the server is closed), to order the
// script against the test, e.g. to reply only after the client gave up.
func WaitFor(ch <-chan struct{}) Step {
	return func(p *Peer) error {
		select {
		case <-ch:
			return nil
		case <-p.srv.stopped:
			return fmt.Errorf("server closed while waiting")
		}
	}
}

// expect reads the next command and checks its name.
func (p *Peer) expect(cmd string) (Command, error) {
	c, err := p.ReadCommand()
	if err != nil {
		return Command{}, fmt.Errorf("expecting %s: %w", cmd, err)
	}
	if c.Execute != cmd {
		return Command{}, fmt.Errorf("got command %s, want %s", c.Execute, cmd)
	}
	return c, nil
}

func sameJSON(got json.RawMessage, want string) error {
	var g, w any
	if err := json.Unmarshal(bytes.TrimSpace(got), &g); err != nil && len(got) > 0 {
		return fmt.Errorf("got invalid JSON %s: %w", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		return fmt.Errorf("bad expectation %s: %w", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		return fmt.Errorf("got %s, want %s", got, want)
	}
	return nil
}
