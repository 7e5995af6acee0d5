package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

type eventFilter struct {
	domain string
	types  []string
	after  uint64
}

func (f *eventFilter) register(cmd *cobra.Command, withDomain bool) {
	if withDomain {
		cmd.Flags().StringVar(&f.domain, "domain", "", "only this domain (name or UUID)")
	}
	cmd.Flags().StringSliceVar(&f.types, "type", nil, "only these event types (repeatable, comma-separated)")
	cmd.Flags().Uint64Var(&f.after, "after", 0, "start after this global sequence")
}

// checkTypes refuses a --type that is no event type.
func (f *eventFilter) checkTypes() error {
	for _, t := range f.types {
		if !domains.Type(t).Valid() {
			return usagef("--type %s: not an event type (see docs/events.md)", domains.Quote(t))
		}
	}
	return nil
}

// resolve turns the filter into bus options, looking a name up once.
func (f *eventFilter) resolve(ctx context.Context, g *globals, c *bus.Client) (bus.FollowOptions, error) {
	o := bus.FollowOptions{After: f.after}
	if err := f.checkTypes(); err != nil {
		return o, err
	}
	for _, t := range f.types {
		o.Types = append(o.Types, domains.Type(t))
	}
	if f.domain == "" {
		return o, nil
	}
	if id, err := uuid.Parse(f.domain); err == nil {
		o.Domain = id
		return o, nil
	}
	// By list, not info: a summary is small whatever the config, so a
	// domain whose config an older log holds too large for one NATS reply
	// (docs/bus.md, Limits) can still have its events read.
	var lr api.ListReply
	cctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	if err := c.Call(cctx, api.VerbList, api.ListRequest{}, &lr); err != nil {
		return o, err
	}
	for _, d := range lr.Domains {
		if d.Name == f.domain {
			id, err := uuid.Parse(d.UUID)
			if err != nil {
				return o, domains.Errorf(domains.CodeInternal, "list: domain %s has UUID %s: %w", domains.Quote(d.Name), domains.Quote(d.UUID), err)
			}
			o.Domain = id
			return o, nil
		}
	}
	return o, domains.Errorf(domains.CodeNotFound, "domain %s not found", domains.Quote(f.domain))
}

func newEventsCmd(g *globals) *cobra.Command {
	var f eventFilter
	var follow, allHosts bool
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Print the event log (from --after), and with --follow keep printing new events",
		Long: `Print committed events in sequence order. With --follow, keep printing as
events are committed; the stream resumes exactly where it stopped after a
NATS outage (history request plus de-duplication by sequence).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.checkTypes(); err != nil {
				return err // before connecting: a typo needs no agent
			}
			if allHosts {
				err := eventsAllHosts(cmd.Context(), g, cmd.OutOrStdout(), f, follow)
				if follow && cmd.Context().Err() != nil {
					return nil // interrupted by the user: a normal end
				}
				return err
			}
			nc, c, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer nc.Close()
			o, err := f.resolve(cmd.Context(), g, c)
			if err != nil {
				return err
			}
			out := eventPrinter(cmd.Context(), cmd.OutOrStdout(), g.json, newDomainNames(g, c))
			if follow {
				err := c.Follow(cmd.Context(), o, out)
				if cmd.Context().Err() != nil {
					return nil // interrupted by the user: a normal end
				}
				return err
			}
			return drain(cmd.Context(), g, c, o, out)
		},
	}
	f.register(cmd, true)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep following new events")
	cmd.Flags().BoolVar(&allHosts, "all-hosts", false, "every agent that answers discovery on the cluster (the hosts found at the start), each line prefixed with its host; --domain NAME is looked up on each")
	addJSON(cmd, g)
	return cmd
}

func newHistoryCmd(g *globals) *cobra.Command {
	var f eventFilter
	var rg logRange
	cmd := &cobra.Command{
		Use:   "history DOMAIN [--since SEQ|TIME] [--until SEQ|TIME] [--type T]",
		Short: "Print one domain's events",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := rg.parse(); err != nil {
				return err
			}
			if err := f.checkTypes(); err != nil {
				return err
			}
			nc, c, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer nc.Close()
			f.domain = args[0]
			o, err := f.resolve(cmd.Context(), g, c)
			if err != nil {
				return err
			}
			o.After = rg.after(o.After)
			err = drain(cmd.Context(), g, c, o, rg.filter(eventPrinter(cmd.Context(), cmd.OutOrStdout(), g.json, newDomainNames(g, c))))
			if errors.Is(err, errRangeEnd) {
				return nil
			}
			return err
		},
	}
	f.register(cmd, false)
	rg.register(cmd)
	addJSON(cmd, g)
	return cmd
}

// drain pages through history until the end known at the first page.
func drain(ctx context.Context, g *globals, c *bus.Client, o bus.FollowOptions, fn func(domains.Event) error) error {
	req := bus.HistoryRequest{After: o.After, Domain: o.Domain, Types: o.Types}
	for {
		cctx, cancel := context.WithTimeout(ctx, g.timeout)
		page, err := c.History(cctx, req)
		cancel()
		if err != nil {
			return err
		}
		for _, e := range page.Events {
			if err := fn(e); err != nil {
				return err
			}
			req.After = e.Seq
		}
		if !page.More {
			return nil
		}
		if page.Next <= req.After && len(page.Events) == 0 {
			return fmt.Errorf("history: the agent made no progress after sequence %d", req.After)
		}
		if page.Next > req.After {
			req.After = page.Next // with a filter, the scan may be past the last match
		}
	}
}

// eventPrinter prints events as JSON lines, or as text lines that name
// each event's domain (names finds it; nil: "-").
func eventPrinter(ctx context.Context, w io.Writer, asJSON bool, names *domainNames) func(domains.Event) error {
	return func(e domains.Event) error {
		if asJSON {
			// The bus's form: a placeholder stays a placeholder.
			b, err := bus.EncodeEvent(e)
			if err != nil {
				return err
			}
			_, err = w.Write(append(b, '\n'))
			return err
		}
		name := "-"
		if names != nil {
			name = names.name(ctx, e)
		}
		printEvent(w, e, name)
		return nil
	}
}
