package owner

import "github.com/vmledger/vmledger/domains"

// Rows lists the domains in state ("" for all) without copying their
// configs (domains.Projection.Rows): what the list verb answers.
func (s *Service) Rows(state domains.State) []domains.Row {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.proj.Rows(state)
}

// Len is the number of defined domains (len(List()) without the copies).
func (s *Service) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.proj.Len()
}
