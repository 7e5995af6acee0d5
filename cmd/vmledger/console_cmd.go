package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/cmd/vmledger/internal/agent"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

func newConsoleCmd(g *globals) *cobra.Command {
	var send, until string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "console DOMAIN",
		Short: "Watch a running domain's serial console, and type into it",
		Long: `Print what the guest writes on its first serial port. Interactively, each
line typed on stdin is sent to the guest; Ctrl-C ends the session.

For scripts: --send TEXT types TEXT and a newline, then output is printed
until --until REGEX matches a line or --for elapses (exit code 5 when the
regex never matched).`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var re *regexp.Regexp
			if until != "" {
				var err error
				if re, err = regexp.Compile(until); err != nil {
					return usagef("--until: %w", err)
				}
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
			return runConsole(cmd, nc, g.host, d, send, re, wait)
		},
	}
	cmd.Flags().StringVar(&send, "send", "", "type this line into the guest, then watch non-interactively")
	cmd.Flags().StringVar(&until, "until", "", "with --send: stop when an output line matches this regular expression")
	cmd.Flags().DurationVar(&wait, "for", 0, "with --send: watch this long (default 10s when --until is given, else 0)")
	return cmd
}

func runConsole(cmd *cobra.Command, nc *nats.Conn, host string, d domains.Domain, send string, re *regexp.Regexp, wait time.Duration) error {
	out := cmd.OutOrStdout()
	in := agent.ConsoleSubject(host, d.Config.UUID, "in")
	lines := make(chan string, 256)
	var partial []byte
	sub, err := nc.Subscribe(agent.ConsoleSubject(host, d.Config.UUID, "out"), func(m *nats.Msg) {
		_, _ = out.Write(m.Data)
		if re == nil {
			return
		}
		partial = append(partial, m.Data...)
		for {
			i := bytes.IndexByte(partial, '\n')
			if i < 0 {
				break
			}
			select {
			case lines <- string(bytes.TrimRight(partial[:i], "\r")):
			default:
			}
			partial = partial[i+1:]
		}
	})
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		return err
	}
	ctx := cmd.Context()
	if send == "" && re == nil {
		return interactive(ctx, cmd.InOrStdin(), nc, in)
	}
	if send != "" {
		if err := nc.Publish(in, []byte(send+"\r\n")); err != nil {
			return err
		}
		if err := nc.Flush(); err != nil {
			return err
		}
	}
	if wait == 0 && re != nil {
		wait = 10 * time.Second
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case l := <-lines:
			if re.MatchString(l) {
				return nil
			}
		case <-timer.C:
			if re != nil {
				return domains.Errorf(domains.CodeUnavailable, "no console line matched %s within %s", domains.Quote(re.String()), wait)
			}
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

func interactive(ctx context.Context, stdin io.Reader, nc *nats.Conn, subject string) error {
	fmt.Fprintln(stderrOf(), "-- console: lines you type go to the guest; Ctrl-C ends --")
	typed := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			typed <- sc.Text()
		}
		close(typed)
	}()
	for {
		select {
		case l, ok := <-typed:
			if !ok {
				return nil
			}
			if err := nc.Publish(subject, []byte(l+"\r\n")); err != nil {
				return err
			}
		case <-ctx.Done():
			return nil
		}
	}
}
