package domains

import (
	"sort"

	"github.com/google/uuid"
)

// index keeps p.active in step with d after an event (d undefined: out).
// Listing the running domains and the agent's console bridges, woken on
// every commit, then visit the few active domains instead of all 10,000
// defined (BenchmarkServiceLoad/list-running).
func (p *Projection) index(id uuid.UUID, d *Domain) {
	if p.domains[id] == d && d.State.Active() {
		p.active[id] = d
		return
	}
	delete(p.active, id)
}

// Active returns copies of the domains whose state is active (running,
// paused, in shutdown, crashed), sorted by name. Callers that need only
// those (the agent's console bridges, woken on every commit) skip copying
// every shut-off domain's config: with 10,000 defined, List on each
// commit was most of the agent's CPU under load (BenchmarkAgentLoad).
func (p *Projection) Active() []Domain {
	var out []Domain
	for _, d := range p.active {
		out = append(out, d.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Config.Name < out[j].Config.Name })
	return out
}

// ActiveIDs returns the UUIDs of the active domains, in no order and
// without copying a domain: what the agent's console loop, woken on
// every commit, needs to match its bridges to.
func (p *Projection) ActiveIDs() []uuid.UUID {
	out := make([]uuid.UUID, 0, len(p.active))
	for id := range p.active {
		out = append(out, id)
	}
	return out
}
