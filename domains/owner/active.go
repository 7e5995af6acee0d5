package owner

import (
	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// Active returns the active domains (domains.Projection.Active).
func (s *Service) Active() []domains.Domain {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.proj.Active()
}

// ActiveIDs returns the UUIDs of the active domains
// (domains.Projection.ActiveIDs).
func (s *Service) ActiveIDs() []uuid.UUID {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.proj.ActiveIDs()
}
