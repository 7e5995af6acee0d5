package owner

import "github.com/vmledger/vmledger/domains"

// Active returns the active domains (domains.Projection.Active).
func (s *Service) Active() []domains.Domain {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.proj.Active()
}
