package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/cmd/vmledger/internal/agent"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

// escapeKey ends a terminal session, as in virsh console (Ctrl-]).
const escapeKey = 0x1d

func newConsoleCmd(g *globals) *cobra.Command {
	var o consoleOptions
	var until string
	cmd := &cobra.Command{
		Use:   "console DOMAIN [--send TEXT] [--until REGEX] [--for D]",
		Short: "Watch a running domain's serial console, and type into it (Ctrl-] ends)",
		Long: `Print what the guest writes on its first serial port and send it what is
typed. The session ends when the guest stops (its stopped event), when
--until REGEX matches an output line (exit 0), when --for D has passed
(exit 0; exit 5 when --until was given and never matched), or on Ctrl-].

On a terminal, stdin is put in raw mode (restored at the end): every key
goes to the guest as typed, Ctrl-C included, and Ctrl-] ends the session.
Otherwise stdin is sent line by line (each line ends in CR LF); at its
end the session goes on watching until --for, --until or the guest's stop
(or Ctrl-C).

--send TEXT types TEXT and CR LF first and then only watches (stdin is not
read). --until without --for waits at most 10s.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if until != "" {
				var err error
				if o.until, err = regexp.Compile(until); err != nil {
					return usagef("--until %s: not a regular expression: %w", domains.Quote(until), err)
				}
			}
			if o.wait < 0 {
				return usagef("--for %s: must not be negative", o.wait)
			}
			if o.wait == 0 && o.until != nil {
				o.wait = 10 * time.Second
			}
			nc, c, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer nc.Close()
			var d domains.Domain
			cctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
			err = c.Call(cctx, api.VerbInfo, api.DomainRequest{Domain: args[0]}, &d)
			cancel()
			if err != nil {
				return err
			}
			if !d.State.Active() {
				return domains.Errorf(domains.CodeConflict, "domain %q is %s: no console", d.Config.Name, d.State)
			}
			return runConsole(cmd, nc, c, g.host, d, o)
		},
	}
	cmd.Flags().StringVar(&o.send, "send", "", "type this line into the guest, then only watch (stdin is not read)")
	cmd.Flags().StringVar(&until, "until", "", "end (exit 0) when an output line matches this regular expression")
	cmd.Flags().DurationVar(&o.wait, "for", 0, "end after this long (default: until the guest stops; 10s with --until)")
	return cmd
}

type consoleOptions struct {
	send  string
	until *regexp.Regexp
	wait  time.Duration
}

// consoleEnd is why a session ended; nil error means exit 0.
type consoleEnd struct{ err error }

func runConsole(cmd *cobra.Command, nc *nats.Conn, c *bus.Client, host string, d domains.Domain, o consoleOptions) error {
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
	name := d.Config.Name
	ended := make(chan consoleEnd, 4)
	end := func(err error) {
		select {
		case ended <- consoleEnd{err}:
		default:
		}
	}

	// The guest's stop ends the session: follow its events from now.
	go func() {
		err := c.Follow(ctx, bus.FollowOptions{After: d.LastSeq, Domain: d.Config.UUID, Types: []domains.Type{domains.TypeStopped}}, func(e domains.Event) error {
			p, _ := e.Payload.(domains.Stopped)
			fmt.Fprintf(errw, "\r\n-- domain %s stopped (%s) --\r\n", name, p.Reason)
			end(nil)
			return context.Canceled
		})
		if err != nil && ctx.Err() == nil && err != context.Canceled {
			end(domains.Errorf(domains.CodeUnavailable, "console of %s: following its events: %w", domains.Quote(name), err))
		}
	}()

	lines := newLineMatcher(o.until)
	sub, err := nc.Subscribe(agent.ConsoleSubject(host, d.Config.UUID, "out"), func(m *nats.Msg) {
		_, _ = out.Write(m.Data)
		if lines.feed(m.Data) {
			end(nil)
		}
	})
	if err != nil {
		return domains.Errorf(domains.CodeUnavailable, "console of %s: subscribe: %w", domains.Quote(name), err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		return domains.Errorf(domains.CodeUnavailable, "console of %s: %w", domains.Quote(name), err)
	}

	in := agent.ConsoleSubject(host, d.Config.UUID, "in")
	typeIn := func(b []byte) error {
		if err := nc.Publish(in, b); err != nil {
			return domains.Errorf(domains.CodeUnavailable, "console of %s: send: %w", domains.Quote(name), err)
		}
		return nil
	}
	switch {
	case o.send != "":
		if err := typeIn([]byte(o.send + "\r\n")); err != nil {
			return err
		}
		if err := nc.Flush(); err != nil {
			return domains.Errorf(domains.CodeUnavailable, "console of %s: %w", domains.Quote(name), err)
		}
	default:
		restore, err := readInput(cmd.InOrStdin(), errw, name, typeIn, end)
		if err != nil {
			return err
		}
		defer restore()
	}

	var timeout <-chan time.Time
	if o.wait > 0 {
		t := time.NewTimer(o.wait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case e := <-ended:
		return e.err
	case <-timeout:
		if o.until != nil {
			return domains.Errorf(domains.CodeUnavailable, "no console line matched %s within %s", domains.Quote(o.until.String()), o.wait)
		}
		return nil
	case <-ctx.Done():
		return nil // Ctrl-C (off a terminal): a normal end
	}
}

// readInput forwards stdin to the guest in the background: on a terminal
// in raw mode, key by key, until Ctrl-] (it calls end); otherwise line by
// line, and at EOF it stops reading but leaves the session on. restore
// puts the terminal back.
func readInput(stdin io.Reader, errw io.Writer, name string, typeIn func([]byte) error, end func(error)) (restore func(), err error) {
	f, ok := stdin.(*os.File)
	if ok && term.IsTerminal(int(f.Fd())) {
		old, err := term.MakeRaw(int(f.Fd()))
		if err != nil {
			return nil, domains.Errorf(domains.CodeInternal, "console: raw mode: %w", err)
		}
		fmt.Fprintf(errw, "-- console of %s: keys go to the guest; Ctrl-] ends --\r\n", name)
		go func() {
			buf := make([]byte, 256)
			for {
				n, err := f.Read(buf)
				if i := bytes.IndexByte(buf[:n], escapeKey); i >= 0 {
					if i > 0 {
						_ = typeIn(buf[:i])
					}
					end(nil)
					return
				}
				if n > 0 {
					if err := typeIn(buf[:n]); err != nil {
						end(err)
						return
					}
				}
				if err != nil {
					return // EOF or a closed terminal: go on watching
				}
			}
		}()
		return func() { _ = term.Restore(int(f.Fd()), old) }, nil
	}
	fmt.Fprintln(errw, "-- console of "+name+": lines read from stdin go to the guest; Ctrl-C ends --")
	go func() {
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			if err := typeIn(append(sc.Bytes(), '\r', '\n')); err != nil {
				end(err)
				return
			}
		}
		// At EOF the session goes on: --for, --until or the guest's stop end it.
	}()
	return func() {}, nil
}

// lineMatcher finds the first output line matching re (nil: never).
type lineMatcher struct {
	re      *regexp.Regexp
	partial []byte
}

func newLineMatcher(re *regexp.Regexp) *lineMatcher { return &lineMatcher{re: re} }

// feed adds output; it reports whether a complete line matched. NATS
// calls it from one goroutine per subscription, so it needs no lock.
func (l *lineMatcher) feed(b []byte) bool {
	if l.re == nil {
		return false
	}
	l.partial = append(l.partial, b...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			if len(l.partial) > 64<<10 {
				l.partial = l.partial[len(l.partial)-4096:] // a line that never ends
			}
			return false
		}
		line := bytes.TrimRight(l.partial[:i], "\r")
		l.partial = l.partial[i+1:]
		if l.re.Match(line) {
			return true
		}
	}
}
