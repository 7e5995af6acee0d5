package owner

import (
	"context"

	"github.com/vmledger/vmledger/domains"
)

// reserveName serializes the defines of one name (names are unique
// across domains: the check and the commit must not interleave with
// another define of the name) without serializing defines of different
// names. One lock for all defines held each through its commit, an fsync,
// so defines ran one at a time: ~40 a second on a loaded disk, whatever
// the number of callers (BenchmarkAgentLoad; TestDefinesOfDifferentNamesRunTogether).
func (s *Service) reserveName(ctx context.Context, name string) (func(), error) {
	for {
		s.lmu.Lock()
		busy, taken := s.naming[name]
		if !taken {
			mine := make(chan struct{})
			s.naming[name] = mine
			s.lmu.Unlock()
			return func() {
				s.lmu.Lock()
				delete(s.naming, name)
				s.lmu.Unlock()
				close(mine)
			}, nil
		}
		s.lmu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, domains.Errorf(domains.CodeUnavailable, "define %q: waited for another define of that name: %w", name, ctx.Err())
		}
	}
}
