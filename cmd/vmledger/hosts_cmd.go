package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

// discoverWait bounds how long --all-hosts waits for the first agent to
// answer discovery; agents answer at once, so a whole --timeout is too long.
const discoverWait = 3 * time.Second

// dialAll connects and discovers the agents on the cluster (micro
// discovery); the caller closes the connection.
func (g *globals) dialAll(ctx context.Context) (*nats.Conn, []bus.Peer, error) {
	nc, _, err := g.dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	wait := discoverWait
	if g.timeout < wait {
		wait = g.timeout
	}
	peers, err := bus.DiscoverHosts(ctx, nc, wait)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, peers, nil
}

// hostNames is the peers' hosts, each once.
func hostNames(peers []bus.Peer) []string {
	var hosts []string
	for i, p := range peers {
		if i == 0 || p.Host != peers[i-1].Host {
			hosts = append(hosts, p.Host)
		}
	}
	return hosts
}

func newHostsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hosts",
		Short: "List the agents on the NATS cluster (micro service discovery)",
		Long: `List every vmledger agent that answers discovery ($SRV.INFO.vmledger) on
the cluster --nats-url reaches: its host name, version and service
instance ID. Two instances with one host name are both listed: that is a
misconfiguration (each agent needs its own --host).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			nc, peers, err := g.dialAll(cmd.Context())
			if err != nil {
				return err
			}
			defer nc.Close()
			if g.json {
				return printJSON(cmd.OutOrStdout(), peers)
			}
			w := newTable(cmd.OutOrStdout())
			fmt.Fprintln(w, "HOST\tVERSION\tID")
			for _, p := range peers {
				fmt.Fprintf(w, "%s\t%s\t%s\n", p.Host, p.Version, p.ID)
			}
			return w.Flush()
		},
	}
	addJSON(cmd, g)
	return cmd
}

// hostDomains is one host's part of list --all-hosts.
type hostDomains struct {
	Host    string        `json:"host"`
	Domains []api.Summary `json:"domains"`
	Error   string        `json:"error,omitempty"`
}

// listAllHosts is list --all-hosts: every discovered agent's list. A host
// that fails to answer is reported (and makes the exit code non-zero);
// the others are still listed.
func listAllHosts(ctx context.Context, g *globals, out io.Writer, state string) error {
	nc, peers, err := g.dialAll(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	var all []hostDomains
	var failed []error
	for _, host := range hostNames(peers) {
		var rep api.ListReply
		cctx, cancel := context.WithTimeout(ctx, g.timeout)
		err := bus.NewClient(nc, host).Call(cctx, api.VerbList, api.ListRequest{State: state}, &rep)
		cancel()
		hd := hostDomains{Host: host, Domains: rep.Domains}
		if err != nil {
			hd.Error = err.Error()
			failed = append(failed, fmt.Errorf("host %s: %w", host, err))
		}
		all = append(all, hd)
	}
	if g.json {
		if err := printJSON(out, all); err != nil {
			return err
		}
	} else {
		w := newTable(out)
		fmt.Fprintln(w, "HOST\tNAME\tUUID\tSTATE\tREASON\tVERSION")
		for _, hd := range all {
			for _, d := range hd.Domains {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\n", hd.Host, d.Name, d.UUID, d.State, d.Reason, d.Version)
			}
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return errors.Join(failed...)
}

// eventsAllHosts is events --all-hosts: each discovered agent's log (the
// hosts found at the start), every line prefixed with its host; with
// follow, all hosts at once, lines interleaved as they come.
func eventsAllHosts(ctx context.Context, g *globals, out io.Writer, f eventFilter, follow bool) error {
	nc, peers, err := g.dialAll(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	var mu sync.Mutex
	printer := func(host string, c *bus.Client) func(domains.Event) error {
		var b strings.Builder
		inner := eventPrinter(ctx, &b, g.json, newDomainNames(g, c))
		return func(e domains.Event) error {
			mu.Lock()
			defer mu.Unlock()
			b.Reset()
			if err := inner(e); err != nil {
				return err
			}
			if g.json { // the JSON form names its host already
				_, err := io.WriteString(out, b.String())
				return err
			}
			_, err := io.WriteString(out, host+"\t"+b.String())
			return err
		}
	}
	type plan struct {
		host string
		c    *bus.Client
		o    bus.FollowOptions
	}
	var plans []plan
	for _, host := range hostNames(peers) {
		c := bus.NewClient(nc, host)
		o, err := f.resolve(ctx, g, c)
		if errors.Is(err, domains.ErrNotFound) {
			continue // --domain NAME lives on other hosts
		}
		if err != nil {
			return fmt.Errorf("host %s: %w", host, err)
		}
		plans = append(plans, plan{host, c, o})
	}
	if len(plans) == 0 {
		return domains.Errorf(domains.CodeNotFound, "domain %s not found on any of %d hosts", domains.Quote(f.domain), len(peers))
	}
	if !follow {
		for _, p := range plans {
			if err := drain(ctx, g, p.c, p.o, printer(p.host, p.c)); err != nil {
				return fmt.Errorf("host %s: %w", p.host, err)
			}
		}
		return nil
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(plans))
	for _, p := range plans {
		go func(p plan) {
			err := p.c.Follow(fctx, p.o, printer(p.host, p.c))
			switch {
			case fctx.Err() != nil:
				err = nil // ended by the user or by another host's end
			case err != nil:
				err = fmt.Errorf("host %s: %w", p.host, err)
			}
			cancel() // one host's follow ending ends them all
			errs <- err
		}(p)
	}
	var first error
	for range plans {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}
