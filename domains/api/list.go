package api

import "github.com/vmledger/vmledger/domains"

// RowLister is what list prefers of the service: the rows of the domains
// in a state without copies of their configs (owner.Service.Rows). A
// service without it is listed through List, a copy of every domain.
type RowLister interface {
	Rows(state domains.State) []domains.Row
}

// list answers the list verb; r.State is already checked (ParseState).
func (h Handler) list(r ListRequest) ListReply {
	out := ListReply{Domains: []Summary{}, LastSeq: h.Svc.LastSeq()}
	rl, ok := h.Svc.(RowLister)
	if !ok {
		for _, d := range h.Svc.List() {
			if r.State == "" || string(d.State) == r.State {
				out.Domains = append(out.Domains, h.summary(domains.Row{UUID: d.Config.UUID, Name: d.Config.Name, State: d.State, Reason: d.Reason, Version: d.Version}))
			}
		}
		return out
	}
	rows := rl.Rows(domains.State(r.State))
	out.Domains = make([]Summary, 0, len(rows))
	for _, row := range rows {
		out.Domains = append(out.Domains, h.summary(row))
	}
	return out
}

func (h Handler) summary(r domains.Row) Summary {
	return Summary{UUID: r.UUID.String(), Name: r.Name, State: r.State, Reason: r.Reason, Version: r.Version, ManagedSave: h.hasManagedSave(r.UUID)}
}
