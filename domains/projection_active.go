package domains

import "sort"

// Active returns copies of the domains whose state is active (running,
// paused, in shutdown, crashed), sorted by name. Callers that need only
// those (the agent's console bridges, woken on every commit) skip copying
// every shut-off domain's config: with 10,000 defined, List on each
// commit was most of the agent's CPU under load (BenchmarkAgentLoad).
func (p *Projection) Active() []Domain {
	var out []Domain
	for _, d := range p.domains {
		if d.State.Active() {
			out = append(out, d.clone())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Config.Name < out[j].Config.Name })
	return out
}
