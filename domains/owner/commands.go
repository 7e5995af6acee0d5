package owner

import (
	"context"
	"encoding/json"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// Define creates a domain, or replaces the configuration of an existing
// one with the same name (and UUID, when the config gives one), as virsh
// define does. A config without a UUID takes the UUID of the domain of its
// name, else a fresh one. An identical config changes nothing: the result
// says Unchanged, with no event.
func (s *Service) Define(ctx context.Context, cmdID string, cfg domains.Config) (domains.Result, error) {
	return s.once(ctx, cmdID, requestDigest("define", "", cfg.Normalize()), func() (domains.Result, error) {
		// One define per name at a time, from the name's lookup to the
		// append: two defines of a new name must not both create it.
		unreserve, err := s.reserveName(ctx, cfg.Name)
		if err != nil {
			return domains.Result{}, err
		}
		defer unreserve()
		if cfg.UUID == uuid.Nil {
			s.mu.RLock()
			id, ok := s.proj.ByName(cfg.Name)
			s.mu.RUnlock()
			if !ok {
				id = uuid.New()
			}
			cfg.UUID = id
		}
		cfg = cfg.Normalize()
		if err := cfg.Validate(); err != nil {
			return domains.Result{}, err
		}
		if err := s.checkPaths(cfg); err != nil {
			return domains.Result{}, err
		}
		release, err := s.enter(ctx, cfg.UUID, cfg.Name, domains.JobDefine, cmdID)
		if err != nil {
			return domains.Result{}, err
		}
		defer release()
		s.mu.RLock()
		byName, nameTaken := s.proj.ByName(cfg.Name)
		cur, exists := s.proj.Get(cfg.UUID)
		s.mu.RUnlock()
		switch {
		case nameTaken && byName != cfg.UUID:
			return domains.Result{}, domains.Errorf(domains.CodeConflict, "domain name %q is already used by %s", cfg.Name, byName)
		case exists && cur.Config.Name != cfg.Name:
			return domains.Result{}, domains.Errorf(domains.CodeConflict, "domain %s is named %q; renaming is not supported", cfg.UUID, cur.Config.Name)
		case exists && equalConfig(cur.Config, cfg):
			res := domains.Result{Domain: cfg.UUID, Name: cfg.Name, Seqs: []uint64{}, State: cur.State, Unchanged: true}
			return res, s.recordCommand(ctx, cmdID, res)
		case exists:
			return s.commit(ctx, cmdID, cfg.UUID, domains.ConfigUpdated{Config: cfg})
		}
		return s.commit(ctx, cmdID, cfg.UUID, domains.Defined{Config: cfg})
	})
}

// recordCommand records the result of a command that appended no event
// (the guest decides, or nothing was to change), so that a retry with
// its ID gets this reply and does not act again. The command was done:
// as with events, the caller giving up must not leave it unrecorded.
func (s *Service) recordCommand(ctx context.Context, cmdID string, res domains.Result) error {
	if cmdID == "" {
		return nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	req := domains.AppendRequest{Domain: res.Domain, ExpectedVersion: domains.AnyVersion, CommandID: cmdID, Result: encodeResult(res), CommandDigest: s.commandDigest(cmdID)}
	if _, err := s.log.Append(rctx, req); err != nil {
		return coded(domains.CodeUnavailable, "record command %s: %w", cmdID, err)
	}
	return nil
}

// Undefine removes a shut-off domain's definition. Its log stays.
func (s *Service) Undefine(ctx context.Context, cmdID, ref string) (domains.Result, error) {
	return s.once(ctx, cmdID, requestDigest("undefine", ref, nil), func() (domains.Result, error) {
		d, unlock, err := s.acquire(ctx, ref, domains.JobUndefine, cmdID)
		if err != nil {
			return domains.Result{}, err
		}
		defer unlock()
		if d.State.Active() {
			return domains.Result{}, domains.Errorf(domains.CodeConflict, "domain %q is %s; destroy it before undefining", d.Config.Name, d.State)
		}
		if s.HasManagedSave(d.Config.UUID) {
			// As virsh undefine: the image would be left with no domain.
			return domains.Result{}, domains.Errorf(domains.CodeConflict, "domain %q has a managed save image; managedsave-remove it first", d.Config.Name)
		}
		return s.commit(ctx, cmdID, d.Config.UUID, domains.Undefined{})
	})
}

// acquire resolves ref, enters a job of kind on the domain and re-reads
// it once inside.
func (s *Service) acquire(ctx context.Context, ref string, kind domains.JobKind, cmdID string) (domains.Domain, func(), error) {
	d, err := s.Get(ref)
	if err != nil {
		return domains.Domain{}, nil, err
	}
	release, err := s.enter(ctx, d.Config.UUID, d.Config.Name, kind, cmdID)
	if err != nil {
		return domains.Domain{}, nil, err
	}
	s.mu.RLock()
	d, ok := s.proj.Get(d.Config.UUID)
	s.mu.RUnlock()
	if !ok {
		release()
		return domains.Domain{}, nil, domains.Errorf(domains.CodeNotFound, "domain %s not found", domains.Quote(ref))
	}
	return d, release, nil
}

func equalConfig(a, b domains.Config) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
