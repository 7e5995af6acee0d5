package main

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

// timeLayout is the one format the CLI prints times in (events, history,
// info, job info, log inspect): RFC 3339 in UTC with microseconds, fixed
// width, so lines align and sort as text (docs/cli.md, "Times").
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

func fmtTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// domainNames finds the name of an event's domain for the text form of
// events and history: from the defined events the stream carries, else
// from one list of the agent's domains, else (a domain undefined since)
// from the agent's view of the log just before the event. Each domain is
// looked up at most once; "-" when the agent cannot say.
type domainNames struct {
	g      *globals
	c      *bus.Client
	mu     sync.Mutex
	names  map[uuid.UUID]string
	listed bool
}

func newDomainNames(g *globals, c *bus.Client) *domainNames {
	return &domainNames{g: g, c: c, names: map[uuid.UUID]string{}}
}

func (n *domainNames) name(ctx context.Context, e domains.Event) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if def, ok := e.Payload.(domains.Defined); ok {
		n.names[e.Domain] = def.Config.Name
	}
	if name, ok := n.names[e.Domain]; ok {
		return name
	}
	if !n.listed {
		n.listed = true
		var lr api.ListReply
		if n.call(ctx, api.VerbList, api.ListRequest{}, &lr) == nil {
			for _, d := range lr.Domains {
				if id, err := uuid.Parse(d.UUID); err == nil {
					n.names[id] = d.Name
				}
			}
		}
		if name, ok := n.names[e.Domain]; ok {
			return name
		}
	}
	name := "-"
	var d domains.Domain
	if e.Seq > 1 && n.call(ctx, api.VerbInfo, api.DomainRequest{Domain: e.Domain.String(), At: strconv.FormatUint(e.Seq-1, 10)}, &d) == nil {
		name = d.Config.Name
	}
	n.names[e.Domain] = name
	return name
}

func (n *domainNames) call(ctx context.Context, verb string, req, resp any) error {
	cctx, cancel := context.WithTimeout(ctx, n.g.timeout)
	defer cancel()
	return n.c.Call(cctx, verb, req, resp)
}
