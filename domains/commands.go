package domains

import (
	"context"
	"encoding/json"

	"github.com/google/uuid"
)

// Define creates a domain, or replaces the configuration of an existing
// one with the same name and UUID (as virsh define does). A config without
// a UUID gets a fresh one.
func (s *Service) Define(ctx context.Context, cmdID string, cfg Config) (Result, error) {
	return s.once(ctx, cmdID, requestDigest("define", "", cfg.Normalize()), func() (Result, error) {
		if cfg.UUID == uuid.Nil {
			cfg.UUID = uuid.New()
		}
		cfg = cfg.Normalize()
		if err := cfg.Validate(); err != nil {
			return Result{}, err
		}
		s.defineMu.Lock()
		defer s.defineMu.Unlock()
		defer s.lock(cfg.UUID)()
		s.mu.RLock()
		byName, nameTaken := s.proj.byName[cfg.Name]
		cur, exists := s.proj.domains[cfg.UUID]
		var curName string
		var same bool
		if exists {
			curName = cur.Config.Name
			same = equalConfig(cur.Config, cfg)
		}
		s.mu.RUnlock()
		switch {
		case nameTaken && byName != cfg.UUID:
			return Result{}, Errorf(CodeConflict, "domain name %q is already used by %s", cfg.Name, byName)
		case exists && curName != cfg.Name:
			return Result{}, Errorf(CodeConflict, "domain %s is named %q; renaming is not supported", cfg.UUID, curName)
		case exists && same:
			return Result{}, Errorf(CodeConflict, "domain %q is already defined with this configuration", cfg.Name)
		case exists:
			return s.commit(ctx, cmdID, cfg.UUID, ConfigUpdated{Config: cfg})
		}
		return s.commit(ctx, cmdID, cfg.UUID, Defined{Config: cfg})
	})
}

// Undefine removes a shut-off domain's definition. Its log stays.
func (s *Service) Undefine(ctx context.Context, cmdID, ref string) (Result, error) {
	return s.once(ctx, cmdID, requestDigest("undefine", ref, nil), func() (Result, error) {
		d, unlock, err := s.acquire(ref)
		if err != nil {
			return Result{}, err
		}
		defer unlock()
		if d.State.Active() {
			return Result{}, Errorf(CodeConflict, "domain %q is %s; destroy it before undefining", d.Config.Name, d.State)
		}
		return s.commit(ctx, cmdID, d.Config.UUID, Undefined{})
	})
}

// acquire resolves ref, locks the domain and re-reads it under the lock.
func (s *Service) acquire(ref string) (Domain, func(), error) {
	d, err := s.Get(ref)
	if err != nil {
		return Domain{}, nil, err
	}
	unlock := s.lock(d.Config.UUID)
	s.mu.RLock()
	d, ok := s.proj.Get(d.Config.UUID)
	s.mu.RUnlock()
	if !ok {
		unlock()
		return Domain{}, nil, Errorf(CodeNotFound, "domain %q not found", ref)
	}
	return d, unlock, nil
}

func equalConfig(a, b Config) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
