package domains

import (
	"sort"

	"github.com/google/uuid"
)

// Row is what a list shows of a domain: no config, so listing copies
// nothing but these few fields.
type Row struct {
	UUID    uuid.UUID
	Name    string
	State   State
	Reason  string
	Version uint64
}

// Rows returns the rows of the domains in state (every domain when state
// is ""), sorted by name. It filters before it copies: with 10,000
// domains defined, a list of the 100 running built 10,000 copies of
// configs through List (BenchmarkServiceLoad/list-running), and an
// active state visits only the active domains (projection_active.go).
func (p *Projection) Rows(state State) []Row {
	out := []Row{}
	from := p.domains
	if state.Active() {
		from = p.active // a few of many: shut off is the usual state
	}
	for id, d := range from {
		if state == "" || d.State == state {
			out = append(out, Row{UUID: id, Name: d.Config.Name, State: d.State, Reason: d.Reason, Version: d.Version})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
